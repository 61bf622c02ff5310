"""The client rows' figures and aims: pure functions of what ``bench.clientload`` measured.

Three kinds of rows, each with its reference measured in the same run (the bare
``aiohttp.ClientSession`` to one of the same replicas), so every figure is a ratio or a
share within one run:

- **cost**: CPU seconds per call of the calling process, the client's over the bare
  session's, summed over interleaved slices;
- **slow**: an upstream whose tasks all answer in 1 s, called with the client's defaults:
  success and ejections;
- **big**: a 10 MiB answer read whole and streamed: success, and the peak RSS of the read
  above the process's RSS just before it, against the chunk size asked for.

Unit-tested in tests/bench/test_client.py.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import openloop
from bench.report import Aim, markdown_table

# The aims, as thresholds.
MAX_CPU_RATIO = 1.2  # the client's CPU per call at most 1.2x the bare session's
MAX_STREAM_OVER_CHUNK = 2.0  # a streamed read's peak RSS above its baseline: under 2 chunks
# The peak-RSS aim is judged for chunks of at least this size. Below it, the figure is
# aiohttp's own read buffer (twice its 64 KiB limit) and the allocator's arenas, whatever
# the chunk: a bare session's 64 KiB reads peak anywhere from 0 to about 0.9 MiB above
# their baseline. Smaller chunks are measured and shown, not judged.
MIN_JUDGED_CHUNK = 1024 * 1024

KIB = 1024
MIB = 1024 * KIB


def _size(n: float) -> str:
    """A size asked for: ``10 MiB``, ``64 KiB``."""
    if n >= MIB:
        return f"{n / MIB:g} MiB"
    return f"{n / KIB:g} KiB" if n >= KIB else f"{n:g} B"


def _amount(n: float) -> str:
    """A size measured, in KiB: ``1,280 KiB``."""
    return f"{n / KIB:,.0f} KiB"


@dataclass(frozen=True)
class CostSlice:
    variant: str  # "client" or "bare"
    round: int
    requests: int
    ok: int
    cpu_s: float
    wall_s: float
    failures: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class CostRow:
    """One variant's slices of the cost row, summed."""

    label: str
    slices: Sequence[CostSlice]

    @property
    def requests(self) -> int:
        return sum(s.requests for s in self.slices)

    @property
    def failed(self) -> int:
        return sum(s.requests - s.ok for s in self.slices)

    @property
    def cpu_s(self) -> float:
        return sum(s.cpu_s for s in self.slices)

    @property
    def wall_s(self) -> float:
        return sum(s.wall_s for s in self.slices)

    @property
    def us_per_call(self) -> float:
        return 1e6 * self.cpu_s / self.requests if self.requests else math.inf


def cost_rows(slices: Sequence[CostSlice]) -> tuple[CostRow, CostRow]:
    """(bare, client) from the worker's slices."""
    return (
        CostRow("bare session, one address", [s for s in slices if s.variant == "bare"]),
        CostRow("UpstreamClient, 3 replicas", [s for s in slices if s.variant == "client"]),
    )


def cpu_ratio(client: CostRow, bare: CostRow) -> float:
    """The client's CPU per call over the bare session's."""
    if not bare.requests or not client.requests or bare.cpu_s <= 0:
        return math.inf
    return (client.cpu_s * bare.requests) / (bare.cpu_s * client.requests)


def round_ratios(client: CostRow, bare: CostRow) -> list[float]:
    """The same ratio round by round: its spread says how noisy the machine was."""
    out = []
    for c in client.slices:
        b = next((s for s in bare.slices if s.round == c.round), None)
        if b is not None:
            out.append(cpu_ratio(CostRow("", [c]), CostRow("", [b])))
    return out


@dataclass(frozen=True)
class SlowRow:
    label: str
    variant: str
    calls: int
    ok: int
    latencies_ms: Sequence[float]  # the successful calls', sorted
    failures: Mapping[str, int] = field(default_factory=dict)
    counters: Mapping[str, int] | None = None  # the client's: attempts, retries, hedges...

    @property
    def success(self) -> float:
        return self.ok / self.calls if self.calls else 0.0

    def percentile(self, p: float) -> float:
        return openloop.percentile(self.latencies_ms, self.calls, p)

    @property
    def ejections(self) -> int | None:
        return None if self.counters is None else self.counters.get("ejections")


