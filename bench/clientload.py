"""``python -m bench.clientload KIND OUT ADDRESS[,ADDRESS...] PORT [ARG...]``: one client row's
measurement, in a process of its own, written to OUT as JSON.

The process measures only its own calls (its CPU time, its peak RSS), so nothing else of
the bench weighs on them. Two variants of each call, on the same replicas
(``bench.upstream``):

- ``client``: ``aiohttp_discovery.UpstreamClient`` with its default settings, given only
  the URL of the first address and a ``StaticAddresses`` source over all of them (the
  library as another service installs it, no DNS);
- ``bare``: one ``aiohttp.ClientSession`` to the first address, the URL built once: aiohttp
  at its leanest, the reference.

Kinds:

- ``cost OUT ADDRS PORT REQUESTS ROUNDS CONCURRENCY``: both variants in this process, in
  interleaved slices (bare, client; then client, bare; ...) of REQUESTS calls each, with
  CONCURRENCY calls in flight, after one unmeasured slice of each; per slice, the CPU
  seconds this process used (``time.process_time``: user + system, every thread);
- ``slow OUT ADDRS PORT VARIANT CALLS CONCURRENCY SECONDS``: CALLS calls to
  ``/slow?seconds=SECONDS``: how many succeed, their latency and, for the client, its
  attempts, retries, hedges and ejections (from its metrics registry);
- ``big OUT ADDRS PORT VARIANT MODE BYTES CHUNK``: one GET of ``/big?bytes=BYTES``, read
  whole (MODE ``buffered``) or in chunks of at most CHUNK bytes (``streamed``, the client
  through ``UpstreamClient.stream``), after one small call on the same pool: the peak RSS
  during the read above the RSS just before it (the kernel's high-water mark, reset first
  through ``/proc/self/clear_refs``; where that cannot be written, ``ru_maxrss``, which
  then only shows a peak above every earlier one).
"""

from __future__ import annotations

import asyncio
import gc
import json
import re
import resource
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp_discovery import (
    Registry,
    StaticAddresses,
    UpstreamClient,
    UpstreamError,
    UpstreamSettings,
)
from yarl import URL

from bench import prom
from bench.openloop import event_loop_runner

METRICS_PREFIX = "upstream"
CALL_TIMEOUT = 60.0  # a bound on one bare call; the client has its own deadlines


def make_client(addresses: Sequence[str], port: int, registry: Registry) -> UpstreamClient:
    """The client as a new user writes it: the URL, and the addresses it may use."""
    settings = UpstreamSettings(url=URL(f"http://{addresses[0]}:{port}/"))
    return UpstreamClient(
        settings,
        source=StaticAddresses(addresses),
        registry=registry,
        metrics_prefix=METRICS_PREFIX,
    )


def counters(registry: Registry) -> dict[str, int]:
    """The client's attempts, retries, hedges and ejections so far, from its registry."""
    samples = prom.parse(registry.render())
    p = METRICS_PREFIX
    return {
        "attempts": int(prom.total(samples, f"{p}_attempts_total")),
        "retries": int(prom.total(samples, f"{p}_retries_total")),
        "hedges": int(prom.total(samples, f"{p}_hedges_total")),
        "ejections": int(prom.total(samples, f"{p}_ejections_total")),
    }


def failure_of(exc: BaseException) -> str:
    if isinstance(exc, UpstreamError):
        return f"UpstreamError {exc.status}"
    return type(exc).__name__


async def closed_loop(
    call: Callable[[], Awaitable[bool]], calls: int, concurrency: int
) -> tuple[int, Counter[str]]:
    """``calls`` calls, ``concurrency`` at a time: (succeeded, failures by kind)."""
    left = [calls]
    ok = [0]
    failures: Counter[str] = Counter()

    async def worker() -> None:
        while left[0] > 0:
            left[0] -= 1
            try:
                if await call():
                    ok[0] += 1
                else:
                    failures["status"] += 1
            except Exception as exc:
                failures[failure_of(exc)] += 1

    await asyncio.gather(*(worker() for _ in range(min(concurrency, calls))))
    return ok[0], failures


# -- cost ------------------------------------------------------------------------------


async def cost(
    addresses: Sequence[str], port: int, requests: int, rounds: int, concurrency: int
) -> dict[str, Any]:
    registry = Registry()
    url = URL(f"http://{addresses[0]}:{port}/")
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        make_client(addresses, port, registry) as client,
    ):

        async def bare() -> bool:
            async with session.get(url) as response:
                await response.read()
                return response.status == 200

        async def library() -> bool:
            answer = await client.request("GET", "/")
            return answer.status == 200

        calls = {"bare": bare, "client": library}
        for call in calls.values():  # warm-up: connections, caches, the balancer's estimates
            await closed_loop(call, requests, concurrency)
        slices = []
        for index in range(rounds):
            order = ("bare", "client") if index % 2 == 0 else ("client", "bare")
            for variant in order:
                gc.collect()
                cpu, wall = time.process_time(), time.perf_counter()
                ok, failures = await closed_loop(calls[variant], requests, concurrency)
                cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                slices.append(
                    {
                        "variant": variant,
                        "round": index + 1,
                        "requests": requests,
                        "ok": ok,
                        "failures": dict(failures),
                        "cpu_s": cpu,
                        "wall_s": wall,
                    }
                )
        return {"concurrency": concurrency, "slices": slices, "counters": counters(registry)}


