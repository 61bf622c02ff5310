"""UpstreamClient against real name replicas on 127.0.0.2-6 and a real DNS responder.

The replicas run in-process (the real name app on its own loopback address);
each scenario bounds its load in count and time.
"""

from __future__ import annotations

import asyncio
import collections
import random
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
from aiohttp_discovery import (
    BodyTooLarge,
    Registry,
    Reply,
    UpstreamClient,
    UpstreamError,
    UpstreamSettings,
)
from aiohttp_discovery.records import RecordCache
from yarl import URL

from tests.apps.support import (
    NAME,
    FakeDns,
    RawServer,
    Replica,
    endless_chunked,
    never_answer,
    respond_with,
    run,
    sample,
)

IPS = [f"127.0.0.{n}" for n in range(2, 7)]


@asynccontextmanager
async def upstream(
    dns: FakeDns, port: int, registry: Registry | None = None, **overrides: object
) -> AsyncIterator[UpstreamClient]:
    options: dict[str, object] = {
        "url": URL(f"http://{NAME}:{port}/"),
        "nameservers": (dns.server,),
        "refresh_interval": 0.3,
        "dns_timeout": 0.2,
        "dns_tries": 1,
        "request_timeout": 1.5,
        # hello's shape (apps/hello/app.py): a third of the call per attempt, a short
        # connect timeout, a hedge within 0.25 s, probes of /health. The defaults'
        # own behaviour is tested in tests/apps/test_defaults.py.
        "connect_timeout": 0.25,
        "attempt_timeout": 0.5,
        "hedge_max_delay": 0.25,
        "probe_path": "/health",
        "base_ejection": 0.2,
        "max_ejection": 1.0,
    } | overrides
    settings = UpstreamSettings(**options)  # type: ignore[arg-type]
    async with UpstreamClient(settings, registry=registry, rng=random.Random(3)) as client:
        yield client


@asynccontextmanager
async def replicas(port: int, ips: list[str]) -> AsyncIterator[dict[str, Replica]]:
    started = {ip: await Replica(ip, port).start() for ip in ips}
    try:
        yield started
    finally:
        for replica in started.values():
            await replica.stop()


async def load(
    client: UpstreamClient,
    count: int,
    concurrency: int,
    on_progress: Callable[[int], object] | None = None,
) -> list[Reply | UpstreamError]:
    """``count`` calls by ``concurrency`` workers; every outcome, in completion order."""
    results: list[Reply | UpstreamError] = []
    remaining = iter(range(count))

    async def worker() -> None:
        for _ in remaining:
            try:
                results.append(await client.get_text())
            except UpstreamError as exc:
                results.append(exc)
            if on_progress is not None:
                on_progress(len(results))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results


def failures(results: list[Reply | UpstreamError]) -> list[UpstreamError]:
    return [r for r in results if isinstance(r, UpstreamError)]


def served_by(results: list[Reply | UpstreamError]) -> collections.Counter[str]:
    return collections.Counter(r.address for r in results if isinstance(r, Reply))


def test_requests_spread_evenly_over_replicas(dns: FakeDns, name_port: int) -> None:
    dns.set(NAME, *IPS[:3])

    async def scenario() -> None:
        # No hedging: every request is then served exactly once, and counted.
        async with (
            replicas(name_port, IPS[:3]) as reps,
            upstream(dns, name_port, max_hedges=0) as client,
        ):
            results = await load(client, 600, concurrency=6)
            assert failures(results) == []
            counts = {ip: rep.served for ip, rep in reps.items()}
            assert sum(counts.values()) == 600
            for count in counts.values():  # 200 each on average
                assert 140 <= count <= 260, counts
            answers = {r.text.split(" (from ")[1] for r in results if isinstance(r, Reply)}
            assert answers == {f"replica-{ip})" for ip in IPS[:3]}
            assert all(e.in_flight == 0 for e in client.balancer.endpoints)

    run(scenario())


