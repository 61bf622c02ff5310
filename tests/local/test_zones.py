"""Zones and scale in the real local stack (issue 12): two emulated zones, hello replicas
reading their zone from their own task metadata endpoint, name replicas spread by the
runner, Cloud Map's eight-record answers.

The stack is the one test_stack.py uses (tests/local/conftest.py: 2 zones, 2 hello); each
scenario first sets the placement it starts from. Loads are
closed loop through the front, bounded; every figure is printed (``pytest -s``).
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections import Counter
from ipaddress import IPv4Address, IPv4Network
from typing import Any

import pytest

from bench import prom
from local import control
from tests.local.harness import Load, StackProcess, delta, hello_counters, report, scrape

# The accumulating lookup's cap (aiohttp_discovery/accumulate.py): 50 queries a second per
# hello at most, here 25 per 0.5 s refresh.
MAX_QUERIES_PER_SECOND = 50.0


def zones_of(status: dict[str, Any]) -> dict[str, list[IPv4Network]]:
    return {
        zone: [IPv4Network(n) for n in info["subnets"]] for zone, info in status["zones"].items()
    }


def zone_of(zones: dict[str, list[IPv4Network]], address: str | None) -> str | None:
    if address is None:
        return None
    ip = IPv4Address(address)
    return next((z for z, nets in zones.items() if any(ip in n for n in nets)), None)


def placement(status: dict[str, Any], service: str = "name") -> Counter[str]:
    return Counter(
        r["zone"]
        for r in status["services"][service]["replicas"]
        if r["state"] == "running" and r["registered"]
    )


def same_zone_share(load: Load, zones: dict[str, list[IPv4Network]], since: float = 0.0) -> float:
    answered = [s for s in load.samples if s.ok and s.start >= since]
    same = sum(zone_of(zones, s.hello) == zone_of(zones, s.name) for s in answered)
    return same / max(1, len(answered))


def per_replica_by_zone(
    counts: Counter[str], zones: dict[str, list[IPv4Network]]
) -> dict[str, float]:
    """Each zone's answers divided by its replicas that answered."""
    totals: dict[str, list[int]] = {}
    for address, n in counts.items():
        totals.setdefault(zone_of(zones, address) or "?", []).append(n)
    return {zone: sum(ns) / len(ns) for zone, ns in totals.items()}


def least_called(counts: Counter[str], registered: list[str]) -> list[str]:
    """The replicas that got no call, or else the one that got the fewest."""
    silent = [a for a in registered if a not in counts]
    return silent or [min(counts, key=counts.__getitem__)]


def what_hello_knows_of(stack: StackProcess, address: str) -> list[str]:
    """Each hello's /metrics lines about ``address`` (its latency estimate, its ejections):
    why a replica got few calls, printed beside the figures."""
    lines = []
    for replica in stack.replicas("hello"):
        url = f"http://{replica['address']}:{replica['port']}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        lines += [f"{replica['address']} {line}" for line in text.splitlines() if address in line]
    return lines


def running_hellos_metrics(stack: StackProcess) -> dict[str, list[prom.Sample]]:
    """Each running hello's /metrics samples, by its address."""
    return {
        r["address"]: scrape(f"http://{r['address']}:{r['port']}/metrics")
        for r in stack.replicas("hello")
        if r["state"] == "running"
    }


def zone_routing(stack: StackProcess) -> dict[str, dict[str, Any]]:
    """Each hello's zone routing: the callers per zone it weighs, and its picks by locality
    (same zone, other zone, any: zone-unaware), printed beside the figures."""
    out = {}
    for address, samples in running_hellos_metrics(stack).items():
        out[address] = {
            "callers": {
                f"{s.labels['zone']} ({s.labels['source']})": s.value
                for s in samples
                if s.name == "discovery_zone_callers"
            },
            "picks": {
                s.labels["locality"]: s.value
                for s in samples
                if s.name == "discovery_zone_picks_total"
            },
            "name_records": prom.total(samples, "discovery_dns_records", host="name.internal"),
            "ejections": prom.total(samples, "hello_upstream_ejections_total"),
            "panic": prom.total(samples, "hello_upstream_panic"),
        }
    return out


def name_records_known(stack: StackProcess) -> list[float]:
    """How many name addresses each running hello knows now."""
    return [
        prom.total(samples, "discovery_dns_records", host="name.internal")
        for samples in running_hellos_metrics(stack).values()
    ]


