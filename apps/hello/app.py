"""The hello application: asks name through the discovery client, greets with its answer."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import AsyncIterator, Mapping

from aiohttp import web
from aiohttp_discovery import (
    Registry,
    UpstreamClient,
    UpstreamError,
    UpstreamSettings,
    ZoneRouting,
    expect_text,
    through_proxy,
)
from aiohttp_discovery.metadata import METADATA_VARIABLE

from apps.common.logs import AccessLog
from apps.common.server import Lifecycle, base_app, log_fields, serve
from apps.hello.settings import Settings

log = logging.getLogger("apps.hello")

UPSTREAM = web.AppKey("upstream", UpstreamClient)

# What hello's own callers see when name fails. Short and free of internal
# addresses (this answer reaches the internet); the details go to the access log.
_ERROR_BODIES = {
    502: "bad gateway: the name service gave no usable answer\n",
    503: "service unavailable: no name service task could be reached\n",
}


# name answers a short line of text: anything longer is not name's answer.
MAX_BODY_BYTES = 64 * 1024


def upstream_settings(settings: Settings) -> UpstreamSettings:
    """hello's call to name, tuned for what name is: a short text answer in about a
    millisecond, in the same VPC. The client's defaults are for any upstream (15 s for a
    call, an attempt may use all of it); hello answers the ALB within 2 s and gives each
    of its 3 attempts a third of that, so a stuck task costs a third, not all of it."""
    tuning = settings.tuning
    if settings.discovery_mode == "serviceConnect":
        # The task's Service Connect proxy balances, ejects and retries: one attempt here.
        return through_proxy(
            settings.name_server,
            per_request_timeout=settings.proxy_timeout_seconds,
            idle_timeout=settings.proxy_idle_timeout_seconds,
            connect_timeout=settings.connect_timeout_seconds,
            request_timeout=settings.request_timeout_seconds,
            max_body_bytes=MAX_BODY_BYTES,
            headers={"Accept": "text/plain, text/*;q=0.9"},
            retry_statuses=tuning.retry_statuses,
        )
    return UpstreamSettings(
        url=settings.name_server,
        nameservers=settings.dns_servers,
        refresh_interval=settings.dns_refresh_seconds,
        connect_timeout=settings.connect_timeout_seconds,
        request_timeout=settings.request_timeout_seconds,
        attempt_timeout=settings.request_timeout_seconds / settings.max_attempts,
        max_attempts=settings.max_attempts,
        max_body_bytes=MAX_BODY_BYTES,
        headers={"Accept": "text/plain, text/*;q=0.9"},
        retry_statuses=tuning.retry_statuses,
        max_hedges=tuning.max_hedges,
        hedge_quantile=tuning.hedge_quantile,
        hedge_min_delay=tuning.hedge_min_delay_seconds,
        hedge_max_delay=tuning.hedge_max_delay_seconds,
        latency_decay=tuning.latency_decay_seconds,
        max_ejection_percent=tuning.max_ejection_percent,
        panic_threshold_percent=tuning.panic_threshold_percent,
        probe_path="/health",
        probe_interval=tuning.probe_interval_seconds,
        probe_timeout=tuning.probe_timeout_seconds,
    )


def zone_routing(settings: Settings, environ: Mapping[str, str]) -> ZoneRouting | None:
    """The client's zone-aware routing from hello's settings, or None with a log line."""
    if settings.discovery_mode == "serviceConnect":
        log.info("zone-unaware routing: the Service Connect proxy routes by zone")
        return None
    if not settings.zone_aware:
        log.info("zone-unaware routing: ZONE_AWARE=false")
        return None
    if settings.zone_subnets is None:
        log.warning("zone-unaware routing: ZONE_SUBNETS is not set")
        return None
    return ZoneRouting(
        subnets=settings.zone_subnets,
        callers=settings.zone_callers,
        metadata_uri=environ.get(METADATA_VARIABLE, ""),
    )


def make_app(
    settings: Settings,
    *,
    hostname: str | None = None,
    registry: Registry | None = None,
    lifecycle: Lifecycle | None = None,
    access_log: AccessLog | None = None,
    environ: Mapping[str, str] = os.environ,
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
            upstream_settings(settings),
            registry=registry,
            metrics_prefix="hello_upstream",
            zone_routing=zone_routing(settings, environ),
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
