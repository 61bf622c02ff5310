"""``python -m bench.upstream ADDRESS[,ADDRESS...] PORT``: a tiny upstream for the client rows.

One aiohttp process listening on ``PORT`` at each loopback address (three replicas of one
upstream as far as a client can tell), with nothing of its own to measure:

- ``GET /``: ``ok`` (3 bytes of text), the cheapest answer there is;
- ``GET /slow?seconds=S``: ``ok``, S seconds late (a healthy but slow task);
- ``GET /big?bytes=N``: N bytes of ``application/octet-stream`` with a Content-Length,
  written in 64 KiB pieces (one block of zeros, shared: the server's memory stays flat);
- ``GET /health``: 200, for the client's probes.

Prints ``upstream ready`` once every address listens. Stops on SIGTERM or SIGINT.
Never part of an image.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Sequence

from aiohttp import web

from bench.openloop import event_loop_runner

PIECE = bytes(64 * 1024)
MAX_BIG_BYTES = 256 * 1024 * 1024
MAX_SLOW_SECONDS = 60.0


async def ok(_: web.Request) -> web.Response:
    return web.Response(text="ok")


async def slow(request: web.Request) -> web.Response:
    try:
        seconds = float(request.query.get("seconds", "1"))
    except ValueError:
        return web.Response(status=400, text="seconds must be a number\n")
    await asyncio.sleep(min(max(seconds, 0.0), MAX_SLOW_SECONDS))
    return web.Response(text="ok")


async def big(request: web.Request) -> web.StreamResponse:
    try:
        size = int(request.query.get("bytes", "0"))
    except ValueError:
        return web.Response(status=400, text="bytes must be an integer\n")
    size = min(max(size, 0), MAX_BIG_BYTES)
    response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    response.content_length = size
    await response.prepare(request)
    left = size
    while left:
        piece = PIECE if left >= len(PIECE) else PIECE[:left]
        await response.write(piece)
        left -= len(piece)
    await response.write_eof()
    return response


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/", ok)
    app.router.add_get("/health", ok)
    app.router.add_get("/slow", slow)
    app.router.add_get("/big", big)
    return app


async def serve(addresses: Sequence[str], port: int) -> None:
    runner = web.AppRunner(make_app(), access_log=None)
    await runner.setup()
    try:
        for address in addresses:
            await web.TCPSite(runner, address, port).start()
        print("upstream ready", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: Sequence[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m bench.upstream ADDRESS[,ADDRESS...] PORT", file=sys.stderr)
        return 2
    addresses, port = argv[0].split(","), int(argv[1])
    with event_loop_runner() as runner:
        runner.run(serve(addresses, port))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
