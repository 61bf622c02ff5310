"""``UpstreamClient``: GET a small text answer from one of a service's DNS-discovered tasks.

Per request: the addresses come from the record cache (memory; DNS only on the
very first request), the balancer picks one (p2c, ejection), and the attempt
runs on a shared keep-alive connection pool. On a connection error, a timeout,
a 5xx or an unusable body, the next attempt goes to a *different* address, up
to ``max_attempts`` and while the retry budget allows. The whole call is bound
by ``request_timeout``, split evenly over the attempts still possible, so a
stuck replica costs a slice of the deadline and leaves time for the others.

Failures come back as ``UpstreamError`` with the HTTP status a proxy should
answer: 503 when no address could be reached at all, 502 when an upstream
answered but its answer was unusable.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType

import aiohttp
from yarl import URL

from apps.discovery.accumulate import AccumulatingLookup
from apps.discovery.balancer import Balancer, Endpoint
from apps.discovery.budget import RetryBudget
from apps.discovery.metrics import Registry, Sample
from apps.discovery.records import (
    AddressSource,
    DiscoveryError,
    DnsLookup,
    RecordCache,
    StaticAddresses,
    is_ip_literal,
)
from apps.discovery.zones import ZoneRouter

log = logging.getLogger("apps.discovery")


@dataclass(frozen=True)
class UpstreamSettings:
    """How to reach one upstream service. Defaults suit a small internal HTTP service."""

    url: URL
    """``http://host:port/path``; host is a DNS name (A records) or an IP literal."""
    nameservers: tuple[str, ...] = ()
    """``ip`` or ``ip:port``; empty: the system resolver (in a VPC, Route 53 Resolver)."""
    refresh_interval: float = 5.0
    connect_timeout: float = 0.25
    """TCP connect. In a VPC a live task accepts in well under a millisecond; a
    vanished one never answers, so this is what a dead address costs."""
    request_timeout: float = 2.0
    """The whole call, every attempt included."""
    max_attempts: int = 3
    max_body_bytes: int = 64 * 1024
    pool_per_address: int = 100
    """Keep-alive connections per address (requests beyond it wait for one)."""
    keepalive_timeout: float = 15.0
    """Idle pooled connections close after this; keep it below the server's
    keep-alive (aiohttp: 75 s) so the client, not the server, closes them."""
    dns_timeout: float = 0.5
    dns_tries: int = 2
    base_ejection: float = 1.0
    max_ejection: float = 30.0
    retry_ratio: float = 0.2
    retry_min_per_second: float = 10.0
    retry_burst: float = 100.0

    def __post_init__(self) -> None:
        if self.url.scheme != "http" or not self.url.host:
            raise ValueError(f"upstream URL must be http://host[:port]/..., got {self.url}")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not 0 < self.connect_timeout <= self.request_timeout:
            raise ValueError("need 0 < connect_timeout <= request_timeout")


@dataclass(frozen=True)
class Reply:
    """A successful answer: its text, who gave it and how many attempts it took."""

    text: str
    address: str
    attempts: int


@dataclass
class UpstreamError(Exception):
    """No usable answer. ``status`` is what to answer the caller (502 or 503)."""

    status: int
    message: str
    attempts: int
    address: str | None = None
    causes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(self.message)  # args, as for any exception (logging, pickling)

    def __str__(self) -> str:
        return self.message


class _AttemptFailed(Exception):
    """One attempt failed. ``answered``: the upstream sent a response (status line)."""

    def __init__(self, result: str, detail: str, *, answered: bool, retryable: bool) -> None:
        super().__init__(detail)
        self.result = result
        self.answered = answered
        self.retryable = retryable


