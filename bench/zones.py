"""Issue 12's rows: discovery at scale and by zone, in the real local stack.

The stack is the one ``./dev up`` runs (``python -m local``, every timing at its default:
5 s DNS refresh, 5 s before a crashed replica leaves Cloud Map, 10 s drain), started by
the bench on a random block of loopback addresses in two emulated zones, 2 hello replicas
(one per zone) behind its front, and driven through its control endpoint
(``local.control.Client``: scale, zone down/up, AZ rebalancing). Load is open loop
through the front at a fixed rate, each request with a 5 s client timeout, its latency
counted from when it was due; every answer names the hello and the name replica that
served it (``Hello (from ip-127-...) ... (from ip-127-...)``), so each call's zones are
known.

Rows, in order (the first four on one stack; every measured span follows a warm-up of
load longer than one DNS refresh):

- **balanced zones**: 2 name + 1 hello in each zone; the share of calls answered by a
  name replica in the calling hello's zone;
- **a zone's name replicas killed, then back**: ``zone local-1a down`` for name under
  load (its replicas SIGKILLed, still in DNS for 5 s, replaced in local-1b), then ``up``
  (the runner starts replicas there again and rebalances to 2 + 2): failed requests, and
  the seconds from the zone's first replica registering (and from ``up``) to its first
  answer;
- **imbalanced zones**: 1 name replica in local-1a, 3 in local-1b (AZ rebalancing off to
  hold it), 1 hello each: the busiest replica over the mean, worst 10 s window;
- **24 name replicas**: 12 per zone, more than Cloud Map's 8 records per answer: how many
  answer, the busiest over the mean in every 10 s window (sliding, 1 s steps), DNS queries
  per hello per second;
- **zone-unaware reference**: a second stack, the same as the first but with hello's
  ``ZONE_AWARE=false`` (``--hello-env``, as the stack config's ``hello.zoneAware: false``
  sets it on AWS): the same-zone share a client gets that picks any replica;
- **three zones**: a third stack in three zones, 2 name + 1 hello in each: the same-zone
  share; then a fourth hello (2 + 1 + 1, a count the zones do not divide): each zone's
  name replicas' load over the mean, with the callers' spread observed from
  ``hello.internal`` (``ZONE_CALLERS``);
- **callers assumed even**: a fourth stack, the same 2 + 1 + 1 hellos with
  ``ZONE_CALLERS`` unset: the load the crowded zone's replicas get when each hello
  assumes the callers are spread evenly (1.5x the mean by the rule's arithmetic).

Every aim is judged on figures within one run (shares and ratios, never a wall-clock
speed); the pure parts (windows, shares, aims, the table) are unit-tested in
tests/bench/test_zones.py.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import re
import signal
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import aiohttp

from bench import prom
from bench.procs import Child, Children, HarnessError
from bench.report import Aim, markdown_table
from bench.run import free_port, http_get
from local.control import Client, ControlError

# The aims of issue 12 ("Measured"), as thresholds.
MAX_BUSIEST_OVER_MEAN = 1.5  # no name replica above 1.5x the mean, in any 10 s window
MIN_SAME_ZONE_SHARE = 0.95  # balanced zones: calls answered in the caller's zone
# "DNS calls per hello per second stay bounded": the accumulating lookup's own cap
# (aiohttp_discovery/accumulate.py, max_queries_per_second: 5% of the VPC resolver's 1,024
# packets per second per network interface).
MAX_DNS_QUERIES_PER_HELLO_SECOND = 50.0
# "Traffic returns to the zone within a few seconds of it recovering": from the zone's
# first name replica registered in Cloud Map to its first answer. hello learns of it at
# its next refresh (every 5 s by default), so one refresh plus a second.
MAX_RETURN_SECONDS = 6.0
# Uneven callers (2 + 1 + 1 hellos over three zones): each zone's name replicas get the
# mean load, by the rule with the callers' spread observed; assumed even, the crowded
# zone's get 1.5x. The bound leaves room for the open loop's sampling noise.
MAX_ZONE_OVER_MEAN = 1.15

WINDOW_SECONDS = 10.0
WINDOW_STEP_SECONDS = 1.0
CLIENT_TIMEOUT = 5.0  # above hello's 2 s request deadline: a slow answer is latency
STALL_NOTE_MS = 20.0  # as bench.gray: the sender this late names a host stall
ZONES = ("local-1a", "local-1b")
THREE_ZONES = (*ZONES, "local-1c")
# name's Cloud Map name in the local stack; hello's metrics also count hello.internal,
# whose tasks it watches for the callers' spread over zones.
NAME_HOST = "name.internal"
START_DEADLINE = 180.0  # a stack on a busy 2-core machine
SETTLE_DEADLINE = 180.0
STOP_DEADLINE = 60.0  # the stack drains its replicas (10 s) before it exits
POLL_SECONDS = 0.2

ANSWER = re.compile(r"^Hello \(from (?P<hello>[^)\s]+)\) \S+ \(from (?P<name>[^)\s]+)\)$")


def address_of(hostname: str) -> str:
    """ip-127-0-1-3 -> 127.0.1.3 (the runner names each replica after its address)."""
    return hostname.removeprefix("ip-").replace("-", ".")


def parse_answer(body: str) -> tuple[str, str] | None:
    """(hello's address, name's address) from an answer through the front, or None."""
    match = ANSWER.match(body.strip())
    if match is None:
        return None
    return address_of(match["hello"]), address_of(match["name"])


ZoneMap = Mapping[str, Sequence[IPv4Network]]


def zone_of(zones: ZoneMap, address: str | None) -> str | None:
    if address is None:
        return None
    ip = IPv4Address(address)
    return next((z for z, nets in zones.items() if any(ip in n for n in nets)), None)


def zones_of(status: Mapping[str, Any]) -> dict[str, list[IPv4Network]]:
    """Each zone's subnets, from ``local.control status``."""
    return {z: [IPv4Network(n) for n in info["subnets"]] for z, info in status["zones"].items()}


