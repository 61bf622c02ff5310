"""wrk: the command line, a Lua ``done`` hook that exports its latency record, and the parser.

Two views of latency, both from one wrk run:

- **wrk's figures** (what ``wrk --latency`` prints). wrk 4 records every response's
  latency in a 1-microsecond histogram, then, before reporting, applies a
  coordinated-omission correction (``stats_correct`` in wrk's stats.c): with
  ``interval`` = run time / (requests per connection), each response slower than
  two intervals adds synthetic samples at ``latency - interval``,
  ``latency - 2 * interval``... down to one interval, as if that connection had
  kept sending on schedule while it waited. A single 670 ms response at 8,000 req/s
  over 32 connections thus counts as about 170 slow samples.
- **served figures**: the histogram as recorded, one sample per real response, got
  by undoing that correction exactly (``uncorrect``). This is what the requests
  that were actually sent experienced.

The hook prints ``BENCH_RESULT key=value ...`` (totals and errors) and the corrected
histogram as ``BENCH_HIST value:count ...`` lines. wrk's Lua API can only walk its
histogram in quadratic time (each ``latency(i)`` rescans it), so the hook reads the
C struct through LuaJIT's FFI instead: ``{uint64 count, limit, min, max; uint64
data[]}``, unchanged since wrk 4.0. ``parse`` checks the dump against the count
and extremes wrk reports, so a different layout fails loudly instead of misleading.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

MARKER = "BENCH_RESULT"
HIST = "BENCH_HIST"

# Runs once, after every thread has finished, in wrk's "done" environment.
DONE_HOOK = f"""\
-- Written by bench/wrk.py: wrk's totals on one line, then its latency histogram.
local ffi = require("ffi")

