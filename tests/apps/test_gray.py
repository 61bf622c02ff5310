"""Gray failures through the whole client, on loopback: slow replicas, and all down then back.

A slow replica is the real name app with every answer held back (``Replica.delay``):
it accepts, answers correctly, and no timeout fires, so only latency can tell.
"""

from __future__ import annotations

import asyncio
import collections
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp_discovery import Registry, UpstreamClient, UpstreamSettings
from aiohttp_discovery.balancer import RACE_LOSS_FACTOR
from yarl import URL

from tests.apps.support import NAME, FakeDns, Replica, run, sample

IPS = [f"127.0.0.{n}" for n in range(2, 6)]


@asynccontextmanager
async def client_for(
    dns: FakeDns, port: int, registry: Registry, **overrides: object
) -> AsyncIterator[UpstreamClient]:
    options: dict[str, object] = {
        "url": URL(f"http://{NAME}:{port}/"),
        "nameservers": (dns.server,),
        "dns_timeout": 0.2,
        "dns_tries": 1,
        # Hedge after 30 ms at most, even before 20 answers have set the delay.
        "hedge_max_delay": 0.03,
        # hello's shape (apps/hello/app.py): bounded attempts, probes of /health.
        "connect_timeout": 0.25,
        "request_timeout": 2.0,
        "attempt_timeout": 2.0 / 3,
        "probe_path": "/health",
    } | overrides
    settings = UpstreamSettings(**options)  # type: ignore[arg-type]
    async with UpstreamClient(settings, registry=registry, rng=random.Random(11)) as client:
        yield client


@asynccontextmanager
async def replicas(
    port: int, ips: list[str], slow: dict[str, float]
) -> AsyncIterator[list[Replica]]:
    started = [await Replica(ip, port, delay=slow.get(ip, 0.0)).start() for ip in ips]
    try:
        yield started
    finally:
        for replica in started:
            await replica.stop()


def counter(registry: Registry, name: str, **labels: str) -> float:
    return sample(registry.render(), name, upstream=NAME, **labels) or 0.0


def test_a_slow_replica_is_hedged_around_and_never_answers(dns: FakeDns, name_port: int) -> None:
    """The Tail at Scale: after the hedge delay a second task is asked, the first answer
    wins and the slow attempt is cancelled (or, while the slow replica has never answered,
    left to finish in the background); no call waits for the 300 ms replica."""
    dns.set(NAME, *IPS[:3])
    slow = IPS[2]
    registry = Registry()

    async def scenario() -> tuple[list[float], collections.Counter[str], list[Replica]]:
        async with (
            replicas(name_port, IPS[:3], {slow: 0.3}) as reps,
            client_for(dns, name_port, registry) as client,
        ):
            took: list[float] = []
            answered_by: collections.Counter[str] = collections.Counter()
            for _ in range(40):
                started = time.monotonic()
                answer = await client.request("GET")
                took.append(time.monotonic() - started)
                answered_by[answer.address] += 1
            # Cancelled attempts unwind at once; one left to finish ends within 300 ms.
            await asyncio.sleep(0.35)
            assert all(e.in_flight == 0 for e in client.balancer.endpoints)
            return took, answered_by, reps

    took, answered_by, _ = run(scenario())
    assert slow not in answered_by
    assert max(took) < 0.2, max(took)  # well under the slow replica's 300 ms
    assert counter(registry, "upstream_hedges_total") >= 1
    assert counter(registry, "upstream_hedges_won_total") >= 1
    # The slow replica's attempts lost their races: cancelled, or (before it had ever
    # answered) finished in the background; either way none answered a caller.


def test_a_replica_that_loses_a_hedge_race_ranks_behind_the_winner(
    dns: FakeDns, name_port: int
) -> None:
    """The client tells the balancer who won: the loser's estimate rises to at least
    RACE_LOSS_FACTOR times the winner's, so a stall that inflates the winners' estimates
    can never make a replica known only from lost races look fastest."""
    dns.set(NAME, *IPS[:2])
    slow, fast = IPS[1], IPS[0]
    registry = Registry()

    async def scenario() -> tuple[float, float]:
        async with (
            replicas(name_port, IPS[:2], {slow: 0.3}),
            client_for(dns, name_port, registry) as client,
        ):
            await client.request("GET")
            by_address = {e.address: e for e in client.balancer.endpoints}
            # A stall of this process made the fast replica's last answer look 0.5 s long;
            # the slow one was last seen losing a race after a few ms.
            by_address[fast].latency, by_address[fast].latency_at = 0.5, time.monotonic()
            by_address[slow].latency, by_address[slow].latency_at = 0.005, time.monotonic()
            # Whichever replica the first call went to, the slow one has not answered
            # lately (a minute ago, beyond the 10 s decay) and has lost a race since: it is
            # known only from lost races, so the next race it loses sets the floor in the
            # long memory (Balancer.lost_race). (A replica that has never answered is not
            # ranked by a race: its attempt finishes instead, see the client's _abandon.)
            by_address[slow].answered_at = time.monotonic() - 60
            by_address[slow].races_lost = 1
            answer = await client.request("GET")  # p2c prefers the slow one: it loses
            assert answer.hedged
            assert answer.address == fast
            await asyncio.sleep(0)  # the cancelled attempt unwinds (it may only raise)
            return by_address[slow].latency, by_address[fast].latency

    slow_estimate, fast_estimate = run(scenario())
    # 0.99: the bound uses the winner's estimate decayed to that instant.
    assert slow_estimate >= 0.99 * RACE_LOSS_FACTOR * fast_estimate > 0, (
        slow_estimate,
        fast_estimate,
    )