def placement(status: Mapping[str, Any], service: str = "name") -> Counter[str]:
    """Running, registered replicas per zone."""
    return Counter(
        r["zone"]
        for r in status["services"][service]["replicas"]
        if r["state"] == "running" and r["registered"]
    )


@dataclass(frozen=True)
class Call:
    """One request of the open-loop load."""

    due: float  # when it was due, time.time() (the runner's clock too)
    latency_ms: float | None  # from ``due`` to the whole answer; None: failed
    hello: str | None = None
    name: str | None = None
    failure: str = ""

    @property
    def ok(self) -> bool:
        return self.latency_ms is not None

    @property
    def answered_at(self) -> float | None:
        return None if self.latency_ms is None else self.due + self.latency_ms / 1000


@dataclass(frozen=True)
class Window:
    start: float  # seconds from the start of the measured span
    counts: Mapping[str, int]  # answers per name replica, every expected one included

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def busiest_over_mean(self) -> float:
        if not self.counts or not self.total:
            return math.inf
        return max(self.counts.values()) / (self.total / len(self.counts))


def windows(
    calls: Sequence[Call],
    replicas: Sequence[str],
    start: float,
    end: float,
    width: float = WINDOW_SECONDS,
    step: float = WINDOW_STEP_SECONDS,
) -> list[Window]:
    """Every ``width``-second window of [start, end), sliding by ``step``: the answers each
    name replica gave to calls due in it. A replica expected but silent counts 0, one not
    expected but answering in the span counts too. A span no longer than ``width`` is one
    window; otherwise a last fraction of a step is left out (no window is short)."""
    answers = [(c.due, c.name) for c in calls if c.ok and c.name is not None]
    return _windows(answers, replicas, start, end, width, step)


def _windows(
    answers: Sequence[tuple[float, str]],
    replicas: Sequence[str],
    start: float,
    end: float,
    width: float,
    step: float,
) -> list[Window]:
    inside = [(due, name) for due, name in answers if start <= due < end]
    names = list(dict.fromkeys([*replicas, *sorted({name for _, name in inside})]))
    column = {name: i for i, name in enumerate(names)}
    per_window = max(1, round(width / step))
    steps = max(1, math.floor((end - start) / step + 1e-9))
    # Answers per replica per step, then each window the sum of its steps.
    grid = [[0] * len(names) for _ in range(steps)]
    for due, name in inside:
        bucket = int((due - start) / step)
        if bucket < steps or steps <= per_window:
            grid[min(bucket, steps - 1)][column[name]] += 1
    spans = (
        [(0, steps)]
        if steps <= per_window
        else [(i, i + per_window) for i in range(steps - per_window + 1)]
    )
    out = []
    for first, last in spans:
        totals = [sum(grid[b][i] for b in range(first, last)) for i in range(len(names))]
        out.append(Window(first * step, dict(zip(names, totals, strict=True))))
    return out


def uniform_worst(
    calls: Sequence[Call],
    replicas: Sequence[str],
    start: float,
    end: float,
    trials: int = 10,
    seed: int = 12,
) -> float:
    """The worst window's busiest/mean that the same answered calls would give if each had
    gone to a replica drawn uniformly at random: the sampling noise of the figure at this
    rate (mean of ``trials`` seeded draws). The balancer is judged against the aim, not
    against this; it says how much of a figure is the window being small."""
    if not replicas:
        return math.inf
    draw = random.Random(seed)
    dues = [c.due for c in calls if c.ok and start <= c.due < end]
    worst = []
    for _ in range(trials):
        answers = list(zip(dues, draw.choices(replicas, k=len(dues)), strict=True))
        spans = _windows(answers, replicas, start, end, WINDOW_SECONDS, WINDOW_STEP_SECONDS)
        worst.append(max(w.busiest_over_mean for w in spans))
    return sum(worst) / len(worst)


def percentile(calls: Sequence[Call], p: float) -> float:
    """Over every call; a failed one counts as infinitely slow (as the gray rows)."""
    latencies = sorted(c.latency_ms for c in calls if c.latency_ms is not None)
    rank = math.ceil(round(p / 100.0 * len(calls), 6))
    if rank <= 0 or rank > len(latencies):
        return math.inf
    return latencies[rank - 1]