@dataclass(frozen=True)
class BigRow:
    label: str
    variant: str
    mode: str  # "buffered" or "streamed"
    size: int  # bytes asked for
    chunk: int  # streamed: the most bytes asked for per read
    status: int = 0
    read: int = 0
    baseline_kib: int = 0
    peak_kib: int = 0
    method: str = ""
    error: str = ""
    skipped: str = ""

    @property
    def ok(self) -> bool:
        return not self.skipped and not self.error and self.status == 200 and self.read == self.size

    @property
    def above_bytes(self) -> int:
        """The read's peak RSS above the process's RSS just before it."""
        return max(0, self.peak_kib - self.baseline_kib) * KIB

    @property
    def over_chunk(self) -> float:
        return self.above_bytes / self.chunk if self.chunk else math.inf


def big_row(data: Mapping[str, Any]) -> BigRow:
    variant, mode = str(data["variant"]), str(data["mode"])
    chunk = int(data["chunk"])
    who = "UpstreamClient" if variant == "client" else "bare session"
    how = f"streamed, {_size(chunk)} chunks" if mode == "streamed" else "buffered"
    return BigRow(
        label=f"{who}, {_size(int(data['bytes']))} {how}",
        variant=variant,
        mode=mode,
        size=int(data["bytes"]),
        chunk=chunk,
        status=int(data.get("status", 0)),
        read=int(data.get("read", 0)),
        baseline_kib=int(data.get("baseline_kib") or 0),
        peak_kib=int(data.get("peak_kib") or 0),
        method=str(data.get("method", "")),
        error=str(data.get("error", "")),
        skipped=str(data.get("skipped", "")),
    )


def slow_row(data: Mapping[str, Any], seconds: float) -> SlowRow:
    variant = str(data["variant"])
    who = "UpstreamClient, defaults" if variant == "client" else "bare session"
    return SlowRow(
        label=f"{who}, every task {seconds:g} s",
        variant=variant,
        calls=int(data["calls"]),
        ok=int(data["ok"]),
        latencies_ms=[float(x) for x in data["latencies_ms"]],
        failures={str(k): int(v) for k, v in data["failures"].items()},
        counters=data.get("counters"),
    )


@dataclass
class ClientResults:
    bare: CostRow
    client: CostRow
    concurrency: int
    slow: list[SlowRow]
    big: list[BigRow]
    slow_seconds: float = 1.0


# -- judgements -------------------------------------------------------------------------


def cost_aim(client: CostRow, bare: CostRow) -> Aim:
    ratio = cpu_ratio(client, bare)
    rounds = round_ratios(client, bare)
    spread = f"; rounds {min(rounds):.2f}-{max(rounds):.2f}x" if rounds else ""
    failed = client.failed + bare.failed
    return Aim(
        f"client CPU per call <= {MAX_CPU_RATIO:g}x the bare session's",
        ratio <= MAX_CPU_RATIO and failed == 0,
        f"{client.us_per_call:.1f} / {bare.us_per_call:.1f} us = {ratio:.2f}x{spread}"
        + (f"; {failed} calls failed" if failed else ""),
    )


def slow_aims(row: SlowRow, seconds: float) -> list[Aim]:
    ejections = row.ejections
    return [
        Aim(
            f"every task {seconds:g} s, defaults: 100% success",
            row.calls > 0 and row.ok == row.calls,
            f"{row.ok} of {row.calls}" + (f" ({_failures(row.failures)})" if row.failures else ""),
        ),
        Aim(
            f"every task {seconds:g} s, defaults: no ejection",
            ejections == 0,
            "unknown" if ejections is None else f"{ejections} ejection(s)",
        ),
    ]


def big_aims(row: BigRow) -> list[Aim]:
    what = f"{_size(row.size)} {row.mode}"
    if row.mode == "streamed":
        what += f", {_size(row.chunk)} chunks"
    if row.skipped:
        return [Aim(f"{what}: success", False, f"not measured: {row.skipped}")]
    error = f"; {row.error}" if row.error else ""
    out = [
        Aim(
            f"{what}: success",
            row.ok,
            f"HTTP {row.status}, {row.read:,} of {row.size:,} bytes{error}",
        )
    ]
    if row.mode == "streamed" and row.chunk >= MIN_JUDGED_CHUNK:
        out.append(
            Aim(
                f"{what}: peak RSS < {MAX_STREAM_OVER_CHUNK:g}x chunk + baseline",
                row.ok and row.over_chunk < MAX_STREAM_OVER_CHUNK,
                f"{_amount(row.above_bytes)} above {_amount(row.baseline_kib * KIB)} = "
                f"{row.over_chunk:.3f}x the chunk",
            )
        )
    return out


