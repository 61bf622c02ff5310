"""The zone rows' figures: pure functions of the calls a row recorded.

Each call of the open-loop load (``bench.openloop``) becomes a :class:`Call`: when it was
due, its latency, and the hello and name replica that answered it (read from hello's
answer, ``Hello (from ip-127-...) ... (from ip-127-...)``). From a row's calls come the
sliding windows (each name replica's answers per 10 s, sliding by 1 s), the same-zone
share, each zone's load per replica, when traffic came back to a zone, the percentiles,
and the judgement of each aim; ``bench.zones`` drives the stacks that produce them.
Unit-tested in tests/bench/test_zones.py.
"""

from __future__ import annotations

import json
import math
import random
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from bench import openloop
from bench.openloop import STALL_NOTE_MS, Shot
from bench.report import Aim, markdown_table

# The aims of the zone rows, as thresholds.
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


def call_of(shot: Shot) -> Call:
    """A request of the load as a zone row keeps it: answered (by which hello and name
    replica) only with a 200 naming both, else failed with its status or failure."""
    if shot.latency_ms is None:
        return Call(shot.due, None, failure=shot.failure)
    answer = (
        parse_answer(shot.body.decode("utf-8", errors="replace")) if shot.status == 200 else None
    )
    if answer is None:
        return Call(shot.due, None, failure=f"HTTP {shot.status}")
    return Call(shot.due, shot.latency_ms, answer[0], answer[1])


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


def since(calls: Sequence[Call], start: float, end: float = math.inf) -> list[Call]:
    """The calls due in [start, end)."""
    return [c for c in calls if start <= c.due < end]


def percentile(calls: Sequence[Call], p: float) -> float:
    """Over every call; a failed one counts as infinitely slow (as the gray rows)."""
    latencies = sorted(c.latency_ms for c in calls if c.latency_ms is not None)
    return openloop.percentile(latencies, len(calls), p)


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


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def ms(value: float) -> str:
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
                ms(percentile(row.calls, 50)),
                ms(percentile(row.calls, 99)),
                f"{row.answering} of {len(row.replicas)}",
                "-" if worst is None else f"{worst.busiest_over_mean:.2f}x",
                "-"
                if worst is None
                else f"{min(worst.counts.values())}-{max(worst.counts.values())}",
                pct(row.same_zone),
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
                    pct(share),
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
                f"same-zone share {pct(row.same_zone)} with zone awareness off (no aim: the "
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