def same_zone_share(calls: Sequence[Call], zones: ZoneMap) -> float | None:
    answered = [c for c in calls if c.ok]
    if not answered:
        return None
    same = sum(zone_of(zones, c.hello) == zone_of(zones, c.name) for c in answered)
    return same / len(answered)


def per_zone(
    answers: Mapping[str, int], replicas: Sequence[str], zones: ZoneMap
) -> dict[str, float]:
    """Each zone's answers per replica (its expected replicas, silent ones included): what
    zone routing decides, as against the balancing within a zone."""
    by_zone: dict[str, list[int]] = {}
    for replica in replicas:
        by_zone.setdefault(zone_of(zones, replica) or "?", []).append(answers.get(replica, 0))
    return {zone: sum(counts) / len(counts) for zone, counts in sorted(by_zone.items())}


def first_answer_from(calls: Sequence[Call], zones: ZoneMap, zone: str, since: float) -> float:
    """When the first call due at or after ``since`` was answered from ``zone`` (inf: never)."""
    return min(
        (
            c.answered_at
            for c in calls
            if c.answered_at is not None and c.due >= since and zone_of(zones, c.name) == zone
        ),
        default=math.inf,
    )


@dataclass
class ZoneRow:
    """One row: the calls of its measured span and what was asked of it."""

    label: str
    kind: str  # "scale", "balanced", "reference", "imbalanced", "zone-down", "uneven" or
    # "uneven-reference"
    calls: list[Call] = field(repr=False)
    start: float  # the measured span, time.time()
    end: float
    replicas: list[str]  # the name replicas expected to answer
    zones: dict[str, list[IPv4Network]]
    dns_per_hello_second: list[float] | None = None  # one figure per hello
    standin_per_hello_second: float | None = None  # the Cloud Map stand-in's count / hellos
    back_after_up: float | None = None  # zone-down: seconds from `zone up` to its first answer
    back_after_registered: float | None = None  # ... from its first replica registered
    event: str = ""
    send_lag_ms: float = 0.0
    records_known: list[int] | None = None  # discovery_dns_records per hello, at the end
    callers: str = ""  # hellos per zone, for the uneven rows
    marks: dict[str, float] = field(default_factory=dict)  # events, time.time()

    @property
    def requests(self) -> int:
        return len(self.calls)

    @property
    def failed(self) -> int:
        return sum(not c.ok for c in self.calls)

    def failures(self) -> Counter[str]:
        return Counter(c.failure for c in self.calls if not c.ok)

    @cached_property
    def answers(self) -> Counter[str]:
        return Counter(c.name for c in self.calls if c.ok and c.name is not None)

    @property
    def answering(self) -> int:
        answers = self.answers
        return sum(1 for r in self.replicas if answers[r] > 0)

    def windows(self) -> list[Window]:
        return windows(self.calls, self.replicas, self.start, self.end)

    @cached_property
    def worst(self) -> Window | None:
        return self.worst_window()

    def worst_window(self) -> Window | None:
        return max(self.windows(), key=lambda w: w.busiest_over_mean, default=None)

    @cached_property
    def uniform_worst(self) -> float:
        return uniform_worst(self.calls, self.replicas, self.start, self.end)

    @property
    def same_zone(self) -> float | None:
        return same_zone_share(self.calls, self.zones)

    @property
    def zone_over_mean(self) -> float | None:
        """The most loaded zone's answers per replica over the mean per replica: what zone
        routing decides, apart from the balancing within a zone."""
        total = sum(self.answers[r] for r in self.replicas)
        if not self.replicas or not total:
            return None
        mean = total / len(self.replicas)
        return max(per_zone(self.answers, self.replicas, self.zones).values()) / mean


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _ms(value: float) -> str:
    return "inf" if math.isinf(value) else f"{value:.2f}"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return "never" if math.isinf(value) else f"{value:.1f}"


HEADERS = (
    "row",
    "requests",
    "failed",
    "p50 ms",
    "p99 ms",
    "answering",
    "busiest/mean (worst 10 s)",
    "per replica (worst 10 s)",
    "same zone",
    "busiest zone/mean",
    "DNS q/hello/s",
    "back after (s)",
)


# Rows judged per replica over sliding windows.
WINDOWED = ("scale", "imbalanced", "uneven")


def table(rows: Sequence[ZoneRow]) -> str:
    cells = [list(HEADERS)]
    for row in rows:
        worst = row.worst_window() if row.kind in WINDOWED else None
        back = "-"
        if row.kind == "zone-down":
            back = f"{_seconds(row.back_after_registered)} ({_seconds(row.back_after_up)} from up)"
        cells.append(
            [
                row.label,
                f"{row.requests:,}",
                f"{row.failed:,}",
                _ms(percentile(row.calls, 50)),
                _ms(percentile(row.calls, 99)),
                f"{row.answering} of {len(row.replicas)}",
                "-" if worst is None else f"{worst.busiest_over_mean:.2f}x",
                "-"
                if worst is None
                else f"{min(worst.counts.values())}-{max(worst.counts.values())}",
                _pct(row.same_zone),
                "-"
                if row.kind not in ("uneven", "uneven-reference") or row.zone_over_mean is None
                else f"{row.zone_over_mean:.2f}x",
                "-"
                if not row.dns_per_hello_second
                else "/".join(f"{q:.1f}" for q in row.dns_per_hello_second),
                back,
            ]
        )
    return markdown_table(cells)


