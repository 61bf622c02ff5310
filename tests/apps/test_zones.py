"""Zone-aware routing: the rule (Envoy's), the zone map, the router, and hello's zone lookup."""

from __future__ import annotations

import collections
import logging
import random
from ipaddress import IPv4Network

import pytest
from aiohttp import web
from aiohttp_discovery import UpstreamClient, UpstreamSettings
from aiohttp_discovery.balancer import Balancer
from aiohttp_discovery.metadata import METADATA_VARIABLE, task_zone
from aiohttp_discovery.metrics import Registry
from aiohttp_discovery.zones import ZoneMap, ZoneMapError, ZoneRouter, ZoneRouting, zone_shares

from apps.common.env import EnvError
from apps.hello.app import zone_routing
from apps.hello.settings import Settings
from tests.apps.support import run

ZONES = ZoneMap(
    {
        "a": (IPv4Network("10.0.0.0/18"),),
        "b": (IPv4Network("10.0.64.0/18"),),
        "c": (IPv4Network("10.0.128.0/18"),),
    }
)


def addresses(**per_zone: int) -> list[str]:
    third = {"a": 0, "b": 64, "c": 128}
    return [f"10.0.{third[zone]}.{i + 1}" for zone, n in per_zone.items() for i in range(n)]


# -- the rule ----------------------------------------------------------------------


def test_balanced_zones_keep_every_call_local() -> None:
    """Equal capacity and equal callers per zone: nothing needs to cross a zone."""
    even = {"a": 1.0, "b": 1.0}
    assert zone_shares("a", {"a": 4, "b": 4}, even) == {"a": 1.0}
    assert zone_shares("b", {"a": 4, "b": 4}, even) == {"b": 1.0}


def test_a_short_zone_keeps_what_it_can_and_spills_the_rest() -> None:
    """1 task in a, 3 in b, callers even: a's callers keep 25/50 = half local."""
    even = {"a": 1.0, "b": 1.0}
    assert zone_shares("a", {"a": 1, "b": 3}, even) == pytest.approx({"a": 0.5, "b": 0.5})
    assert zone_shares("b", {"a": 1, "b": 3}, even) == {"b": 1.0}


def test_a_zone_without_a_healthy_task_spills_everything() -> None:
    """Never only-local when the local zone has nothing: its share is 0."""
    shares = zone_shares("a", {"b": 2, "c": 2}, {"a": 1.0, "b": 1.0, "c": 1.0})
    assert "a" not in shares
    assert shares == pytest.approx({"b": 0.5, "c": 0.5})


def test_the_spill_goes_to_spare_capacity_in_proportion() -> None:
    """3 zones, a has 1 of 10 tasks: b (6) has 0.6 - 1/3 spare, c (3) has nothing spare."""
    shares = zone_shares("a", {"a": 1, "b": 6, "c": 3}, dict.fromkeys("abc", 1.0))
    assert shares == pytest.approx({"a": 0.3, "b": 0.7})


@pytest.mark.parametrize("seed", range(40))
def test_summed_over_callers_each_zone_gets_exactly_its_share_of_capacity(seed: int) -> None:
    """Envoy's invariant, so zone awareness makes no task hotter than zone-unaware balancing:
    for any capacities, the callers' shares weighted by caller fraction equal capacity."""
    rng = random.Random(seed)
    zones = "abc"[: rng.choice((2, 3))]
    upstream = {z: rng.randint(0, 9) for z in zones}
    upstream[rng.choice(zones)] += 1  # at least one task
    callers = {z: float(rng.randint(1, 5)) for z in zones}
    weight = sum(callers.values())
    load: dict[str, float] = dict.fromkeys(zones, 0.0)
    for caller, w in callers.items():
        for zone, share in zone_shares(caller, upstream, callers).items():
            load[zone] += w / weight * share
    total = sum(upstream.values())
    for zone in zones:
        assert load[zone] == pytest.approx(upstream[zone] / total), (upstream, callers, load)


