"""The process's counters as CloudWatch Embedded Metric Format (EMF) log lines, on an interval.

On Fargate the awslogs driver already ships every stdout line to CloudWatch Logs, which turns a
JSON line with an `_aws` member into metrics: no agent, no PutMetricData permission, nothing
else to deploy. `/metrics` (Prometheus text) stays as it is for Prometheus users.

One line per label set and interval, for example::

    {"_aws": {"Timestamp": 1764446400000, "CloudWatchMetrics": [{"Namespace": "fargate-...-dev",
      "Dimensions": [["Service", "upstream", "outcome"]],
      "Metrics": [{"Name": "hello_upstream_requests_total", "Unit": "Count"}]}]},
     "Service": "hello", "upstream": "name.internal", "outcome": "ok",
     "hello_upstream_requests_total": 1234}

Each value is the counter's increase since the previous line (CloudWatch sums the datapoints of
every task in a period), zero included, so an alarm on a rate sees "nothing happened" rather
than "no data". Only counters are written: gauges here are per task address (in flight,
ejected), a dimension whose every new value would be a new metric, billed per month.

Spec: https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html
(at most 100 metrics per directive and 30 dimensions per dimension set; Timestamp in
milliseconds since the epoch).

The writer reads counters through one narrow interface, a `Source`: a function returning the
current cumulative values. `collector_counters` builds one from a prometheus-client registry's
`collect()` (what the services use: aiohttp_discovery.metrics.Registry.collector_registry);
`exposition_counters` from any registry's Prometheus text.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TextIO

from apps.common import env

# The EMF specification's limits.
MAX_METRICS_PER_DIRECTIVE = 100
MAX_DIMENSIONS_PER_SET = 30
# The dimension every line carries: which service wrote it.
SERVICE_DIMENSION = "Service"
# Keys of the line that a label must not overwrite.
_RESERVED = frozenset({"_aws", SERVICE_DIMENSION})
DEFAULT_INTERVAL_SECONDS = 60.0


@dataclass(frozen=True)
class Sample:
    """A counter's cumulative value for one label set."""

    name: str
    labels: Mapping[str, str]
    value: float


Source = Callable[[], Iterable[Sample]]


@dataclass(frozen=True)
class EmfSettings:
    """From the environment: METRICS_NAMESPACE (unset: no EMF lines) and
    METRICS_INTERVAL_SECONDS (default 60, CloudWatch's usual one-minute resolution)."""

    namespace: str
    interval_seconds: float = DEFAULT_INTERVAL_SECONDS

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> EmfSettings | None:
        namespace = environ.get("METRICS_NAMESPACE", "").strip()
        if not namespace:
            return None
        if len(namespace) > 255 or namespace.startswith("AWS/"):
            raise env.EnvError(
                f"METRICS_NAMESPACE={namespace!r}: expected a CloudWatch namespace of at most "
                "255 characters, not under AWS/"
            )
        interval = env.number(
            "METRICS_INTERVAL_SECONDS",
            DEFAULT_INTERVAL_SECONDS,
            minimum=1,
            maximum=3600,
            env=environ,
        )
        return cls(namespace=namespace, interval_seconds=interval)


# --- reading counters from Prometheus text ---------------------------------------------

_TYPE = re.compile(r"^# TYPE (\S+) (\S+)")
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def _labels(text: str) -> dict[str, str]:
    inner = text[1:-1]
    labels: dict[str, str] = {}
    position = 0
    while position < len(inner):
        match = _LABEL.match(inner, position)
        if not match:
            break
        labels[match.group(1)] = re.sub(
            r"\\[\\\"n]", lambda m: _UNESCAPE[m.group(0)], match.group(2)
        )
        position = match.end()
    return labels


