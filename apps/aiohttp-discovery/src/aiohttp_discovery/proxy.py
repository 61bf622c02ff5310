"""One local proxy instead of the upstream's tasks: ECS Service Connect's mode.

With Service Connect, ECS runs an Envoy proxy in every task and the application calls
a plain name (``http://name:8080/``) that leads to that proxy, not to a task. The proxy
balances (round robin), ejects failing tasks (outlier detection), retries (twice, after
a connection failure or a 503) and times out each request (``perRequestTimeoutSeconds``).
A client that did all of that again in front of it would multiply attempts (3 of its own
times 3 of the proxy's: 9 requests for one failure) and eject the only address it has.

So in this mode (``UpstreamSettings.proxy``, built by :func:`through_proxy`):

- one address: the URL's host resolved once through the system resolver (``getaddrinfo``:
  ``/etc/hosts`` first, where a sidecar's names live), at the first call, and kept; no
  DNS polling, no ``discovery_dns_*`` traffic;
- one attempt per call and no hedge: the proxy's retries are the only ones;
- the address is never ejected: a failure is counted and reported, and the next call
  goes to the proxy again (it has already taken the failing task out of its rotation);
- the whole call is bounded just above the proxy's per-request timeout, so the proxy's
  own answer (504 after its timeout, 503 when no task is left) reaches the caller rather
  than a timeout of the client's;
- idle pooled connections close before the proxy's idle timeout would cut them.
"""

from __future__ import annotations

import asyncio
import math
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from yarl import URL

from aiohttp_discovery.records import DiscoveryError
from aiohttp_discovery.settings import UpstreamSettings, parse_url

#: ECS Service Connect's proxy: idle connections close after 5 minutes (HTTP), the
#: ``TimeoutConfiguration`` default in the ECS API reference.
SERVICE_CONNECT_IDLE_TIMEOUT = 300.0
#: A request's bound when ``perRequestTimeoutSeconds`` is not set: Envoy's route
#: timeout default (ECS's API reference does not state one of its own).
SERVICE_CONNECT_PER_REQUEST_TIMEOUT = 15.0
#: How much longer the client waits than the proxy, so the proxy's answer arrives first.
TIMEOUT_MARGIN = 1.0
#: Keep-alive connections to the proxy: it carries what went to every task before (the
#: client's default is 100 per task; three tasks made 300).
PROXY_POOL = 300

Resolve = Callable[[str, int], Awaitable[list[tuple[Any, ...]]]]


async def _system_resolve(host: str, port: int) -> list[tuple[Any, ...]]:
    loop = asyncio.get_running_loop()
    return await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)


class ProxyAddress:
    """The proxy's one address: ``host`` resolved once through the system resolver.

    The first call resolves (concurrent first calls share the lookup); later calls answer
    from memory. A failed lookup raises ``DiscoveryError`` (the call fails with a 503) and
    the next call tries again: nothing polls in the background.
    """

    def __init__(self, host: str, port: int, *, resolve: Resolve = _system_resolve) -> None:
        if not isinstance(host, str) or not host:
            raise TypeError(f"ProxyAddress: host must be a non-empty str, not {host!r}")
        self.host = host
        self.port = port
        self._resolve = resolve
        self._addresses: tuple[str, ...] = ()
        self._lookup: asyncio.Task[tuple[str, ...]] | None = None
        self.lookups = 0
        """Lookups made so far: one in the life of a client whose proxy resolves."""

    async def addresses(self) -> tuple[str, ...]:
        if self._addresses:
            return self._addresses
        if self._lookup is None:
            self._lookup = asyncio.create_task(self._first())
        lookup = self._lookup
        try:
            # shield: a caller that leaves must not cancel the lookup the others wait for
            return await asyncio.shield(lookup)
        finally:
            if lookup.done() and self._lookup is lookup:
                self._lookup = None

    async def _first(self) -> tuple[str, ...]:
        self.lookups += 1
        try:
            infos = await self._resolve(self.host, self.port)
        except (OSError, UnicodeError) as exc:
            raise DiscoveryError(f"{self.host}: the proxy's name does not resolve: {exc}") from None
        found = [str(info[4][0]) for info in infos if info and len(info) > 4 and info[4]]
        if not found:
            raise DiscoveryError(f"{self.host}: the proxy's name resolved to no address")
        # One address: the system's first choice (getaddrinfo orders by RFC 6724).
        self._addresses = (found[0],)
        return self._addresses

    async def close(self) -> None:
        lookup, self._lookup = self._lookup, None
        if lookup is not None and not lookup.done():
            lookup.cancel()
            await asyncio.gather(lookup, return_exceptions=True)


def _seconds(name: str, value: object) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TypeError(f"through_proxy: {name} must be a number of seconds, not {value!r}")
    number = float(value)
    if math.isnan(number) or math.isinf(number) or number < 0:
        raise ValueError(f"through_proxy: {name} must be a finite number >= 0, not {value!r}")
    return number


def through_proxy(
    url: URL | str,
    *,
    per_request_timeout: float = SERVICE_CONNECT_PER_REQUEST_TIMEOUT,
    idle_timeout: float = SERVICE_CONNECT_IDLE_TIMEOUT,
    **fields: Any,
) -> UpstreamSettings:
    """``UpstreamSettings`` for an upstream reached through a local proxy that balances,
    ejects and retries itself (ECS Service Connect's), coordinated with its timeouts.

    - ``per_request_timeout``: the proxy's bound on one request, its retries included
      (Service Connect's ``perRequestTimeoutSeconds``; 0: the proxy sets none). The call
      gets ``TIMEOUT_MARGIN`` more (15 s with no proxy bound), so the proxy answers first.
    - ``idle_timeout``: when the proxy closes an idle connection (``idleTimeoutSeconds``;
      0: never). Pooled connections close at half of it (at most 15 s) before that.
    - ``fields``: any other ``UpstreamSettings`` field (headers, a body cap, the
      connect timeout...). ``max_attempts`` and ``max_hedges`` stay 1 and 0: a request
      retried both here and in the proxy is retried 3 x 3 times.
    """
    per_request = _seconds("per_request_timeout", per_request_timeout)
    idle = _seconds("idle_timeout", idle_timeout)
    parsed = parse_url(url)
    request_timeout = per_request + TIMEOUT_MARGIN if per_request else 15.0
    keepalive = min(15.0, idle / 2) if idle else 15.0
    settings: dict[str, Any] = {
        "request_timeout": request_timeout,
        "keepalive_timeout": keepalive,
        "max_attempts": 1,
        "max_hedges": 0,
        "pool_per_address": PROXY_POOL,
        **fields,
        "url": parsed,
        "proxy": True,
    }
    made = UpstreamSettings(**settings)
    if idle and made.keepalive_timeout >= idle:
        raise ValueError(
            f"through_proxy: keepalive_timeout ({made.keepalive_timeout:g} s) must stay below "
            f"the proxy's idle_timeout ({idle:g} s), so the client closes idle connections first"
        )
    if per_request and made.request_timeout <= per_request:
        raise ValueError(
            f"through_proxy: request_timeout ({made.request_timeout:g} s) must exceed the "
            f"proxy's per_request_timeout ({per_request:g} s), so the proxy's answer arrives first"
        )
    return made
