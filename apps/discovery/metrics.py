"""Prometheus text exposition, by hand: counters and gauges with labels.

Small on purpose (no client library to vendor into every image). Values live in
plain dicts keyed by label values, so an increment on the request path is one
dict update. Gauges can also be computed at scrape time from live state
(``GaugeFunc``), which keeps label sets bounded: an address that left DNS simply
stops being reported.

Format: https://prometheus.io/docs/instrumenting/exposition_formats/
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Literal, Protocol, TypeVar

Kind = Literal["counter", "gauge"]
Sample = tuple[Mapping[str, str], float]


class Family(Protocol):
    """One metric family: a name, a type, help text and its current samples."""

    name: str
    kind: Kind
    help: str

    def samples(self) -> Iterable[Sample]: ...


class _Labelled:
    def __init__(self, name: str, help_text: str, labels: tuple[str, ...] = ()) -> None:
        self.name = name
        self.help = help_text
        self.labels = labels
        self._values: dict[tuple[str, ...], float] = {}
        if not labels:
            # An unlabelled metric exists from the start, so a scrape shows 0
            # rather than nothing (absent series make alerts silently miss).
            self._values[()] = 0.0

    def _key(self, labels: Mapping[str, str]) -> tuple[str, ...]:
        # On the request path: no set building, just a length check and lookups.
        try:
            if len(labels) == len(self.labels):
                return tuple([labels[name] for name in self.labels])
        except KeyError:
            pass
        raise ValueError(f"{self.name}: labels {sorted(labels)} != {list(self.labels)}")

    def value(self, **labels: str) -> float:
        """The current value for these labels (0 when never touched)."""
        return self._values.get(self._key(labels), 0.0)

    def samples(self) -> Iterable[Sample]:
        for key, value in self._values.items():
            yield dict(zip(self.labels, key, strict=True)), value


class Counter(_Labelled):
    """A monotonically increasing count."""

    kind: Kind = "counter"

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise ValueError(f"{self.name}: counters only go up")
        key = self._key(labels)
        self._values[key] = self._values.get(key, 0.0) + amount


class Gauge(_Labelled):
    """A value that goes up and down."""

    kind: Kind = "gauge"

    def set(self, value: float, **labels: str) -> None:
        self._values[self._key(labels)] = value

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = self._key(labels)
        self._values[key] = self._values.get(key, 0.0) + amount

    def dec(self, amount: float = 1.0, **labels: str) -> None:
        self.inc(-amount, **labels)


class GaugeFunc:
    """A gauge whose samples are computed at scrape time by one or more collectors."""

    kind: Kind = "gauge"

    def __init__(self, name: str, help_text: str) -> None:
        self.name = name
        self.help = help_text
        self._collectors: list[Callable[[], Iterable[Sample]]] = []

    def add(self, collect: Callable[[], Iterable[Sample]]) -> None:
        self._collectors.append(collect)

    def samples(self) -> Iterable[Sample]:
        for collect in self._collectors:
            yield from collect()


_F = TypeVar("_F", bound=Family)


class Registry:
    """The set of families one process exposes on ``GET /metrics``.

    Asking twice for the same family returns the first one, so several clients
    (one per upstream host) can share a registry; they tell their series apart
    by labels.
    """

    def __init__(self) -> None:
        self._families: dict[str, Family] = {}

    def _get_or_add(self, family: _F) -> _F:
        existing = self._families.get(family.name)
        if existing is None:
            self._families[family.name] = family
            return family
        same_labels = getattr(existing, "labels", None) == getattr(family, "labels", None)
        if type(existing) is not type(family) or not same_labels:
            raise ValueError(f"metric {family.name} already registered with another shape")
        return existing  # the same class as family (checked above)

    def counter(self, name: str, help_text: str, labels: tuple[str, ...] = ()) -> Counter:
        return self._get_or_add(Counter(name, help_text, labels))

    def gauge(self, name: str, help_text: str, labels: tuple[str, ...] = ()) -> Gauge:
        return self._get_or_add(Gauge(name, help_text, labels))

    def gauge_func(
        self, name: str, help_text: str, collect: Callable[[], Iterable[Sample]]
    ) -> GaugeFunc:
        family = self._get_or_add(GaugeFunc(name, help_text))
        family.add(collect)
        return family

    def render(self) -> str:
        """The exposition text, version 0.0.4."""
        lines: list[str] = []
        for family in self._families.values():
            lines.append(f"# HELP {family.name} {_escape_help(family.help)}")
            lines.append(f"# TYPE {family.name} {family.kind}")
            for labels, value in family.samples():
                lines.append(f"{family.name}{_labels(labels)} {_number(value)}")
        return "\n".join(lines) + "\n"


CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{name}="{_escape_label(value)}"' for name, value in labels.items())
    return "{" + inner + "}"


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 2**53:
        return str(int(value))
    return repr(value)
