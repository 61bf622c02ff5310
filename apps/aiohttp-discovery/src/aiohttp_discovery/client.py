"""``UpstreamClient``: HTTP requests to one of a service's DNS-discovered tasks.

Per call: the addresses come from the record cache (memory; DNS only on the
very first call), the balancer picks one (p2c over peak-EWMA latency, capped
ejection), and the attempt runs on a shared keep-alive connection pool. The
whole call is bound by ``request_timeout``, split evenly over the attempts
still possible, so a stuck task costs a slice of the deadline, not all of it.

**Retries follow HTTP semantics.** After a connection error, a timeout, or a
status in ``retry_statuses`` (5xx by default), an idempotent call (GET, HEAD,
PUT, DELETE, OPTIONS, or any call made with ``idempotent=True``) is retried on a
*different* task, up to ``max_attempts`` and while the retry budget allows. A
POST or PATCH is retried only when the request provably never reached a server
(the connection was never established: see ``aiohttp_discovery.attempt``).

**Hedging.** An idempotent call whose attempt has not answered after the hedge
delay (recent answers' p97, within a floor and a cap) sends one more attempt to
a different task; the first usable answer wins and the other attempt is
cancelled. A hedge spends a retry-budget token like a retry.

Any answer whose status is not in ``retry_statuses`` is returned, 4xx included.
No usable answer raises ``UpstreamError`` with the status a proxy should
answer: 503 when no task could be reached at all, 502 when one answered badly.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import logging
import random
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from aiohttp_discovery.accumulate import every_task
from aiohttp_discovery.answer import Answer, Reply, UpstreamError, expect_text
from aiohttp_discovery.attempt import AttemptFailed, Outgoing, send
from aiohttp_discovery.balancer import Balancer, Endpoint
from aiohttp_discovery.budget import RetryBudget
from aiohttp_discovery.hedging import HedgeDelay
from aiohttp_discovery.metrics import Registry, Sample
from aiohttp_discovery.probe import Prober
from aiohttp_discovery.records import (
    AddressSource,
    DiscoveryError,
    RecordCache,
    StaticAddresses,
    is_ip_literal,
)
from aiohttp_discovery.zones import ZoneRouter

log = logging.getLogger("aiohttp_discovery")

#: Methods that may be repeated without changing the outcome (RFC 9110, 9.2.2).
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})

_NO_JSON: Any = object()
Query = Mapping[str, str | int | float] | Sequence[tuple[str, str | int | float]]


@dataclass(frozen=True)
class UpstreamSettings:
    """How to reach one upstream service. Defaults suit a small internal HTTP service."""

    url: URL
    """``http://host:port/path``; host is a DNS name (A records) or an IP literal.
    The path (and query) is what ``request()`` asks for when given no ``path``."""
    nameservers: tuple[str, ...] = ()
    """``ip`` or ``ip:port``; empty: the system resolver (in a VPC, Route 53 Resolver)."""
    refresh_interval: float = 5.0
    connect_timeout: float = 0.25
    """TCP connect. In a VPC a live task accepts in well under a millisecond; a
    vanished one never answers, so this is what a dead address costs."""
    request_timeout: float = 2.0
    """The whole call, every attempt included."""
    max_attempts: int = 3
    """Attempts per call, hedges included, each on a different address."""
    max_body_bytes: int = 64 * 1024
    pool_per_address: int = 100
    """Keep-alive connections per address (requests beyond it wait for one)."""
    keepalive_timeout: float = 15.0
    """Idle pooled connections close after this; keep it below the server's
    keep-alive so the client, not the server, closes them."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """Sent with every request (a call's own headers override them)."""
    dns_timeout: float = 0.5
    dns_tries: int = 2
    base_ejection: float = 1.0
    max_ejection: float = 30.0
    max_ejection_percent: float = 50.0
    """At most this share of the addresses is ejected at once (at least one may be)."""
    panic_threshold_percent: float = 50.0
    """Below this share of non-ejected addresses, health is ignored."""
    latency_decay: float = 10.0
    """The peak-EWMA latency estimate's time constant, in seconds."""
    retry_statuses: frozenset[int] = frozenset(range(500, 600))
    """Answers with these statuses are failed attempts: retried, ejecting."""
    retry_ratio: float = 0.2
    retry_min_per_second: float = 10.0
    retry_burst: float = 100.0
    max_hedges: int = 1
    """Extra attempts hedging may send per idempotent call: 1, or 0 for no hedging."""
    hedge_quantile: float = 0.97
    hedge_min_delay: float = 0.005
    hedge_max_delay: float = 0.25
    probe_path: str | None = "/health"
    """Ejected addresses are probed with ``GET probe_path`` (None: no probes)."""
    probe_interval: float = 1.0
    probe_timeout: float = 0.25

    def __post_init__(self) -> None:
        def need(ok: bool, what: str) -> None:
            if not ok:
                raise ValueError(f"UpstreamSettings: need {what}")

        need(
            self.url.scheme == "http" and bool(self.url.host), f"an http://host URL, not {self.url}"
        )
        need(self.max_attempts >= 1, "max_attempts >= 1")
        need(
            0 < self.connect_timeout <= self.request_timeout,
            "0 < connect_timeout <= request_timeout",
        )
        need(self.max_body_bytes >= 0, "max_body_bytes >= 0")
        need(0 <= self.max_ejection_percent <= 100, "0 <= max_ejection_percent <= 100")
        need(0 <= self.panic_threshold_percent <= 100, "0 <= panic_threshold_percent <= 100")
        need(self.latency_decay > 0, "latency_decay > 0")
        need(all(400 <= s <= 599 for s in self.retry_statuses), "retry_statuses within 400-599")
        need(self.max_hedges in (0, 1), "max_hedges 0 or 1")
        need(0 < self.hedge_quantile < 1, "0 < hedge_quantile < 1")
        need(
            0 < self.hedge_min_delay <= self.hedge_max_delay,
            "0 < hedge_min_delay <= hedge_max_delay",
        )
        need(
            self.probe_path is None or self.probe_path.startswith("/"), "probe_path starting with /"
        )
        need(0 < self.probe_timeout < self.probe_interval, "0 < probe_timeout < probe_interval")


async def _first_done(
    tasks: dict[asyncio.Task[Answer], bool], delay: float | None
) -> list[asyncio.Task[Answer]]:
    """The tasks done once one is, or after ``delay`` seconds (None: no limit).

    ``asyncio.wait(..., FIRST_COMPLETED)`` without its set building, which
    shows in the CPU time of every call."""
    done = [task for task in tasks if task.done()]
    if done:
        return done
    waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def wake(_: object = None) -> None:
        if not waiter.done():
            waiter.set_result(None)

    for task in tasks:
        task.add_done_callback(wake)
    timer = None if delay is None else asyncio.get_running_loop().call_later(delay, wake)
    try:
        await waiter
    finally:
        if timer is not None:
            timer.cancel()
        for task in tasks:
            task.remove_done_callback(wake)
    return [task for task in tasks if task.done()]


class UpstreamClient:
    """A reusable client for one upstream service discovered through DNS.

    Use as an async context manager (it owns an ``aiohttp.ClientSession``, a DNS
    resolver and a probe timer), one instance per upstream per process::

        settings = UpstreamSettings(url=URL("http://orders.internal:8080/"))
        async with UpstreamClient(settings) as orders:
            answer = await orders.request("POST", "/orders", json={"sku": "b-42"})
            if answer.status == 201:
                order = answer.json()

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
        self._upstream = host
        self._port = settings.url.port or 80
        registry = registry or Registry()
        if source is not None:
            self._source = source
        elif is_ip_literal(host):
            self._source = StaticAddresses([host])
        else:
            # Every task, beyond the eight records of one answer (accumulate.py).
            self._source = every_task(
                host,
                nameservers=settings.nameservers,
                refresh_interval=settings.refresh_interval,
                dns_timeout=settings.dns_timeout,
                dns_tries=settings.dns_tries,
                registry=registry,
                clock=clock,
            )
        self._balancer = Balancer(
            base_ejection=settings.base_ejection,
            max_ejection=settings.max_ejection,
            max_ejection_percent=settings.max_ejection_percent,
            panic_threshold_percent=settings.panic_threshold_percent,
            decay=settings.latency_decay,
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
        self._hedge = HedgeDelay(
            quantile=settings.hedge_quantile,
            floor=settings.hedge_min_delay,
            cap=settings.hedge_max_delay,
        )
        self._prober = Prober(
            self._balancer,
            self._probe,
            interval=settings.probe_interval,
            on_result=self._probed,
        )
        # Requests go to http://<task ip>:<port><path>; Host names the service, as
        # it would through a load balancer. Uncompressed only: the body cap then
        # bounds memory exactly (a compressed body could inflate far beyond it).
        headers = CIMultiDict(settings.headers)
        headers["Host"] = host if settings.url.is_default_port() else f"{host}:{self._port}"
        headers["Accept-Encoding"] = "identity"
        self._headers = headers
        self._path_qs = settings.url.raw_path_qs or "/"
        self._urls: dict[str, URL] = {}
        self._session: aiohttp.ClientSession | None = None
        self._cancelled: set[asyncio.Task[Answer]] = set()

        p, up = metrics_prefix, ("upstream",)
        self._requests = registry.counter(
            f"{p}_requests_total",
            "Calls to the upstream, by outcome (ok: an answer was returned, bad_gateway, "
            "unavailable).",
            ("upstream", "outcome"),
        )
        self._attempts = registry.counter(
            f"{p}_attempts_total",
            "Attempts (first tries, retries and hedges), by result.",
            ("upstream", "result"),
        )
        self._retries = registry.counter(f"{p}_retries_total", "Retries after a failure.", up)
        self._retries_denied = registry.counter(
            f"{p}_retries_denied_total",
            "Retries and hedges not made because the retry budget was exhausted.",
            up,
        )
        self._hedges = registry.counter(
            f"{p}_hedges_total", "Hedges sent: extra attempts to a second address.", up
        )
        self._hedges_won = registry.counter(
            f"{p}_hedges_won_total", "Calls answered by the hedge rather than the first try.", up
        )
        self._ejections = registry.counter(
            f"{p}_ejections_total",
            "Times an address was ejected, by the failure that ejected it.",
            ("upstream", "reason"),
        )
        self._ejections_capped = registry.counter(
            f"{p}_ejections_capped_total",
            "Failures that would have ejected an address, had the ejection cap allowed it.",
            up,
        )
        self._probes = registry.counter(
            f"{p}_probes_total",
            "Health probes of ejected addresses, by result.",
            ("upstream", "result"),
        )
        # The series every successful call touches, bound once.
        self._requests_ok = self._requests.bind(upstream=self._upstream, outcome="ok")
        self._attempts_ok = self._attempts.bind(upstream=self._upstream, result="ok")
        # Series that exist from the start show 0 rather than nothing.
        for counter in (
            self._retries,
            self._retries_denied,
            self._hedges,
            self._hedges_won,
            self._ejections_capped,
        ):
            counter.inc(0, upstream=self._upstream)
        registry.gauge_func(
            f"{p}_in_flight", "Attempts in flight, per address.", self._in_flight_samples
        )
        registry.gauge_func(
            f"{p}_ejected", "1 while an address is ejected, per address.", self._ejected_samples
        )
        registry.gauge_func(
            f"{p}_latency_seconds",
            "Peak-EWMA latency estimate per address, as the balancer weighs it.",
            self._latency_samples,
        )
        registry.gauge_func(
            f"{p}_hedge_delay_seconds",
            "How long an attempt may go unanswered before a hedge is sent.",
            lambda: [({"upstream": self._upstream}, self._hedge.delay)],
        )
        registry.gauge_func(
            f"{p}_panic",
            "1 when the last pick ignored health (too few addresses available).",
            lambda: [({"upstream": self._upstream}, float(self._balancer.panicking))],
        )

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Open the connection pool, start resolving and probing (in the background)."""
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
            # sock_connect bounds the TCP handshake; the per-attempt deadline
            # bounds everything else, body included.
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.settings.connect_timeout),
            auto_decompress=False,
            raise_for_status=False,
        )
        if isinstance(self._source, RecordCache):
            # Resolve now, so the first call usually finds addresses ready, and on a
            # timer after that, so an idle spell never leaves us with gone tasks.
            self._source.start()
        if self.settings.probe_path is not None:
            self._prober.start()

    async def close(self) -> None:
        await self._prober.close()
        for task in list(self._cancelled):
            await asyncio.gather(task, return_exceptions=True)
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

    # -- calls -----------------------------------------------------------------

    async def request(
        self,
        method: str = "GET",
        path: str | None = None,
        *,
        query: Query | None = None,
        headers: Mapping[str, str] | None = None,
        body: bytes | str | None = None,
        json: Any = _NO_JSON,
        idempotent: bool | None = None,
    ) -> Answer:
        """Send one request to one of the upstream's tasks and return its answer.

        - ``path``: an absolute path (``/orders/7``); default: the settings URL's
          path and query. ``query``: parameters added to it (encoded for you).
        - ``headers``: added to (and overriding) ``settings.headers``; ``Host`` is
          the upstream's name and ``Accept-Encoding`` is always ``identity``.
        - ``body``: bytes, or text (sent as UTF-8, ``text/plain`` unless you set
          ``Content-Type``); or ``json``: any JSON-serialisable value
          (``application/json``). Not both. The body is kept for retries.
        - ``idempotent``: may this call be repeated after it reached a server?
          Default: by method (GET, HEAD, PUT, DELETE, OPTIONS, TRACE yes; POST,
          PATCH no). Pass True for a POST the server deduplicates (an
          idempotency key), and it gets retries and hedges like a GET.

        Returns the ``Answer`` (any status not in ``retry_statuses``, 4xx
        included). Raises ``UpstreamError`` (502 or 503) when no usable answer came.
        """
        method = method.upper()
        outgoing = self._outgoing(
            method, path=path, query=query, headers=headers, body=body, json=json
        )
        if idempotent is None:
            idempotent = method in IDEMPOTENT_METHODS
        return await self._call(outgoing, idempotent)

    async def get_text(self) -> Reply:
        """GET the settings URL and return its text: a shortcut over ``request()``.

        Anything but a 2xx ``text/*`` answer raises ``UpstreamError`` (502).
        """
        answer = await self.request()
        try:
            return Reply(expect_text(answer), answer.address, answer.attempts)
        except UpstreamError as exc:
            exc.message = f"{self._upstream}: {exc.message}"
            raise

    def _outgoing(
        self,
        method: str,
        *,
        path: str | None,
        query: Query | None,
        headers: Mapping[str, str] | None,
        body: bytes | str | None,
        json: Any,
    ) -> Outgoing:
        if path is None and query is None:
            path_qs = self._path_qs
        else:
            base = self.settings.url if path is None else URL(path)
            if not base.path.startswith("/") or base.is_absolute():
                raise ValueError(f"path must be an absolute path like /orders, not {path!r}")
            path_qs = (base.extend_query(query) if query is not None else base).raw_path_qs
        merged = self._headers
        content_type = None
        if json is not _NO_JSON:
            if body is not None:
                raise ValueError("pass body or json, not both")
            body = jsonlib.dumps(json, separators=(",", ":")).encode()
            content_type = "application/json"
        elif isinstance(body, str):
            body = body.encode()
            content_type = "text/plain; charset=utf-8"
        if headers or content_type:
            merged = CIMultiDict(self._headers)
            if content_type:
                merged["Content-Type"] = content_type
            for name, value in (headers or {}).items():
                if name.lower() not in ("host", "accept-encoding"):
                    merged[name] = value
        return Outgoing(method, path_qs, merged, body)

    async def _call(self, request: Outgoing, idempotent: bool) -> Answer:  # noqa: PLR0912, PLR0915
        """Attempts, retries and hedges for one call; see the module docstring."""
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
        hedges_left = settings.max_hedges if idempotent else 0
        tried: set[str] = set()
        causes: list[str] = []
        running: dict[asyncio.Task[Answer], bool] = {}  # attempt -> is the hedge
        answered = False
        may_retry = True
        last: AttemptFailed | None = None
        last_address: str | None = None
        winner: str | None = None

        def failed(address: str, failure: AttemptFailed) -> None:
            nonlocal answered, may_retry, last
            answered = answered or failure.answered
            last = failure
            causes.append(f"{address}: {failure}")
            # Repeat only what cannot do harm twice, or never arrived.
            may_retry = idempotent or not failure.reached

        def won(answer: Answer, hedge: bool) -> Answer:
            nonlocal winner
            winner = answer.address
            if hedge:
                self._hedges_won.inc(upstream=self._upstream)
            self._requests_ok.inc()
            answer.attempts = len(tried)
            answer.hedged = hedge
            return answer

        try:
            while True:
                if not running:
                    if len(tried) >= planned or not may_retry:
                        break
                    if deadline - self._clock() <= 0:
                        causes.append("deadline reached")
                        break
                    if tried:
                        if not self._budget.try_retry():
                            self._retries_denied.inc(upstream=self._upstream)
                            causes.append("retry budget exhausted")
                            break
                        self._retries.inc(upstream=self._upstream)
                    attempt = self._next(request, tried, planned, deadline)
                    if attempt is None:
                        break
                    last_address, coroutine = attempt
                    if hedges_left == 0 or len(tried) >= planned:
                        # Nothing to race it against: await it here (no task, no timer).
                        try:
                            return won(await coroutine, hedge=False)
                        except AttemptFailed as failure:
                            failed(last_address, failure)
                            continue
                    running[asyncio.create_task(coroutine, name=last_address)] = False
                hedge_now = hedges_left > 0 and len(running) == 1 and len(tried) < planned
                done = await _first_done(running, self._hedge.delay if hedge_now else None)
                if not done:  # the hedge delay passed without an answer
                    hedges_left -= 1
                    if not self._budget.try_retry():
                        self._retries_denied.inc(upstream=self._upstream)
                        continue
                    attempt = self._next(request, tried, planned, deadline)
                    if attempt is not None:
                        self._hedges.inc(upstream=self._upstream)
                        running[asyncio.create_task(attempt[1], name=attempt[0])] = True
                    continue
                for task in done:
                    hedge = running.pop(task)
                    try:
                        return won(task.result(), hedge)
                    except AttemptFailed as failure:
                        failed(task.get_name(), failure)
        finally:
            for task in running:  # the slower attempt of a hedged pair, or a caller gone
                task.cancel()
                self._cancelled.add(task)
                task.add_done_callback(self._reap)
                if winner is not None:
                    self._balancer.lost_race(task.get_name(), winner)

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
            answer=last.answer if last is not None else None,
        )

    def _reap(self, task: asyncio.Task[Answer]) -> None:
        """A cancelled attempt finished: forget it, and retrieve its outcome (it may
        have failed before the cancellation arrived), so asyncio does not log it."""
        self._cancelled.discard(task)
        if not task.cancelled():
            task.exception()

    def _next(
        self, request: Outgoing, tried: set[str], planned: int, deadline: float
    ) -> tuple[str, Coroutine[Any, Any, Answer]] | None:
        """An attempt on an address not yet tried, with its share of the time left."""
        endpoint = self._balancer.pick(exclude=tried)
        if endpoint is None:
            return None
        seconds = max(deadline - self._clock(), 0.0) / (planned - len(tried))
        tried.add(endpoint.address)
        return endpoint.address, self._attempt(endpoint, request, seconds)

    def _url(self, address: str, path_qs: str) -> URL:
        if path_qs is not self._path_qs:
            return URL(f"http://{address}:{self._port}{path_qs}", encoded=True)
        url = self._urls.get(address)
        if url is None:
            if len(self._urls) > 4096:  # addresses churn with tasks; stay bounded
                self._urls.clear()
            url = URL(f"http://{address}:{self._port}{path_qs}", encoded=True)
            self._urls[address] = url
        return url

    async def _attempt(self, endpoint: Endpoint, request: Outgoing, seconds: float) -> Answer:
        """One attempt on one endpoint, with the balancer's and the metrics' bookkeeping."""
        session = self._session
        if session is None:
            raise RuntimeError("UpstreamClient used before start()")
        started = self._clock()
        endpoint.in_flight += 1
        try:
            answer = await send(
                session,
                request,
                self._url(endpoint.address, request.path_qs),
                address=endpoint.address,
                seconds=seconds,
                max_body_bytes=self.settings.max_body_bytes,
                connect_timeout=self.settings.connect_timeout,
            )
            if answer.status in self.settings.retry_statuses:
                raise AttemptFailed(
                    "status_5xx" if answer.status >= 500 else "status_retry",
                    f"answered {answer.status}",
                    answered=True,
                    answer=answer,
                )
        except AttemptFailed as failure:
            self._attempts.inc(upstream=self._upstream, result=failure.result)
            self._failed(endpoint, started, failure)
            raise
        except asyncio.CancelledError:
            # Lost a hedge race (or the caller left): the wait so far is a lower
            # bound of this address's latency. It may raise the estimate, never
            # lower it (a hedge cancelled after 3 ms says nothing about 2 s answers).
            self._attempts.inc(upstream=self._upstream, result="cancelled")
            self._balancer.observe_at_least(endpoint, self._clock() - started)
            raise
        finally:
            endpoint.in_flight -= 1
        self._attempts_ok.inc()
        self._balancer.on_success(endpoint, started)
        self._hedge.observe(self._clock() - started)
        return answer

    def _failed(self, endpoint: Endpoint, started: float, failure: AttemptFailed) -> None:
        outcome = self._balancer.on_failure(endpoint, started, failure.result)
        if outcome == "capped":
            self._ejections_capped.inc(upstream=self._upstream)
        elif outcome == "ejected":
            self._ejections.inc(upstream=self._upstream, reason=failure.result)
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

    # -- probes ----------------------------------------------------------------

    async def _probe(self, endpoint: Endpoint) -> bool:
        session = self._session
        if session is None or self.settings.probe_path is None:
            return False
        url = URL(f"http://{endpoint.address}:{self._port}{self.settings.probe_path}")
        try:
            async with (
                asyncio.timeout(self.settings.probe_timeout),
                session.get(url, headers=self._headers, allow_redirects=False) as response,
            ):
                await response.read()
                return 200 <= response.status < 300
        except (TimeoutError, aiohttp.ClientError):
            return False

    def _probed(self, _endpoint: Endpoint, healthy: bool) -> None:
        self._probes.inc(upstream=self._upstream, result="ok" if healthy else "failed")

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

    def _latency_samples(self) -> list[Sample]:
        now = self._clock()
        return [
            ({"upstream": self._upstream, "address": e.address}, self._balancer.latency(e, now))
            for e in self._balancer.endpoints
        ]

    @property
    def balancer(self) -> Balancer:
        return self._balancer

    @property
    def budget(self) -> RetryBudget:
        return self._budget

    @property
    def hedge_delay(self) -> HedgeDelay:
        return self._hedge

    @property
    def source(self) -> AddressSource:
        return self._source
