"""Open-loop load: the one generator of the gray rows and the zone rows.

Open loop: request ``i`` is sent at ``start + i / rate`` whatever happened to the
earlier ones (a slow answer does not slow the sender down, as it would with
wrk's fixed connections), and its latency is counted from that planned moment.
So queueing behind a stuck request shows up in the figures instead of being
hidden by a sender that waited (coordinated omission). Each request gets at most
``timeout`` seconds; a timed-out or failed request counts as a failure, and as
infinitely slow in the percentiles (:func:`percentile`).

The generator also measures its own lateness (``send_lag``): the most it was ever
late sending a request, its own process starved of CPU. That is a host stall,
which delays every request due meanwhile, whatever the service under test does.
When behind, it still lets the answers in between sends, or a stall would turn
into one burst of every request due during it.

``python -m bench.openloop URL RATE SECONDS TIMEOUT OUT`` (the gray rows, in a process
of their own) writes ``{"requests", "ok", "statuses", "failures", "latencies_ms",
"send_lag_ms"}`` to OUT: ``latencies_ms`` holds every successful (200) request's
latency, sorted. The zone rows run :class:`OpenLoop` in the bench's own process,
stopped when their scenario ends, and keep every request (:func:`under_load`).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import math
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import aiohttp

# The sender this late names a host stall in the rows' notes.
STALL_NOTE_MS = 20.0


@dataclass(frozen=True, slots=True)
class Shot:
    """One request of the load, as it ended."""

    due: float
    """When it was due, ``time.time()``."""
    latency_ms: float | None
    """From when it was due to the whole answer read; None: no answer."""
    status: int = 0
    """The answer's HTTP status; 0: no answer."""
    body: bytes = b""
    failure: str = ""
    """No answer: ``timeout`` or the aiohttp exception's name."""


R = TypeVar("R")


class OpenLoop(Generic[R]):
    """Requests to ``url`` at ``rate`` a second, each sent when due, until ``seconds``
    have passed or :meth:`stop`; every request, as it ends, kept as ``record(shot)``
    in ``records`` (in the order they ended)."""

    def __init__(self, url: str, rate: float, timeout: float, record: Callable[[Shot], R]) -> None:
        self.url = url
        self.rate = rate
        self.timeout = timeout
        self.record = record
        self.records: list[R] = []
        self.sent = 0
        self.send_lag = 0.0
        """Seconds: the most this sender was late with a request."""
        self._stopping = False

    def stop(self) -> None:
        self._stopping = True

    async def run(self, seconds: float) -> None:
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30)
        tasks: set[asyncio.Task[None]] = set()
        async with aiohttp.ClientSession(connector=connector) as session:

            async def one(planned: float, due: float) -> None:
                try:
                    async with asyncio.timeout(self.timeout), session.get(self.url) as response:
                        body = await response.read()
                    elapsed = (time.perf_counter() - planned) * 1000
                    shot = Shot(due, elapsed, response.status, body)
                except TimeoutError:
                    shot = Shot(due, None, failure="timeout")
                except aiohttp.ClientError as exc:
                    shot = Shot(due, None, failure=type(exc).__name__)
                self.records.append(self.record(shot))

            start, wall_start = time.perf_counter(), time.time()
            for i in range(int(seconds * self.rate)):
                if self._stopping:
                    break
                planned = start + i / self.rate
                delay = planned - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    await asyncio.sleep(0)  # behind: let the answers in between sends
                self.send_lag = max(self.send_lag, time.perf_counter() - planned)
                task = asyncio.create_task(one(planned, wall_start + i / self.rate))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                self.sent += 1
            if tasks:
                await asyncio.gather(*tasks)


async def under_load(
    url: str,
    rate: float,
    limit: float,
    record: Callable[[Shot], R],
    scenario: Callable[[OpenLoop[R]], Awaitable[None]],
    max_seconds: float,
) -> OpenLoop[R]:
    """Run ``scenario`` while ``rate`` requests a second go to ``url`` (each within ``limit``
    seconds); stop the load when it returns (or fails), then wait for the requests in flight."""
    load = OpenLoop(url, rate, limit, record)
    sender = asyncio.create_task(load.run(max_seconds))
    try:
        await scenario(load)
    finally:
        load.stop()
        await sender
    return load


def percentile(latencies: Sequence[float], requests: int, p: float) -> float:
    """The ``p`` percentile over ``requests`` sent, of which the successful ones'
    ``latencies`` (sorted); a failed request counts as infinitely slow."""
    rank = math.ceil(round(p / 100.0 * requests, 6))  # 99.9% of 1000 is 999
    if rank <= 0 or rank > len(latencies):
        return math.inf
    return latencies[rank - 1]


def listen_overflows(netstat: str) -> int | None:
    """``TcpExt: ListenOverflows`` from the text of ``/proc/net/netstat``: connection attempts
    the kernel dropped because a listening socket's accept queue was full (None: not
    there). Host-wide (every process of this network namespace); each such attempt costs
    its client a SYN retransmit, 1 s later, whatever the server does once it accepts."""
    lines = [line.split() for line in netstat.splitlines()]
    for names, values in itertools.pairwise(lines):
        if names and names[0] == "TcpExt:" and values and values[0] == "TcpExt:":
            table = dict(zip(names[1:], values[1:], strict=False))
            found = table.get("ListenOverflows")
            return int(found) if found is not None and found.isdigit() else None
    return None


def read_listen_overflows() -> int | None:
    try:
        return listen_overflows(Path("/proc/net/netstat").read_text())
    except OSError:
        return None


def summary(shots: Sequence[Shot], send_lag: float) -> dict[str, object]:
    """What ``python -m bench.openloop`` writes: the 200s' latencies, sorted, and counts."""
    statuses: collections.Counter[str] = collections.Counter()
    failures: collections.Counter[str] = collections.Counter()
    latencies: list[float] = []
    for shot in shots:
        if shot.latency_ms is None:
            failures[shot.failure] += 1
            continue
        statuses[str(shot.status)] += 1
        if shot.status == 200:
            latencies.append(shot.latency_ms)
    latencies.sort()
    return {
        "requests": len(shots),
        "ok": len(latencies),
        "statuses": dict(statuses),
        "failures": dict(failures),
        "latencies_ms": [round(x, 3) for x in latencies],
        "send_lag_ms": round(send_lag * 1000, 3),
    }


def _bodiless(shot: Shot) -> Shot:
    return Shot(shot.due, shot.latency_ms, shot.status, b"", shot.failure)


async def load(url: str, rate: float, seconds: float, limit: float) -> dict[str, object]:
    """``rate * seconds`` requests to ``url``, each within ``limit`` seconds: the summary."""
    loop = OpenLoop(url, rate, limit, _bodiless)
    await loop.run(seconds)
    return summary(loop.records, loop.send_lag)


def event_loop_runner() -> asyncio.Runner:
    """The load generators' event loop: uvloop where it is installed, as in the services."""
    try:
        import uvloop  # noqa: PLC0415 - optional, as in the services

        return asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        return asyncio.Runner()


USAGE = "python -m bench.openloop URL RATE SECONDS TIMEOUT OUT"


def main(argv: Sequence[str]) -> int:
    if len(argv) != 5:
        print(f"usage: {USAGE}", file=sys.stderr)
        return 2
    url, rate, seconds, timeout, out = argv
    with event_loop_runner() as runner:
        result = runner.run(load(url, float(rate), float(seconds), float(timeout)))
    Path(out).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
