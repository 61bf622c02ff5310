"""The name service's application and settings."""

from __future__ import annotations

import random
import socket
from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import web
from aiohttp_discovery.metrics import Registry

from apps.common import env
from apps.common.logs import AccessLog
from apps.common.server import Lifecycle, base_app, serve
from apps.name.names import NAMES

# In-flight requests get this long to finish once the drain is over. name's
# handler is instantaneous; this only bounds a pathological client.
SHUTDOWN_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class Settings:
    host: str = "0.0.0.0"
    port: int = 3000
    # After SIGTERM: how long to keep serving while DNS still lists this task.
    # Cloud Map deregisters the task when ECS stops it; clients see that after
    # the record TTL plus their own refresh interval (hello: 5 s).
    drain_seconds: float = 10.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        return cls(
            host=env.text("HOST", cls.host, environ),
            port=env.port("PORT", cls.port, environ),
            drain_seconds=env.number("DRAIN_SECONDS", cls.drain_seconds, maximum=3600, env=environ),
        )


def make_app(
    *,
    hostname: str | None = None,
    rng: random.Random | None = None,
    registry: Registry | None = None,
    lifecycle: Lifecycle | None = None,
    access_log: AccessLog | None = None,
) -> web.Application:
    """The name application: ``/`` plus the shared ``/health`` and ``/metrics``."""
    host = hostname or socket.gethostname()
    choose = (rng or random.Random()).choice  # noqa: S311 - a demo name, not a secret
    app = base_app(
        registry=registry or Registry(),
        lifecycle=lifecycle or Lifecycle(),
        access_log=access_log or AccessLog(),
    )

    async def index(_: web.Request) -> web.Response:
        return web.Response(text=f"{choose(NAMES)} (from {host})")

    app.router.add_get("/", index)
    return app


async def run(settings: Settings) -> None:
    await serve(
        make_app(),
        host=settings.host,
        port=settings.port,
        drain_seconds=settings.drain_seconds,
        shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS,
        service="name",
    )