def aims(results: ClientResults) -> list[Aim]:
    out = [cost_aim(results.client, results.bare)]
    for row in results.slow:
        if row.variant == "client":
            out += slow_aims(row, results.slow_seconds)
    for big in results.big:
        if big.variant == "client":
            out += big_aims(big)
    return out


# -- the report -------------------------------------------------------------------------


def _failures(failures: Mapping[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(failures.items()))


def _ms(value: float) -> str:
    return "inf" if math.isinf(value) else f"{value:.1f}"


def cost_table(results: ClientResults) -> str:
    bare, client = results.bare, results.client
    cells = [["row", "calls", "failed", "CPU s", "CPU us/call", "to bare", "calls/s (wall)"]]
    for row in (bare, client):
        cells.append(
            [
                row.label,
                f"{row.requests:,}",
                f"{row.failed:,}",
                f"{row.cpu_s:.2f}",
                f"{row.us_per_call:.1f}",
                f"{cpu_ratio(row, bare):.2f}x",
                f"{row.requests / row.wall_s:,.0f}" if row.wall_s > 0 else "-",
            ]
        )
    return markdown_table(cells)


def slow_table(rows: Sequence[SlowRow]) -> str:
    cells = [["row", "calls", "success", "p50 ms", "max ms", "attempts", "hedges", "ejections"]]
    for row in rows:
        seen = row.counters or {}
        cells.append(
            [
                row.label,
                f"{row.calls:,}",
                f"{row.success:.1%}",
                _ms(row.percentile(50)),
                _ms(row.percentile(100)),
                str(seen.get("attempts", "-")),
                str(seen.get("hedges", "-")),
                "-" if row.ejections is None else str(row.ejections),
            ]
        )
    return markdown_table(cells)


def big_table(rows: Sequence[BigRow]) -> str:
    cells = [["row", "result", "bytes read", "RSS before", "peak above", "over chunk"]]
    for row in rows:
        skipped = bool(row.skipped)
        result = "skipped" if skipped else ("ok" if row.ok else (row.error or f"HTTP {row.status}"))
        cells.append(
            [
                row.label,
                result if len(result) <= 40 else result[:37] + "...",
                "-" if skipped else f"{row.read:,}",
                "-" if skipped else _amount(row.baseline_kib * KIB),
                "-" if skipped else _amount(row.above_bytes),
                f"{row.over_chunk:.2f}x" if row.mode == "streamed" and not skipped else "-",
            ]
        )
    return markdown_table(cells)


def notes(results: ClientResults) -> list[str]:
    lines = []
    rounds = round_ratios(results.client, results.bare)
    if rounds:
        lines.append(
            "  cost, client over bare per round: " + ", ".join(f"{r:.2f}x" for r in rounds)
        )
    for slow in results.slow:
        if slow.failures:
            lines.append(f"  {slow.label}: {_failures(slow.failures)}")
    for big in results.big:
        if big.skipped:
            lines.append(f"  {big.label}: skipped: {big.skipped}")
        elif big.error:
            lines.append(f"  {big.label}: {big.error}")
    methods = sorted({b.method for b in results.big if b.method})
    if methods:
        lines.append(f"  peak RSS read as: {', '.join(methods)}")
    return lines


def write_json(results: ClientResults, path: Path) -> None:
    path.write_text(
        json.dumps(
            {
                "cost": {
                    "concurrency": results.concurrency,
                    "bare_us_per_call": results.bare.us_per_call,
                    "client_us_per_call": results.client.us_per_call,
                    "ratio": cpu_ratio(results.client, results.bare),
                    "round_ratios": round_ratios(results.client, results.bare),
                },
                "slow": [
                    {
                        "label": r.label,
                        "calls": r.calls,
                        "ok": r.ok,
                        "failures": dict(r.failures),
                        "p50_ms": r.percentile(50),
                        "counters": dict(r.counters or {}),
                    }
                    for r in results.slow
                ],
                "big": [
                    {
                        "label": b.label,
                        "ok": b.ok,
                        "read": b.read,
                        "baseline_kib": b.baseline_kib,
                        "peak_kib": b.peak_kib,
                        "over_chunk": b.over_chunk if b.mode == "streamed" else None,
                        "error": b.error,
                        "skipped": b.skipped,
                    }
                    for b in results.big
                ],
            },
            indent=2,
        )
    )
