"""The record cache against a real DNS responder on loopback (dnslib, a non-53 port)."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiohttp_discovery.metrics import Registry
from aiohttp_discovery.records import DiscoveryError, DnsLookup, LookupFailed, RecordCache

from tests.apps.support import NAME, FakeDns, run, sample


class Clock:
    """A clock the test moves, so "the interval has passed" needs no sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def cache_for(
    dns: FakeDns, clock: Clock, registry: Registry | None = None, **kw: float
) -> RecordCache:
    return RecordCache(
        NAME,
        DnsLookup([dns.server], timeout=0.2, tries=1),
        refresh_interval=5.0,
        registry=registry,
        clock=clock,
        **kw,
    )


def test_ip_port_nameservers_work_and_only_a_records_are_kept(dns: FakeDns) -> None:
    dns.set(NAME, "127.0.0.3", "127.0.0.2", "127.0.0.3")

    async def scenario() -> None:
        lookup = DnsLookup([dns.server])
        try:
            assert await lookup(NAME) == ("127.0.0.2", "127.0.0.3")  # sorted, deduplicated
            with pytest.raises(LookupFailed) as caught:
                await lookup("unknown.internal")
            assert caught.value.reason == "nxdomain"
        finally:
            await lookup.close()

    run(scenario())
    assert dns.count(NAME) == 1


def test_concurrent_first_lookups_share_one_query(dns: FakeDns) -> None:
    dns.set(NAME, "127.0.0.2", "127.0.0.3")

    async def scenario() -> None:
        cache = cache_for(dns, Clock())
        try:
            results = await asyncio.gather(*(cache.addresses() for _ in range(200)))
        finally:
            await cache.close()
        assert set(results) == {("127.0.0.2", "127.0.0.3")}

    run(scenario())
    assert dns.count(NAME) == 1


def test_one_query_per_interval_whatever_the_request_rate(dns: FakeDns) -> None:
    dns.set(NAME, "127.0.0.2")
    clock = Clock()

    async def scenario() -> int:
        cache = cache_for(dns, clock)
        calls = 0
        try:
            for _ in range(10):  # ten intervals...
                for _ in range(500):  # ...of 500 requests each
                    await cache.addresses()
                    calls += 1
                if cache.refreshing:  # let the background refresh land
                    await cache.refresh()
                clock.now += 5.0
        finally:
            await cache.close()
        return calls

    calls = run(scenario())
    assert calls == 5000
    assert dns.count(NAME) == 10  # the first lookup and one per interval after it


def test_requests_do_not_wait_for_a_refresh(dns: FakeDns) -> None:
    dns.set(NAME, "127.0.0.2")
    clock = Clock()

    async def scenario() -> None:
        cache = cache_for(dns, clock)
        try:
            assert await cache.addresses() == ("127.0.0.2",)
            dns.mode = "drop"  # the next lookup will hang until it times out
            clock.now += 5.0
            assert await cache.addresses() == ("127.0.0.2",)
            # answered from memory while the refresh it started is still running
            assert cache.refreshing
            await cache.refresh()
            assert not cache.refreshing
        finally:
            await cache.close()

    run(scenario())


BREAKAGES = {
    "timeout": lambda dns: setattr(dns, "mode", "drop"),
    "servfail": lambda dns: setattr(dns, "mode", "servfail"),
    "empty": lambda dns: dns.set(NAME),
    "nxdomain": lambda dns: dns.records.pop(NAME),
    "unreachable": lambda dns: dns.stop(),
}


@pytest.mark.parametrize("reason", list(BREAKAGES))
def test_stale_records_are_served_when_dns_fails(
    dns: FakeDns, caplog: pytest.LogCaptureFixture, reason: str
) -> None:
    dns.set(NAME, "127.0.0.2", "127.0.0.3")
    clock = Clock()
    registry = Registry()

    async def scenario() -> None:
        cache = cache_for(dns, clock, registry)
        try:
            await cache.addresses()
            BREAKAGES[reason](dns)
            for _ in range(3):
                clock.now += 5.0
                await cache.refresh()
                assert await cache.addresses() == ("127.0.0.2", "127.0.0.3")
        finally:
            await cache.close()

    with caplog.at_level(logging.WARNING, logger="aiohttp_discovery"):
        run(scenario())
    text = registry.render()
    assert sample(text, "discovery_dns_failures_total", host=NAME, reason=reason) == 3
    assert sample(text, "discovery_dns_refreshes_total", host=NAME) == 4
    stale = [
        r for r in caplog.records if r.getMessage().startswith(f"dns refresh of {NAME} failed (")
    ]
    assert len(stale) == 3
    assert stale[0].reason == reason  # type: ignore[attr-defined]
    assert stale[0].records == ["127.0.0.2", "127.0.0.3"]  # type: ignore[attr-defined]


