"""``UpstreamClient``: HTTP requests to one of a service's DNS-discovered tasks.

Per call: the addresses come from the record cache (memory; DNS only on the very first
call), the balancer picks one (p2c over peak-EWMA latency, capped ejection, optionally
by zone), and the attempt runs on a shared keep-alive connection pool. The whole call
is bound by ``request_timeout``; one attempt by ``attempt_timeout`` (default: the time
left), so a slow but healthy upstream is never cut off by its own retry plan.

**Retries follow HTTP semantics.** After a connection error, a timeout, or a status in
``retry_statuses`` (5xx by default), an idempotent call (GET, HEAD, PUT, DELETE,
OPTIONS, TRACE, or any call made with ``idempotent=True``) is retried on a *different*
task, up to ``max_attempts`` and while the retry budget allows. A POST or PATCH is
retried only when the request provably never reached a server (``attempt.py``).

**Hedging.** An idempotent call whose attempt has not answered after the hedge delay
(recent answers' p97, within a floor and an optional cap) sends one more attempt to a
different task; the first usable answer wins and the other attempt is cancelled (unless
its task has never answered: it finishes in the background, see ``_abandon``). A
hedge spends a retry-budget token like a retry.

**Streams.** ``stream()`` hands over the first usable answer at its headers: retries
and hedges happen only before that, never once the caller has read a byte.

Any answer whose status is not in ``retry_statuses`` is returned, 4xx included. No
usable answer raises ``UpstreamError`` with the status a proxy should answer: 503 when
no task could be reached at all, 502 when one answered badly; a body over the caller's
cap raises ``BodyTooLarge`` (502). Nothing else escapes a call.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import logging
import os
import random
import ssl as ssllib
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from aiohttp_discovery.accumulate import every_task
from aiohttp_discovery.answer import (
    Answer,
    BodyTooLarge,
    Reply,
    StreamedAnswer,
    UpstreamError,
    expect_text,
)
from aiohttp_discovery.attempt import AttemptFailed, Failure, Outgoing, Target, send
from aiohttp_discovery.balancer import Balancer, Endpoint
from aiohttp_discovery.budget import RetryBudget
from aiohttp_discovery.hedging import HedgeDelay
from aiohttp_discovery.metadata import METADATA_VARIABLE, task_zone
from aiohttp_discovery.metrics import Registry, Sample
from aiohttp_discovery.probe import Prober
from aiohttp_discovery.proxy import ProxyAddress
from aiohttp_discovery.records import (
    AddressSource,
    DiscoveryError,
    RecordCache,
    StaticAddresses,
    is_ip_literal,
)
from aiohttp_discovery.settings import UpstreamSettings
from aiohttp_discovery.zones import ZoneRouter, ZoneRouting

log = logging.getLogger("aiohttp_discovery")

#: Methods that may be repeated without changing the outcome (RFC 9110, 9.2.2).
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})

_NO_JSON: Any = object()
# How many paths a client keeps encoded (``_outgoing``): the few a service calls, with room
# for ids in paths; past it the cache starts over.
_PATHS_KEPT = 1024
Query = Mapping[str, str | int | float] | Sequence[tuple[str, str | int | float]]
Result = Answer | StreamedAnswer


def _url_host(address: str) -> str:
    """An address as a URL's host: IPv6 literals in brackets."""
    return f"[{address}]" if ":" in address else address


async def _first_done(
    tasks: dict[asyncio.Task[Result], bool], delay: float | None
) -> list[asyncio.Task[Result]]:
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