def aims(rows: Sequence[ZoneRow]) -> list[Aim]:
    """Issue 12's aims, each judged on one row's shares and ratios."""
    out: list[Aim] = []
    for row in rows:
        if row.kind == "scale":
            out.append(
                Aim(
                    f"{row.label}: every replica answers",
                    row.answering == len(row.replicas) > 0,
                    f"{row.answering} of {len(row.replicas)}",
                )
            )
        if row.kind in WINDOWED:
            worst = row.worst_window()
            ratio = math.inf if worst is None else worst.busiest_over_mean
            out.append(
                Aim(
                    f"{row.label}: busiest <= {MAX_BUSIEST_OVER_MEAN:g}x mean, every 10 s",
                    ratio <= MAX_BUSIEST_OVER_MEAN,
                    "no window"
                    if worst is None
                    else f"worst {ratio:.2f}x ({max(worst.counts.values())} / "
                    f"{worst.total / len(worst.counts):.1f}, {worst.start:g}-"
                    f"{worst.start + WINDOW_SECONDS:g} s; uniformly random: "
                    f"{row.uniform_worst:.2f}x)",
                )
            )
        if row.kind == "scale":
            rates = row.dns_per_hello_second or []
            out.append(
                Aim(
                    f"{row.label}: DNS queries/hello/s <= {MAX_DNS_QUERIES_PER_HELLO_SECOND:g}",
                    bool(rates) and max(rates) <= MAX_DNS_QUERIES_PER_HELLO_SECOND,
                    "unknown" if not rates else f"{max(rates):.1f} (busiest hello)",
                )
            )
        if row.kind == "balanced":
            share = row.same_zone
            out.append(
                Aim(
                    f"{row.label}: >= {MIN_SAME_ZONE_SHARE:.0%} of calls in the caller's zone",
                    share is not None and share >= MIN_SAME_ZONE_SHARE,
                    _pct(share),
                )
            )
        if row.kind == "uneven":
            zone_ratio = row.zone_over_mean
            out.append(
                Aim(
                    f"{row.label}: each zone's replicas <= {MAX_ZONE_OVER_MEAN:g}x the mean",
                    zone_ratio is not None and zone_ratio <= MAX_ZONE_OVER_MEAN,
                    "no answer" if zone_ratio is None else f"busiest zone {zone_ratio:.2f}x",
                )
            )
        if row.kind == "zone-down":
            out.append(
                Aim(
                    f"{row.label}: zero failed requests",
                    row.failed == 0 and row.requests > 0,
                    f"{row.failed:,} of {row.requests:,}",
                )
            )
            back = math.inf if row.back_after_registered is None else row.back_after_registered
            out.append(
                Aim(
                    f"{row.label}: back within {MAX_RETURN_SECONDS:g} s of registering",
                    back <= MAX_RETURN_SECONDS,
                    f"{_seconds(back)} s ({_seconds(row.back_after_up)} s after `zone up`)",
                )
            )
    return out


def notes(rows: Sequence[ZoneRow]) -> list[str]:
    lines = []
    for row in rows:
        parts = [row.event] if row.event else []
        if row.kind == "reference":
            parts.append(
                f"same-zone share {_pct(row.same_zone)} with zone awareness off (no aim: the "
                "reference a zone-unaware client gets, about 50% with even zones)"
            )
        if row.kind in ("uneven", "uneven-reference") and row.zone_over_mean is not None:
            zone_means = per_zone(row.answers, row.replicas, row.zones)
            mean = sum(row.answers[r] for r in row.replicas) / len(row.replicas)
            parts.append(
                f"hellos per zone {row.callers}; per replica by zone over the mean "
                + ", ".join(f"{zone} {m / mean:.2f}x" for zone, m in zone_means.items())
            )
            if row.kind == "uneven-reference":
                parts.append("callers assumed even (no aim: the load ZONE_CALLERS avoids)")
        if row.kind in ("scale", "imbalanced") and row.answers:
            counts = [row.answers[r] for r in row.replicas]
            parts.append(f"answers per replica over the row {min(counts)}-{max(counts)}")
            zone_means = per_zone(row.answers, row.replicas, row.zones)
            parts.append(
                "per replica by zone "
                + ", ".join(f"{zone} {mean:.0f}" for zone, mean in zone_means.items())
            )
            worst = row.worst
            if worst is not None:
                busiest = max(worst.counts, key=worst.counts.__getitem__)
                parts.append(
                    f"busiest in the worst window {busiest} ({zone_of(row.zones, busiest)})"
                )
        if row.standin_per_hello_second is not None and row.kind == "scale":
            parts.append(
                f"the Cloud Map stand-in answered {row.standin_per_hello_second:.1f} "
                "queries/s per hello"
            )
        if row.records_known:
            parts.append(f"records known per hello {'/'.join(map(str, row.records_known))}")
        failures = row.failures()
        if failures:
            parts.append(", ".join(f"{k}: {v}" for k, v in sorted(failures.items())))
            if "down" in row.marks:
                dues = [c.due - row.marks["down"] for c in row.calls if not c.ok]
                parts.append(
                    f"the failed calls were due {min(dues):+.1f} to {max(dues):+.1f} s "
                    "from `zone down`"
                )
        if row.send_lag_ms >= STALL_NOTE_MS:
            parts.append(
                f"the load generator itself was up to {row.send_lag_ms:.0f} ms late sending "
                "(a host stall)"
            )
        if parts:
            lines.append(f"  {row.label}: {'; '.join(parts)}")
    return lines


