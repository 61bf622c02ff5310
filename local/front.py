"""The front: a reverse proxy on loopback in the role of the ALB and its target group.

What it mirrors from the seed's ``PublicLoadBalancer`` + ``ServiceTargetGroup``:

- targets are registered and deregistered by the orchestrator (the runner, as ECS does
  for a service with ``LoadBalancers``), and health-checked by the front itself: a target
  starts ``initial``, becomes ``healthy`` after ``healthy_threshold`` consecutive passing
  checks and ``unhealthy`` after ``unhealthy_threshold`` failing ones (the checks are
  ``GET <path>`` expecting 200, the ALB's default matcher);
- requests go round robin (the ALB's default algorithm) over the healthy targets; when no
  target is healthy it fails open and uses every registered one, as the ALB does; with no
  target registered at all it answers 503; a target that cannot be reached gives 502 and
  one that does not answer in time 504, as the ALB does;
- deregistering a target drains it: no new requests, and the call returns once its
  in-flight requests are done or the deregistration delay is over;
- keep-alive both ways, an idle timeout (the seed's ``idle_timeout.timeout_seconds`` is
  30), and the ``X-Forwarded-*`` headers the ALB adds;
- like this program's ALB (components/entry.py: one listener rule forwards the path ``/``,
  the listener's default action is a fixed 404), it forwards only PUBLIC_PATHS and answers
  every other path itself with that 404, even with no target registered: hello's
  ``/metrics`` and ``/health`` are not reachable through it either (each replica's own
  address still serves them). Paths match as ALB path patterns do: the path without the
  query string, case-sensitive, ``*`` and ``?`` the only wildcards.

What it does not do: TLS, HTTP/2, other rule conditions and listeners, cross-zone anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

log = logging.getLogger(__name__)

# Headers that describe one connection, not the message: never forwarded (RFC 9110 7.6.1).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
CHUNK = 64 * 1024
# What the ALB forwards, and what it answers for the rest: components/entry.py's PUBLIC_PATHS
# and NOT_FOUND_BODY (a test keeps them equal; local/ does not import the Pulumi program).
PUBLIC_PATHS: tuple[str, ...] = ("/",)
NOT_FOUND_BODY = "not found\n"


def path_pattern(pattern: str) -> re.Pattern[str]:
    """An ALB path pattern as a regular expression: case-sensitive, ``*`` any characters,
    ``?`` one character, everything else literal."""
    literal = (re.escape(part) for part in re.split(r"([*?])", pattern))
    return re.compile("".join({"\\*": ".*", "\\?": "."}.get(p, p) for p in literal))


@dataclass(frozen=True)
class HealthCheck:
    """The target group's health check. AWS defaults differ (interval 30 s, thresholds
    5/2); the seed uses interval 6 s, healthy 2, unhealthy 10. Locally, seconds matter."""

    path: str = "/health"
    interval: float = 1.0
    timeout: float = 1.0
    healthy_threshold: int = 2
    unhealthy_threshold: int = 2


class TargetState(enum.StrEnum):
    INITIAL = "initial"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    DRAINING = "draining"


@dataclass
class Target:
    host: str
    port: int
    state: TargetState = TargetState.INITIAL
    passes: int = 0  # consecutive passing checks
    failures: int = 0  # consecutive failing checks
    in_flight: int = 0
    requests: int = 0
    responses: Counter[int] = field(default_factory=Counter)  # status -> count
    checker: asyncio.Task[None] | None = None

    @property
    def key(self) -> str:
        return f"{self.host}:{self.port}"

    def as_dict(self) -> dict[str, object]:
        return {
            "target": self.key,
            "state": str(self.state),
            "in_flight": self.in_flight,
            "requests": self.requests,
            "responses": {str(status): n for status, n in sorted(self.responses.items())},
        }


class Front:
    """Listens on ``host:port`` and proxies every request to one registered target."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8080,
        *,
        health: HealthCheck | None = None,
        connect_timeout: float = 2.0,
        idle_timeout: float = 30.0,
        deregistration_delay: float = 5.0,
        public_paths: Sequence[str] | None = PUBLIC_PATHS,
    ) -> None:
        """``public_paths``: the ALB path patterns forwarded (404 for the rest); None forwards
        every path (a plain reverse proxy, as the front's own tests use it)."""
        self.host = host
        self.port = port
        self._public = None if public_paths is None else [path_pattern(p) for p in public_paths]
        self.health = health or HealthCheck()
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self.deregistration_delay = deregistration_delay
        self._targets: dict[str, Target] = {}
        self._turn = 0
        self._changed = asyncio.Condition()
        self._session: aiohttp.ClientSession | None = None
        self._checks: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        # The proxy's pool: keep-alive to the targets, idle connections closed well
        # before the targets' own keep-alive timeout so that a request never races a
        # close from the other end. No total timeout: like the ALB, only idle time counts.
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=1024, keepalive_timeout=15),
            timeout=aiohttp.ClientTimeout(
                total=None, connect=self.connect_timeout, sock_read=self.idle_timeout
            ),
            auto_decompress=False,  # pass bodies through byte for byte
            skip_auto_headers=("User-Agent", "Accept-Encoding"),
        )
        # Health checks use their own short-lived connections, as the ALB's do, so that
        # a check never waits behind proxied traffic in the pool.
        self._checks = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True),
            timeout=aiohttp.ClientTimeout(total=self.health.timeout),
        )
        # Every request is proxied, routed or not: a middleware rather than a route, since
        # no route pattern matches the path of ``GET http://host HTTP/1.1`` (empty) or of
        # ``OPTIONS *``, and those must reach _proxy to get the ALB's answer.
        app = web.Application(
            handler_args={"max_field_size": 16 * 1024}, middlewares=[self._everything]
        )
        self._runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            keepalive_timeout=self.idle_timeout,
            shutdown_timeout=5.0,
        )
        try:
            await self._runner.setup()
            await web.TCPSite(self._runner, self.host, self.port).start()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        for target in list(self._targets.values()):
            await _cancel(target.checker)
        self._targets.clear()
        if self._runner is not None:
            await self._runner.cleanup()
        for session in (self._session, self._checks):
            if session is not None:
                await session.close()

    # -- targets ---------------------------------------------------------------------

    def register(self, host: str, port: int) -> None:
        """Add a target; it takes traffic once its health checks pass."""
        target = Target(host, port)
        if target.key in self._targets:
            return
        self._targets[target.key] = target
        target.checker = asyncio.create_task(self._check_loop(target), name=f"check {target.key}")

    async def deregister(self, host: str, port: int) -> None:
        """Stop routing to a target, wait for its in-flight requests (bounded), forget it."""
        target = self._targets.get(f"{host}:{port}")
        if target is None:
            return
        await _cancel(target.checker)
        await self._set_state(target, TargetState.DRAINING)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.deregistration_delay):
                await self.wait_for(lambda: target.in_flight == 0)
        self._targets.pop(target.key, None)
        await self._notify()

    def targets(self) -> list[dict[str, object]]:
        return [t.as_dict() for t in sorted(self._targets.values(), key=lambda t: t.key)]

    def state(self, host: str, port: int) -> TargetState | None:
        target = self._targets.get(f"{host}:{port}")
        return None if target is None else target.state

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds, re-checking on every target change.

        Unbounded: callers put it under ``asyncio.timeout``."""
        async with self._changed:
            await self._changed.wait_for(predicate)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _set_state(self, target: Target, state: TargetState) -> None:
        if target.state is not state:
            log.info("front: target %s %s -> %s", target.key, target.state, state)
            target.state = state
            await self._notify()

    async def _check_loop(self, target: Target) -> None:
        assert self._checks is not None
        url = f"http://{target.key}{self.health.path}"
        while True:
            started = time.monotonic()
            try:
                async with self._checks.get(url, allow_redirects=False) as response:
                    await response.read()
                    passed = response.status == 200
            except (aiohttp.ClientError, TimeoutError):
                passed = False
            await self._record_check(target, passed)
            await asyncio.sleep(max(0.0, self.health.interval - (time.monotonic() - started)))

    async def _record_check(self, target: Target, passed: bool) -> None:
        if passed:
            target.passes, target.failures = target.passes + 1, 0
            if target.passes >= self.health.healthy_threshold:
                await self._set_state(target, TargetState.HEALTHY)
        else:
            target.passes, target.failures = 0, target.failures + 1
            if target.failures >= self.health.unhealthy_threshold:
                await self._set_state(target, TargetState.UNHEALTHY)

    def _pick(self) -> Target | None:
        candidates = [t for t in self._targets.values() if t.state is TargetState.HEALTHY]
        if not candidates:
            # Fail open, as the ALB does when no target is healthy.
            candidates = [t for t in self._targets.values() if t.state is not TargetState.DRAINING]
        if not candidates:
            return None
        candidates.sort(key=lambda t: t.key)
        self._turn += 1
        return candidates[self._turn % len(candidates)]

    # -- proxying --------------------------------------------------------------------

    @web.middleware
    async def _everything(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        del handler  # the router's answer (404 for every path) is never wanted
        return await self._proxy(request)

    async def _proxy(self, request: web.Request) -> web.StreamResponse:
        form = _origin_form(request.raw_path)
        if form is None:
            return _error(400, "the request target must be a path or an http(s) URL")
        if not self._is_public(form[0]):
            # The listener's default action: the load balancer answers, no target sees it.
            return web.Response(status=404, text=NOT_FOUND_BODY, content_type="text/plain")
        target = self._pick()
        if target is None:
            return _error(503, "no registered targets")
        target.in_flight += 1
        target.requests += 1
        try:
            response = await self._forward(request, target, *form)
        finally:
            target.in_flight -= 1
            if target.state is TargetState.DRAINING and target.in_flight == 0:
                await self._notify()
        target.responses[response.status] += 1
        return response

    def _is_public(self, path_and_query: str) -> bool:
        """Whether a rule forwards it: the path alone, without the query string, is matched."""
        if self._public is None:
            return True
        path = path_and_query.partition("?")[0]
        return any(pattern.fullmatch(path) for pattern in self._public)

    async def _forward(
        self, request: web.Request, target: Target, path: str, authority: str | None
    ) -> web.StreamResponse:
        assert self._session is not None
        url = URL(f"http://{target.key}{path}", encoded=True)
        body = request.content.iter_chunked(CHUNK) if request.body_exists else None
        headers = self._upstream_headers(request)
        if authority is not None:
            # RFC 9112 3.2.2: with an absolute-form target, its host is the one that counts
            # and any Host header is ignored.
            headers["Host"] = authority
        response: web.StreamResponse | None = None
        try:
            async with self._session.request(
                request.method,
                url,
                headers=headers,
                data=body,
                allow_redirects=False,
            ) as upstream:
                response = web.StreamResponse(
                    status=upstream.status,
                    reason=upstream.reason,
                    headers=_end_to_end(upstream.headers),
                )
                await response.prepare(request)
                async for chunk in upstream.content.iter_chunked(CHUNK):
                    await response.write(chunk)
                await response.write_eof()
                return response
        except TimeoutError:
            status, reason = 504, f"target {target.key} timed out"
        except aiohttp.ClientError as error:
            status, reason = 502, f"target {target.key}: {type(error).__name__}"
        if response is not None and response.prepared:
            # The status line has gone out; the only honest signal left is to cut the
            # connection so the client sees a truncated response, not a complete one.
            log.warning("front: %s after the headers were sent; closing the connection", reason)
            if request.transport is not None:
                request.transport.close()
            return response
        return _error(status, reason)

    def _upstream_headers(self, request: web.Request) -> CIMultiDict[str]:
        headers = _end_to_end(request.headers)
        peer = request.remote or ""
        previous = request.headers.get("X-Forwarded-For")
        headers["X-Forwarded-For"] = f"{previous}, {peer}" if previous else peer
        headers["X-Forwarded-Proto"] = "http"
        headers["X-Forwarded-Port"] = str(self.port)
        return headers


def _end_to_end(headers: CIMultiDictProxy[str]) -> CIMultiDict[str]:
    """The headers a proxy forwards: all but hop-by-hop ones, including any that the
    message's own Connection header names."""
    named = {
        token.strip().lower()
        for value in headers.getall("Connection", [])
        for token in value.split(",")
    }
    return CIMultiDict(
        (name, value)
        for name, value in headers.items()
        if name.lower() not in HOP_BY_HOP and name.lower() not in named
    )


