"""Where an upstream's addresses come from: a cached, single-flight DNS lookup (A, AAAA or both).

``RecordCache.addresses()`` is what a request calls. It answers from memory;
only the very first call (nothing known yet) waits for DNS. Once the records
are older than the refresh interval, the call that notices starts one refresh
in the background and still answers at once from what it has (stale while
revalidate). However many requests arrive, at most one lookup is in flight, so
DNS traffic is one query per refresh interval, whatever the request rate.

When a refresh fails (timeout, SERVFAIL, NXDOMAIN, an empty answer, DNS down),
the cache keeps serving the last good records and logs it: a discovery outage
must not become a service outage. It tries again one interval later.

With ``start()``, a timer refreshes the records too, whether or not requests
arrive: after an idle spell the first requests would otherwise be sent to the
records of minutes ago, to tasks that have left meanwhile (each costing a
connect timeout and a retry). Requests still trigger a refresh themselves if the
timer is late, and both join the same lookup.

Freshness: Cloud Map answers with the service's record TTL, and c-ares caches
answers for that TTL, so a change is seen within max(refresh interval, TTL)
plus one lookup. Keep the Cloud Map TTL at or below the refresh interval.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

import aiodns
import pycares

from aiohttp_discovery.metrics import Registry, Sample

log = logging.getLogger("aiohttp_discovery")


class DiscoveryError(Exception):
    """No address is known for the host (the first lookup failed and nothing is cached)."""


class LookupFailed(Exception):
    """One lookup failed. ``reason`` is a short word used as a metric label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


class Lookup(Protocol):
    """Resolves a host name to its addresses, or raises ``LookupFailed``."""

    async def __call__(self, host: str) -> tuple[str, ...]: ...

    async def close(self) -> None: ...


class AddressSource(Protocol):
    """What an upstream client asks for addresses on each request."""

    async def addresses(self) -> tuple[str, ...]: ...

    async def close(self) -> None: ...


# c-ares status -> metric label. Anything else is "error".
_REASONS = {
    aiodns.error.ARES_ETIMEOUT: "timeout",
    aiodns.error.ARES_ECONNREFUSED: "unreachable",
    aiodns.error.ARES_ENOTFOUND: "nxdomain",
    aiodns.error.ARES_ENODATA: "empty",
    aiodns.error.ARES_ESERVFAIL: "servfail",
    aiodns.error.ARES_EREFUSED: "refused",
}


_RECORDS = {"A": pycares.QUERY_TYPE_A, "AAAA": pycares.QUERY_TYPE_AAAA}


class DnsLookup:
    """A or AAAA queries (``record_type``) through aiodns (c-ares), straight to the given
    name servers.

    ``nameservers``: ``ip`` or ``ip:port`` strings (``[v6]:port`` for IPv6); empty
    means the system's resolv.conf (in a VPC: the Route 53 Resolver, which answers
    for Cloud Map private namespaces). ``timeout`` is c-ares's first-try timeout per
    server and ``tries`` its attempts; c-ares grows the timeout on later tries, so a
    dead server costs about ``timeout * (2**tries - 1)`` seconds (0.5 s, 2 tries:
    1.5 s), in the background.

    This is a plain DNS query (no /etc/hosts, no search domains): discovery names
    are fully qualified (``name.internal``).
    """

    def __init__(
        self,
        nameservers: Sequence[str] = (),
        *,
        timeout: float = 0.5,
        tries: int = 2,
        record_type: str = "A",
    ) -> None:
        if record_type not in _RECORDS:
            raise ValueError(f"DnsLookup: record_type must be A or AAAA, not {record_type!r}")
        self.record_type = record_type
        self._query_type = _RECORDS[record_type]
        self._nameservers = list(nameservers)
        self._timeout = timeout
        self._tries = tries
        self._resolver: aiodns.DNSResolver | None = None

    def _get_resolver(self) -> aiodns.DNSResolver:
        # Created on first use, inside the running event loop it belongs to.
        if self._resolver is None:
            self._resolver = aiodns.DNSResolver(
                nameservers=self._nameservers or None,
                loop=asyncio.get_running_loop(),
                timeout=self._timeout,
                tries=self._tries,
            )
        return self._resolver

    async def __call__(self, host: str) -> tuple[str, ...]:
        try:
            result = await self._get_resolver().query_dns(host, self.record_type)
        except aiodns.error.DNSError as exc:
            code = exc.args[0] if exc.args else None
            detail = exc.args[1] if len(exc.args) > 1 else str(exc)
            raise LookupFailed(_REASONS.get(code, "error"), str(detail)) from exc
        # The answer section may also hold the CNAME chain; keep the records asked for.
        found = {
            str(ipaddress.ip_address(record.data.addr))  # IPv6 in its one canonical form
            for record in result.answer
            if record.type == self._query_type
            and isinstance(record.data, pycares.ARecordData | pycares.AAAARecordData)
        }
        return tuple(sorted(found))

    async def close(self) -> None:
        if self._resolver is not None:
            await self._resolver.close()
            self._resolver = None