def dump_calls(row: ZoneRow, path: Path) -> None:
    """Every call of a row, for a look after the run (kept with ``--keep``)."""
    path.write_text(
        json.dumps(
            {
                "label": row.label,
                "marks": row.marks,
                "calls": [[c.due, c.latency_ms, c.hello, c.name, c.failure] for c in row.calls],
            }
        )
    )


def write_json(rows: Sequence[ZoneRow], path: Path) -> None:
    def worst(row: ZoneRow) -> float | None:
        w = row.worst_window() if row.kind in WINDOWED else None
        return None if w is None else w.busiest_over_mean

    path.write_text(
        json.dumps(
            [
                {
                    "label": r.label,
                    "kind": r.kind,
                    "requests": r.requests,
                    "failed": r.failed,
                    "p50_ms": percentile(r.calls, 50),
                    "p99_ms": percentile(r.calls, 99),
                    "answering": r.answering,
                    "replicas": len(r.replicas),
                    "answers": dict(r.answers),
                    "worst_busiest_over_mean": worst(r),
                    "uniform_worst_busiest_over_mean": r.uniform_worst
                    if r.kind in WINDOWED
                    else None,
                    "same_zone_share": r.same_zone,
                    "busiest_zone_over_mean": r.zone_over_mean,
                    "dns_queries_per_hello_second": r.dns_per_hello_second,
                    "back_after_registered_s": r.back_after_registered,
                    "back_after_up_s": r.back_after_up,
                    "send_lag_ms": r.send_lag_ms,
                }
                for r in rows
            ],
            indent=2,
        )
    )


# -- the load ------------------------------------------------------------------------


class OpenLoop:
    """Requests through the front at a fixed rate until stopped, each one sent when due
    whatever happened to the earlier ones; every answer recorded as a :class:`Call`."""

    def __init__(self, url: str, rate: float, timeout: float = CLIENT_TIMEOUT) -> None:
        self.url = url
        self.rate = rate
        self.timeout = timeout
        self.calls: list[Call] = []
        self.send_lag = 0.0
        self._stopping = False

    def stop(self) -> None:
        self._stopping = True

    def since(self, start: float, end: float = math.inf) -> list[Call]:
        return [c for c in self.calls if start <= c.due < end]

    async def run(self, max_seconds: float) -> None:
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30)
        tasks: set[asyncio.Task[None]] = set()
        async with aiohttp.ClientSession(connector=connector) as session:

            async def one(planned: float, wall: float) -> None:
                try:
                    async with (
                        asyncio.timeout(self.timeout),
                        session.get(self.url) as response,
                    ):
                        body = await response.text()
                    elapsed = (time.perf_counter() - planned) * 1000
                    answer = parse_answer(body) if response.status == 200 else None
                    if answer is None:
                        self.calls.append(Call(wall, None, failure=f"HTTP {response.status}"))
                    else:
                        self.calls.append(Call(wall, elapsed, answer[0], answer[1]))
                except TimeoutError:
                    self.calls.append(Call(wall, None, failure="timeout"))
                except aiohttp.ClientError as exc:
                    self.calls.append(Call(wall, None, failure=type(exc).__name__))

            start, wall_start = time.perf_counter(), time.time()
            for i in range(int(max_seconds * self.rate)):
                if self._stopping:
                    break
                planned = start + i / self.rate
                delay = planned - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    # Behind (the process was starved): still let the answers in between
                    # sends, or a stall turns into one burst of every request due during it.
                    await asyncio.sleep(0)
                self.send_lag = max(self.send_lag, time.perf_counter() - planned)
                task = asyncio.create_task(one(planned, wall_start + i / self.rate))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.gather(*tasks)
        self.calls.sort(key=lambda c: c.due)


async def under_load(
    url: str, rate: float, scenario: Callable[[OpenLoop], Awaitable[None]], max_seconds: float
) -> OpenLoop:
    """Run ``scenario`` while ``rate`` requests a second go to ``url``; stop the load when
    it returns (or fails), then wait for the requests in flight."""
    load = OpenLoop(url, rate)
    sender = asyncio.create_task(load.run(max_seconds))
    try:
        await scenario(load)
    finally:
        load.stop()
        await sender
    return load


# -- the stack -----------------------------------------------------------------------


