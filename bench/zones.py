"""The zone and scale rows: discovery at scale and by zone, in the real local stack.

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
speed); the figures and the judgements are ``bench.zonestats``'s pure functions, unit-tested
in tests/bench/test_zones.py. This module drives the stacks (``LocalStack``: one ``python -m
local`` process each) and the rows (``Zones``).
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any, TypeVar

from bench import openloop, prom
from bench.openloop import OpenLoop
from bench.procs import Child, Children, HarnessError
from bench.run import free_port, http_get
from bench.zonestats import (
    Call,
    ZoneRow,
    call_of,
    dump_calls,
    first_answer_from,
    ms,
    pct,
    percentile,
    since,
    zone_of,
)
from local.control import Client, ControlError

CLIENT_TIMEOUT = 5.0  # above hello's 2 s request deadline: a slow answer is latency
ZONES = ("local-1a", "local-1b")
THREE_ZONES = (*ZONES, "local-1c")
# name's Cloud Map name in the local stack; hello's metrics also count hello.internal,
# whose tasks it watches for the callers' spread over zones.
NAME_HOST = "name.internal"
START_DEADLINE = 180.0  # a stack on a busy 2-core machine
SETTLE_DEADLINE = 180.0
STOP_DEADLINE = 60.0  # the stack drains its replicas (10 s) before it exits
POLL_SECONDS = 0.2


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


async def under_load(
    url: str,
    rate: float,
    scenario: Callable[[OpenLoop[Call]], Awaitable[None]],
    max_seconds: float,
) -> OpenLoop[Call]:
    """``bench.openloop.under_load`` through the front, every request kept as a ``Call``
    (sorted by when it was due once the load has stopped)."""
    load = await openloop.under_load(url, rate, CLIENT_TIMEOUT, call_of, scenario, max_seconds)
    load.records.sort(key=lambda c: c.due)
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

        async def scenario(_: OpenLoop[Call]) -> None:
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
            calls=since(load.records, span["start"], span["end"]),
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

        async def scenario(load: OpenLoop[Call]) -> None:
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
            while math.isinf(first_answer_from(load.records, zones, zone, marks["up"])):
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
        back = first_answer_from(load.records, zones, zone, marks["up"])
        row = ZoneRow(
            label=label,
            kind="zone-down",
            calls=since(load.records, marks["start"], end),
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
        return run_rows(self.rows())


T = TypeVar("T")


def run_rows(rows: Coroutine[Any, Any, T]) -> T:
    """Run rows driven through a local stack, on the load generators' loop; a request the
    stack refused ends the bench naming it (the zone rows, and bench/deploy.py's)."""
    with openloop.event_loop_runner() as runner:
        try:
            return runner.run(rows)
        except ControlError as error:  # the stack refused a request: say which
            raise HarnessError(f"local stack: {error}") from None


def _progress(row: ZoneRow, workdir: Path) -> None:
    dump_calls(row, workdir / f"zones-{row.kind}.calls.json")
    print(
        f"    {row.requests:,} requests, {row.failed} failed, p99 "
        f"{ms(percentile(row.calls, 99))} ms, same zone {pct(row.same_zone)}, "
        f"{row.answering} of {len(row.replicas)} replicas answering",
        flush=True,
    )