def test_a_replica_that_accepts_and_never_answers_costs_no_request(
    dns: FakeDns, name_port: int
) -> None:
    dns.set(NAME, *IPS[:3])
    registry = Registry()

    async def scenario() -> None:
        wedged = await RawServer(IPS[2], name_port, never_answer).start()
        try:
            async with (
                replicas(name_port, IPS[:2]) as reps,
                upstream(dns, name_port, registry) as client,
            ):
                results = await load(client, 150, concurrency=6)
                assert failures(results) == []
                assert IPS[2] not in served_by(results)
                # Each call served once, plus at most one hedge (whose loser may
                # still have been served after it was cancelled).
                hedges = registry.counter("upstream_hedges_total", "", ("upstream",))
                served = sum(rep.served for rep in reps.values())
                assert 150 <= served <= 150 + hedges.value(upstream=NAME)
                assert wedged.connections >= 1  # it was tried, timed out, retried elsewhere
                assert any(r.attempts > 1 for r in results if isinstance(r, Reply))
        finally:
            await wedged.stop()

    run(scenario())
    text = registry.render()
    assert "hello_upstream_attempts_total" not in text  # default prefix is "upstream"
    # Its attempts either timed out or lost to a hedge (and were cancelled).
    stuck = [
        sample(text, "upstream_attempts_total", upstream=NAME, result=result)
        for result in ("timeout", "cancelled")
    ]
    assert any(stuck), stuck


def test_a_replica_stopped_under_load_costs_no_request(dns: FakeDns, name_port: int) -> None:
    dns.set(NAME, *IPS[:3])

    async def scenario() -> None:
        async with replicas(name_port, IPS[:3]) as reps, upstream(dns, name_port) as client:
            stopping: list[asyncio.Task[None]] = []

            def stop_one(done: int) -> None:
                if done == 100 and not stopping:
                    stopping.append(asyncio.create_task(reps[IPS[0]].stop()))

            results = await load(client, 400, concurrency=8, on_progress=stop_one)
            await asyncio.gather(*stopping)
            assert failures(results) == []
            # DNS still lists it: it was tried, failed fast and was ejected
            assert any(
                e.address == IPS[0] and e.consecutive_failures for e in client.balancer.endpoints
            )

    run(scenario())


def test_an_ejected_replica_is_readmitted_once_it_recovers(dns: FakeDns, name_port: int) -> None:
    dns.set(NAME, *IPS[:2])

    async def scenario() -> None:
        async with replicas(name_port, IPS[:2]) as reps, upstream(dns, name_port) as client:
            await reps[IPS[1]].stop()
            results = await load(client, 50, concurrency=2)
            assert failures(results) == []
            flaky = next(e for e in client.balancer.endpoints if e.address == IPS[1])
            assert flaky.consecutive_failures >= 1  # ejected

            await reps[IPS[1]].start()  # recovers
            served_before = reps[IPS[1]].served

            async def readmitted() -> None:
                # Served again, and its record cleared (by a probe or a request on probation).
                while reps[IPS[1]].served == served_before or flaky.consecutive_failures:
                    await client.get_text()

            await asyncio.wait_for(readmitted(), timeout=20)
            results = await load(client, 200, concurrency=4)
            assert failures(results) == []
            assert served_by(results)[IPS[1]] >= 40  # back in the rotation

    run(scenario())


async def queries_until_seen(
    dns: FakeDns, client: UpstreamClient, cache: RecordCache, records: tuple[str, ...]
) -> int:
    """The DNS query count at the moment ``cache`` first holds ``records``, with requests
    flowing meanwhile. Read by a 5 ms poll, not after a request: on a loaded machine a
    request can outlast the 0.3 s refresh, and a count read after it included the next
    refresh's query too (a flake under load, not a second query to see the change)."""
    stop = asyncio.Event()

    async def traffic() -> None:
        while not stop.is_set():
            await client.get_text()

    flowing = asyncio.create_task(traffic())
    try:
        while cache.records != records:  # noqa: ASYNC110 - the cache has no change event
            await asyncio.sleep(0.005)
        return dns.count()
    finally:
        stop.set()
        await flowing


