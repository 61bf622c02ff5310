"""Serving an aiohttp app the way a Fargate task should.

- ``GET /health`` answers 200 ``ok`` while serving and 503 ``draining`` from the
  moment SIGTERM arrives, so load balancer and container health checks stop
  sending new work at once.
- ``GET /metrics`` renders the process's Prometheus registry.
- A middleware writes one JSON access-log line per request and counts requests;
  requests too malformed to reach the app (bad request line or method, request
  smuggling, bad header bytes) get the same line and count from the connection
  protocol below, with a fixed 400 body and no traceback.
- Connections are bounded in time: a request head must arrive within
  ``HEADER_TIMEOUT_SECONDS`` (slowloris), and an idle keep-alive connection is
  closed after ``KEEPALIVE_TIMEOUT_SECONDS``, longer than every caller's own idle
  timeout so that the caller always closes first.
- Every response says ``Server: fargate-service-discovery``: no Python or aiohttp version.
- ``serve`` runs the app until SIGTERM/SIGINT, then drains: it keeps serving for
  ``drain_seconds`` (DNS-based clients still hold this task's address until
  Cloud Map and their caches catch up), then stops listening, lets in-flight
  requests finish (bounded by ``shutdown_timeout``) and returns. A second
  signal cuts the drain short.
- ``main`` parses settings, turns a bad environment into one line on stderr and
  exit code 2, and runs everything on uvloop when it is installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import gc
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from http import HTTPStatus
from typing import Any, TypeVar

from aiohttp import hdrs, web
from aiohttp_discovery.metrics import CONTENT_TYPE, Registry

from apps.common import emf
from apps.common.env import EnvError
from apps.common.logs import AccessLog, configure_logging

log = logging.getLogger("apps.server")


# Seconds a connection gets to deliver a whole request head: from accept for a new
# connection, from its first byte for the next request on a kept-alive one. Every
# legitimate caller writes a head in one go (the ALB forwards a request only once it
# has its head; the discovery client writes it whole), so 10 s is generous even on a
# starved CPU, and a connection that sends nothing or a byte a second (slowloris)
# costs the task at most 10 s.
HEADER_TIMEOUT_SECONDS = 10.0
# An idle keep-alive connection is closed after this. It must be longer than the idle
# timeout of every caller, so that the caller closes an idle connection first and
# never sends a request into a close from this end (the ALB answers that with a 502;
# the discovery client would need a retry): hello's caller is the ALB, 30 s
# (components/entry.py IDLE_TIMEOUT_SECONDS; AWS recommends the target's keep-alive be
# longer), name's is the discovery client, whose pool drops connections idle 15 s
# (UpstreamSettings.keepalive_timeout). tests/apps/test_hygiene.py keeps the order.
KEEPALIVE_TIMEOUT_SECONDS = 60.0
# The Server header of every response: aiohttp's default names the Python and aiohttp
# versions, a gift to scanners matching versions to known vulnerabilities.
SERVER_HEADER = "fargate-service-discovery"


class StartupError(RuntimeError):
    """The service could not start (for example, its port is taken)."""


# Extra fields for the current request's access-log line (hello: upstream address,
# attempts). A context variable: the middleware and the handler run in one task.
_LOG_FIELDS: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "apps_log_fields", default=None
)


class Lifecycle:
    """Serving -> draining -> stopping, driven by signals (or by tests)."""

    def __init__(self) -> None:
        self.draining = False
        self._stop_requested = asyncio.Event()
        self._stop_now = asyncio.Event()

    def request_stop(self) -> None:
        """First call: start draining. Second call: stop without waiting out the drain."""
        if self.draining:
            self._stop_now.set()
        self.draining = True
        self._stop_requested.set()

    async def wait_stop_requested(self) -> None:
        await self._stop_requested.wait()

    async def drain(self, seconds: float) -> None:
        """Wait out the drain period, or less if a second stop request arrives."""
        if seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop_now.wait(), timeout=seconds)


class RequestLog:
    """The one place a served request is counted (``http_requests_total``) and logged.

    The access-log middleware calls it for every request the app saw, and the
    connection protocol for the malformed ones that never reached the app.
    """

    def __init__(self, registry: Registry, access_log: AccessLog) -> None:
        self._requests = registry.counter(
            "http_requests_total", "Requests served, by route and status.", ("route", "status")
        )
        self._access_log = access_log

    def record(self, route: str, line: dict[str, Any]) -> None:
        """Count one request under ``route`` and ``line["status"]``; write ``line``."""
        self._requests.inc(route=route, status=str(line["status"]))
        self._access_log.write(line)


LIFECYCLE = web.AppKey("lifecycle", Lifecycle)
REGISTRY = web.AppKey("registry", Registry)
REQUEST_LOG = web.AppKey("request_log", RequestLog)
# Set on each request the middleware sees (and so logs); a request without it never
# reached the app.
_OBSERVED = web.RequestKey("apps_observed", bool)


def log_fields() -> dict[str, Any]:
    """The dict of extra fields for the current request's access-log line.

    Outside a request (no middleware around the caller) it is a throwaway dict.
    """
    fields = _LOG_FIELDS.get()
    return fields if fields is not None else {}


def base_app(
    *,
    registry: Registry,
    lifecycle: Lifecycle,
    access_log: AccessLog,
) -> web.Application:
    """An application with the health, metrics and access-log plumbing both services share."""
    request_log = RequestLog(registry, access_log)
    in_flight = registry.gauge("http_requests_in_flight", "Requests being served now.")
    registry.gauge_func(
        "http_server_draining",
        "1 once SIGTERM arrived: /health fails and the process is about to stop.",
        lambda: [({}, 1.0 if lifecycle.draining else 0.0)],
    )

    @web.middleware
    async def observe(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        # perf_counter, not loop.time(): uvloop's clock ticks in whole milliseconds.
        started = time.perf_counter()
        status = 500
        fields: dict[str, Any] = {}
        request[_OBSERVED] = True
        token = _LOG_FIELDS.set(fields)
        in_flight.inc()
        try:
            response = await handler(request)
            status = response.status
            if lifecycle.draining:
                # Close keep-alive connections as requests complete, so that by the end
                # of the drain clients hold no idle connection to this task that could
                # be cut under them.
                response.force_close()
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            _LOG_FIELDS.reset(token)
            in_flight.dec()
            resource = request.match_info.route.resource
            route = resource.canonical if resource is not None else "unmatched"
            request_log.record(
                route,
                {
                    "method": request.method,
                    "path": request.path,
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                    "remote": request.remote,
                    **fields,
                },
            )

    async def health(_: web.Request) -> web.Response:
        if lifecycle.draining:
            return web.Response(status=503, text="draining\n")
        return web.Response(text="ok\n")

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=registry.render().encode(), headers={"Content-Type": CONTENT_TYPE})

    async def identify(_: web.Request, response: web.StreamResponse) -> None:
        response.headers[hdrs.SERVER] = SERVER_HEADER

    app = web.Application(middlewares=[observe])
    app.on_response_prepare.append(identify)
    app[LIFECYCLE] = lifecycle
    app[REGISTRY] = registry
    app[REQUEST_LOG] = request_log
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    return app


class _Connection(web.RequestHandler):
    """aiohttp's protocol for one connection, with the two things it lacks.

    - ``handle_error`` is where aiohttp answers a request it could not parse (bad
      request line or method, Content-Length with Transfer-Encoding, bad header
      bytes...). aiohttp logs each at ERROR with a traceback, answers with a body
      that echoes the offending bytes, and no middleware sees it. Here it is one
      access-log line and one count like any request, and a fixed short body.
      Errors of requests the app saw (an unhandled exception: a bug) keep aiohttp's
      handling, traceback included.
    - A header-read timeout: the head of each request must be complete within
      ``header_timeout`` seconds, from accept for a new connection and from the first
      byte of the next request on a kept-alive one; else the connection is closed.
      aiohttp has none: a connection trickling a byte a second stays open.
    """

    __slots__ = ("_header_deadline", "_header_timeout", "_request_log", "_unanswered")

    def __init__(
        self,
        manager: web.Server,
        *,
        header_timeout: float,
        request_log: RequestLog,
        **kwargs: Any,
    ) -> None:
        super().__init__(manager, **kwargs)
        self._header_timeout = header_timeout
        self._request_log = request_log
        self._header_deadline: asyncio.TimerHandle | None = None
        self._unanswered = 0  # requests dispatched and not yet answered

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._await_head()

    def data_received(self, data: bytes) -> None:
        if data and not self._unanswered and self._header_deadline is None:
            self._await_head()  # the first bytes of the next request on this connection
        super().data_received(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._head_received()
        super().connection_lost(exc)

    def request_dispatched(self) -> None:
        """Its head parsed, a request goes to the app: the header timeout is met."""
        self._unanswered += 1
        self._head_received()

    async def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        try:
            return await super().finish_response(request, resp, start_time)
        finally:
            self._unanswered -= 1

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.get(_OBSERVED):
            # The app saw it, so the middleware logged and counted it: a handler bug.
            response = super().handle_error(request, status, exc, message)
        else:
            self._request_log.record(
                "unmatched",
                {
                    "method": None,  # unparsable: nothing of the request is trusted
                    "path": None,
                    "status": status,
                    "duration_ms": 0.0,
                    "remote": request.remote,
                    "error": type(exc).__name__ if exc is not None else "bad request",
                },
            )
            response = web.Response(status=status, text=_fixed_body(status))
            response.force_close()  # the request's end is unknown: so is the next's start
        response.headers[hdrs.SERVER] = SERVER_HEADER
        return response

    def _await_head(self) -> None:
        loop = asyncio.get_running_loop()
        self._head_received()
        self._header_deadline = loop.call_later(self._header_timeout, self._head_too_slow)

    def _head_received(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _head_too_slow(self) -> None:
        self._header_deadline = None
        self.force_close()


def _fixed_body(status: int) -> str:
    """``400 Bad Request``: the status and nothing of the request."""
    try:
        return f"{status} {HTTPStatus(status).phrase}\n"
    except ValueError:
        return f"{status}\n"


class _Server(web.Server):
    """aiohttp's connection factory, making :class:`_Connection` protocols."""

    def __init__(
        self,
        handler: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]],
        *,
        header_timeout: float,
        request_log: RequestLog,
        **kwargs: Any,
    ) -> None:
        super().__init__(handler, **kwargs)
        self._header_timeout = header_timeout
        self._request_log = request_log
        make_request = self.request_factory

        def request_factory(
            message: Any,
            payload: Any,
            protocol: web.RequestHandler,
            writer: Any,
            task: asyncio.Task[None],
        ) -> web.BaseRequest:
            if isinstance(protocol, _Connection):
                protocol.request_dispatched()
            return make_request(message, payload, protocol, writer, task)

        self.request_factory = request_factory

    def __call__(self) -> web.RequestHandler:
        return _Connection(
            self,
            loop=self._loop,
            header_timeout=self._header_timeout,
            request_log=self._request_log,
            **self._kwargs,
        )


