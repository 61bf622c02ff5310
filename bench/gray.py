"""Gray failures under steady open-loop load: six name replicas, one frozen or slow, or all down.

A second small stack beside the wrk rows' (issue 9): the DNS stand-in also lists
``gray.internal`` as 127.0.0.11-16, each served by ``bench.slowname`` (the name
app with a bench-only delay switch), and a second hello ("hello-gray") resolves
it with every setting at its default. Load comes from ``bench.openloop``: a fixed
request rate whatever the answers, each request with a 1 s client timeout, its
latency counted from when it was due.

Rows (each ``duration`` seconds of load unless said otherwise):

- healthy: the reference for the ratios, and hedging's overhead when all is well;
- one replica frozen (SIGSTOP: the kernel still accepts, nothing answers), for the
  whole row;
- one replica slow, twice: every answer 300 ms late, then 2 s late; its share of
  the traffic is printed;
- every replica down (SIGKILL) for ``outage`` seconds, then started again: for each
  replica, the seconds from its first healthy ``/health`` (polled every 50 ms) to
  its first answer to hello (its ``http_requests_total{route="/"}`` moving).
"""

from __future__ import annotations

import json
import math
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path

from bench import openloop, prom
from bench.openloop import STALL_NOTE_MS
from bench.procs import Child, Children, HarnessError
from bench.report import Aim, markdown_table
from bench.run import Bench, free_port, http_get, run_load, served, set_delay, wait_until

ADDRESSES = tuple(f"127.0.0.{n}" for n in range(11, 17))
SERVICE = "gray"
VICTIM = 5  # the sixth replica, 127.0.0.16
POLL_SECONDS = 0.05

# The aims of issue 9, as thresholds (ratios within one run).
MAX_TAIL_RATIO = 5.0  # one replica frozen or slow: p99 and p99.9 within 5x of healthy
MAX_HEDGE_SHARE = 0.05  # healthy: hedges at most 5% more attempts
MAX_RECOVERY_SECONDS = 3.0  # after the full outage, each replica back within 3 s


@dataclass(frozen=True)
class GrayOptions:
    rate: float = 300.0
    duration: float = 30.0
    outage: float = 10.0
    timeout: float = 1.0


@dataclass
class GrayRow:
    label: str
    requests: int
    ok: int
    latencies_ms: list[float] = field(repr=False)
    failures: dict[str, int]
    hedges: int
    retries: int
    upstream_requests: int
    victim_share: float | None = None
    recovery: list[float | None] | None = None
    event: str = ""
    send_lag_ms: float = 0.0
    """The most the load generator was late sending a request (a host stall)."""
    listen_overflows: int | None = None
    """Connection attempts the kernel dropped on full accept queues during the row, host-wide."""

    @property
    def success(self) -> float:
        return self.ok / self.requests if self.requests else 0.0

    def percentile(self, p: float) -> float:
        """Over every request sent; a failed one counts as infinitely slow."""
        return openloop.percentile(self.latencies_ms, self.requests, p)

    @property
    def max_ms(self) -> float:
        if len(self.latencies_ms) < self.requests:
            return math.inf
        return self.latencies_ms[-1] if self.latencies_ms else 0.0

    @property
    def hedge_share(self) -> float:
        return self.hedges / self.upstream_requests if self.upstream_requests else 0.0