def test_no_upstream_task_is_an_error_not_a_division_by_zero() -> None:
    with pytest.raises(ValueError, match="no upstream task"):
        zone_shares("a", {"a": 0}, {"a": 1.0})


# -- the zone map ------------------------------------------------------------------


def test_the_zone_map_places_addresses_by_cidr_and_round_trips_json() -> None:
    assert ZONES.zone_of("10.0.70.3") == "b"
    assert ZONES.zone_of("10.1.0.1") is None
    assert ZONES.zone_of("not an address") is None
    assert ZoneMap.from_json(ZONES.to_json()) == ZONES


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[]", "expected"),
        ("{", "not JSON"),
        ('{"a": ["10.0.0.0/33"]}', "zone a"),
        ('{"a": ["10.0.0.1/16"]}', "zone a"),  # host bits set: a typo, not a subnet
        ('{"a": []}', "no CIDR block"),
        ("{}", "no zone"),
        ('{"a b": ["10.0.0.0/24"]}', "not a zone name"),
        ('{"a": ["10.0.0.0/16"], "b": ["10.0.1.0/24"]}', "overlaps"),
    ],
)
def test_a_bad_zone_map_is_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(ZoneMapError, match=message):
        ZoneMap.from_json(text)


def test_hello_reads_zone_settings_and_refuses_bad_ones() -> None:
    base = {"NAME_SERVER": "http://name.internal:3000/"}
    settings = Settings.from_env(base)
    assert settings.zone_aware
    assert settings.zone_subnets is None
    settings = Settings.from_env({**base, "ZONE_SUBNETS": ZONES.to_json(), "ZONE_AWARE": "false"})
    assert settings.zone_subnets == ZONES
    assert not settings.zone_aware
    with pytest.raises(EnvError, match="ZONE_SUBNETS="):
        Settings.from_env({**base, "ZONE_SUBNETS": '{"a": "10.0.0.0/16"}'})
    with pytest.raises(EnvError, match="ZONE_AWARE='maybe': expected true or false"):
        Settings.from_env({**base, "ZONE_AWARE": "maybe"})
    assert settings.zone_callers is None
    assert Settings.from_env({**base, "ZONE_CALLERS": "hello.internal"}).zone_callers == (
        "hello.internal"
    )
    for bad in ("10.0.0.1", "http://hello.internal:3000/", "hello..internal"):
        with pytest.raises(EnvError, match=f"ZONE_CALLERS='{bad}': not a DNS name"):
            Settings.from_env({**base, "ZONE_CALLERS": bad})


# -- the router --------------------------------------------------------------------


def test_the_router_is_zone_unaware_without_its_zone_a_map_or_enough_tasks() -> None:
    many = addresses(a=4, b=4)
    assert ZoneRouter(None, ZONES).shares(many) is None
    assert ZoneRouter("a", None).shares(many) is None
    assert ZoneRouter("a", ZONES, callers={"a": 1, "b": 1}).shares([*many, "192.0.2.1"]) is None
    # 3 tasks for 2 zones: below 2 per zone on average.
    assert ZoneRouter("a", ZONES, callers={"a": 1, "b": 1}).shares(addresses(a=2, b=1)) is None
    assert ZoneRouter("a", ZONES, callers={"a": 1, "b": 1}).shares(many) == {"a": 1.0}


def test_callers_default_to_an_even_spread_over_the_mapped_zones() -> None:
    """hello cannot see the other hellos: ECS spreads them evenly over the zones."""
    router = ZoneRouter("a", ZONES)
    assert router.callers == {"a": 1.0, "b": 1.0, "c": 1.0}
    assert router.shares(addresses(a=2, b=2, c=2)) == {"a": 1.0}