class EitherFamily:
    """A ``Lookup`` over several (one per record type): the union of their answers.

    A dual-stack name may have records of one type only for a while (tasks placed in
    IPv4-only subnets): a family that answers "no such record" (empty, NODATA) adds
    nothing, and the lookup fails only if no family has an address. Any other failure
    (timeout, SERVFAIL) fails the whole lookup, so the record cache keeps the last good
    set rather than drop a family's tasks that are still there.
    """

    def __init__(self, lookups: Sequence[Lookup]) -> None:
        if not lookups:
            raise ValueError("EitherFamily needs at least one lookup")
        self._lookups = tuple(lookups)

    async def __call__(self, host: str) -> tuple[str, ...]:
        if len(self._lookups) == 1:
            return await self._lookups[0](host)
        results = await asyncio.gather(
            *(lookup(host) for lookup in self._lookups), return_exceptions=True
        )
        found: set[str] = set()
        empty: LookupFailed | None = None
        for result in results:
            if isinstance(result, LookupFailed) and result.reason in ("empty", "nxdomain"):
                empty = empty or result
            elif isinstance(result, BaseException):
                raise result
            else:
                found.update(result)
        if not found and empty is not None:
            raise empty
        return tuple(sorted(found))

    async def close(self) -> None:
        for lookup in self._lookups:
            await lookup.close()