def test_changes_are_picked_up_on_the_next_refresh(dns: FakeDns) -> None:
    dns.set(NAME, "127.0.0.2", "127.0.0.3")
    clock = Clock()

    async def scenario() -> None:
        cache = cache_for(dns, clock)
        try:
            assert await cache.addresses() == ("127.0.0.2", "127.0.0.3")
            dns.set(NAME, "127.0.0.3", "127.0.0.4", "127.0.0.5")
            clock.now += 4.9  # not yet due: no query, old records
            assert await cache.addresses() == ("127.0.0.2", "127.0.0.3")
            assert not cache.refreshing
            clock.now += 0.1
            await cache.addresses()  # due: starts the refresh
            await cache.refresh()  # joins it
            assert await cache.addresses() == ("127.0.0.3", "127.0.0.4", "127.0.0.5")
        finally:
            await cache.close()

    run(scenario())
    assert dns.count(NAME) == 2


def test_recovery_after_dns_comes_back(dns: FakeDns) -> None:
    dns.set(NAME, "127.0.0.2")
    clock = Clock()

    async def scenario() -> None:
        cache = cache_for(dns, clock)
        try:
            await cache.addresses()
            dns.stop()
            clock.now += 5.0
            await cache.refresh()
            assert await cache.addresses() == ("127.0.0.2",)
            dns.set(NAME, "127.0.0.6")
            dns.start()
            clock.now += 5.0
            await cache.refresh()
            assert await cache.addresses() == ("127.0.0.6",)
        finally:
            await cache.close()

    run(scenario())


def test_a_failed_first_lookup_is_an_error_and_is_not_retried_per_request(dns: FakeDns) -> None:
    clock = Clock()  # no record for the name: NXDOMAIN

    async def scenario() -> None:
        cache = cache_for(dns, clock, first_failure_retry=1.0)
        try:
            for _ in range(50):
                with pytest.raises(DiscoveryError, match=r"name\.internal"):
                    await cache.addresses()
            assert dns.count(NAME) == 1  # 50 requests, one query
            dns.set(NAME, "127.0.0.2")
            clock.now += 1.0
            assert await cache.addresses() == ("127.0.0.2",)
        finally:
            await cache.close()

    run(scenario())
    assert dns.count(NAME) == 2


def test_a_cancelled_waiter_does_not_cancel_the_shared_lookup(dns: FakeDns) -> None:
    dns.set(NAME, "127.0.0.2")
    dns.mode = "drop"

    async def scenario() -> None:
        cache = RecordCache(NAME, DnsLookup([dns.server], timeout=0.3, tries=1), clock=Clock())
        try:
            impatient = asyncio.create_task(cache.addresses())
            patient = asyncio.create_task(cache.addresses())
            await asyncio.sleep(0.05)
            impatient.cancel()
            # The shared lookup runs to its own end (a DNS timeout here): the patient
            # waiter gets that outcome, not the other waiter's CancelledError.
            with pytest.raises(DiscoveryError, match="timeout"):
                await patient
            assert impatient.cancelled()
        finally:
            await cache.close()

    run(scenario())


def test_the_timer_refreshes_without_requests(dns: FakeDns) -> None:
    """With start(), an idle cache still follows DNS: no request has to notice staleness."""
    dns.set(NAME, "127.0.0.2")

    async def wait_for(cache: RecordCache, want: tuple[str, ...]) -> None:
        async with asyncio.timeout(10):
            while True:
                if cache.records == want:
                    return
                await asyncio.sleep(0.02)

    async def scenario() -> None:
        cache = RecordCache(
            NAME, DnsLookup([dns.server], timeout=0.2, tries=1), refresh_interval=0.2
        )
        cache.start()
        try:
            await wait_for(cache, ("127.0.0.2",))
            dns.set(NAME, "127.0.0.3", "127.0.0.4")
            await wait_for(cache, ("127.0.0.3", "127.0.0.4"))  # never called addresses()
        finally:
            await cache.close()

    run(scenario())


def test_the_timer_adds_no_query_while_records_are_fresh(dns: FakeDns) -> None:
    """The timer follows the cache's schedule: requests' refreshes and its own never double up."""
    dns.set(NAME, "127.0.0.2")
    clock = Clock()

    async def scenario() -> None:
        cache = cache_for(dns, clock)
        cache.start()
        try:
            assert await cache.addresses() == ("127.0.0.2",)
            for _ in range(50):  # the clock stands still: nothing is due
                await asyncio.sleep(0.01)
                await cache.addresses()
            assert dns.count(NAME) == 1
            clock.now += 5.0  # one interval later: one more query, from whichever asks first
            async with asyncio.timeout(10):
                while dns.count(NAME) < 2:
                    await cache.addresses()
                    await asyncio.sleep(0.01)
            for _ in range(50):
                await asyncio.sleep(0.01)
                await cache.addresses()
        finally:
            await cache.close()

    run(scenario())
    assert dns.count(NAME) == 2