def test_scale_up_is_seen_within_one_refresh_and_removed_records_get_no_traffic(
    dns: FakeDns, name_port: int
) -> None:
    dns.set(NAME, *IPS[:2])

    async def scenario() -> None:
        async with replicas(name_port, IPS[:4]) as reps, upstream(dns, name_port) as client:
            cache = client.source
            assert isinstance(cache, RecordCache)
            assert failures(await load(client, 40, concurrency=4)) == []
            assert reps[IPS[2]].served == reps[IPS[3]].served == 0

            # Scale up: two more tasks registered.
            queries = dns.count()
            dns.set(NAME, *IPS[:4])
            # Keep traffic flowing until the next refresh has come and gone: exactly one
            # more query, and that refresh alone brings the new records.
            assert await queries_until_seen(dns, client, cache, tuple(IPS[:4])) == queries + 1
            results = await load(client, 200, concurrency=4)
            assert failures(results) == []
            assert set(served_by(results)) == set(IPS[:4])

            # Scale in: two tasks deregistered (still running, so a stray request would show).
            queries = dns.count()
            dns.set(NAME, *IPS[2:4])
            assert await queries_until_seen(dns, client, cache, tuple(IPS[2:4])) == queries + 1
            before = {ip: reps[ip].served for ip in IPS[:2]}
            results = await load(client, 200, concurrency=4)
            assert failures(results) == []
            assert {ip: reps[ip].served for ip in IPS[:2]} == before
            assert set(served_by(results)) == set(IPS[2:4])

    run(scenario())


def test_dns_down_still_serving_from_stale_records(dns: FakeDns, name_port: int) -> None:
    dns.set(NAME, *IPS[:2])
    registry = Registry()

    async def scenario() -> None:
        async with replicas(name_port, IPS[:2]), upstream(dns, name_port, registry) as client:
            assert failures(await load(client, 20, concurrency=2)) == []
            for mode in ("stop", "drop"):
                if mode == "stop":
                    dns.stop()
                else:
                    dns.start()
                    dns.mode = "drop"
                failed = registry.counter("discovery_dns_failures_total", "", ("host", "reason"))
                reason = "unreachable" if mode == "stop" else "timeout"
                # Serve through at least two failed refreshes.
                while failed.value(host=NAME, reason=reason) < 2:
                    results = await load(client, 20, concurrency=2)
                    assert failures(results) == []
                    assert set(served_by(results)) <= set(IPS[:2])
            dns.mode = "up"

    run(scenario())


def test_concurrent_requests_cause_one_dns_query_per_refresh(dns: FakeDns, name_port: int) -> None:
    dns.set(NAME, *IPS[:3])

    async def scenario() -> tuple[int, float]:
        async with replicas(name_port, IPS[:3]), upstream(dns, name_port) as client:
            # A burst before anything is known: one lookup shared by all (plus the
            # timer's refresh every 0.3 s, should a loaded machine make the burst slow).
            burst = time.monotonic()
            results = await asyncio.gather(*(client.get_text() for _ in range(100)))
            assert len(results) == 100
            assert 1 <= dns.count() <= 1 + (time.monotonic() - burst) / 0.3
            # Then sustained load for a bounded time.
            started = time.monotonic()
            total = 0
            while time.monotonic() - started < 2.0:
                total += len(await load(client, 100, concurrency=10))
            # Counted from the burst: its refreshes count too (a slow burst on a loaded
            # machine made this flake when it was counted from the sustained phase).
            return total, time.monotonic() - burst

    total, elapsed = run(scenario())
    queries = dns.count()
    # One per 0.3 s interval (plus the first), however many requests ran.
    assert queries <= 1 + elapsed / 0.3 + 1
    assert queries / (total + 100) < 0.05