def random_block() -> tuple[IPv4Network, IPv4Network, IPv4Address]:
    """name's and hello's /24 and one address for the front, control and DNS: in
    127.20-99.x.x, clear of a developer's stack (127.0.x.x), the gray rows (127.0.0.x) and
    the local-stack tests (127.100-250.x.x), which other sessions may be running."""
    second, third = random.randint(20, 99), random.randrange(0, 252, 4)
    return (
        IPv4Network(f"127.{second}.{third}.0/24"),
        IPv4Network(f"127.{second}.{third + 1}.0/24"),
        IPv4Address(f"127.{second}.{third + 2}.1"),
    )


class LocalStack:
    """One ``python -m local`` process, bound to the bench's life (``bench.orphan``,
    SIGTERM: the stack then stops its replicas in order)."""

    def __init__(self, children: Children, env: Mapping[str, str], logs: Path) -> None:
        self.children = children
        self.env = env
        self.logs = logs
        self.child: Child | None = None
        self.client = Client("http://127.0.0.1:1")
        self.front_url = ""

    def start(
        self,
        label: str,
        *,
        name: int,
        hello: int,
        zones: int = len(ZONES),
        hello_env: Sequence[str] = (),
    ) -> None:
        for attempt in range(3):
            name_net, hello_net, host = random_block()
            hosts = [str(host)]
            front, control, dns = free_port(hosts), free_port(hosts), free_port(hosts, udp=True)
            argv = [
                sys.executable,
                "-m",
                "local",
                f"--name={name}",
                f"--hello={hello}",
                f"--zones={zones}",
                f"--name-network={name_net}",
                f"--hello-network={hello_net}",
                f"--front={host}:{front}",
                f"--control={host}:{control}",
                f"--dns={host}:{dns}",
                f"--logs={self.logs / label}",
                *(f"--hello-env={e}" for e in hello_env),
            ]
            child = self.children.start(
                f"{label}-{attempt}",
                Children.program(argv, signal.SIGTERM),
                {**self.env, "PYTHONUNBUFFERED": "1"},
            )
            deadline = time.monotonic() + START_DEADLINE
            while child.running() and "local stack up" not in _text(child):
                if time.monotonic() > deadline:
                    self.children.stop(child)
                    raise HarnessError(f"{label}: not up in {START_DEADLINE:g} s:\n{child.tail()}")
                time.sleep(POLL_SECONDS)
            if child.running():
                self.child = child
                self.client = Client(f"http://{host}:{control}")
                self.front_url = f"http://{host}:{front}/"
                return
            self.children.stop(child)
            if "cannot listen" not in _text(child):
                raise HarnessError(f"{label}: the stack exited:\n{child.tail()}")
        raise HarnessError(f"{label}: no free loopback block after 3 attempts")

    def stop(self) -> None:
        if self.child is not None:
            self.children.stop(self.child, timeout=STOP_DEADLINE)
            self.child = None

    def status(self) -> dict[str, Any]:
        try:
            return self.client.status()
        except ControlError as error:
            raise HarnessError(str(error)) from None

    def wait_for(
        self, what: str, predicate: Callable[[dict[str, Any]], bool], deadline: float
    ) -> dict[str, Any]:
        end = time.monotonic() + deadline
        while not predicate(status := self.status()):
            if self.child is None or not self.child.running():
                raise HarnessError(f"the stack exited while waiting for {what}")
            if time.monotonic() > end:
                raise HarnessError(f"{what}: not within {deadline:g} s")
            time.sleep(POLL_SECONDS)
        return status

    def place(self, what: str, wanted: Mapping[str, int], service: str = "name") -> dict[str, Any]:
        """Wait until ``service`` runs exactly ``wanted`` replicas per zone, settled."""
        return self.wait_for(
            what,
            lambda s: (
                s["services"][service]["settled"] and placement(s, service) == Counter(wanted)
            ),
            SETTLE_DEADLINE,
        )

    def standin_queries(self) -> int:
        """Queries the Cloud Map stand-in answered for name's record, from every hello."""
        return int(self.status()["dns"]["queries"].get(f"{NAME_HOST}.", 0))

    def hello_metrics(self, family: str, **labels: str) -> list[float]:
        """``family``'s samples with ``labels``, summed, per hello replica (address order)."""
        out = []
        replicas = sorted(self.status()["services"]["hello"]["replicas"], key=_by_address)
        for r in replicas:
            status, text = http_get(f"http://{r['address']}:{r['port']}/metrics")
            if status != 200:
                raise HarnessError(f"hello {r['address']}'s /metrics answered {status}")
            out.append(prom.total(prom.parse(text), family, **labels))
        return out


def _by_address(replica: Mapping[str, Any]) -> IPv4Address:
    return IPv4Address(replica["address"])


def _text(child: Child) -> str:
    try:
        return child.log.read_text(errors="replace")
    except OSError:
        return ""


def name_addresses(status: Mapping[str, Any]) -> list[str]:
    replicas = [
        r
        for r in status["services"]["name"]["replicas"]
        if r["state"] == "running" and r["registered"]
    ]
    return [r["address"] for r in sorted(replicas, key=_by_address)]