async def settle(stack: StackProcess, count: int) -> dict[str, Any]:
    """Scale name to ``count`` and wait until it runs them all, registered, and every
    hello knows each of them: counting calls made after the scale is no such wait (200
    calls take under half a second here, less than a refresh, and a hello still on 3 of
    4 addresses routed zone-unaware and failed the balanced test's 95%)."""
    status = await asyncio.to_thread(stack.settle, "name", count)
    if count:
        deadline = time.monotonic() + 15.0
        while any(n != count for n in await asyncio.to_thread(name_records_known, stack)):
            assert time.monotonic() < deadline, await asyncio.to_thread(name_records_known, stack)
            await asyncio.sleep(0.1)
    return status


async def test_balanced_zones_keep_calls_in_the_callers_zone(stack: StackProcess) -> None:
    """2 zones, 2 name + 1 hello in each: aim >= 95% same-zone (zone-unaware: about 50%)."""
    status = await settle(stack, 4)
    zones = zones_of(status)
    assert placement(status) == {"local-1a": 2, "local-1b": 2}
    assert placement(status, "hello") == {"local-1a": 1, "local-1b": 1}
    async with Load(stack.front_url) as load:
        await load.more(200)  # connections and estimates warm
        before = await asyncio.to_thread(zone_routing, stack)
        measured_from = time.time()
        await load.more(600)
    share = same_zone_share(load, zones, measured_from)
    counts = load.names(since=measured_from)
    report(
        "zones balanced",
        routing_before=before,
        routing_after=await asyncio.to_thread(zone_routing, stack),
        requests=len(load.samples),
        failed=len(load.failed()),
        same_zone_share=round(share, 3),
        per_name_replica=dict(sorted(counts.items())),
        busiest_over_mean=round(max(counts.values()) / (sum(counts.values()) / 4), 2),
    )
    assert not load.failed(), load.failed()[:5]
    assert share >= 0.95


async def test_imbalanced_zones_load_every_name_replica_evenly(stack: StackProcess) -> None:
    """1 name replica in zone a, 3 in b, one hello in each: a's hello keeps half its calls
    local and spills half to b, so each zone's replicas get a quarter each (only-local
    routing gives a's replica 2x), and within b the balancer spreads evenly: no replica
    above 1.5x the mean (ties between equal replicas' loads, aiohttp_discovery/balancer.py)."""
    await settle(stack, 0)
    await asyncio.to_thread(stack.client.rebalancing, "name", False)
    try:
        await asyncio.to_thread(stack.client.zone, "local-1a", "down", "name")
        await settle(stack, 3)
        await asyncio.to_thread(stack.client.zone, "local-1a", "up", "name")
        status = await settle(stack, 4)
        assert placement(status) == {"local-1a": 1, "local-1b": 3}
        zones = zones_of(status)
        async with Load(stack.front_url) as load:
            await load.more(200)  # connections and estimates warm
            measured_from = time.time()
            await load.more(1200)
        counts = load.names(since=measured_from)
        mean = sum(counts.values()) / 4
        report(
            "zones imbalanced 1+3",
            requests=len(load.samples),
            failed=len(load.failed()),
            per_name_replica={f"{a} ({zone_of(zones, a)})": n for a, n in sorted(counts.items())},
            busiest_over_mean=round(max(counts.values()) / mean, 2),
            same_zone_share=round(same_zone_share(load, zones, measured_from), 3),
        )
        assert not load.failed(), load.failed()[:5]
        assert len(counts) == 4
        # What zone routing decides: each zone's replicas get the mean load (only-local
        # would give zone a's one replica 2x); within a zone, what the balancer decides.
        assert per_replica_by_zone(counts, zones) == pytest.approx(
            {"local-1a": mean, "local-1b": mean}, rel=0.5 / 1.5
        )
        assert max(counts.values()) <= 1.5 * mean
    finally:
        await asyncio.to_thread(stack.client.rebalancing, "name", True)