class _Runner(web.AppRunner):
    """``web.AppRunner`` serving through :class:`_Server`.

    aiohttp has no public parameter for the protocol class: this rebuilds the server
    AppRunner made (same handler, request factory and protocol arguments) as a
    ``_Server``. tests/apps/test_hygiene.py pins the behaviour against the installed
    aiohttp, so an upgrade that changes these internals fails there, loudly.
    """

    def __init__(self, app: web.Application, *, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._header_timeout = header_timeout

    async def _make_server(self) -> web.Server:
        made = await super()._make_server()
        return _Server(
            made.request_handler,
            request_factory=made.request_factory,
            handler_cancellation=made.handler_cancellation,
            loop=asyncio.get_running_loop(),
            header_timeout=self._header_timeout,
            request_log=self.app[REQUEST_LOG],
            **made._kwargs,
        )


def make_runner(
    app: web.Application,
    *,
    shutdown_timeout: float,
    keepalive_timeout: float = KEEPALIVE_TIMEOUT_SECONDS,
    header_timeout: float = HEADER_TIMEOUT_SECONDS,
) -> web.AppRunner:
    """The runner for an app made by :func:`base_app`, with the connection limits above."""
    return _Runner(
        app,
        # The middleware (and _Connection) write the access log, not aiohttp.
        access_log=None,
        shutdown_timeout=shutdown_timeout,
        keepalive_timeout=keepalive_timeout,
        header_timeout=header_timeout,
    )


async def serve(
    app: web.Application,
    *,
    host: str,
    port: int,
    drain_seconds: float,
    shutdown_timeout: float,
    service: str,
) -> None:
    """Serve ``app`` until SIGTERM/SIGINT, then drain and shut down gracefully.

    With METRICS_NAMESPACE set, the app's counters are also written as CloudWatch EMF lines
    every METRICS_INTERVAL_SECONDS (apps/common/emf.py), and once more at the end.
    """
    try:
        metrics = emf.EmfSettings.from_env(os.environ)
    except EnvError as exc:
        raise StartupError(str(exc)) from exc
    lifecycle = app[LIFECYCLE]
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lifecycle.request_stop)
    runner = make_runner(app, shutdown_timeout=shutdown_timeout)
    emf_task: asyncio.Task[None] | None = None
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        # Everything allocated so far (modules, the app) lives as long as the
        # process: move it to the permanent generation, so the full collections
        # that requests' garbage triggers no longer scan it. On the bench this
        # halved hello's p99 under load (11.5 ms -> 5.7-6.8 ms; docs/bench.md).
        gc.freeze()
        if metrics:
            writer = emf.EmfWriter(
                metrics.namespace,
                service,
                emf.collector_counters(app[REGISTRY].collector_registry),
            )
            emf_task = asyncio.create_task(writer.run(metrics.interval_seconds))
        log.info("listening", extra={"service": service, "host": host, "port": port})
        await lifecycle.wait_stop_requested()
        log.info("draining", extra={"service": service, "drain_seconds": drain_seconds})
        await lifecycle.drain(drain_seconds)
        log.info("stopping", extra={"service": service, "shutdown_timeout": shutdown_timeout})
    finally:
        # Stops listening, closes idle connections, waits for in-flight requests
        # (up to shutdown_timeout), then runs the app's on_shutdown/on_cleanup.
        await runner.cleanup()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if emf_task:
            # The last interval's counts, requests of the drain included.
            emf_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await emf_task
    log.info("stopped", extra={"service": service})


_S = TypeVar("_S")


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when installed (it is in the images), else asyncio's default."""
    try:
        import uvloop  # noqa: PLC0415 - optional dependency
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def main(
    service: str,
    parse: Callable[[Mapping[str, str]], _S],
    run: Callable[[_S], Coroutine[Any, Any, None]],
    environ: Mapping[str, str],
) -> int:
    """Process entry point: settings from ``environ``, then ``run(settings)`` to completion.

    Exit codes: 0 after a clean stop, 2 for a bad environment, 1 if the port
    cannot be bound. Each failure is one line on stderr, not a traceback.
    """
    try:
        settings = parse(environ)
    except EnvError as exc:
        print(f"{service}: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging()
    try:
        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            runner.run(run(settings))
    except StartupError as exc:
        print(f"{service}: {exc}", file=sys.stderr)
        return 1
    return 0