def test_an_observed_callers_spread_keeps_every_zones_load_at_its_capacity_share() -> None:
    """3 hellos, 2 in zone a and 1 in b (an autoscaled count the zones do not divide),
    name 2 + 2. Assumed even, a's two hellos keep everything local and a's name tasks
    get 2/3 of the calls (1.33x the mean); observed from hello's own records, a's hellos
    keep 3/4 local and spill 1/4 to b, so each zone gets exactly half."""
    name = addresses(a=2, b=2)
    hellos = tuple(addresses(a=2, b=1))
    in_a = ZoneRouter("a", ZONES, callers={"a": 1, "b": 1}, caller_addresses=lambda: hellos)
    in_b = ZoneRouter("b", ZONES, callers={"a": 1, "b": 1}, caller_addresses=lambda: hellos)
    assert in_a.current_callers() == {"a": 2.0, "b": 1.0}
    assert in_a.shares(name) == pytest.approx({"a": 0.75, "b": 0.25})
    assert in_b.shares(name) == {"b": 1.0}
    to_a = 2 * in_a.shares(name)["a"]  # type: ignore[index]
    assert to_a / len(hellos) == pytest.approx(0.5)
    assumed = ZoneRouter("a", ZONES, callers={"a": 1, "b": 1})
    assert assumed.shares(name) == {"a": 1.0}  # 2 of 3 hellos' calls to half the tasks


def test_the_callers_spread_falls_back_to_even_and_counts_this_caller() -> None:
    """No caller address yet (the first lookup pending or failed) or one in no mapped
    zone: the even spread. A caller that does not see itself (registered only once
    healthy) counts one in its own zone. A new tuple is a new spread."""
    registry = Registry()
    seen: tuple[str, ...] = ()
    router = ZoneRouter("a", ZONES, caller_addresses=lambda: seen, registry=registry)
    assert router.current_callers() == {"a": 1.0, "b": 1.0, "c": 1.0}
    seen = (*addresses(b=2), "192.0.2.1")
    assert router.current_callers() == {"a": 1.0, "b": 1.0, "c": 1.0}
    seen = tuple(addresses(b=2, c=1))
    assert router.current_callers() == {"a": 1.0, "b": 2.0, "c": 1.0}
    text = registry.render()
    assert 'discovery_zone_callers{source="observed",zone="b"} 2.0' in text
    seen = tuple(addresses(a=3, b=2))
    assert router.current_callers() == {"a": 3.0, "b": 2.0}


def test_narrow_draws_one_zone_by_its_share_and_counts_the_picks() -> None:
    registry = Registry()
    router = ZoneRouter(
        "a", ZONES, callers={"a": 1, "b": 1}, rng=random.Random(3), registry=registry
    )
    candidates = addresses(a=1, b=3)
    zones = collections.Counter(
        {ZONES.zone_of(c) for c in router.narrow(candidates, str)}.pop() for _ in range(4000)
    )
    assert 1800 < zones["a"] < 2200, zones  # half local, as the rule says
    picks = registry.counter("discovery_zone_picks_total", "", ("locality",))
    assert picks.value(locality="same") == zones["a"]
    assert picks.value(locality="other") == zones["b"]
    router.narrow(addresses(a=1, b=1), str)  # 2 tasks for 2 zones: zone-unaware
    assert picks.value(locality="any") == 1


def test_a_balancer_with_a_router_stays_local_and_retries_across_zones() -> None:
    router = ZoneRouter("a", ZONES, callers={"a": 1, "b": 1})
    balancer = Balancer(rng=random.Random(1), router=router)
    balancer.update(tuple(addresses(a=2, b=2)))
    picks = collections.Counter(
        ZONES.zone_of(balancer.pick().address)  # type: ignore[union-attr]
        for _ in range(1000)
    )
    assert picks == {"a": 1000}
    # The retry excludes both local tasks: it crosses to b rather than failing.
    retry = balancer.pick(exclude={"10.0.0.1", "10.0.0.2"})
    assert retry is not None
    assert ZONES.zone_of(retry.address) == "b"


