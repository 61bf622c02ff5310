"""``python -m bench.slowname``: the name service with a bench-only switch to slow it down.

``POST /_bench/delay?seconds=S`` holds every later answer back by S seconds (0:
normal again), the gray failure of a task that accepts and answers correctly,
only late. ``/metrics`` and ``/_bench/*`` are never delayed, so the bench can
still read what the replica served. Everything else is ``apps.name`` unchanged,
with the same environment. Never part of an image.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable

from aiohttp import web

from apps.common.server import main, serve
from apps.name.app import SHUTDOWN_TIMEOUT_SECONDS, Settings, make_app

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def slowable(app: web.Application) -> web.Application:
    delay = [0.0]

    @web.middleware
    async def hold_back(request: web.Request, handler: Handler) -> web.StreamResponse:
        if delay[0] and not request.path.startswith(("/_bench/", "/metrics")):
            await asyncio.sleep(delay[0])
        return await handler(request)

    async def set_delay(request: web.Request) -> web.Response:
        try:
            seconds = float(request.query["seconds"])
        except (KeyError, ValueError):
            return web.Response(status=400, text="need ?seconds=<number>\n")
        delay[0] = max(0.0, seconds)
        return web.Response(text=f"delay {delay[0]:g}\n")

    app.middlewares.append(hold_back)
    app.router.add_post("/_bench/delay", set_delay)
    return app


async def run(settings: Settings) -> None:
    await serve(
        slowable(make_app()),
        host=settings.host,
        port=settings.port,
        drain_seconds=settings.drain_seconds,
        shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS,
        service="name",
    )


if __name__ == "__main__":
    sys.exit(main("name", Settings.from_env, run, os.environ))