async def test_uneven_callers_are_observed_and_each_zone_gets_its_capacity_share(
    stack: StackProcess,
) -> None:
    """3 hellos, 2 in one zone and 1 in the other (an autoscaled count the zones do not
    divide; the front, like the ALB, gives each hello an equal part), name 2 + 2. Each
    hello reads the callers' spread from hello.internal's records, so the two-hello
    zone keeps 3/4 of its calls local and each zone's name replicas get half the calls.
    Assumed even (ZONE_CALLERS unset), that zone's replicas got 2/3: 1.33x the mean."""
    status = await settle(stack, 4)
    assert placement(status) == {"local-1a": 2, "local-1b": 2}
    zones = zones_of(status)
    try:
        hellos = placement(await asyncio.to_thread(stack.settle, "hello", 3), "hello")
        assert sorted(hellos.values()) == [1, 2]
        crowded = max(hellos, key=hellos.__getitem__)

        def observed() -> list[dict[str, float]]:
            return [
                {
                    s.labels["zone"]: s.value
                    for s in samples
                    if s.name == "discovery_zone_callers" and s.labels["source"] == "observed"
                }
                for samples in running_hellos_metrics(stack).values()
            ]

        async with Load(stack.front_url) as load:
            # Every hello has read hello.internal since the scale-up (0.5 s refresh).
            deadline = time.monotonic() + 20.0
            while not all(o == hellos for o in await asyncio.to_thread(observed)):
                assert time.monotonic() < deadline, await asyncio.to_thread(observed)
                await asyncio.sleep(0.25)
            await load.more(100)
            measured_from = time.time()
            await load.more(1200)
        counts = load.names(since=measured_from)
        mean = sum(counts.values()) / 4
        by_zone = per_replica_by_zone(counts, zones)
        report(
            "zones, uneven callers 2+1",
            requests=len(load.samples),
            failed=len(load.failed()),
            hellos_per_zone=dict(hellos),
            callers_observed_per_hello=observed(),
            per_name_replica={f"{a} ({zone_of(zones, a)})": n for a, n in sorted(counts.items())},
            per_replica_by_zone_over_mean={z: round(n / mean, 3) for z, n in by_zone.items()},
            same_zone_share=round(same_zone_share(load, zones, measured_from), 3),
        )
        assert not load.failed(), load.failed()[:5]
        # Assumed even, the crowded zone's replicas get 4/3 of the mean: far outside this.
        assert by_zone[crowded] == pytest.approx(mean, rel=0.12)
        assert by_zone == pytest.approx({"local-1a": mean, "local-1b": mean}, rel=0.12)
    finally:
        status = await asyncio.to_thread(stack.settle, "hello", 2)
    assert placement(status, "hello") == {"local-1a": 1, "local-1b": 1}