class Gray:
    """The six-replica stack and its rows; children and DNS belong to ``bench``."""

    def __init__(self, bench: Bench, options: GrayOptions) -> None:
        self.bench = bench
        self.options = options
        self.port = 0
        self.names: list[Child] = []
        self.hello_url = ""

    # -- the stack -------------------------------------------------------------

    def start(self) -> None:
        b = self.bench
        for address in ADDRESSES:
            b.registry.register(SERVICE, IPv4Address(address))
        self.port = free_port(ADDRESSES)
        self.names = [self._start_name(i) for i in range(len(ADDRESSES))]
        for i in range(len(ADDRESSES)):
            self._wait_healthy(i)
        assert b.dns is not None
        port = free_port(["127.0.0.1"])
        env = {
            **b.env,
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "NAME_SERVER": f"http://{SERVICE}.internal:{self.port}/",
            "DNS_SERVERS": f"{b.dns.host}:{b.dns.port}",
        }
        hello = b.children.start("hello-gray", Children.service("apps.hello", "hello-gray"), env)
        self.hello_url = f"http://127.0.0.1:{port}/"
        b.wait_healthy(hello, self.hello_url)

    def _start_name(self, index: int) -> Child:
        hostname = f"gray-{index + 1}"
        env = {
            **self.bench.env,
            "HOST": ADDRESSES[index],
            "PORT": str(self.port),
            "DRAIN_SECONDS": "0",
        }
        return self.bench.children.start(
            hostname, Children.service("bench.slowname", hostname), env
        )

    def _url(self, index: int, path: str) -> str:
        return f"http://{ADDRESSES[index]}:{self.port}{path}"

    def _wait_healthy(self, index: int) -> None:
        self.bench.wait_healthy(self.names[index], self._url(index, "/health"))

    # -- measuring -------------------------------------------------------------

    def _hello_counters(self) -> tuple[int, int, int]:
        status, text = http_get(f"{self.hello_url}metrics")
        if status != 200:
            raise HarnessError(f"hello-gray's /metrics answered {status}: {text[:200]}")
        samples = prom.parse(text)
        return (
            int(prom.total(samples, "hello_upstream_hedges_total")),
            int(prom.total(samples, "hello_upstream_retries_total")),
            int(prom.total(samples, "hello_upstream_requests_total")),
        )

    def _served(self, index: int) -> int | None:
        return served(self._url(index, ""))

    def _set_delay(self, index: int, seconds: float) -> None:
        set_delay(self._url(index, ""), seconds)

    def settle(self) -> None:
        """Wait until hello-gray ejects no replica (its probes readmit within a second)."""

        def settled() -> bool:
            status, text = http_get(f"{self.hello_url}metrics")
            return status == 200 and prom.total(prom.parse(text), "hello_upstream_ejected") == 0

        wait_until("hello-gray to readmit every replica", settled, 60.0, None)

    def _row(
        self,
        label: str,
        seconds: float,
        *,
        before: Callable[[], str] | None = None,
        during: Callable[[float], None] | None = None,
        after: Callable[[], None] | None = None,
        share_of: int | None = None,
    ) -> GrayRow:
        b = self.bench
        o = self.options
        print(f"--> {label}: {o.rate:g} req/s open loop for {seconds:g} s", flush=True)
        served_before = [self._served(i) for i in range(len(ADDRESSES))]
        counters = self._hello_counters()
        overflows = openloop.read_listen_overflows()
        event = before() if before is not None else ""
        argv = [sys.executable, "-m", "bench.openloop", self.hello_url]
        argv += [f"{o.rate:g}", f"{seconds:g}", f"{o.timeout:g}"]
        result = run_load(b, argv, seconds, during, after, poll=POLL_SECONDS)
        now = self._hello_counters()
        overflows_after = openloop.read_listen_overflows()
        share = None
        if share_of is not None:
            served_after = [self._served(i) for i in range(len(ADDRESSES))]
            deltas = [
                None if a is None or c is None else a - c
                for a, c in zip(served_after, served_before, strict=True)
            ]
            victim = deltas[share_of]
            total = sum(d for d in deltas if d is not None)
            share = victim / total if victim is not None and total else None
        row = GrayRow(
            label=label,
            requests=int(result["requests"]),
            ok=int(result["ok"]),
            latencies_ms=[float(x) for x in result["latencies_ms"]],
            failures={
                **result["failures"],
                **{f"HTTP {k}": v for k, v in result["statuses"].items() if k != "200"},
            },
            hedges=now[0] - counters[0],
            retries=now[1] - counters[1],
            upstream_requests=now[2] - counters[2],
            victim_share=share,
            event=event,
            send_lag_ms=float(result.get("send_lag_ms", 0.0)),
            listen_overflows=None
            if overflows is None or overflows_after is None
            else overflows_after - overflows,
        )
        print(
            f"    {row.success:.2%} ok, p99 {row.percentile(99):.2f} ms, "
            f"p99.9 {row.percentile(99.9):.2f} ms, {row.hedges} hedges, "
            f"sender late by up to {row.send_lag_ms:.1f} ms",
            flush=True,
        )
        return row

    def healthy(self) -> GrayRow:
        return self._row("6 healthy", self.options.duration)

    def frozen(self) -> GrayRow:
        victim = self.names[VICTIM]

        def freeze() -> str:
            victim.signal(signal.SIGSTOP)
            return f"gray-6 ({ADDRESSES[VICTIM]}) frozen by SIGSTOP for the whole row"

        row = self._row(
            "1 of 6 frozen",
            self.options.duration,
            before=freeze,
            after=lambda: victim.signal(signal.SIGCONT),
        )
        self.settle()
        return row

    def slow(self, delay: float) -> GrayRow:
        def slow_down() -> str:
            self._set_delay(VICTIM, delay)
            return f"gray-6 ({ADDRESSES[VICTIM]}) answers {delay * 1000:g} ms late"

        row = self._row(
            f"1 of 6 slow, {delay * 1000:g} ms",
            self.options.duration,
            before=slow_down,
            after=lambda: self._set_delay(VICTIM, 0.0),
            share_of=VICTIM,
        )
        self.settle()
        return row

    def outage(self) -> GrayRow:
        """All down for ``outage`` seconds from 2 s into the row, then started again."""
        o = self.options
        down_at, up_at = 2.0, 2.0 + o.outage
        state = {"down": False, "up": False}
        healthy_at: list[float | None] = [None] * len(ADDRESSES)
        serving_at: list[float | None] = [None] * len(ADDRESSES)

        def during(elapsed: float) -> None:
            if not state["down"] and elapsed >= down_at:
                state["down"] = True
                for child in self.names:
                    child.signal(signal.SIGKILL)
                for child in self.names:
                    self.bench.children.stop(child)
            elif state["down"] and not state["up"] and elapsed >= up_at:
                state["up"] = True
                self.names = [self._start_name(i) for i in range(len(ADDRESSES))]
            elif state["up"]:
                now = time.monotonic()
                for i in range(len(ADDRESSES)):
                    if healthy_at[i] is None:
                        if http_get(self._url(i, "/health"), timeout=0.2)[0] == 200:
                            healthy_at[i] = now
                    elif serving_at[i] is None and (self._served(i) or 0) > 0:
                        serving_at[i] = now

        row = self._row(
            f"all 6 down {o.outage:g} s, then back",
            down_at + o.outage + 10.0,
            before=lambda: (
                f"every replica SIGKILLed {down_at:g} s in, started again {o.outage:g} s later"
            ),
            during=during,
        )
        row.recovery = [
            None if h is None or s is None else s - h
            for h, s in zip(healthy_at, serving_at, strict=True)
        ]
        for i in range(len(ADDRESSES)):
            self._wait_healthy(i)
        self.settle()
        return row

    def run(self) -> list[GrayRow]:
        return [self.healthy(), self.frozen(), self.slow(0.3), self.slow(2.0), self.outage()]


