"""``python -m bench.openloop URL RATE SECONDS TIMEOUT OUT``: open-loop load, results as JSON.

Open loop: request ``i`` is sent at ``start + i / RATE`` whatever happened to the
earlier ones (a slow answer does not slow the sender down, as it would with
wrk's fixed connections), and its latency is counted from that planned moment.
So queueing behind a stuck request shows up in the figures instead of being
hidden by a sender that waited (coordinated omission). Each request gets at most
``TIMEOUT`` seconds; a timed-out or failed request counts as a failure.

Writes ``{"requests", "ok", "statuses", "failures", "latencies_ms", "send_lag_ms"}``
to OUT: ``latencies_ms`` holds every successful (200) request's latency, sorted;
``send_lag_ms`` is the most this sender was ever late with a request (its own
process starved of CPU: a host stall, which delays every request due meanwhile,
whatever the service under test does).
"""

from __future__ import annotations

import asyncio
import collections
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import aiohttp


async def load(url: str, rate: float, seconds: float, limit: float) -> dict[str, object]:
    latencies: list[float] = []
    statuses: collections.Counter[str] = collections.Counter()
    failures: collections.Counter[str] = collections.Counter()
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(planned: float) -> None:
            try:
                async with asyncio.timeout(limit), session.get(url) as response:
                    await response.read()
                    statuses[str(response.status)] += 1
                    if response.status == 200:
                        latencies.append((time.perf_counter() - planned) * 1000)
            except TimeoutError:
                failures["timeout"] += 1
            except aiohttp.ClientError as exc:
                failures[type(exc).__name__] += 1

        total = int(rate * seconds)
        tasks: set[asyncio.Task[None]] = set()
        start = time.perf_counter()
        lag = 0.0
        for i in range(total):
            planned = start + i / rate
            delay = planned - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            lag = max(lag, time.perf_counter() - planned)
            task = asyncio.create_task(one(planned))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)
    latencies.sort()
    return {
        "requests": total,
        "ok": len(latencies),
        "statuses": dict(statuses),
        "failures": dict(failures),
        "latencies_ms": [round(x, 3) for x in latencies],
        "send_lag_ms": round(lag * 1000, 3),
    }


def main(argv: Sequence[str]) -> int:
    if len(argv) != 5:
        print(__doc__.splitlines()[0], file=sys.stderr)
        return 2
    url, rate, seconds, timeout, out = argv
    try:
        import uvloop  # noqa: PLC0415 - optional, as in the services

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        result = runner.run(load(url, float(rate), float(seconds), float(timeout)))
    Path(out).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
