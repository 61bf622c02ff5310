"""Serving an aiohttp app the way a Fargate task should.

- ``GET /health`` answers 200 ``ok`` while serving and 503 ``draining`` from the
  moment SIGTERM arrives, so load balancer and container health checks stop
  sending new work at once.
- ``GET /metrics`` renders the process's Prometheus registry.
- A middleware writes one JSON access-log line per request and counts requests.
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
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, TypeVar

from aiohttp import web

from apps.common.env import EnvError
from apps.common.logs import AccessLog, configure_logging
from apps.discovery.metrics import CONTENT_TYPE, Registry

log = logging.getLogger("apps.server")


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


LIFECYCLE = web.AppKey("lifecycle", Lifecycle)
REGISTRY = web.AppKey("registry", Registry)


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
    requests = registry.counter(
        "http_requests_total", "Requests served, by route and status.", ("route", "status")
    )
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
            requests.inc(route=route, status=str(status))
            access_log.write(
                {
                    "method": request.method,
                    "path": request.path,
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                    "remote": request.remote,
                    **fields,
                }
            )

    async def health(_: web.Request) -> web.Response:
        if lifecycle.draining:
            return web.Response(status=503, text="draining\n")
        return web.Response(text="ok\n")

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=registry.render().encode(), headers={"Content-Type": CONTENT_TYPE})

    app = web.Application(middlewares=[observe])
    app[LIFECYCLE] = lifecycle
    app[REGISTRY] = registry
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    return app


async def serve(
    app: web.Application,
    *,
    host: str,
    port: int,
    drain_seconds: float,
    shutdown_timeout: float,
    service: str,
) -> None:
    """Serve ``app`` until SIGTERM/SIGINT, then drain and shut down gracefully."""
    lifecycle = app[LIFECYCLE]
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lifecycle.request_stop)
    # access_log=None: the middleware above writes the access log.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout)
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