def test_a_hedge_or_retry_is_routed_by_the_zone_rule_of_all_healthy_tasks() -> None:
    """2 tasks per zone: a hedge or retry after the first local task stays local (the
    other local task), as the request's first attempt would. Counting only the untried
    three of four tasks fell below 2 per zone, went zone-unaware and crossed zones two
    times in three (0.5% of a stressed local-stack run's calls crossed zones that way)."""
    router = ZoneRouter("a", ZONES, callers={"a": 1, "b": 1})
    balancer = Balancer(rng=random.Random(1), router=router)
    balancer.update(tuple(addresses(a=2, b=2)))
    hedges = collections.Counter(
        balancer.pick(exclude={"10.0.0.1"}).address  # type: ignore[union-attr]
        for _ in range(300)
    )
    assert hedges == {"10.0.0.2": 300}


def test_a_retry_of_a_short_zone_spills_by_the_rule_once_its_zone_is_tried() -> None:
    """1 task in a, 3 in b: a's caller sends half its first attempts to a; a retry after
    a's only task goes to b (the only zone with a share and an untried task)."""
    router = ZoneRouter("a", ZONES, callers={"a": 1, "b": 1}, rng=random.Random(2))
    balancer = Balancer(rng=random.Random(1), router=router)
    balancer.update(tuple(addresses(a=1, b=3)))
    retries = {
        ZONES.zone_of(balancer.pick(exclude={"10.0.0.1"}).address)  # type: ignore[union-attr]
        for _ in range(200)
    }
    assert retries == {"b"}


def test_a_zone_whose_tasks_are_ejected_gets_no_calls() -> None:
    """Ejected tasks are not healthy capacity: the rule sees a's zone as empty."""
    now = [100.0]
    router = ZoneRouter("a", ZONES, callers={"a": 1, "b": 1})
    balancer = Balancer(rng=random.Random(1), router=router, clock=lambda: now[0])
    balancer.update(tuple(addresses(a=2, b=4)))
    for endpoint in balancer.endpoints:
        if ZONES.zone_of(endpoint.address) == "a":
            balancer.on_failure(endpoint, started_at=now[0])
    picks = {ZONES.zone_of(balancer.pick().address) for _ in range(200)}  # type: ignore[union-attr]
    assert picks == {"b"}


# -- the task's own zone -----------------------------------------------------------


@pytest.fixture
def metadata_server() -> dict[str, object]:
    """A stand-in for the ECS task metadata endpoint; ``answer`` is what /task returns."""
    return {"answer": {"AvailabilityZone": "a"}, "status": 200}


async def serve_metadata(state: dict[str, object]) -> tuple[web.AppRunner, str]:
    async def task(request: web.Request) -> web.Response:
        return web.json_response(state["answer"], status=int(str(state["status"])))

    app = web.Application()
    app.router.add_get("/v4/abc/task", task)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/v4/abc"


def test_the_zone_comes_from_the_task_metadata_endpoint(
    metadata_server: dict[str, object],
) -> None:
    async def scenario() -> list[tuple[str | None, str]]:
        runner, url = await serve_metadata(metadata_server)
        found = []
        try:
            env = {METADATA_VARIABLE: url}
            found.append(await task_zone(env))
            metadata_server["answer"] = {"TaskARN": "x"}
            found.append(await task_zone(env))
            metadata_server["status"] = 500
            found.append(await task_zone(env))
            found.append(await task_zone({}))
            found.append(await task_zone({METADATA_VARIABLE: "ftp://x/"}))
        finally:
            await runner.cleanup()
        return [(f.zone, f.reason) for f in found]

    results = run(scenario())
    assert results[0] == ("a", "")
    expected = ["no AvailabilityZone", "answered 500", "not set", "not an http:// URL"]
    for (zone, reason), why in zip(results[1:], expected, strict=True):
        assert zone is None
        assert why in reason


