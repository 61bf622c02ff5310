"""Prometheus metrics through ``prometheus-client``, behind a small get-or-create registry.

``Registry`` owns one ``prometheus_client.CollectorRegistry`` (never the library's
global one), so each service, and each test, exposes exactly its own families.
What it adds to the library is small:

- get-or-create: asking twice for a family returns the first one, so several
  clients (one per upstream host) share a registry and tell their series apart
  by labels; asking with another shape is an error;
- ``inc(**labels)`` on the family, with each label set's child cached, so an
  increment on the request path is one dict lookup and the child's own
  increment (``Counter.labels()`` validates and locks on every call);
- ``gauge_func``: a gauge computed at scrape time from live state, which keeps
  label sets bounded (an address that left DNS simply stops being reported).

Exposition is the library's ``generate_latest``, in text format 0.0.4, served by
the services' own aiohttp handler (``apps.common.server``). Counters also expose
the library's ``<name>_created`` timestamps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import prometheus_client
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import Metric

Sample = tuple[Mapping[str, str], float]
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4


class _Labelled:
    """A counter or gauge family with its label children cached by label values."""

    kind = ""

    def __init__(self, metric: Any, name: str, labels: tuple[str, ...], registry: Any) -> None:
        self.name = name
        self.labels = labels
        self._metric = metric
        self._registry = registry
        # An unlabelled metric is its own child and exists from the start, so a
        # scrape shows 0 rather than nothing (absent series make alerts miss).
        self._children: dict[tuple[str, ...], Any] = {} if labels else {(): metric}

    def _child(self, labels: Mapping[str, str]) -> Any:
        # On the request path: no set building, just a length check and lookups.
        try:
            if len(labels) == len(self.labels):
                key = tuple([labels[name] for name in self.labels])
                child = self._children.get(key)
                if child is None:
                    child = self._children[key] = self._metric.labels(*key)
                return child
        except KeyError:
            pass
        raise ValueError(f"{self.name}: labels {sorted(labels)} != {list(self.labels)}")

    def bind(self, **labels: str) -> Any:
        """The library's child for these labels, to keep and ``inc()`` on a hot path
        (``labels()`` once, as prometheus-client recommends)."""
        return self._child(labels)

    def value(self, **labels: str) -> float:
        """The current value for these labels (0 when never touched). For tests; not fast."""
        self._child(labels)  # validates the label names
        found = self._registry.get_sample_value(self.name, labels)
        return float(found) if found is not None else 0.0


class Counter(_Labelled):
    """A monotonically increasing count (``prometheus_client.Counter``)."""

    kind = "counter"

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise ValueError(f"{self.name}: counters only go up")
        self._child(labels).inc(amount)


class Gauge(_Labelled):
    """A value that goes up and down (``prometheus_client.Gauge``)."""

    kind = "gauge"

    def set(self, value: float, **labels: str) -> None:
        self._child(labels).set(value)

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        self._child(labels).inc(amount)

    def dec(self, amount: float = 1.0, **labels: str) -> None:
        self._child(labels).dec(amount)


class GaugeFunc:
    """A gauge whose samples are computed at scrape time by one or more collectors.

    Registered with the library as a custom collector (``collect()`` yields one
    family), so it is rendered like any other.
    """

    kind = "gauge"
    labels = None

    def __init__(self, name: str, help_text: str) -> None:
        self.name = name
        self.help = help_text
        self._collectors: list[Callable[[], Iterable[Sample]]] = []

    def add(self, collect: Callable[[], Iterable[Sample]]) -> None:
        self._collectors.append(collect)

    def collect(self) -> Iterator[Metric]:
        family = Metric(self.name, self.help, "gauge")
        for collect in self._collectors:
            for labels, value in collect():
                family.add_sample(self.name, dict(labels), value)
        yield family


class Registry:
    """The set of families one process exposes on ``GET /metrics``.

    Asking twice for the same family returns the first one, so several clients
    (one per upstream host) can share a registry; they tell their series apart
    by labels. Counter names end in ``_total``, as the library exposes them.
    """

    def __init__(self) -> None:
        # auto_describe=False: GaugeFunc's collectors are not called at registration.
        self.collector_registry = prometheus_client.CollectorRegistry(auto_describe=False)
        self._families: dict[str, Counter | Gauge | GaugeFunc] = {}

    def _existing(self, name: str, kind: str, labels: tuple[str, ...] | None) -> Any:
        existing = self._families.get(name)
        if existing is not None and (existing.kind != kind or existing.labels != labels):
            raise ValueError(f"metric {name} already registered with another shape")
        return existing

    def counter(self, name: str, help_text: str, labels: tuple[str, ...] = ()) -> Counter:
        found: Counter | None = self._existing(name, "counter", labels)
        if found is not None:
            return found
        if not name.endswith("_total"):
            raise ValueError(f"counter {name}: the name must end in _total")
        metric = prometheus_client.Counter(
            name, help_text, labels, registry=self.collector_registry
        )
        family = self._families[name] = Counter(metric, name, labels, self.collector_registry)
        return family

    def gauge(self, name: str, help_text: str, labels: tuple[str, ...] = ()) -> Gauge:
        found: Gauge | None = self._existing(name, "gauge", labels)
        if found is not None:
            return found
        metric = prometheus_client.Gauge(name, help_text, labels, registry=self.collector_registry)
        family = self._families[name] = Gauge(metric, name, labels, self.collector_registry)
        return family

    def gauge_func(
        self, name: str, help_text: str, collect: Callable[[], Iterable[Sample]]
    ) -> GaugeFunc:
        family: GaugeFunc | None = self._existing(name, "gauge", None)
        if family is None:
            family = GaugeFunc(name, help_text)
            self.collector_registry.register(family)
            self._families[name] = family
        family.add(collect)
        return family

    def render(self) -> str:
        """The exposition text, version 0.0.4 (serve it with ``CONTENT_TYPE``)."""
        return generate_latest(self.collector_registry).decode()