class StaticAddresses:
    """A fixed address list: for an upstream given as an IP literal (no DNS at all), or
    addresses known another way. Each must be an IPv4 or IPv6 address."""

    def __init__(self, addresses: Iterable[str]) -> None:
        if isinstance(addresses, str):
            raise TypeError("StaticAddresses: expected addresses (a list of str), not one str")
        checked = []
        for address in addresses:
            try:
                checked.append(str(ipaddress.ip_address(address)))
            except ValueError:
                raise ValueError(f"StaticAddresses: {address!r} is not an IP address") from None
        self._addresses = tuple(checked)
        if not self._addresses:
            raise ValueError("StaticAddresses needs at least one address")

    async def addresses(self) -> tuple[str, ...]:
        return self._addresses

    async def close(self) -> None:
        return None


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class RecordCache:
    """A host's A records, refreshed in the background at most once per interval.

    - ``refresh_interval``: records older than this are refreshed (default 5 s, as in
      the seed).
    - ``first_failure_retry``: while nothing is known yet, how long a failed first
      lookup's error is returned to callers before DNS is asked again, so a missing
      name does not turn every request into a query.
    - ``lookup_deadline``: a hard bound on one lookup, whatever c-ares does.
    """

    def __init__(
        self,
        host: str,
        lookup: Lookup,
        *,
        refresh_interval: float = 5.0,
        first_failure_retry: float = 1.0,
        lookup_deadline: float = 3.0,
        registry: Registry | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.host = host
        self._lookup = lookup
        self._interval = refresh_interval
        self._first_failure_retry = first_failure_retry
        self._deadline = lookup_deadline
        self._clock = clock
        self._records: tuple[str, ...] = ()
        self._resolved_at: float | None = None
        self._next_refresh = 0.0
        self._last_error = "not resolved yet"
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.Task[None] | None = None
        registry = registry or Registry()
        self._refreshes = registry.counter(
            "discovery_dns_refreshes_total",
            "DNS lookups started to refresh an upstream's records.",
            ("host",),
        )
        self._failures = registry.counter(
            "discovery_dns_failures_total",
            "DNS lookups that failed; the last good records were kept.",
            ("host", "reason"),
        )
        registry.gauge_func("discovery_dns_records", "Addresses currently known.", self._count)
        registry.gauge_func(
            "discovery_dns_records_age_seconds",
            "Seconds since the records were last confirmed by DNS (grows while serving stale).",
            self._age,
        )

    @property
    def records(self) -> tuple[str, ...]:
        """The addresses known now, without triggering a refresh."""
        return self._records

    @property
    def refreshing(self) -> bool:
        """True while a lookup is in flight."""
        return self._task is not None

    async def addresses(self) -> tuple[str, ...]:
        """The current addresses. Waits for DNS only when nothing is known yet.

        Raises ``DiscoveryError`` when no lookup has succeeded so far.
        """
        if self._records:
            if self._task is None and self._clock() >= self._next_refresh:
                self._task = asyncio.create_task(self._refresh(), name=f"dns {self.host}")
            return self._records
        if self._task is None:
            if self._clock() < self._next_refresh:
                raise DiscoveryError(f"no address for {self.host}: {self._last_error}")
            self._task = asyncio.create_task(self._refresh(), name=f"dns {self.host}")
        # shield: a waiter that is cancelled (its client went away) must not
        # cancel the lookup the other waiters share.
        await asyncio.shield(self._task)
        if not self._records:
            raise DiscoveryError(f"no address for {self.host}: {self._last_error}")
        return self._records

    def start(self) -> None:
        """Resolve now and keep refreshing every interval in the background until ``close()``.

        Optional: without it, the cache refreshes only when requests notice stale records.
        """
        if self._timer is None:
            self._timer = asyncio.create_task(
                self._refresh_on_time(), name=f"dns timer {self.host}"
            )

    async def _refresh_on_time(self) -> None:
        while True:
            # _next_refresh moves on after every lookup (success or failure), including
            # lookups that requests started, so this never doubles the query rate.
            delay = self._next_refresh - self._clock()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                await self.refresh()

    async def refresh(self) -> None:
        """Refresh now (joining a refresh already in flight) and wait for it."""
        if self._task is None:
            self._task = asyncio.create_task(self._refresh(), name=f"dns {self.host}")
        await asyncio.shield(self._task)

    async def _refresh(self) -> None:
        self._refreshes.inc(host=self.host)
        try:
            try:
                async with asyncio.timeout(self._deadline):
                    found = await self._lookup(self.host)
            except TimeoutError:
                raise LookupFailed("timeout", f"no answer within {self._deadline:g}s") from None
            if not found:
                raise LookupFailed("empty", "the answer holds no address record")
        except LookupFailed as exc:
            self._failed(exc.reason, str(exc))
        except Exception as exc:  # a bug or a resolver failure must not kill serving
            log.exception("dns lookup of %s crashed", self.host, extra={"host": self.host})
            self._failed("error", repr(exc))
        else:
            self._succeeded(found)
        finally:
            self._task = None

    def _succeeded(self, found: tuple[str, ...]) -> None:
        if found != self._records:
            before = set(self._records)
            added, removed = sorted(set(found) - before), sorted(before - set(found))
            log.info(
                "dns records of %s changed: %d now (added %s, removed %s)",
                self.host,
                len(found),
                ", ".join(added) or "none",
                ", ".join(removed) or "none",
                extra={
                    "host": self.host,
                    "records": list(found),
                    "added": added,
                    "removed": removed,
                },
            )
            self._records = found
        self._resolved_at = self._clock()
        self._next_refresh = self._resolved_at + self._interval

    def _failed(self, reason: str, detail: str) -> None:
        self._failures.inc(host=self.host, reason=reason)
        self._last_error = detail
        now = self._clock()
        if self._records and self._resolved_at is not None:
            log.warning(
                "dns refresh of %s failed (%s); serving %d stale records, %.1fs old",
                self.host,
                detail,
                len(self._records),
                now - self._resolved_at,
                extra={
                    "host": self.host,
                    "reason": reason,
                    "detail": detail,
                    "records": list(self._records),
                    "age_seconds": round(now - self._resolved_at, 3),
                },
            )
            self._next_refresh = now + self._interval
        else:
            log.error(
                "dns lookup of %s failed (%s); no address known yet",
                self.host,
                detail,
                extra={"host": self.host, "reason": reason, "detail": detail},
            )
            self._next_refresh = now + self._first_failure_retry

    def _count(self) -> list[Sample]:
        return [({"host": self.host}, float(len(self._records)))]

    def _age(self) -> list[Sample]:
        if self._resolved_at is None:
            return []
        return [({"host": self.host}, round(self._clock() - self._resolved_at, 3))]

    async def close(self) -> None:
        for task in (self._timer, self._task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._timer = None
        await self._lookup.close()
