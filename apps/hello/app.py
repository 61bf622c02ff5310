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
    expect_text,
)
from aiohttp_discovery.accumulate import every_task
from aiohttp_discovery.metadata import task_zone
from aiohttp_discovery.records import RecordCache
from aiohttp_discovery.zones import ZoneRouter

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
        callers = caller_records(settings, registry)
        router = await zone_router(settings, environ, registry, callers)
        try:
            if router is not None and callers is not None:
                callers.start()
            async with UpstreamClient(
                upstream_settings(settings),
                registry=registry,
                metrics_prefix="hello_upstream",
                router=router,
            ) as client:
                app[UPSTREAM] = client
                yield
        finally:
            if callers is not None:
                await callers.close()

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


def caller_records(settings: Settings, registry: Registry) -> RecordCache | None:
    """hello's own tasks (``ZONE_CALLERS``), to weigh the callers' spread over zones.

    Accumulated like name's records, but with a looser miss probability (1%) and a
    fifth of the query cap (10 a second per task): a caller missed for one refresh
    moves its zone's share by one task, for one refresh."""
    if settings.zone_callers is None or not settings.zone_aware:
        return None
    return every_task(
        settings.zone_callers,
        nameservers=settings.dns_servers,
        refresh_interval=settings.dns_refresh_seconds,
        miss_probability=0.01,
        max_queries_per_second=10.0,
        registry=registry,
    )


async def zone_router(
    settings: Settings,
    environ: Mapping[str, str],
    registry: Registry | None = None,
    callers: RecordCache | None = None,
) -> ZoneRouter | None:
    """The zone-aware router, or None (zone-unaware) with one log line saying why.

    With ``callers`` (hello's own tasks) the callers' spread over zones is observed;
    without, every zone of ZONE_SUBNETS counts as an equal share."""
    if not settings.zone_aware:
        log.info("zone-unaware routing: ZONE_AWARE=false")
        return None
    if settings.zone_subnets is None:
        log.warning("zone-unaware routing: ZONE_SUBNETS is not set")
        return None
    found = await task_zone(environ)
    if found.zone is None:
        log.warning("zone-unaware routing: own zone unknown", extra={"reason": found.reason})
        return None
    if found.zone not in settings.zone_subnets.blocks:
        log.warning(
            "zone-unaware routing: own zone is not in ZONE_SUBNETS",
            extra={"zone": found.zone, "zones": list(settings.zone_subnets.zones)},
        )
        return None
    log.info(
        "zone-aware routing",
        extra={
            "zone": found.zone,
            "zones": list(settings.zone_subnets.zones),
            "callers": callers.host if callers is not None else "assumed even",
        },
    )
    return ZoneRouter(
        found.zone,
        settings.zone_subnets,
        caller_addresses=(lambda: callers.records) if callers is not None else None,
        registry=registry,
    )


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