async def test_a_zone_down_under_load_fails_nothing_and_traffic_returns(
    stack: StackProcess,
) -> None:
    """Every name replica of zone a SIGKILLed under load: retries cross to zone b, nothing
    fails; once the zone is back the runner rebalances and a's hello calls a again."""
    status = await settle(stack, 4)
    assert placement(status) == {"local-1a": 2, "local-1b": 2}
    zones = zones_of(status)
    counters = await asyncio.to_thread(hello_counters, stack)

    def in_a(since: float) -> bool:
        return any(zone_of(zones, s.name) == "local-1a" for s in load.samples if s.start >= since)

    async with Load(stack.front_url) as load:
        await load.more(200)
        down_at = time.time()
        await asyncio.to_thread(stack.client.zone, "local-1a", "down", "name")
        # The dead replicas deregistered (as ECS notices) and replaced in zone b.
        status = await asyncio.to_thread(
            stack.wait_for,
            lambda s: s["services"]["name"]["settled"] and placement(s) == {"local-1b": 4},
        )
        await load.more(300)
        up_at = time.time()
        await asyncio.to_thread(stack.client.zone, "local-1a", "up", "name")
        await load.until(lambda: in_a(up_at))
        back = min(
            s.end for s in load.samples if s.start >= up_at and zone_of(zones, s.name) == "local-1a"
        )
        back -= up_at
        status = await asyncio.to_thread(
            stack.wait_for,
            lambda s: (
                s["services"]["name"]["settled"] and placement(s) == {"local-1a": 2, "local-1b": 2}
            ),
        )
        settled_at = time.time()
        await load.more(300)
    during = [s for s in load.samples if down_at <= s.start < up_at]
    report(
        "zone a down/up (name)",
        requests=len(load.samples),
        failed=len(load.failed()),
        requests_while_zone_a_down=len(during),
        first_answer_from_zone_a_after_up_seconds=round(back, 3),
        rebalanced_after_up_seconds=round(settled_at - up_at, 3),
        same_zone_share_after=round(same_zone_share(load, zones, settled_at), 3),
        hello=delta(await asyncio.to_thread(hello_counters, stack), counters),
    )
    assert not load.failed(), load.failed()[:5]
    assert not any(zone_of(zones, s.name) == "local-1a" for s in during[len(during) // 2 :])
    assert back <= 10.0, "traffic returns to the zone within seconds of its recovery"


async def test_24_name_replicas_all_serve_evenly_beyond_eight_dns_records(
    stack: StackProcess,
) -> None:
    """Cloud Map answers 8 random records of 24: accumulated answers reach every replica,
    each zone's replicas get the mean load, at a bounded DNS query rate per hello, and no
    replica is hot or starved. The aim (busiest at most 1.5x the mean) is the benchmark's
    to judge (``./dev bench --only-zones``): here 1.19-1.42x (3 s of load, 100 calls per
    replica: a random pick alone gives about 1.25x), so the test allows 1.6x. It fails
    without ties between equal replicas' loads (aiohttp_discovery/balancer.py): 1.83-1.94x,
    the fewest at 0.07-0.09x the mean; and with a new task's first answer in the 10 s
    EWMA one replica got no call at all in a CI run (23 of 24 serving); so it did, in 3 of
    5 gate runs, while a task's first answer restamped the clock of its race-loss floor
    without decaying it (aiohttp_discovery/balancer.py, ``observe``: out for 8.3 s more,
    the measuring window). The fewest is printed, not bounded: over 3 s a replica that
    really stalled (one answer 50x late) is rightly avoided for ln(50 / 1.75) = 3.4 s
    (the short memory), and CI saw 16 calls of a mean of 100."""
    status = await settle(stack, 24)
    zones = zones_of(status)
    assert placement(status) == {"local-1a": 12, "local-1b": 12}
    status24 = [r for r in status["services"]["name"]["replicas"] if r["state"] == "running"]
    counters = await asyncio.to_thread(hello_counters, stack)
    queries, counted_from = status["dns"]["queries"].get("name.internal.", 0), time.time()
    async with Load(stack.front_url, concurrency=4) as load:
        # Steady load, as the issue asks: 20 tasks that just booted answer their first
        # calls late, and one whose first attempt loses a hedge race is known from that
        # race alone, so it ranks 4x its winner for decay x ln(4 / 1.75) = 8.3 s
        # (aiohttp_discovery/balancer.py, RACE_LOSS_FACTOR): measured earlier, such a task
        # got no call at all (CI: 23 of 24 serving).
        warm_until = time.time() + 9.0
        await load.until(lambda: time.time() >= warm_until, deadline=30.0)
        started = time.time()
        await load.more(2400)
        seconds = time.time() - started
    known = await asyncio.to_thread(name_records_known, stack)
    after = (await asyncio.to_thread(stack.status))["dns"]["queries"].get("name.internal.", 0)
    per_hello_per_second = (after - queries) / 2 / (time.time() - counted_from)
    counts = load.names(since=started)
    mean = sum(counts.values()) / 24
    report(
        "24 name replicas",
        requests=len(load.samples),
        failed=len(load.failed()),
        replicas_answering=len(counts),
        records_known_per_hello=known,
        fewest_most=(min(counts.values()), max(counts.values())),
        busiest_over_mean=round(max(counts.values()) / mean, 2),
        per_replica_by_zone={z: round(n, 1) for z, n in per_replica_by_zone(counts, zones).items()},
        dns_queries_per_hello_per_second=round(per_hello_per_second, 1),
        same_zone_share=round(same_zone_share(load, zones, started), 3),
        seconds=round(seconds, 1),
        hello=delta(await asyncio.to_thread(hello_counters, stack), counters),
        least_called={
            address: await asyncio.to_thread(what_hello_knows_of, stack, address)
            for address in least_called(counts, [r["address"] for r in status24])
        },
    )
    await settle(stack, 4)
    assert not load.failed(), load.failed()[:5]
    # Each hello knows every task, not 8 of them (one may be missed for a refresh: 0.1%).
    assert min(known) >= 23, known
    assert len(counts) == 24, "every replica serves"
    assert per_replica_by_zone(counts, zones) == pytest.approx(
        {"local-1a": mean, "local-1b": mean}, rel=0.5 / 1.5
    )
    assert max(counts.values()) <= 1.6 * mean
    assert per_hello_per_second <= MAX_QUERIES_PER_SECOND


def test_the_control_cli_shows_zones_and_switches_them(
    stack: StackProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    url = ["--url", stack.client.url]
    status = stack.settle("name", 4)
    assert control.main([*url, "status"]) == 0
    shown = capsys.readouterr().out
    for zone, info in status["zones"].items():
        assert f"zone {zone:<9} up                subnets {', '.join(info['subnets'])}" in shown
    for replica in status["services"]["name"]["replicas"]:
        assert f"{replica['address']}:{replica['port']}" in shown
        assert replica["zone"] in ("local-1a", "local-1b")
    assert control.main([*url, "rebalancing", "name", "on"]) == 0
    assert capsys.readouterr().out == "name: availability zone rebalancing on\n"
    assert control.main([*url, "zone", "local-1a", "up"]) == 0
    assert capsys.readouterr().out == "zone local-1a: up\n"
    assert control.main([*url, "zone", "local-1z", "down"]) == 1
    assert "no zone 'local-1z'; zones: local-1a, local-1b" in capsys.readouterr().err
    # Each replica's own task metadata endpoint answers its zone, as ECS's does.
    replica = status["services"]["hello"]["replicas"][0]
    task_url = f"{stack.client.url}/v4/{replica['address']}/task"
    with urllib.request.urlopen(task_url, timeout=10) as response:
        assert json.load(response)["AvailabilityZone"] == replica["zone"]
