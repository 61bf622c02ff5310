"""Rows, the printed table, and the issue's aims judged on one run's ratios."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bench.wrk import WrkResult, combine

# The aims of issue 2 ("Benchmark"), as thresholds.
MIN_RPS_RATIO = 0.25  # hello's req/s, at least this share of nginx's
MAX_P99_RATIO = 3.0  # hello's p99, at most this multiple of nginx's
MAX_DNS_PER_REQUEST = 0.001
MAX_DEAD_P99_RATIO = 2.0  # one replica dead: p99 under this multiple of steady


@dataclass(frozen=True)
class Row:
    label: str
    result: WrkResult
    dns_queries: int | None = None
    """Queries the DNS stand-in received during the measured run (hello rows)."""
    retries: int | None = None
    ejections: int | None = None
    spread: Sequence[int | None] = ()
    """Requests each name replica served during the run (None: could not ask it)."""
    event: str = ""
    """What happened mid-run, for the notes under the table."""

    @property
    def dns_per_request(self) -> float | None:
        if self.dns_queries is None or not self.result.requests:
            return None
        return self.dns_queries / self.result.requests


def merge(label: str, rows: Sequence[Row]) -> Row:
    """Slices of one row (interleaved with another target's) summed into that row."""

    def total(values: Sequence[int | None]) -> int | None:
        return None if any(v is None for v in values) else sum(v for v in values if v)

    width = max(len(r.spread) for r in rows)
    spread = [
        total([r.spread[i] if i < len(r.spread) else None for r in rows]) for i in range(width)
    ]
    return Row(
        label=label,
        result=combine([r.result for r in rows]),
        dns_queries=total([r.dns_queries for r in rows]),
        retries=total([r.retries for r in rows]),
        ejections=total([r.ejections for r in rows]),
        spread=spread,
        event="; ".join(r.event for r in rows if r.event),
    )


@dataclass(frozen=True)
class Aim:
    """One aim of the issue, judged on wrk's figures (served figures shown beside)."""

    text: str
    passed: bool
    detail: str

    def line(self) -> str:
        return f"  {'PASS' if self.passed else 'MISS'}  {self.text:<56} {self.detail}"


def ms(us: int) -> str:
    return f"{us / 1000:.2f}"


def spread_text(spread: Sequence[int | None]) -> str:
    """Each replica's share of the requests, in percent: ``33/34/33``; ``-`` if unknown."""
    known = [n for n in spread if n is not None]
    served = sum(known)
    if not spread or not served:
        return "-"
    return "/".join("?" if n is None else f"{100 * n / served:.0f}" for n in spread)


def _opt(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


HEADERS = (
    "row",
    "req/s",
    "p50 ms",
    "p99 ms",
    "p99.9 ms",
    "max ms",
    "served p99",
    "served p99.9",
    "errors",
    "DNS q/req",
    "retries",
    "ejections",
    "spread %",
)


def table(rows: Sequence[Row]) -> str:
    """The rows as an aligned text table (also valid Markdown)."""
    cells = [list(HEADERS)]
    for row in rows:
        r = row.result
        per_request = row.dns_per_request
        cells.append(
            [
                row.label,
                f"{r.rps:,.0f}",
                ms(r.p50_us),
                ms(r.p99_us),
                ms(r.p999_us),
                ms(r.max_us),
                ms(r.served.percentile(99)),
                ms(r.served.percentile(99.9)),
                f"{r.errors:,}",
                "-" if per_request is None else f"{per_request:.5f}",
                _opt(row.retries),
                _opt(row.ejections),
                spread_text(row.spread),
            ]
        )
    return markdown_table(cells)


def aims(nginx: Row, hello: Row, hello_dead: Row) -> list[Aim]:
    """Issue 2's aims, judged on ratios within this run (the machine is shared and noisy)."""
    out: list[Aim] = []
    rps_ratio = hello.result.rps / nginx.result.rps if nginx.result.rps else 0.0
    out.append(
        Aim(
            f"hello req/s >= {MIN_RPS_RATIO:.0%} of nginx's",
            rps_ratio >= MIN_RPS_RATIO,
            f"{hello.result.rps:,.0f} / {nginx.result.rps:,.0f} = {rps_ratio:.1%}",
        )
    )
    p99_ratio = _ratio(hello.result.p99_us, nginx.result.p99_us)
    out.append(
        Aim(
            f"hello p99 <= {MAX_P99_RATIO:g}x nginx's p99",
            p99_ratio <= MAX_P99_RATIO,
            f"{ms(hello.result.p99_us)} ms / {ms(nginx.result.p99_us)} ms = {p99_ratio:.2f}x"
            f" (served: {_served_p99_ratio(hello, nginx):.2f}x)",
        )
    )
    for row in (hello, hello_dead):
        per_request = row.dns_per_request
        out.append(
            Aim(
                f"DNS queries per request < {MAX_DNS_PER_REQUEST:g} ({row.label})",
                per_request is not None and per_request < MAX_DNS_PER_REQUEST,
                "unknown"
                if per_request is None
                else f"{per_request:.5f} ({row.dns_queries} queries / "
                f"{row.result.requests:,} requests)",
            )
        )
    dead = hello_dead.result
    out.append(
        Aim(
            "one of three replicas killed: zero errors",
            dead.errors == 0,
            f"{dead.errors:,}" + (f" ({dead.error_detail()})" if dead.errors else ""),
        )
    )
    dead_ratio = _ratio(dead.p99_us, hello.result.p99_us)
    out.append(
        Aim(
            f"one killed: p99 < {MAX_DEAD_P99_RATIO:g}x steady p99",
            dead_ratio < MAX_DEAD_P99_RATIO,
            f"{ms(dead.p99_us)} ms / {ms(hello.result.p99_us)} ms = {dead_ratio:.2f}x"
            f" (served: {_served_p99_ratio(hello_dead, hello):.2f}x)",
        )
    )
    return out


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / max(denominator, 1)


def _served_p99_ratio(row: Row, reference: Row) -> float:
    return _ratio(row.result.served.percentile(99), reference.result.served.percentile(99))


def paced_summary(nginx: Row, hello: Row) -> str:
    """hello's latency next to nginx's at (about) the same offered load."""
    n, h = nginx.result, hello.result
    return (
        f"nginx {n.rps:,.0f} req/s, hello {h.rps:,.0f} req/s; "
        f"p50 {ms(h.p50_us)} vs {ms(n.p50_us)} ms, p99 {ms(h.p99_us)} vs {ms(n.p99_us)} ms "
        f"= {_ratio(h.p99_us, n.p99_us):.2f}x (served: {_served_p99_ratio(hello, nginx):.2f}x)"
    )


def markdown_table(cells: list[list[str]]) -> str:
    """A Markdown table of ``cells`` (the first line is the header): the first column
    left-aligned, the others right-aligned, every column padded to its widest cell."""
    widths = [max(len(line[i]) for line in cells) for i in range(len(cells[0]))]

    def render(line: list[str]) -> str:
        padded = [
            text.ljust(width) if i == 0 else text.rjust(width)
            for i, (text, width) in enumerate(zip(line, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    rule = (
        "|"
        + "|".join("-" * (w + 2) if i == 0 else "-" * (w + 1) + ":" for i, w in enumerate(widths))
        + "|"
    )
    return "\n".join([render(cells[0]), rule, *(render(line) for line in cells[1:])])