def test_zone_routing_needs_the_callers_zone_in_the_map_and_says_why_not(
    metadata_server: dict[str, object], caplog: pytest.LogCaptureFixture
) -> None:
    """One argument turns zone-aware routing on inside the client; a zone that cannot be
    known (not on ECS, or not in the map) routes zone-unaware with one line saying why,
    in the message text itself (what the stdlib's default formatter shows)."""
    other = ZoneMap.of({"x": ["10.9.0.0/16"]})

    async def router_of(routing: ZoneRouting) -> ZoneRouter | None:
        settings = UpstreamSettings(url="http://10.0.0.1:3000/")
        async with UpstreamClient(settings, zone_routing=routing) as client:
            return client.balancer.router

    async def scenario() -> list[ZoneRouter | None]:
        runner, url = await serve_metadata(metadata_server)
        try:
            return [
                await router_of(ZoneRouting(subnets=ZONES, metadata_uri=url)),
                await router_of(ZoneRouting(subnets=ZONES, metadata_uri="")),
                await router_of(ZoneRouting(subnets=other, metadata_uri=url)),
                await router_of(ZoneRouting(subnets=ZONES, zone="b", metadata_uri="")),
            ]
        finally:
            await runner.cleanup()

    with caplog.at_level(logging.INFO, logger="aiohttp_discovery"):
        aware, no_metadata, not_mapped, given = run(scenario())
    assert aware is not None
    assert (aware.local, aware.zones) == ("a", ZONES)
    assert (no_metadata, not_mapped) == (None, None)
    assert given is not None
    assert given.local == "b"
    messages = [r.getMessage() for r in caplog.records if r.name == "aiohttp_discovery"]
    assert messages[0].startswith("10.0.0.1: zone-aware routing from a")
    assert messages[1] == (
        "10.0.0.1: zone-unaware routing: own zone unknown"
        f" ({METADATA_VARIABLE} is not set (not running on ECS))"
    )
    assert messages[2] == (
        "10.0.0.1: zone-unaware routing: own zone a is not among the subnets' zones x"
    )
    assert messages[3].startswith("10.0.0.1: zone-aware routing from b")


def test_zone_routing_is_checked_at_construction() -> None:
    with pytest.raises(ValueError, match=r"ZoneRouting.zone: 'q' is not one of"):
        ZoneRouting(subnets=ZONES, zone="q")
    with pytest.raises(ZoneMapError, match=r"ZoneRouting.subnets: zone a:"):
        ZoneRouting(subnets={"a": ["10.0.0.0/33"]})
    with pytest.raises(TypeError, match=r"ZoneRouting.subnets"):
        ZoneRouting(subnets=["10.0.0.0/8"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"ZoneRouting.min_per_zone"):
        ZoneRouting(subnets=ZONES, min_per_zone=0)
    dual = ZoneRouting(subnets={"a": ["10.0.0.0/18", "2600:1f18:0:1::/64"], "b": ["10.0.64.0/18"]})
    assert dual.zone_map.zone_of("2600:1f18:0:1::7") == "a"
    assert dual.zone_map.zone_of("10.0.64.9") == "b"
    assert dual.zone_map.zone_of("2600:1f18:0:2::7") is None


def test_hello_passes_its_zone_settings_or_says_why_not(
    caplog: pytest.LogCaptureFixture,
) -> None:
    base = {"NAME_SERVER": "http://name.internal:3000/", "ZONE_SUBNETS": ZONES.to_json()}
    with caplog.at_level(logging.INFO, logger="apps.hello"):
        on = zone_routing(Settings.from_env(base), {METADATA_VARIABLE: "http://x/v4"})
        off = zone_routing(Settings.from_env({**base, "ZONE_AWARE": "false"}), {})
        unmapped = zone_routing(Settings.from_env({"NAME_SERVER": base["NAME_SERVER"]}), {})
    assert on == ZoneRouting(subnets=ZONES, metadata_uri="http://x/v4")
    assert (off, unmapped) == (None, None)
    assert [r.getMessage() for r in caplog.records] == [
        "zone-unaware routing: ZONE_AWARE=false",
        "zone-unaware routing: ZONE_SUBNETS is not set",
    ]