def test_all_replicas_down_fails_fast_with_503(dns: FakeDns, name_port: int) -> None:
    dns.set(NAME, *IPS[:3])  # listed, but nothing listens there

    async def scenario() -> None:
        async with upstream(dns, name_port, request_timeout=5.0) as client:
            started = time.monotonic()
            with pytest.raises(UpstreamError) as caught:
                await client.get_text()
            took = time.monotonic() - started
            error = caught.value
            assert error.status == 503
            assert error.attempts == 3
            assert len(error.causes) == 3
            assert all("connect failed" in cause for cause in error.causes)
            # Refused connections are answered at once: no attempt waited for a timeout.
            assert took < 5.0
            # and it keeps failing the same way (every address ejected, tried anyway)
            for _ in range(5):
                with pytest.raises(UpstreamError) as again:
                    await client.get_text()
                assert again.value.status == 503

    run(scenario())


def test_unresolvable_name_is_a_503(dns: FakeDns, name_port: int) -> None:
    async def scenario() -> None:
        async with upstream(dns, name_port) as client:
            with pytest.raises(UpstreamError) as caught:
                await client.get_text()
            assert caught.value.status == 503
            assert caught.value.attempts == 0
            assert NAME in caught.value.message

    run(scenario())


def test_an_ip_literal_needs_no_dns(dns: FakeDns, name_port: int) -> None:
    async def scenario() -> None:
        async with (
            replicas(name_port, IPS[:1]),
            upstream(dns, name_port, url=URL(f"http://{IPS[0]}:{name_port}/")) as client,
        ):
            reply = await client.get_text()
            assert reply.address == IPS[0]

    run(scenario())
    assert sum(dns.queries.values()) == 0


def test_a_5xx_is_retried_on_another_replica(dns: FakeDns, name_port: int) -> None:
    dns.set(NAME, *IPS[:2])
    failing = respond_with(
        b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\n", b"oops"
    )

    async def scenario() -> None:
        broken = await RawServer(IPS[1], name_port, failing).start()
        try:
            async with replicas(name_port, IPS[:1]), upstream(dns, name_port) as client:
                results = await load(client, 60, concurrency=3)
                assert failures(results) == []
                assert set(served_by(results)) == {IPS[0]}
                assert broken.connections >= 1
        finally:
            await broken.stop()

    run(scenario())