class _Call:
    """One call's attempts, retries and hedges: a small state machine.

    Each turn of ``run`` either starts an attempt (the first, or a retry after a
    failure), waits for the attempts running (and starts the hedge when the hedge delay
    passes first), or stops: an answer won, or nothing more may be tried. Every failure
    goes through ``failed``; the error at the end says what each attempt met.
    """

    __slots__ = (
        "_caller",
        "_client",
        "_deadline",
        "_hedges_left",
        "_idempotent",
        "_interrupted",
        "_planned",
        "_request",
        "_running",
        "answered",
        "causes",
        "last_address",
        "last_failure",
        "may_retry",
        "stream",
        "tried",
    )

    def __init__(
        self, client: UpstreamClient, request: Outgoing, *, idempotent: bool, stream: bool
    ) -> None:
        settings = client.settings
        self._client = client
        self._request = request
        self._idempotent = idempotent
        self.stream = stream
        self._deadline = client._clock() + settings.request_timeout
        self._hedges_left = settings.max_hedges if idempotent else 0
        self._planned = 0
        self._running: dict[asyncio.Task[Result], bool] = {}  # attempt -> is the hedge
        self._caller: asyncio.Task[Any] | None = None  # while an attempt runs inline
        self._interrupted = False  # a hedge's answer cancelled the caller's wait
        self.tried: set[str] = set()
        self.causes: list[str] = []
        self.answered = False  # some task sent a status line
        self.may_retry = True
        self.last_address: str | None = None
        self.last_failure: Failure | None = None

    def time_left(self) -> float:
        return self._deadline - self._client._clock()

    async def run(self) -> Result:  # noqa: PLR0912, PLR0915 - the state machine's turns, in one place
        client = self._client
        addresses = await client._addresses()
        self._planned = min(client.settings.max_attempts, len(addresses))
        winner: str | None = None
        try:
            while True:
                if not self._running:
                    started = self._start_next()
                    if started is None:
                        break
                    address, attempt = started
                    hedgeable = self._hedgeable()
                    if hedgeable and not client._balancer.has_answered(address):
                        # A replica that has never answered gets its attempt as a task: a
                        # hedge that wins leaves it to finish (``_abandon``).
                        self._running[asyncio.create_task(attempt, name=address)] = False
                        continue
                    # The attempt runs in the caller's own task (no task, no waiter);
                    # where it may be hedged, a timer starts the hedge (``_hedge_due``).
                    timer = self._arm_hedge() if hedgeable else None
                    try:
                        result = await attempt
                    except AttemptFailed as exc:
                        self.failed(address, exc.failure)
                        continue
                    except asyncio.CancelledError:
                        if not self._taken_back():
                            raise
                        winner, result = self._take_hedge()
                        client._balancer.lost_race(address, winner)
                        return self._won(result, hedge=True)
                    finally:
                        if timer is not None:
                            timer.cancel()
                            self._caller = None
                    winner = address
                    return self._won(result, hedge=False)
                delay = client._hedge.delay
                hedge_due = delay is not None and self._may_hedge() and len(self._running) == 1
                done = await _first_done(self._running, delay if hedge_due else None)
                if not done:  # the hedge delay passed without an answer
                    self._start_hedge()
                    continue
                answered = self._first_answer(done)
                if answered is not None:
                    winner, result, hedge = answered
                    return self._won(result, hedge)
        except BodyTooLarge as exc:
            client._requests.inc(upstream=client._upstream, outcome="body_too_large")
            exc.attempts = len(self.tried)
            exc.causes = [*self.causes, *exc.causes]
            raise
        finally:
            client._abandon(self._running, winner)
        raise self._error()

    def _first_answer(self, done: list[asyncio.Task[Result]]) -> tuple[str, Result, bool] | None:
        """Of attempts that ended, the first that answered (address, answer, was it the
        hedge); the others' failures are recorded."""
        for task in done:
            hedge = self._running.pop(task)
            try:
                return task.get_name(), task.result(), hedge
            except AttemptFailed as exc:
                self.failed(task.get_name(), exc.failure)
        return None

    def _hedgeable(self) -> bool:
        return self._client._hedge.delay is not None and self._may_hedge()

    def _arm_hedge(self) -> asyncio.TimerHandle:
        """The timer that starts the hedge of the attempt about to run inline (one that
        may be hedged: ``_hedgeable``). A hedge that answers first interrupts the caller's
        wait: it cancels the caller's task (``_hedge_finished``), and ``_taken_back`` takes
        that cancellation back."""
        delay = self._client._hedge.delay
        assert delay is not None
        self._caller = asyncio.current_task()
        return asyncio.get_running_loop().call_later(delay, self._hedge_due)

    def _taken_back(self) -> bool:
        """Was the cancellation the caller's task just met ours alone (a hedge answered)?
        Then it is taken back; any other (the caller leaving) goes on as it came."""
        caller = self._caller
        return self._interrupted and caller is not None and caller.uncancel() == 0

    def _hedge_due(self) -> None:
        """The inline attempt has not answered within the hedge delay: start the hedge."""
        before = set(self._running)
        self._start_hedge()
        for task in self._running:
            if task not in before:
                task.add_done_callback(self._hedge_finished)

    def _hedge_finished(self, task: asyncio.Task[Result]) -> None:
        """A hedge ended while the first attempt may still run inline: if it answered,
        interrupt the caller's wait (a failed hedge waits to be looked at in ``run``)."""
        caller = self._caller
        if caller is None or self._interrupted or task.cancelled() or task.exception():
            return
        self._interrupted = True
        caller.cancel()

    def _take_hedge(self) -> tuple[str, Result]:
        """The hedge that interrupted the inline attempt: its address and answer."""
        for task in self._running:
            if task.done() and not task.cancelled() and task.exception() is None:
                self._running.pop(task)
                return task.get_name(), task.result()
        raise AssertionError("interrupted by a hedge that did not answer")  # pragma: no cover

    def _may_hedge(self) -> bool:
        return self._hedges_left > 0 and len(self.tried) < self._planned

    def _start_next(self) -> tuple[str, Coroutine[Any, Any, Result]] | None:
        """The next attempt (the first, or a retry), or None with the reason in ``causes``."""
        client = self._client
        if len(self.tried) >= self._planned or not self.may_retry:
            return None
        if self.time_left() <= 0:
            self.causes.append("request_timeout reached")
            return None
        if self.tried:
            if not client._budget.try_retry():
                client._retries_denied.inc(upstream=client._upstream)
                self.causes.append("retry budget exhausted")
                return None
            client._retries.inc(upstream=client._upstream)
        return self._attempt()

    def _start_hedge(self) -> None:
        client = self._client
        self._hedges_left -= 1
        if not client._budget.try_retry():
            client._retries_denied.inc(upstream=client._upstream)
            return
        started = self._attempt()
        if started is not None:
            client._hedges.inc(upstream=client._upstream)
            address, attempt = started
            self._running[asyncio.create_task(attempt, name=address)] = True

    def _attempt(self) -> tuple[str, Coroutine[Any, Any, Result]] | None:
        """An attempt on an address this call has not tried, with its time."""
        client = self._client
        endpoint = client._balancer.pick(exclude=self.tried)
        if endpoint is None:
            return None
        seconds = max(self.time_left(), 0.0)
        if client.settings.attempt_timeout is not None:
            seconds = min(seconds, client.settings.attempt_timeout)
        self.tried.add(endpoint.address)
        return endpoint.address, client._attempt(endpoint, self._request, seconds, self)

    def failed(self, address: str, failure: Failure) -> None:
        self.answered = self.answered or failure.answered
        self.last_address, self.last_failure = address, failure
        self.causes.append(f"{address}: {failure}")
        # Repeat only what cannot do harm twice, or never arrived.
        self.may_retry = self._idempotent or not failure.reached

    def _won(self, result: Result, hedge: bool) -> Result:
        client = self._client
        if hedge:
            client._hedges_won.inc(upstream=client._upstream)
        client._requests_ok.inc()
        result.attempts = len(self.tried)
        result.hedged = hedge
        return result

    def _error(self) -> UpstreamError:
        client = self._client
        # 502 if some upstream answered badly; 503 if none could be reached at all.
        status, outcome = (502, "bad_gateway") if self.answered else (503, "unavailable")
        client._requests.inc(upstream=client._upstream, outcome=outcome)
        summary = "; ".join(self.causes) or "no address to try"
        failure = self.last_failure
        return UpstreamError(
            status,
            f"{client._upstream}: no usable answer after {len(self.tried)} attempt(s): {summary}",
            attempts=len(self.tried),
            address=self.last_address,
            causes=list(self.causes),
            answer=failure.answer if failure is not None else None,
        )