# -- report --------------------------------------------------------------------


def _ms(value: float) -> str:
    return "inf" if math.isinf(value) else f"{value:.2f}"


GRAY_HEADERS = (
    "row",
    "requests",
    "success",
    "p50 ms",
    "p99 ms",
    "p99.9 ms",
    "max ms",
    "hedges",
    "retries",
    "victim share",
    "back after (s)",
)


def table(rows: Sequence[GrayRow]) -> str:
    cells = [list(GRAY_HEADERS)]
    for row in rows:
        recovery = "-"
        if row.recovery is not None:
            recovery = "/".join("?" if r is None else f"{r:.1f}" for r in row.recovery)
        cells.append(
            [
                row.label,
                f"{row.requests:,}",
                f"{row.success:.2%}",
                _ms(row.percentile(50)),
                _ms(row.percentile(99)),
                _ms(row.percentile(99.9)),
                _ms(row.max_ms),
                f"{row.hedges:,} ({row.hedge_share:.1%})",
                f"{row.retries:,}",
                "-" if row.victim_share is None else f"{row.victim_share:.2%}",
                recovery,
            ]
        )
    return markdown_table(cells)


def aims(rows: Sequence[GrayRow]) -> list[Aim]:
    """Issue 9's aims, judged on ratios to this run's healthy row."""
    healthy = rows[0]
    out = [
        Aim(
            f"healthy: hedges <= {MAX_HEDGE_SHARE:.0%} more attempts",
            healthy.hedge_share <= MAX_HEDGE_SHARE,
            f"{healthy.hedges:,} hedges / {healthy.upstream_requests:,} calls "
            f"= {healthy.hedge_share:.2%}",
        )
    ]
    for row in rows[1:]:
        if row.recovery is not None:
            known = [r for r in row.recovery if r is not None]
            worst = max(known) if len(known) == len(row.recovery) else math.inf
            out.append(
                Aim(
                    f"{row.label}: each back within {MAX_RECOVERY_SECONDS:g} s",
                    worst <= MAX_RECOVERY_SECONDS,
                    f"slowest {_ms(worst * 1000)} ms after its /health answered",
                )
            )
            continue
        out.append(Aim(f"{row.label}: 100% success", row.ok == row.requests, f"{row.success:.3%}"))
        for p in (99.0, 99.9):
            value, reference = row.percentile(p), healthy.percentile(p)
            # A healthy row with failures above the percentile is no reference: any ratio
            # to its infinite percentile would pass.
            ratio = math.inf if math.isinf(reference) else value / max(reference, 1e-3)
            unknown = " (no reference: the healthy row failed requests)"
            out.append(
                Aim(
                    f"{row.label}: p{p:g} <= {MAX_TAIL_RATIO:g}x healthy",
                    ratio <= MAX_TAIL_RATIO,
                    f"{_ms(value)} / {_ms(reference)} ms = {ratio:.2f}x"
                    + (unknown if math.isinf(reference) else ""),
                )
            )
    return out