def parse_counters(text: str) -> list[Sample]:
    """The counter samples of a Prometheus text exposition: samples named like a family typed
    `counter`, or like it plus `_total` (prometheus-client types `x` and writes `x_total`; its
    `x_created` companion matches neither and is left out)."""
    counters: set[str] = set()
    samples: list[Sample] = []
    for line in text.splitlines():
        typed = _TYPE.match(line)
        if typed:
            if typed.group(2) == "counter":
                counters.add(typed.group(1))
            continue
        if line.startswith("#"):
            continue
        sample = _SAMPLE.match(line)
        if not sample:
            continue
        name = sample.group(1)
        family = name.removesuffix("_total")
        if not {name, family} & counters:
            continue
        try:
            value = float(sample.group(3))
        except ValueError:
            continue
        samples.append(Sample(name, _labels(sample.group(2) or "{}"), value))
    return samples


def exposition_counters(render: Callable[[], str]) -> Source:
    """A Source over a registry's Prometheus text (Registry.render, generate_latest)."""
    return lambda: parse_counters(render())


class Collecting(Protocol):
    """What a prometheus-client CollectorRegistry offers: metric families with samples."""

    def collect(self) -> Iterable[Any]: ...


def collector_counters(registry: Collecting) -> Source:
    """A Source over a prometheus-client registry's `collect()`: the `<name>_total` samples of
    counter families (their `_created` companions left out), without rendering text."""

    def read() -> list[Sample]:
        return [
            Sample(sample.name, dict(sample.labels), float(sample.value))
            for family in registry.collect()
            if family.type == "counter"
            for sample in family.samples
            if sample.name.endswith("_total")
        ]

    return read


# --- writing ---------------------------------------------------------------------------


class EmfWriter:
    """Turns cumulative counters into EMF lines of increases since the previous call."""

    def __init__(
        self,
        namespace: str,
        service: str,
        source: Source,
        *,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._namespace = namespace
        self._service = service
        self._source = source
        self._stream = stream
        self._clock = clock
        self._last: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

    def documents(self) -> list[dict[str, Any]]:
        """The EMF objects for the increases since the last call (and remembers the values)."""
        groups: dict[tuple[tuple[str, str], ...], dict[str, float]] = {}
        for sample in self._source():
            labels = tuple(sorted(sample.labels.items()))
            if (
                any(k in _RESERVED or k == sample.name for k, _ in labels)
                or len(labels) + 1 > MAX_DIMENSIONS_PER_SET
            ):
                continue  # not expressible as EMF dimensions; /metrics still has it
            key = (sample.name, labels)
            previous = self._last.get(key, 0.0)
            # A counter only goes down if the registry was replaced: count from zero.
            increase = sample.value - previous if sample.value >= previous else sample.value
            self._last[key] = sample.value
            groups.setdefault(labels, {})[sample.name] = increase
        timestamp = int(self._clock() * 1000)
        out: list[dict[str, Any]] = []
        for labels, metrics in groups.items():
            names = sorted(metrics)
            for start in range(0, len(names), MAX_METRICS_PER_DIRECTIVE):
                chunk = names[start : start + MAX_METRICS_PER_DIRECTIVE]
                out.append(
                    {
                        "_aws": {
                            "Timestamp": timestamp,
                            "CloudWatchMetrics": [
                                {
                                    "Namespace": self._namespace,
                                    "Dimensions": [[SERVICE_DIMENSION, *(k for k, _ in labels)]],
                                    "Metrics": [{"Name": n, "Unit": "Count"} for n in chunk],
                                }
                            ],
                        },
                        SERVICE_DIMENSION: self._service,
                        **dict(labels),
                        **{n: metrics[n] for n in chunk},
                    }
                )
        return out

    def flush(self) -> None:
        """Write one line per document, each flushed (the last ones may precede SIGKILL)."""
        stream = self._stream or sys.stdout
        for document in self.documents():
            stream.write(json.dumps(document, separators=(",", ":")) + "\n")
        stream.flush()

    async def run(self, interval: float) -> None:
        """Flush every `interval` seconds until cancelled, then once more."""
        try:
            while True:
                await asyncio.sleep(interval)
                self.flush()
        finally:
            with contextlib.suppress(Exception):
                self.flush()