class UpstreamClient:
    """A reusable client for one upstream service discovered through DNS.

    Use as an async context manager (it owns an ``aiohttp.ClientSession``, a DNS
    resolver and its timers), one instance per upstream per process::

        async with UpstreamClient(UpstreamSettings(url="http://orders.internal:8080/")) as orders:
            answer = await orders.request("POST", "/orders", json={"sku": "b-42"})
            if answer.status == 201:
                order = answer.json()

    Keyword arguments:

    - ``registry``, ``metrics_prefix``: where the metrics go (``<prefix>_requests_total``...,
      plus the record cache's ``discovery_dns_*`` families);
    - ``zone_routing``: a ``ZoneRouting`` turns zone-aware routing on;
    - ``ssl``: for an ``https://`` upstream, an ``ssl.SSLContext`` (or False: no
      verification); the certificate is checked against the URL's host name, not the
      task's address;
    - ``trace_configs``: ``aiohttp.TraceConfig`` objects for the client's session, so
      tracing (OpenTelemetry's aiohttp-client instrumentation) sees every attempt;
    - ``source``: addresses from somewhere else than DNS (an ``AddressSource``);
    - ``router``, ``rng``, ``clock``: for tests and advanced use.
    """

    def __init__(  # noqa: PLR0915 - checks every argument, then builds the parts
        self,
        settings: UpstreamSettings,
        *,
        registry: Registry | None = None,
        metrics_prefix: str = "upstream",
        zone_routing: ZoneRouting | None = None,
        ssl: ssllib.SSLContext | bool = True,
        trace_configs: Sequence[aiohttp.TraceConfig] = (),
        source: AddressSource | None = None,
        router: ZoneRouter | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(settings, UpstreamSettings):
            raise TypeError(f"UpstreamClient: settings must be UpstreamSettings, not {settings!r}")
        if zone_routing is not None and not isinstance(zone_routing, ZoneRouting):
            raise TypeError(
                f"UpstreamClient: zone_routing must be a ZoneRouting, not {zone_routing!r}"
            )
        if zone_routing is not None and router is not None:
            raise ValueError("UpstreamClient: pass zone_routing or router, not both")
        if settings.proxy and (zone_routing is not None or router is not None):
            raise ValueError("UpstreamClient: through a proxy, zone-aware routing is the proxy's")
        if not isinstance(ssl, ssllib.SSLContext | bool):
            raise TypeError(f"UpstreamClient: ssl must be an ssl.SSLContext or a bool, not {ssl!r}")
        trace_configs = tuple(trace_configs)
        if not all(isinstance(t, aiohttp.TraceConfig) for t in trace_configs):
            raise TypeError("UpstreamClient: trace_configs must be aiohttp.TraceConfig objects")
        if not isinstance(metrics_prefix, str) or not metrics_prefix.isidentifier():
            raise ValueError(
                f"UpstreamClient: metrics_prefix must be an identifier, not {metrics_prefix!r}"
            )
        self.settings = settings
        self._clock = clock
        url = settings.target
        host = url.host or ""
        self._upstream = host
        self._port = url.port or 80
        self._scheme = url.scheme
        self._ssl = ssl
        self._trace_configs = trace_configs
        self._zone_routing = zone_routing
        registry = registry or Registry()
        self._registry = registry
        if source is not None:
            self._source: AddressSource = source
        elif is_ip_literal(host):
            self._source = StaticAddresses([host])
        elif settings.proxy:
            self._source = ProxyAddress(host, self._port)  # resolved once, never polled
        else:
            # Every task, beyond the eight records of one answer (accumulate.py).
            self._source = self._records_of(host)
        self._callers: RecordCache | None = None
        self._balancer = Balancer(
            base_ejection=settings.base_ejection,
            max_ejection=settings.max_ejection,
            max_ejection_percent=settings.max_ejection_percent,
            panic_threshold_percent=settings.panic_threshold_percent,
            decay=settings.latency_decay,
            rng=rng,
            clock=clock,
            router=router,
            ejects=not settings.proxy,  # the proxy ejects tasks; its one address stays
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
        # Requests go to http://<task ip>:<port><path>; Host names the service, as it
        # would through a load balancer (and TLS checks the certificate against it).
        headers = CIMultiDict(settings.headers)
        named = _url_host(host)
        headers["Host"] = named if url.is_default_port() else f"{named}:{self._port}"
        self._headers = headers
        self._path_qs = url.raw_path_qs or "/"
        probe = settings.probe_path
        self._probe_path_qs = None if probe is None else URL(probe).raw_path_qs
        self._urls: dict[str, URL] = {}
        self._paths: dict[str, str] = {}  # request(path=...) -> its encoded path and query
        self._target: Target | None = None
        self._cancelled: set[asyncio.Task[Result]] = set()

        p, up = metrics_prefix, ("upstream",)
        self._requests = registry.counter(
            f"{p}_requests_total",
            "Calls to the upstream, by outcome (ok: an answer was returned, bad_gateway, "
            "unavailable, body_too_large).",
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
            self._hedge_delay_samples,
        )
        registry.gauge_func(
            f"{p}_panic",
            "1 when the last pick ignored health (too few addresses available).",
            lambda: [({"upstream": self._upstream}, float(self._balancer.panicking))],
        )

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Open the connection pool, start resolving and probing (in the background), and,
        with ``zone_routing``, find this caller's zone."""
        if self._target is not None:
            return
        settings = self.settings
        connector = aiohttp.TCPConnector(
            limit=0,
            limit_per_host=settings.pool_per_address,
            keepalive_timeout=settings.keepalive_timeout,
            use_dns_cache=False,  # we connect to IP literals
        )
        session = aiohttp.ClientSession(
            connector=connector,
            # sock_connect bounds the TCP handshake; the call's and the attempt's
            # deadlines bound everything else, body included.
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=settings.connect_timeout),
            # Sent with every request (aiohttp lays a call's own headers over them).
            headers=self._headers,
            raise_for_status=False,
            trace_configs=list(self._trace_configs) or None,
        )
        self._target = Target(
            session=session,
            connect_timeout=settings.connect_timeout,
            retry_statuses=settings.retry_statuses,
            max_body_bytes=settings.max_body_bytes,
            server_hostname=self._upstream if self._scheme == "https" else None,
            ssl=self._ssl,
        )
        if self._zone_routing is not None:
            await self._route_by_zone(self._zone_routing)
        if isinstance(self._source, RecordCache):
            # Resolve now, so the first call usually finds addresses ready, and on a
            # timer after that, so an idle spell never leaves us with gone tasks.
            self._source.start()
        if settings.probe_path is not None:
            self._prober.start()

    async def _route_by_zone(self, routing: ZoneRouting) -> None:
        """Zone-aware routing if this caller's zone is known; else one log line saying why."""
        zone = routing.zone
        if zone is None:
            environ: Mapping[str, str] = os.environ
            if routing.metadata_uri is not None:
                environ = {METADATA_VARIABLE: routing.metadata_uri}
            found = await task_zone(environ, seconds=routing.metadata_timeout)
            if found.zone is None:
                log.warning(
                    "%s: zone-unaware routing: own zone unknown (%s)",
                    self._upstream,
                    found.reason,
                    extra={"upstream": self._upstream, "reason": found.reason},
                )
                return
            zone = found.zone
        zones = routing.zone_map
        if zone not in zones.blocks:
            log.warning(
                "%s: zone-unaware routing: own zone %s is not among the subnets' zones %s",
                self._upstream,
                zone,
                ", ".join(zones.zones),
                extra={"upstream": self._upstream, "zone": zone},
            )
            return
        if routing.callers is not None:
            # The callers' own tasks, accumulated like the upstream's records but with a
            # looser miss probability (1%) and a fifth of the query cap: a caller missed
            # for one refresh moves its zone's share by one task, for one refresh.
            self._callers = self._records_of(
                routing.callers, miss_probability=0.01, max_queries_per_second=10.0
            )
            self._callers.start()
        callers = self._callers
        log.info(
            "%s: zone-aware routing from %s (zones %s; callers: %s)",
            self._upstream,
            zone,
            ", ".join(zones.zones),
            routing.callers or "assumed even",
            extra={"upstream": self._upstream, "zone": zone},
        )
        self._balancer.router = ZoneRouter(
            zone,
            zones,
            caller_addresses=(lambda: callers.records) if callers is not None else None,
            min_per_zone=routing.min_per_zone,
            registry=self._registry,
        )

    def _records_of(self, host: str, **accumulation: float) -> RecordCache:
        """A record cache of every task of ``host``, resolved as the settings say."""
        settings = self.settings
        return every_task(
            host,
            nameservers=settings.nameservers,
            record_types=settings.record_types,
            refresh_interval=settings.refresh_interval,
            dns_timeout=settings.dns_timeout,
            dns_tries=settings.dns_tries,
            registry=self._registry,
            clock=self._clock,
            **accumulation,
        )

    async def close(self) -> None:
        await self._prober.close()
        for task in list(self._cancelled):
            await asyncio.gather(task, return_exceptions=True)
        if self._target is not None:
            await self._target.session.close()
            self._target = None
        if self._callers is not None:
            await self._callers.close()
            self._callers = None
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
        """Send one request to one of the upstream's tasks and return its answer, read whole.

        - ``path``: an absolute path (``/orders/7``); default: the settings URL's
          path and query. ``query``: parameters added to it (encoded for you).
        - ``headers``: added to (and overriding) ``settings.headers``; ``Host`` is
          the upstream's name.
        - ``body``: bytes, or text (sent as UTF-8, ``text/plain`` unless you set
          ``Content-Type``); or ``json``: any JSON-serialisable value
          (``application/json``). Not both. The body is kept for retries.
        - ``idempotent``: may this call be repeated after it reached a server?
          Default: by method (GET, HEAD, PUT, DELETE, OPTIONS, TRACE yes; POST,
          PATCH no). Pass True for a POST the server deduplicates (an
          idempotency key), and it gets retries and hedges like a GET.

        Returns the ``Answer`` (any status not in ``retry_statuses``, 4xx included).
        Raises ``UpstreamError`` (502 or 503) when no usable answer came, ``BodyTooLarge``
        when the body exceeds ``max_body_bytes``; ``ValueError``/``TypeError`` for
        arguments that cannot make a request.
        """
        outgoing, idempotent = self._outgoing(method, path, query, headers, body, json, idempotent)
        result = await self._new_call(outgoing, idempotent, stream=False).run()
        assert isinstance(result, Answer)
        return result

    @asynccontextmanager
    async def stream(
        self,
        method: str = "GET",
        path: str | None = None,
        *,
        query: Query | None = None,
        headers: Mapping[str, str] | None = None,
        body: bytes | str | None = None,
        json: Any = _NO_JSON,
        idempotent: bool | None = None,
    ) -> AsyncIterator[StreamedAnswer]:
        """Like ``request()``, but the body is read as it arrives::

            async with orders.stream("GET", "/export") as answer:
                async for chunk in answer.iter_chunks(64 * 1024):
                    ...

        Retries and hedges happen before the answer is handed over (at its headers),
        never after. The connection goes back to the pool when the block ends.
        """
        outgoing, idempotent = self._outgoing(method, path, query, headers, body, json, idempotent)
        result = await self._new_call(outgoing, idempotent, stream=True).run()
        assert isinstance(result, StreamedAnswer)
        try:
            yield result
        finally:
            result.release()

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

    def _outgoing(  # noqa: PLR0912, PLR0917 - one check per argument of request()
        self,
        method: str,
        path: str | None,
        query: Query | None,
        headers: Mapping[str, str] | None,
        body: bytes | str | None,
        json: Any,
        idempotent: bool | None,
    ) -> tuple[Outgoing, bool]:
        """The request every attempt sends, and whether it may be repeated."""
        if not isinstance(method, str) or not method.isascii() or not method.isalpha():
            raise ValueError(f"method must be an HTTP method like GET, not {method!r}")
        method = method.upper()
        path_qs = self._encoded(path, query)
        merged: CIMultiDict[str] | None = None  # the call's own headers, over the session's
        content_type = None
        if json is not _NO_JSON:
            if body is not None:
                raise ValueError("pass body or json, not both")
            try:
                body = jsonlib.dumps(json, separators=(",", ":")).encode()
            except (TypeError, ValueError) as exc:
                raise TypeError(f"json is not JSON-serialisable: {exc}") from None
            content_type = "application/json"
        elif isinstance(body, str):
            body = body.encode()
            content_type = "text/plain; charset=utf-8"
        elif body is not None and not isinstance(body, bytes | bytearray | memoryview):
            raise TypeError(f"body must be bytes or str, not {type(body).__name__}")
        if headers is not None and not isinstance(headers, Mapping):
            raise TypeError(f"headers must be a mapping, not {headers!r}")
        if headers or content_type:
            merged = CIMultiDict()
            if content_type and not (headers and any(k.lower() == "content-type" for k in headers)):
                merged["Content-Type"] = content_type
            for name, value in (headers or {}).items():
                if not isinstance(name, str) or not isinstance(value, str):
                    raise TypeError(f"headers must be str to str, not {name!r}: {value!r}")
                if name.lower() != "host":
                    merged[name] = value
        if idempotent is None:
            idempotent = method in IDEMPOTENT_METHODS
        elif not isinstance(idempotent, bool):
            raise TypeError(f"idempotent must be True, False or None, not {idempotent!r}")
        payload = bytes(body) if body is not None else None
        return Outgoing(method, path_qs, merged, payload), idempotent

    def _encoded(self, path: str | None, query: Query | None) -> str:
        """The call's path and query, percent-encoded: the settings URL's by default."""
        if path is None and query is None:
            return self._path_qs
        if query is None and type(path) is str and path in self._paths:
            return self._paths[path]  # a path this client has encoded before
        if path is not None and not isinstance(path, str):
            raise TypeError(f"path must be a str, not {path!r}")
        try:
            base = self.settings.target if path is None else URL(path)
            if query is not None:
                base = base.extend_query(query)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"path or query cannot make a URL: {exc}") from None
        if not base.path.startswith("/") or base.is_absolute():
            raise ValueError(f"path must be an absolute path like /orders, not {path!r}")
        if path is not None and query is None:
            if len(self._paths) >= _PATHS_KEPT:  # paths with ids in them: stay bounded
                self._paths.clear()
            self._paths[path] = base.raw_path_qs
        return base.raw_path_qs

    def _new_call(self, request: Outgoing, idempotent: bool, *, stream: bool) -> _Call:
        """One call (``_Call``), to be run: its ``run()`` is awaited by the caller itself, one
        coroutine layer fewer on every suspension of the call."""
        if self._target is None:
            raise RuntimeError(
                "UpstreamClient is not started: use `async with UpstreamClient(...)`"
            )
        self._budget.on_request()
        return _Call(self, request, idempotent=idempotent, stream=stream)

    async def _addresses(self) -> Sequence[str]:
        """The upstream's addresses now; a failure of the source is the call's 503."""
        try:
            addresses = await self._source.addresses()
        except DiscoveryError as exc:
            self._requests.inc(upstream=self._upstream, outcome="unavailable")
            raise UpstreamError(503, str(exc), attempts=0) from None
        except Exception as exc:  # an address source of the caller's that broke
            self._requests.inc(upstream=self._upstream, outcome="unavailable")
            raise UpstreamError(
                503, f"{self._upstream}: address source failed: {exc!r}", 0
            ) from None
        self._balancer.update(addresses)
        return addresses

    def _abandon(self, running: Mapping[asyncio.Task[Result], bool], winner: str | None) -> None:
        """Cancel the attempts a call no longer needs (the slower of a hedged pair, or all
        of them when the caller went away), reaping each in the background.

        Except a race lost by a replica that has never answered: its attempt finishes in
        the background, within its own deadline. A cancelled attempt closes its connection,
        so a new replica whose first answers on a new connection are slower than the hedge
        delay (a cold process, a TLS handshake) lost every race, stayed cold and never got
        an answer in (measured: none in 2,856 calls over 8 s, 7 connections opened)."""
        for task in running:
            self._cancelled.add(task)
            task.add_done_callback(self._reap)
            if winner is None or task.done():
                task.cancel()
            elif self._balancer.has_answered(task.get_name()):
                task.cancel()
                self._balancer.lost_race(task.get_name(), winner)

    def _reap(self, task: asyncio.Task[Result]) -> None:
        """An abandoned attempt finished: forget it, retrieve its outcome (it may have
        failed before the cancellation arrived, so asyncio does not log it), and give
        back the connection of a stream that answered too late to be used."""
        self._cancelled.discard(task)
        if task.cancelled() or task.exception() is not None:
            return
        result = task.result()
        if isinstance(result, StreamedAnswer):
            result.release()

    def _url(self, address: str, path_qs: str) -> URL:
        """``path_qs`` (already encoded) on one task; the settings URL's own is cached."""
        if path_qs is not self._path_qs:
            return self._task_url(address, path_qs)
        url = self._urls.get(address)
        if url is None:
            if len(self._urls) > 4096:  # addresses churn with tasks; stay bounded
                self._urls.clear()
            url = self._urls[address] = self._task_url(address, path_qs)
        return url

    def _task_url(self, address: str, path_qs: str) -> URL:
        return URL(f"{self._scheme}://{_url_host(address)}:{self._port}{path_qs}", encoded=True)

    async def _attempt(
        self, endpoint: Endpoint, request: Outgoing, seconds: float, call: _Call
    ) -> Result:
        """One attempt on one endpoint, with the balancer's and the metrics' bookkeeping."""
        target = self._target
        assert target is not None
        started = self._clock()
        endpoint.in_flight += 1
        try:
            result = await send(
                target,
                request,
                self._url(endpoint.address, request.path_qs),
                address=endpoint.address,
                seconds=seconds,
                stream=call.stream,
                time_left=call.time_left,
            )
        except AttemptFailed as exc:
            self._attempts.inc(upstream=self._upstream, result=exc.failure.result)
            self._failed(endpoint, started, exc.failure)
            raise
        except BodyTooLarge:
            # The task answered; the limit is the caller's: no ejection, no retry.
            self._attempts.inc(upstream=self._upstream, result="body_too_large")
            self._balancer.on_success(endpoint, started)
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
        return result

    def _failed(self, endpoint: Endpoint, started: float, failure: Failure) -> None:
        outcome = self._balancer.on_failure(endpoint, started)
        if outcome == "capped":
            self._ejections_capped.inc(upstream=self._upstream)
        elif outcome == "ejected":
            self._ejections.inc(upstream=self._upstream, reason=failure.result)
            seconds = endpoint.ejected_until - endpoint.ejected_at
            log.warning(
                "%s: address %s ejected for %.3gs after %d consecutive failure(s): %s",
                self._upstream,
                endpoint.address,
                seconds,
                endpoint.consecutive_failures,
                failure.detail,
                extra={
                    "upstream": self._upstream,
                    "address": endpoint.address,
                    "reason": failure.detail,
                    "consecutive_failures": endpoint.consecutive_failures,
                    "ejected_seconds": round(seconds, 3),
                },
            )

    # -- probes ----------------------------------------------------------------

    async def _probe(self, endpoint: Endpoint) -> bool:
        target, path_qs = self._target, self._probe_path_qs
        if target is None or path_qs is None:
            return False
        url = self._task_url(endpoint.address, path_qs)
        try:
            async with (
                asyncio.timeout(self.settings.probe_timeout),
                target.session.get(
                    url,
                    headers=None,  # the session's: Host and settings.headers
                    allow_redirects=False,
                    server_hostname=target.server_hostname,
                    ssl=target.ssl,
                ) as response,
            ):
                await response.read()
                return 200 <= response.status < 300
        except (TimeoutError, aiohttp.ClientError):
            return False

    def _probed(self, _endpoint: Endpoint, healthy: bool) -> None:
        self._probes.inc(upstream=self._upstream, result="ok" if healthy else "failed")

    # -- metrics ---------------------------------------------------------------

    def _hedge_delay_samples(self) -> list[Sample]:
        delay = self._hedge.delay
        return [] if delay is None else [({"upstream": self._upstream}, delay)]

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