class UpstreamClient:
    """A reusable client for one upstream service discovered through DNS.

    Use as an async context manager (it owns an ``aiohttp.ClientSession`` and a
    DNS resolver), one instance per upstream per process::

        async with UpstreamClient(UpstreamSettings(url=URL("http://name.internal:3000/"))) as c:
            reply = await c.get_text()

    Metrics go to ``registry`` under ``metrics_prefix`` (``<prefix>_requests_total``...)
    plus the ``discovery_dns_*`` families of the record cache.
    """

    def __init__(
        self,
        settings: UpstreamSettings,
        *,
        registry: Registry | None = None,
        metrics_prefix: str = "upstream",
        source: AddressSource | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        router: ZoneRouter | None = None,
    ) -> None:
        self.settings = settings
        self._clock = clock
        host = settings.url.host or ""
        port = settings.url.port or 80
        self._upstream = host
        registry = registry or Registry()
        if source is not None:
            self._source = source
        elif is_ip_literal(host):
            self._source = StaticAddresses([host])
        else:
            self._source = RecordCache(
                host,
                # Every task, beyond the eight records of one answer (accumulate.py).
                AccumulatingLookup(
                    DnsLookup(
                        settings.nameservers,
                        timeout=settings.dns_timeout,
                        tries=settings.dns_tries,
                    ),
                    refresh_interval=settings.refresh_interval,
                    registry=registry,
                ),
                refresh_interval=settings.refresh_interval,
                registry=registry,
                clock=clock,
            )
        self._balancer = Balancer(
            base_ejection=settings.base_ejection,
            max_ejection=settings.max_ejection,
            rng=rng,
            clock=clock,
            router=router,
        )
        self._budget = RetryBudget(
            ratio=settings.retry_ratio,
            min_per_second=settings.retry_min_per_second,
            burst=settings.retry_burst,
            clock=clock,
        )
        # Requests go to http://<task ip>:<port><path>; Host names the service, as
        # it would through a load balancer.
        self._port = port
        self._path = settings.url.raw_path_qs or "/"
        self._headers = {
            "Host": host if settings.url.is_default_port() else f"{host}:{port}",
            "Accept": "text/plain, text/*;q=0.9",
            # Uncompressed only: the body cap then bounds memory exactly (a
            # compressed body could inflate far beyond it).
            "Accept-Encoding": "identity",
        }
        self._urls: dict[str, URL] = {}
        self._session: aiohttp.ClientSession | None = None

        p = metrics_prefix
        self._requests = registry.counter(
            f"{p}_requests_total",
            "Calls to the upstream, by outcome (ok, bad_gateway, unavailable).",
            ("upstream", "outcome"),
        )
        self._attempts = registry.counter(
            f"{p}_attempts_total",
            "Attempts (first tries and retries), by result.",
            ("upstream", "result"),
        )
        self._retries = registry.counter(
            f"{p}_retries_total", "Attempts after the first.", ("upstream",)
        )
        self._retries_denied = registry.counter(
            f"{p}_retries_denied_total",
            "Retries not made because the retry budget was exhausted.",
            ("upstream",),
        )
        self._ejections = registry.counter(
            f"{p}_ejections_total",
            "Times an address was ejected after a failure.",
            ("upstream",),
        )
        registry.gauge_func(
            f"{p}_in_flight", "Attempts in flight, per address.", self._in_flight_samples
        )
        registry.gauge_func(
            f"{p}_ejected", "1 while an address is ejected, per address.", self._ejected_samples
        )

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Open the connection pool and start resolving (in the background)."""
        if self._session is not None:
            return
        connector = aiohttp.TCPConnector(
            limit=0,
            limit_per_host=self.settings.pool_per_address,
            keepalive_timeout=self.settings.keepalive_timeout,
            use_dns_cache=False,  # we connect to IP literals
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            # sock_connect bounds the TCP handshake; the per-attempt deadline (below)
            # bounds everything else, body included.
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.settings.connect_timeout),
            auto_decompress=False,
            raise_for_status=False,
        )
        if isinstance(self._source, RecordCache):
            # Resolve now, so the first request usually finds addresses ready, and on a
            # timer after that, so an idle spell never leaves us with records of tasks
            # that have gone.
            self._source.start()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        await self._source.close()

    async def __aenter__(self) -> UpstreamClient:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- requests --------------------------------------------------------------

    async def get_text(self) -> Reply:
        """GET the upstream URL from one of its addresses and return the text body.

        Raises ``UpstreamError`` (status 502 or 503) when no attempt succeeded.
        """
        settings = self.settings
        deadline = self._clock() + settings.request_timeout
        self._budget.on_request()
        try:
            addresses = await self._source.addresses()
        except DiscoveryError as exc:
            self._requests.inc(upstream=self._upstream, outcome="unavailable")
            raise UpstreamError(503, str(exc), attempts=0) from None
        self._balancer.update(addresses)
        planned = min(settings.max_attempts, len(addresses))
        tried: set[str] = set()
        causes: list[str] = []
        answered = False
        last_address: str | None = None
        for attempt in range(1, planned + 1):
            remaining = deadline - self._clock()
            if remaining <= 0:
                causes.append("deadline reached")
                break
            if attempt > 1:
                if not self._budget.try_retry():
                    self._retries_denied.inc(upstream=self._upstream)
                    causes.append("retry budget exhausted")
                    break
                self._retries.inc(upstream=self._upstream)
            endpoint = self._balancer.pick(exclude=tried)
            if endpoint is None:
                break
            tried.add(endpoint.address)
            last_address = endpoint.address
            try:
                text = await self._attempt(endpoint, remaining / (planned - attempt + 1))
            except _AttemptFailed as failure:
                answered = answered or failure.answered
                causes.append(f"{endpoint.address}: {failure}")
                if not failure.retryable:
                    break
                continue
            self._requests.inc(upstream=self._upstream, outcome="ok")
            return Reply(text=text, address=endpoint.address, attempts=attempt)

        # 502 if some upstream answered badly; 503 if none could be reached at all.
        status, outcome = (502, "bad_gateway") if answered else (503, "unavailable")
        self._requests.inc(upstream=self._upstream, outcome=outcome)
        summary = "; ".join(causes) or "no address to try"
        raise UpstreamError(
            status,
            f"{self._upstream}: no usable answer after {len(tried)} attempt(s): {summary}",
            attempts=len(tried),
            address=last_address,
            causes=causes,
        )

    def _url(self, address: str) -> URL:
        url = self._urls.get(address)
        if url is None:
            if len(self._urls) > 4096:  # addresses churn with tasks; stay bounded
                self._urls.clear()
            url = URL(f"http://{address}:{self._port}{self._path}", encoded=True)
            self._urls[address] = url
        return url

    async def _attempt(self, endpoint: Endpoint, seconds: float) -> str:
        """One GET to one address within ``seconds``; the body text or _AttemptFailed."""
        session = self._session
        if session is None:
            raise RuntimeError("UpstreamClient used before start()")
        started = self._clock()
        answered = False
        endpoint.in_flight += 1
        try:
            try:
                async with (
                    asyncio.timeout(seconds),
                    session.get(
                        self._url(endpoint.address), headers=self._headers, allow_redirects=False
                    ) as response,
                ):
                    answered = True
                    text = await self._read_text(response)
            except _AttemptFailed:
                raise
            except aiohttp.ConnectionTimeoutError:
                raise _AttemptFailed(
                    "connect_timeout",
                    f"connect timed out after {self.settings.connect_timeout:g}s",
                    answered=False,
                    retryable=True,
                ) from None
            except TimeoutError:
                what = "body" if answered else "response"
                raise _AttemptFailed(
                    "timeout",
                    f"{what} not received within {seconds:.3f}s",
                    answered=answered,
                    retryable=True,
                ) from None
            except aiohttp.ClientConnectorError as exc:
                raise _AttemptFailed(
                    "connect_error",
                    f"connect failed: {exc.os_error}",
                    answered=False,
                    retryable=True,
                ) from None
            except aiohttp.ClientError as exc:
                raise _AttemptFailed(
                    "connection_error",
                    f"{type(exc).__name__}: {exc}",
                    answered=answered,
                    retryable=True,
                ) from None
        except _AttemptFailed as failure:
            self._attempts.inc(upstream=self._upstream, result=failure.result)
            if failure.retryable and self._balancer.on_failure(endpoint, started):
                self._ejections.inc(upstream=self._upstream)
                log.warning(
                    "upstream address ejected",
                    extra={
                        "upstream": self._upstream,
                        "address": endpoint.address,
                        "reason": str(failure),
                        "consecutive_failures": endpoint.consecutive_failures,
                        "ejected_seconds": round(endpoint.ejected_until - endpoint.ejected_at, 3),
                    },
                )
            raise
        finally:
            endpoint.in_flight -= 1
        self._attempts.inc(upstream=self._upstream, result="ok")
        self._balancer.on_success(endpoint, started)
        return text

    async def _read_text(self, response: aiohttp.ClientResponse) -> str:
        """The body as text, or _AttemptFailed for a 5xx, a non-2xx or an unusable body."""
        status = response.status
        if status >= 500:
            raise _AttemptFailed("status_5xx", f"answered {status}", answered=True, retryable=True)
        if not 200 <= status < 300:
            # A 3xx/4xx is the same on every replica: retrying cannot help.
            raise _AttemptFailed("bad_status", f"answered {status}", answered=True, retryable=False)
        if response.content_type.split("/", 1)[0] != "text":
            raise _AttemptFailed(
                "bad_body",
                f"answered {response.content_type}, not text",
                answered=True,
                retryable=True,
            )
        encoding = response.headers.get("Content-Encoding", "identity").lower()
        if encoding != "identity":
            raise _AttemptFailed(
                "bad_body", f"answered Content-Encoding {encoding}", answered=True, retryable=True
            )
        cap = self.settings.max_body_bytes
        if response.content_length is not None and response.content_length > cap:
            raise _AttemptFailed(
                "bad_body",
                f"body of {response.content_length} bytes exceeds {cap}",
                answered=True,
                retryable=True,
            )
        body = bytearray()
        while chunk := await response.content.read(cap + 1 - len(body)):
            body += chunk
            if len(body) > cap:
                raise _AttemptFailed(
                    "bad_body", f"body exceeds {cap} bytes", answered=True, retryable=True
                )
        try:
            return body.decode(response.charset or "utf-8")
        except (UnicodeDecodeError, LookupError) as exc:
            raise _AttemptFailed(
                "bad_body", f"body is not valid text: {exc}", answered=True, retryable=True
            ) from None

    # -- metrics ---------------------------------------------------------------

    def _in_flight_samples(self) -> list[Sample]:
        return [
            ({"upstream": self._upstream, "address": e.address}, float(e.in_flight))
            for e in self._balancer.endpoints
        ]

    def _ejected_samples(self) -> list[Sample]:
        now = self._clock()
        return [
            ({"upstream": self._upstream, "address": e.address}, 1.0 if e.ejected(now) else 0.0)
            for e in self._balancer.endpoints
        ]

    @property
    def balancer(self) -> Balancer:
        return self._balancer

    @property
    def source(self) -> AddressSource:
        return self._source
