"""Closed-loop load: ``connections`` callers, each sending its next request when the last
one ended, for ``seconds``: how many requests a second the target serves at that
concurrency, and their latency (the Service Connect stand-in rows' capacity row).

Closed loop hides queueing (a slow answer slows its caller down), so its latencies are
only compared between targets measured the same way in the same run; the open-loop rows
(``bench.openloop``) measure tails.

``python -m bench.closedloop URL CONNECTIONS SECONDS TIMEOUT OUT`` writes
``{"requests", "ok", "seconds", "statuses", "failures", "latencies_ms"}`` to OUT
(``latencies_ms``: every 200's latency, sorted).
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

from bench.openloop import event_loop_runner


async def load(url: str, connections: int, seconds: float, limit: float) -> dict[str, object]:
    statuses: collections.Counter[str] = collections.Counter()
    failures: collections.Counter[str] = collections.Counter()
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=connections, keepalive_timeout=30)
    async with aiohttp.ClientSession(connector=connector) as session:
        end = time.perf_counter() + seconds

        async def caller() -> None:
            while time.perf_counter() < end:
                started = time.perf_counter()
                try:
                    async with asyncio.timeout(limit), session.get(url) as response:
                        await response.read()
                except TimeoutError:
                    failures["timeout"] += 1
                    continue
                except aiohttp.ClientError as exc:
                    failures[type(exc).__name__] += 1
                    continue
                statuses[str(response.status)] += 1
                if response.status == 200:
                    latencies.append((time.perf_counter() - started) * 1000)

        began = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(connections)))
        took = time.perf_counter() - began
    latencies.sort()
    return {
        "requests": sum(statuses.values()) + sum(failures.values()),
        "ok": len(latencies),
        "seconds": round(took, 3),
        "statuses": dict(statuses),
        "failures": dict(failures),
        "latencies_ms": [round(x, 3) for x in latencies],
    }


USAGE = "python -m bench.closedloop URL CONNECTIONS SECONDS TIMEOUT OUT"


def main(argv: Sequence[str]) -> int:
    if len(argv) != 5:
        print(f"usage: {USAGE}", file=sys.stderr)
        return 2
    url, connections, seconds, timeout, out = argv
    with event_loop_runner() as runner:
        result = runner.run(load(url, int(connections), float(seconds), float(timeout)))
    Path(out).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