MISBEHAVIOURS = {
    "5xx": (respond_with(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"), "503"),
    "4xx": (respond_with(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"), "404"),
    "declared too large": (
        respond_with(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 10000000\r\n\r\n"
        ),
        "announces 10000000 bytes, over 4096",
    ),
    "endless body": (endless_chunked, "exceeds 4096 bytes"),
    "not text": (
        respond_with(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Length: 3\r\n\r\n",
            b"\x00\x01\x02",
        ),
        "not text",
    ),
    "corrupt gzip": (
        respond_with(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Encoding: gzip\r\n"
            b"Content-Length: 3\r\n\r\n",
            b"abc",
        ),
        "ClientPayloadError",
    ),
    "invalid utf-8": (
        respond_with(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: 2\r\n\r\n",
            b"\xff\xfe",
        ),
        "not valid text",
    ),
    "hang after headers": (
        respond_with(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n",
            b"partial",
            then_hang=True,
        ),
        "no whole body within",
    ),
}


@pytest.mark.parametrize("case", list(MISBEHAVIOURS))
def test_a_misbehaving_upstream_gets_a_clear_502_within_the_timeout(
    dns: FakeDns, name_port: int, case: str
) -> None:
    behaviour, expected = MISBEHAVIOURS[case]
    dns.set(NAME, *IPS[:2])

    async def scenario() -> None:
        servers = [await RawServer(ip, name_port, behaviour).start() for ip in IPS[:2]]
        try:
            async with upstream(dns, name_port, request_timeout=1.0, max_body_bytes=4096) as client:
                assert client.balancer.ejections == 0
                started = time.monotonic()
                with pytest.raises(UpstreamError) as caught:
                    await client.get_text()
                took = time.monotonic() - started
        finally:
            for server in servers:
                await server.stop()
        error = caught.value
        assert error.status == 502
        assert expected in error.message
        if case == "hang after headers":
            # the first attempt got half of the 1 s deadline; the hedge, sent 0.25 s
            # later (the delay's cap: too few answers seen yet), all that was left
            for cause in error.causes:
                assert re.search(r"no whole body within 0\.[4-7]\d*s$", cause), cause
        # The server would hang for an hour: the call ended at its own deadline
        # (1 s; the bound allows for a loaded machine).
        assert took < 6.0
        # A well-formed answer (a 4xx, a body that is not text) is the same
        # everywhere: not retried. Nor is a body over the caller's own cap
        # (BodyTooLarge). Failed attempts (5xx, a broken body) are.
        answers = ("4xx", "not text", "invalid utf-8")
        too_large = ("declared too large", "endless body")
        assert error.attempts == (1 if case in answers + too_large else 2)
        assert isinstance(error, BodyTooLarge) == (case in too_large)

    run(scenario())


def test_the_body_cap_bounds_what_is_read(dns: FakeDns, name_port: int) -> None:
    """An endless body is cut at the cap: the connection is dropped, not drained."""
    dns.set(NAME, IPS[0])

    async def scenario() -> None:
        server = await RawServer(IPS[0], name_port, endless_chunked).start()
        try:
            async with upstream(dns, name_port, max_body_bytes=1000) as client:
                for _ in range(5):
                    with pytest.raises(BodyTooLarge, match="exceeds 1000 bytes"):
                        await client.get_text()
                # every attempt dropped its connection: the server saw one per attempt
                assert server.connections == 5
                # the cap is the caller's: the task answered, nothing is ejected
                assert client.balancer.ejections == 0
                assert not client.balancer.endpoints[0].consecutive_failures
        finally:
            await server.stop()

    run(scenario())


def test_text_in_another_charset_is_decoded(dns: FakeDns, name_port: int) -> None:
    dns.set(NAME, IPS[0])
    latin = respond_with(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=iso-8859-1\r\n"
        b"Content-Length: 4\r\n\r\n",
        "Zoë".encode("latin-1") + b"!",
    )

    async def scenario() -> None:
        server = await RawServer(IPS[0], name_port, latin).start()
        try:
            async with upstream(dns, name_port) as client:
                assert (await client.get_text()).text == "Zoë!"
        finally:
            await server.stop()

    run(scenario())


def test_the_retry_budget_caps_retries_during_an_outage(dns: FakeDns, name_port: int) -> None:
    dns.set(NAME, *IPS[:3])
    failing = respond_with(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n")
    registry = Registry()

    async def scenario() -> None:
        servers = [await RawServer(ip, name_port, failing).start() for ip in IPS[:3]]
        try:
            async with upstream(
                dns,
                name_port,
                registry,
                retry_ratio=0.2,
                retry_min_per_second=0.0,
                retry_burst=5.0,
            ) as client:
                results = await load(client, 200, concurrency=4)
        finally:
            for server in servers:
                await server.stop()
        assert len(failures(results)) == 200
        assert all(error.status == 502 for error in failures(results))

    run(scenario())
    retries = registry.counter("upstream_retries_total", "", ("upstream",)).value(upstream=NAME)
    denied = registry.counter("upstream_retries_denied_total", "", ("upstream",)).value(
        upstream=NAME
    )
    # Without a budget: 2 retries per request, 400. With it: 20% of 200 plus the burst.
    assert retries <= 0.2 * 200 + 5
    assert retries >= 0.2 * 200 - 1
    assert denied > 0