def _origin_form(target: str) -> tuple[str, str | None] | None:
    """The request target as forwarded: ``(path and query, authority or None)``.

    Origin-form (``/path?q``) passes unchanged. Absolute-form (``http://host/path?q``)
    must be accepted by every server (RFC 9112 3.2.2), and the ALB's desync classifier
    (http_desync_guardian) does not count it among the non-compliant forms it blocks, so
    the front accepts it too. AWS does not document what the ALB then forwards; the
    front forwards origin-form with the URL's authority as the Host (the recipient
    must use that, not the Host header: RFC 9112 3.2.2), byte for byte otherwise.
    Anything else (``*``, ``host:port``, other schemes, credentials in the URL) is
    None: a 400, as the ALB answers a request it cannot route.
    """
    if target.startswith("/"):
        return target, None
    scheme, sep, rest = target.partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        return None
    ends = [i for i in (rest.find("/"), rest.find("?")) if i >= 0]
    cut = min(ends, default=len(rest))
    authority, tail = rest[:cut], rest[cut:]
    if not authority or "@" in authority:
        return None
    return (tail if tail.startswith("/") else "/" + tail), authority


def _error(status: int, reason: str) -> web.Response:
    phrase = {
        400: "Bad Request",
        502: "Bad Gateway",
        503: "Service Unavailable",
        504: "Gateway Timeout",
    }[status]
    return web.Response(status=status, text=f"{status} {phrase}: {reason}\n")


async def _cancel(task: asyncio.Task[None] | None) -> None:
    if task is not None and not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