def test_no_hedge_for_a_post_unless_it_is_marked_idempotent(dns: FakeDns, name_port: int) -> None:
    """A hedge repeats the request: never for a POST, which the server might act on twice."""
    dns.set(NAME, IPS[0], IPS[1])
    registry = Registry()

    async def scenario() -> tuple[float, float, float]:
        async with (
            replicas(name_port, IPS[:2], {IPS[0]: 0.2, IPS[1]: 0.2}),
            client_for(dns, name_port, registry) as client,
        ):
            started = time.monotonic()
            answer = await client.request("POST", body=b"x")
            post_took = time.monotonic() - started
            assert answer.status == 405  # name has no POST route: the answer, after 200 ms
            hedges_after_post = counter(registry, "upstream_hedges_total")
            await client.request("POST", body=b"x", idempotent=True)
            return post_took, hedges_after_post, counter(registry, "upstream_hedges_total")

    post_took, hedges_after_post, hedges_after_keyed = run(scenario())
    assert post_took >= 0.2
    assert hedges_after_post == 0
    assert hedges_after_keyed == 1  # both replicas are slow: the hedge goes out


def test_peak_ewma_steers_traffic_away_from_a_slow_replica(dns: FakeDns, name_port: int) -> None:
    """Without hedging, the balancer alone keeps a slow (50 ms) but alive replica
    nearly idle; in-flight counts alone cannot see it under sequential calls."""
    dns.set(NAME, *IPS[:3])
    slow = IPS[2]
    registry = Registry()

    async def scenario() -> list[Replica]:
        async with (
            replicas(name_port, IPS[:3], {slow: 0.05}) as reps,
            client_for(dns, name_port, registry, max_hedges=0) as client,
        ):
            for _ in range(150):
                await client.request("GET")
            return reps

    reps = run(scenario())
    served = {r.ip: r.served for r in reps}
    assert sum(served.values()) == 150
    assert served[slow] <= 150 * 0.1, served  # a third without latency awareness
    assert counter(registry, "upstream_ejections_total", reason="timeout") == 0  # not ejected


def test_after_every_replica_was_down_each_is_back_within_a_second(
    dns: FakeDns, name_port: int
) -> None:
    """The outage of every task grows the ejection backoff (here up to 10 s); probes of
    ejected tasks readmit each one within a probe interval of it answering again."""
    dns.set(NAME, *IPS)
    registry = Registry()

    async def scenario() -> tuple[dict[str, float], float]:
        async with client_for(
            dns,
            name_port,
            registry,
            base_ejection=0.2,
            max_ejection=10.0,
            probe_interval=0.3,
            probe_timeout=0.1,
        ) as client:

            async def steady(seconds: float) -> None:
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    await asyncio.gather(client.request("GET"), return_exceptions=True)
                    await asyncio.sleep(0.01)

            async with replicas(name_port, IPS, {}):
                await steady(0.3)
            await steady(2.5)  # everything down
            longest = max(e.ejected_until - e.ejected_at for e in client.balancer.endpoints)
            back: dict[str, float] = {}
            async with replicas(name_port, IPS, {}) as reps:
                recovered = time.monotonic()
                while len(back) < len(reps) and time.monotonic() - recovered < 5.0:
                    await steady(0.05)
                    for replica in reps:
                        if replica.served and replica.ip not in back:
                            back[replica.ip] = time.monotonic() - recovered
            return back, longest

    back, longest = run(scenario())
    assert longest >= 1.6  # the backoff did grow during the outage
    assert set(back) == set(IPS), back
    assert max(back.values()) < 1.0, back
    assert counter(registry, "upstream_probes_total", result="ok") >= 1
    assert counter(registry, "upstream_probes_total", result="failed") >= 1
    assert counter(registry, "upstream_ejections_capped_total") >= 1  # at most half ejected