# -- slow ------------------------------------------------------------------------------


async def slow(
    addresses: Sequence[str],
    port: int,
    variant: str,
    calls: int,
    concurrency: int,
    seconds: float,
) -> dict[str, Any]:
    latencies: list[float] = []
    registry = Registry()

    def timed(call: Callable[[], Awaitable[bool]]) -> Callable[[], Awaitable[bool]]:
        async def one() -> bool:
            started = time.perf_counter()
            ok = await call()
            if ok:
                latencies.append((time.perf_counter() - started) * 1000)
            return ok

        return one

    if variant == "bare":
        url = URL(f"http://{addresses[0]}:{port}/slow").with_query(seconds=f"{seconds:g}")
        async with aiohttp.ClientSession() as session:

            async def bare() -> bool:
                async with asyncio.timeout(CALL_TIMEOUT), session.get(url) as response:
                    await response.read()
                    return response.status == 200

            ok, failures = await closed_loop(timed(bare), calls, concurrency)
        seen: dict[str, int] | None = None
    else:
        async with make_client(addresses, port, registry) as client:

            async def library() -> bool:
                answer = await client.request("GET", "/slow", query={"seconds": f"{seconds:g}"})
                return answer.status == 200

            ok, failures = await closed_loop(timed(library), calls, concurrency)
            seen = counters(registry)
    latencies.sort()
    return {
        "variant": variant,
        "calls": calls,
        "ok": ok,
        "failures": dict(failures),
        "latencies_ms": [round(x, 3) for x in latencies],
        "counters": seen,
    }


# -- big -------------------------------------------------------------------------------


def _status_kib(field: str) -> int | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    found = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
    return int(found.group(1)) if found else None


def reset_peak() -> bool:
    """Reset the kernel's high-water mark of this process's RSS to its RSS now."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return _status_kib("VmHWM") is not None


def peak_kib() -> int:
    found = _status_kib("VmHWM")
    if found is not None:
        return found
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux


async def big(
    addresses: Sequence[str], port: int, variant: str, mode: str, size: int, chunk: int
) -> dict[str, Any]:
    result: dict[str, Any] = {"variant": variant, "mode": mode, "bytes": size, "chunk": chunk}
    if variant == "client" and mode == "streamed" and not hasattr(UpstreamClient, "stream"):
        result["skipped"] = "this aiohttp_discovery's UpstreamClient has no stream()"
        return result
    registry = Registry()
    path, query = "/big", {"bytes": str(size)}
    url = URL(f"http://{addresses[0]}:{port}{path}").with_query(query)
    read = 0
    status = 0
    async with (
        aiohttp.ClientSession() as session,
        make_client(addresses, port, registry) as client,
    ):
        # One small call on each pool first: connections, buffers and lazy imports exist
        # before the baseline, as in a service that has been running a while.
        async with session.get(url.with_path("/")) as response:
            await response.read()
        for _ in range(4 * len(addresses)):
            await client.request("GET", "/")
        gc.collect()
        method = "VmHWM reset" if reset_peak() else "ru_maxrss"
        baseline = _status_kib("VmRSS") if method == "VmHWM reset" else peak_kib()
        try:
            if variant == "bare":
                async with session.get(url) as response:
                    status = response.status
                    if mode == "buffered":
                        read = len(await response.read())
                    else:
                        async for piece in response.content.iter_chunked(chunk):
                            read += len(piece)
            elif mode == "buffered":
                answer = await client.request("GET", path, query=query)
                status, read = answer.status, len(answer.body)
            else:
                # getattr: UpstreamClient.stream is absent from older clients (checked above).
                stream: Any = getattr(client, "stream")  # noqa: B009
                async with stream("GET", path, query=query) as streamed:
                    status = streamed.status
                    async for piece in streamed.iter_chunks(chunk):
                        read += len(piece)
        except Exception as exc:
            result["error"] = f"{failure_of(exc)}: {exc}"
        peak = peak_kib()
    result |= {
        "status": status,
        "read": read,
        "baseline_kib": baseline,
        "peak_kib": peak,
        "method": method,
        "counters": counters(registry),
    }
    return result


# -- the command -----------------------------------------------------------------------


def measure(kind: str, addresses: Sequence[str], port: int, args: Sequence[str]) -> Any:
    if kind == "cost":
        requests, rounds, in_flight = (int(a) for a in args)
        return cost(addresses, port, requests, rounds, in_flight)
    if kind == "slow":
        variant, calls, concurrency, seconds = args
        return slow(addresses, port, variant, int(calls), int(concurrency), float(seconds))
    if kind == "big":
        variant, mode, size, chunk = args
        return big(addresses, port, variant, mode, int(size), int(chunk))
    raise ValueError(f"unknown kind {kind!r}")


def main(argv: Sequence[str]) -> int:
    if len(argv) < 4:
        print(__doc__.split("\n\n")[0], file=sys.stderr)
        return 2
    kind, out, addresses, port, *args = argv
    with event_loop_runner() as runner:
        result = runner.run(measure(kind, addresses.split(","), int(port), args))
    Path(out).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
