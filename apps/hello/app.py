"""The hello application: asks name through the discovery client, greets with its answer."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

from aiohttp import web

from apps.common.logs import AccessLog
from apps.common.server import Lifecycle, base_app, log_fields, serve
from apps.discovery import (
    Registry,
    UpstreamClient,
    UpstreamError,
    UpstreamSettings,
    expect_text,
)
from apps.hello.settings import Settings

UPSTREAM = web.AppKey("upstream", UpstreamClient)

# What hello's own callers see when name fails. Short and free of internal
# addresses (this answer reaches the internet); the details go to the access log.
_ERROR_BODIES = {
    502: "bad gateway: the name service gave no usable answer\n",
    503: "service unavailable: no name service task could be reached\n",
}


def upstream_settings(settings: Settings) -> UpstreamSettings:
    tuning = settings.tuning
    return UpstreamSettings(
        url=settings.name_server,
        nameservers=settings.dns_servers,
        refresh_interval=settings.dns_refresh_seconds,
        connect_timeout=settings.connect_timeout_seconds,
        request_timeout=settings.request_timeout_seconds,
        max_attempts=settings.max_attempts,
        headers={"Accept": "text/plain, text/*;q=0.9"},
        retry_statuses=tuning.retry_statuses,
        max_hedges=tuning.max_hedges,
        hedge_quantile=tuning.hedge_quantile,
        hedge_min_delay=tuning.hedge_min_delay_seconds,
        hedge_max_delay=tuning.hedge_max_delay_seconds,
        latency_decay=tuning.latency_decay_seconds,
        max_ejection_percent=tuning.max_ejection_percent,
        panic_threshold_percent=tuning.panic_threshold_percent,
        probe_interval=tuning.probe_interval_seconds,
        probe_timeout=tuning.probe_timeout_seconds,
    )


def make_app(
    settings: Settings,
    *,
    hostname: str | None = None,
    registry: Registry | None = None,
    lifecycle: Lifecycle | None = None,
    access_log: AccessLog | None = None,
) -> web.Application:
    """The hello application. The upstream client lives as long as the app runs."""
    host = hostname or socket.gethostname()
    registry = registry or Registry()
    app = base_app(
        registry=registry,
        lifecycle=lifecycle or Lifecycle(),
        access_log=access_log or AccessLog(),
    )

    async def upstream(app: web.Application) -> AsyncIterator[None]:
        async with UpstreamClient(
            upstream_settings(settings), registry=registry, metrics_prefix="hello_upstream"
        ) as client:
            app[UPSTREAM] = client
            yield

    app.cleanup_ctx.append(upstream)

    async def index(request: web.Request) -> web.Response:
        fields = log_fields()
        try:
            answer = await request.app[UPSTREAM].request("GET")
            fields.update(upstream=answer.address, upstream_attempts=answer.attempts)
            if answer.hedged:
                fields.update(upstream_hedged=True)
            text = expect_text(answer)
        except UpstreamError as exc:
            fields.update(
                upstream=exc.address, upstream_attempts=exc.attempts, upstream_error=exc.message
            )
            return web.Response(status=exc.status, text=_ERROR_BODIES[exc.status])
        return web.Response(text=f"Hello (from {host}) {text}")

    app.router.add_get("/", index)
    return app


async def run(settings: Settings) -> None:
    await serve(
        make_app(settings),
        host=settings.host,
        port=settings.port,
        drain_seconds=settings.drain_seconds,
        # In-flight requests can take up to one upstream deadline to finish.
        shutdown_timeout=settings.request_timeout_seconds + 1.0,
        service="hello",
    )