done = function(summary, latency, requests)
  local e = summary.errors
  -- wrk 4's stats struct: uint64 count, limit, min, max, then one slot per microsecond.
  local s = ffi.cast("uint64_t **", latency)[0]
  local count, low, high = tonumber(s[0]), tonumber(s[2]), tonumber(s[3])
  io.write(string.format(
    "{MARKER} requests=%d duration_us=%d connect=%d read=%d write=%d status=%d timeout=%d"
      .. " latency_count=%d latency_min=%d latency_max=%d\\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    count, count > 0 and low or 0, latency.max))
  if count == 0 then return end
  local items, n = {{}}, 0
  for v = low, high do
    local c = tonumber(s[4 + v])
    if c > 0 then
      n = n + 1
      items[n] = v .. ":" .. c
      if n == 256 then
        io.write("{HIST} ", table.concat(items, " "), "\\n")
        items, n = {{}}, 0
      end
    end
  end
  if n > 0 then io.write("{HIST} ", table.concat(items, " "), "\\n") end
end
"""


def script(delay_ms: int | None = None) -> str:
    """The Lua script for a run: the ``done`` hook, plus a fixed pause after each
    response when ``delay_ms`` is given (wrk's ``delay`` hook), which paces every
    connection at about one request per ``delay_ms + latency``."""
    if delay_ms is None:
        return DONE_HOOK
    if delay_ms < 1:
        raise ValueError("delay_ms must be at least 1")
    return DONE_HOOK + f"\ndelay = function() return {delay_ms} end\n"


_FIELDS = (
    "requests",
    "duration_us",
    "connect",
    "read",
    "write",
    "status",
    "timeout",
    "latency_count",
    "latency_min",
    "latency_max",
)


class WrkOutputError(ValueError):
    """wrk's output lacks, or has a malformed, result line or histogram."""


@dataclass(frozen=True)
class Histogram:
    """Latency in microseconds -> number of samples."""

    counts: Mapping[int, int] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return sum(self.counts.values())

    @property
    def max(self) -> int:
        return max(self.counts, default=0)

    def percentile(self, p: float) -> int:
        """wrk's definition (stats_percentile): the smallest value whose rank reaches
        round(p/100 * count + 0.5)."""
        rank = math.floor(p / 100.0 * self.count + 0.5 + 0.5)  # C round(), positive
        total = 0
        for value in sorted(self.counts):
            total += self.counts[value]
            if total >= rank:
                return value
        return 0


def correction_interval(duration_us: int, requests: int, connections: int) -> int:
    """wrk's ``interval``, in its integer arithmetic; 0 when it applies no correction."""
    per_connection = requests // connections
    return duration_us // per_connection if per_connection > 0 else 0


def correct(raw: Histogram, interval: int) -> Histogram:
    """What wrk's stats_correct does to a histogram (the reference for ``uncorrect``).

    Ascending order, as in wrk: synthetic samples only go to values below the one
    being visited, so each visit reads that value's recorded count.
    """
    data = dict(raw.counts)
    if interval <= 0:
        return Histogram(data)
    for value in sorted(v for v in raw.counts if v >= 2 * interval):
        count = raw.counts[value]
        target = value - interval
        while target > interval:
            data[target] = data.get(target, 0) + count
            target -= interval
    return Histogram(data)


def uncorrect(corrected: Histogram, interval: int) -> Histogram:
    """The histogram as recorded, before wrk's correction with ``interval``.

    Descending order: when a value is visited, every synthetic sample it received
    (all from larger values) has already been taken out, so what is left is its
    recorded count, whose own synthetic samples are then removed below it.
    """
    data = dict(corrected.counts)
    if interval <= 0:
        return Histogram(data)
    for value in sorted((v for v in data if v >= 2 * interval), reverse=True):
        count = data[value]
        if count <= 0:
            continue
        target = value - interval
        while target > interval:
            left = data.get(target, 0) - count
            if left < 0:
                raise WrkOutputError(f"histogram is not wrk-corrected with interval {interval}")
            data[target] = left
            target -= interval
    return Histogram({v: c for v, c in data.items() if c > 0})


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_us: int
    connect: int
    read: int
    write: int
    status: int
    """Responses with an HTTP status above 399 (wrk counts those, and only those)."""
    timeout: int
    latency: Histogram
    """wrk's own view, coordinated-omission corrected (what ``--latency`` prints)."""
    served: Histogram
    """One sample per response actually received."""

    @property
    def seconds(self) -> float:
        return self.duration_us / 1e6

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.duration_us else 0.0

    @property
    def p50_us(self) -> int:
        return self.latency.percentile(50)

    @property
    def p99_us(self) -> int:
        return self.latency.percentile(99)

    @property
    def p999_us(self) -> int:
        return self.latency.percentile(99.9)

    @property
    def max_us(self) -> int:
        return self.latency.max

    @property
    def socket_errors(self) -> int:
        return self.connect + self.read + self.write + self.timeout

    @property
    def errors(self) -> int:
        """Failed requests as a client sees them: error statuses plus socket errors."""
        return self.status + self.socket_errors

    def error_detail(self) -> str:
        """``status 3, read 1`` for the non-zero kinds, or empty."""
        kinds = ("status", "connect", "read", "write", "timeout")
        return ", ".join(f"{k} {getattr(self, k)}" for k in kinds if getattr(self, k))


def combine(results: Sequence[WrkResult]) -> WrkResult:
    """Several runs against one target as one: totals and histograms summed.

    Each run's correction used its own interval, so the summed corrected histogram
    is still exactly what wrk reported, run by run, and the served one the sum of
    what was served.
    """
    if not results:
        raise ValueError("nothing to combine")

    def add(histograms: Sequence[Histogram]) -> Histogram:
        total: dict[int, int] = {}
        for histogram in histograms:
            for value, count in histogram.counts.items():
                total[value] = total.get(value, 0) + count
        return Histogram(total)

    return WrkResult(
        requests=sum(r.requests for r in results),
        duration_us=sum(r.duration_us for r in results),
        connect=sum(r.connect for r in results),
        read=sum(r.read for r in results),
        write=sum(r.write for r in results),
        status=sum(r.status for r in results),
        timeout=sum(r.timeout for r in results),
        latency=add([r.latency for r in results]),
        served=add([r.served for r in results]),
    )


def _pairs(items: list[str], line: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise WrkOutputError(f"malformed item {item!r} in {line[:200]!r}")
        out[key] = value
    return out


def parse(output: str, connections: int) -> WrkResult:
    """The figures printed by ``DONE_HOOK`` in wrk's stdout, for a run with ``connections``."""
    summary: dict[str, int] | None = None
    counts: dict[int, int] = {}
    for line in output.splitlines():
        marker, _, rest = line.partition(" ")
        if marker == MARKER:
            try:
                summary = {k: int(v) for k, v in _pairs(rest.split(), line).items()}
            except ValueError:
                raise WrkOutputError(f"non-integer value in {line!r}") from None
        elif marker == HIST:
            for item in rest.split():
                value, sep, count = item.partition(":")
                if not (sep and value.isdigit() and count.isdigit()):
                    raise WrkOutputError(f"malformed histogram item {item!r}")
                counts[int(value)] = counts.get(int(value), 0) + int(count)
    if summary is None:
        raise WrkOutputError(f"no {MARKER} line in wrk's output:\n{output.strip()[-2000:]}")
    missing = [f for f in _FIELDS if f not in summary]
    if missing:
        raise WrkOutputError(f"{MARKER} line lacks {', '.join(missing)}")
    latency = Histogram(counts)
    if latency.count != summary["latency_count"] or (
        counts and (min(counts), latency.max) != (summary["latency_min"], summary["latency_max"])
    ):
        raise WrkOutputError(
            "wrk's latency histogram does not match its own count/min/max: "
            "this wrk's stats layout differs from wrk 4's"
        )
    interval = correction_interval(summary["duration_us"], summary["requests"], connections)
    return WrkResult(
        requests=summary["requests"],
        duration_us=summary["duration_us"],
        connect=summary["connect"],
        read=summary["read"],
        write=summary["write"],
        status=summary["status"],
        timeout=summary["timeout"],
        latency=latency,
        served=uncorrect(latency, interval),
    )


@dataclass(frozen=True)
class Load:
    """What every row gets: the same threads, connections and timeout."""

    threads: int = 2
    connections: int = 32
    timeout_s: float = 5.0
    """Per request. Above hello's 2 s request deadline, so a slow answer is
    measured as latency rather than counted as a wrk timeout."""


def command(wrk: str, url: str, seconds: float, load: Load, script: Path) -> list[str]:
    return [
        wrk,
        f"--threads={load.threads}",
        f"--connections={load.connections}",
        f"--duration={round(seconds)}s",
        f"--timeout={load.timeout_s:g}s",
        f"--script={script}",
        url,
    ]