def notes(rows: Sequence[GrayRow]) -> list[str]:
    lines = []
    for row in rows:
        parts = [row.event] if row.event else []
        if row.failures:
            parts.append(", ".join(f"{k}: {v}" for k, v in sorted(row.failures.items())))
        if row.send_lag_ms >= STALL_NOTE_MS:
            parts.append(
                f"the load generator itself was up to {row.send_lag_ms:.0f} ms late sending "
                "(a host stall: requests due meanwhile wait, whatever hello does)"
            )
        if row.listen_overflows:
            parts.append(
                f"the kernel dropped {row.listen_overflows:,} connection attempt(s) on full "
                "accept queues meanwhile (host-wide; each waits 1 s for its SYN to be sent "
                "again, whatever hello does once it accepts)"
            )
        if parts:
            lines.append(f"  {row.label}: {'; '.join(parts)}")
    return lines


def write_json(rows: Sequence[GrayRow], path: Path) -> None:
    path.write_text(
        json.dumps(
            [
                {
                    "label": r.label,
                    "requests": r.requests,
                    "ok": r.ok,
                    "p50_ms": r.percentile(50),
                    "p99_ms": r.percentile(99),
                    "p999_ms": r.percentile(99.9),
                    "hedges": r.hedges,
                    "retries": r.retries,
                    "victim_share": r.victim_share,
                    "recovery_s": r.recovery,
                    "send_lag_ms": r.send_lag_ms,
                    "listen_overflows": r.listen_overflows,
                }
                for r in rows
            ],
            indent=2,
        )
    )