# -- the rows ------------------------------------------------------------------------


@dataclass(frozen=True)
class ZoneOptions:
    rate: float = 200.0
    duration: float = 20.0
    warmup: float = 6.0  # one 5 s DNS refresh and a second: every hello knows the placement


class Zones:
    """The rows on one stack, then the zone-unaware reference on a second."""

    def __init__(
        self, children: Children, env: Mapping[str, str], workdir: Path, options: ZoneOptions
    ) -> None:
        self.options = options
        self.stack = LocalStack(children, env, workdir / "zones")
        self.children = children
        self.env = env
        self.workdir = workdir

    def close(self) -> None:
        self.stack.stop()
        self.children.stop_all()

    async def _steady(self, label: str, kind: str, **extra: Any) -> ZoneRow:
        """``warmup`` then ``duration`` seconds of load on the current placement."""
        o = self.options
        stack = self.stack
        status = await asyncio.to_thread(stack.status)
        print(
            f"--> {label}: {o.rate:g} req/s open loop, {o.duration:g} s after {o.warmup:g} s",
            flush=True,
        )
        span: dict[str, float] = {}
        queries: dict[str, list[float]] = {}

        async def scenario(_: OpenLoop) -> None:
            await asyncio.sleep(o.warmup)
            queries["before"] = await asyncio.to_thread(
                stack.hello_metrics, "discovery_dns_queries_total", host=NAME_HOST
            )
            queries["stand-in before"] = [await asyncio.to_thread(stack.standin_queries)]
            span["start"] = time.time()
            await asyncio.sleep(o.duration)
            span["end"] = time.time()
            queries["after"] = await asyncio.to_thread(
                stack.hello_metrics, "discovery_dns_queries_total", host=NAME_HOST
            )
            queries["stand-in after"] = [await asyncio.to_thread(stack.standin_queries)]

        load = await under_load(stack.front_url, o.rate, scenario, o.warmup + o.duration + 60)
        seconds = span["end"] - span["start"]
        known = await asyncio.to_thread(
            stack.hello_metrics, "discovery_dns_records", host=NAME_HOST
        )
        row = ZoneRow(
            label=label,
            kind=kind,
            calls=load.since(span["start"], span["end"]),
            start=span["start"],
            end=span["end"],
            replicas=name_addresses(status),
            zones=zones_of(status),
            dns_per_hello_second=[
                (a - b) / seconds for a, b in zip(queries["after"], queries["before"], strict=True)
            ],
            standin_per_hello_second=(queries["stand-in after"][0] - queries["stand-in before"][0])
            / max(1, len(known))
            / seconds,
            send_lag_ms=load.send_lag * 1000,
            records_known=[int(k) for k in known],
            **extra,
        )
        _progress(row, self.workdir)
        return row

    async def balanced(self) -> ZoneRow:
        self.stack.place("2 name replicas per zone", dict.fromkeys(ZONES, 2))
        return await self._steady("balanced zones, 2+2 name", "balanced")

    async def zone_down(self) -> ZoneRow:
        o = self.options
        stack = self.stack
        zone = ZONES[0]
        status = stack.place("2 name replicas per zone", dict.fromkeys(ZONES, 2))
        zones = zones_of(status)
        label = f"{zone} name replicas killed, then back"
        print(f"--> {label}: {o.rate:g} req/s open loop", flush=True)
        marks: dict[str, float] = {}

        async def scenario(load: OpenLoop) -> None:
            await asyncio.sleep(o.warmup)
            marks["start"] = time.time()
            await asyncio.sleep(2.0)
            marks["down"] = time.time()
            await asyncio.to_thread(stack.client.zone, zone, "down", "name")
            # Killed (still in DNS for 5 s, as ECS takes to notice), replaced in the other zone.
            await asyncio.to_thread(stack.place, "replacements in the other zone", {ZONES[1]: 4})
            await asyncio.sleep(2.0)
            marks["up"] = time.time()
            await asyncio.to_thread(stack.client.zone, zone, "up", "name")
            deadline = time.monotonic() + SETTLE_DEADLINE
            while math.isinf(first_answer_from(load.calls, zones, zone, marks["up"])):
                if time.monotonic() > deadline:
                    return  # never back: the row says so
                await asyncio.sleep(POLL_SECONDS)
            registered = (await asyncio.to_thread(stack.status))["dns"]["records"]
            marks["registered"] = min(
                (
                    r["registered_at"]
                    for r in registered.get(NAME_HOST, [])
                    if zone_of(zones, r["address"]) == zone and r["registered_at"] >= marks["up"]
                ),
                default=math.inf,
            )
            # AZ rebalancing moves the service back to 2 + 2 (start one, drain one).
            await asyncio.to_thread(stack.place, "rebalanced to 2 + 2", dict.fromkeys(ZONES, 2))
            await asyncio.sleep(2.0)
            marks["end"] = time.time()

        load = await under_load(stack.front_url, o.rate, scenario, 900)
        end = marks.get("end", math.inf)
        back = first_answer_from(load.calls, zones, zone, marks["up"])
        row = ZoneRow(
            label=label,
            kind="zone-down",
            calls=load.since(marks["start"], end),
            start=marks["start"],
            end=min(end, time.time()),
            replicas=name_addresses(status),
            zones=zones,
            back_after_up=back - marks["up"],
            back_after_registered=back - marks.get("registered", math.inf),
            marks=marks,
            event=f"`zone {zone} down --service name` 2 s in, `up` "
            f"{marks['up'] - marks['down']:.1f} s later (once replaced in {ZONES[1]})",
            send_lag_ms=load.send_lag * 1000,
        )
        _progress(row, self.workdir)
        return row

    async def imbalanced(self) -> ZoneRow:
        stack, client = self.stack, self.stack.client
        a, b = ZONES
        client.rebalancing("name", False)  # or the runner moves it back to 2 + 2
        client.zone(a, "down", "name")
        client.scale("name", 3)
        stack.place(f"3 name replicas in {b}", {b: 3})
        client.zone(a, "up", "name")
        client.scale("name", 4)  # the new one goes to the zone with the fewest
        stack.place(f"1 name replica in {a}, 3 in {b}", {a: 1, b: 3})
        try:
            return await self._steady("imbalanced zones, 1+3 name", "imbalanced")
        finally:
            client.rebalancing("name", True)

    async def scale(self) -> ZoneRow:
        self.stack.client.scale("name", 24)
        self.stack.place("12 name replicas per zone", dict.fromkeys(ZONES, 12))
        return await self._steady("24 name, 2 hello", "scale")

    async def reference(self) -> ZoneRow:
        stack = LocalStack(self.children, self.env, self.workdir / "zones-unaware")
        print("--> starting a second stack with ZONE_AWARE=false (the reference)", flush=True)
        stack.start("stack-zone-unaware", name=4, hello=2, hello_env=["ZONE_AWARE=false"])
        original, self.stack = self.stack, stack
        try:
            return await self._steady("zone-unaware reference, 2+2 name", "reference")
        finally:
            self.stack = original
            stack.stop()

    async def three_zones(self) -> list[ZoneRow]:
        """Balanced over three zones, then uneven callers (2 + 1 + 1 hellos), on a stack of
        their own; then the same callers assumed even, on another."""
        rows: list[ZoneRow] = []
        for label, hello_env in (("three-zones", ()), ("callers-assumed", ("ZONE_CALLERS=",))):
            stack = LocalStack(self.children, self.env, self.workdir / f"zones-{label}")
            print(
                f"--> starting a stack in 3 zones: 6 name, 3 hello ({label})",
                flush=True,
            )
            stack.start(f"stack-{label}", name=6, hello=3, zones=3, hello_env=hello_env)
            original, self.stack = self.stack, stack
            try:
                stack.place("2 name replicas per zone", dict.fromkeys(THREE_ZONES, 2))
                if not hello_env:
                    rows.append(
                        await self._steady("three zones, 2+2+2 name, 1+1+1 hello", "balanced")
                    )
                stack.client.scale("hello", 4)  # the new one goes to the zone with fewest
                status = stack.wait_for(
                    "a fourth hello",
                    lambda s: (
                        s["services"]["hello"]["settled"]
                        and len(placement(s, "hello")) == 3
                        and sum(placement(s, "hello").values()) == 4
                    ),
                    SETTLE_DEADLINE,
                )
                callers = "+".join(str(placement(status, "hello")[z]) for z in THREE_ZONES)
                kind, what = (
                    ("uneven", "observed")
                    if not hello_env
                    else ("uneven-reference", "assumed even")
                )
                rows.append(
                    await self._steady(
                        f"three zones, {callers} hello, callers {what}", kind, callers=callers
                    )
                )
            finally:
                self.stack = original
                stack.stop()
        return rows

    async def rows(self) -> list[ZoneRow]:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        print(
            f"--> starting the local stack: 4 name, 2 hello, 2 zones (load average {load})",
            flush=True,
        )
        self.stack.start("stack", name=4, hello=2)
        rows = [
            await self.balanced(),
            await self.zone_down(),
            await self.imbalanced(),
            await self.scale(),
        ]
        self.stack.stop()
        rows.append(await self.reference())
        rows += await self.three_zones()
        return rows

    def run(self) -> list[ZoneRow]:
        try:
            import uvloop  # noqa: PLC0415 - optional, as in the services and bench.openloop

            runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
        except ImportError:
            runner = asyncio.Runner()
        with runner:
            try:
                return runner.run(self.rows())
            except ControlError as error:  # the stack refused a request: say which
                raise HarnessError(f"local stack: {error}") from None


def _progress(row: ZoneRow, workdir: Path) -> None:
    dump_calls(row, workdir / f"zones-{row.kind}.calls.json")
    print(
        f"    {row.requests:,} requests, {row.failed} failed, p99 "
        f"{_ms(percentile(row.calls, 99))} ms, same zone {_pct(row.same_zone)}, "
        f"{row.answering} of {len(row.replicas)} replicas answering",
        flush=True,
    )
