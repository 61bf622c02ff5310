"""The client rows: ``aiohttp_discovery.UpstreamClient`` as a library, on loopback.

One upstream process (``bench.upstream``) listens on three loopback addresses
(127.0.0.21-23, one port): three replicas as a client sees them. Each measurement runs in
a process of its own (``bench.clientload``), so that its CPU time and peak RSS are its
calls' alone, and each is set against a reference measured in the same run, the bare
``aiohttp.ClientSession`` to one of the same replicas:

1. **cost**: the client (3 replicas) and the bare session (one address), in interleaved
   slices in one process; CPU seconds per call of that process;
2. **slow**: every task answers 1 s late; the client with its default settings, given
   only the URL (and the three addresses), then the bare session: success, latency, and
   the client's attempts, hedges and ejections;
3. **big**: a 10 MiB answer, each read in a fresh process: buffered (the client's
   ``request()``, the bare ``read()``), then streamed in 64 KiB and in 1 MiB chunks (the
   client's ``stream()`` and ``iter_chunks``, the bare ``iter_chunked``): success, and the
   read's peak RSS above the process's RSS just before it.

The figures and aims are ``bench.clientrows``'s pure functions.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.clientrows import (
    MIB,
    BigRow,
    ClientResults,
    CostSlice,
    SlowRow,
    big_row,
    cost_rows,
    slow_row,
)
from bench.procs import Child, Children, HarnessError
from bench.run import free_port, http_get, wait_until

ADDRESSES = ("127.0.0.21", "127.0.0.22", "127.0.0.23")
READY_SECONDS = 60.0


@dataclass(frozen=True)
class ClientOptions:
    requests: int = 2000
    """Cost row: calls per slice."""
    rounds: int = 5
    """Cost row: slices per variant, interleaved."""
    concurrency: int = 8
    slow_calls: int = 60
    slow_concurrency: int = 20
    slow_seconds: float = 1.0
    big_bytes: int = 10 * MIB
    chunks: tuple[int, ...] = (64 * 1024, MIB)


class ClientRows:
    """The upstream process and the rows; every child through ``children``."""

    def __init__(
        self, children: Children, env: Mapping[str, str], workdir: Path, options: ClientOptions
    ) -> None:
        self.children = children
        self.env = dict(env)
        self.workdir = workdir
        self.options = options
        self.port = 0
        self.upstream: Child | None = None
        self._runs = 0

    def start(self) -> None:
        self.port = free_port(ADDRESSES)
        argv = [sys.executable, "-m", "bench.upstream", ",".join(ADDRESSES), str(self.port)]
        self.upstream = self.children.start(
            "upstream", Children.program(argv, signal.SIGTERM), self.env
        )
        for address in ADDRESSES:
            url = f"http://{address}:{self.port}/health"
            wait_until(f"{url} to answer 200", _answers(url), READY_SECONDS, self.upstream)

    def close(self) -> None:
        if self.upstream is not None:
            self.children.stop(self.upstream)
            self.upstream = None

    def _measure(self, kind: str, args: Sequence[object], seconds: float) -> dict[str, Any]:
        """One ``bench.clientload`` process; its JSON."""
        self._runs += 1
        out = self.workdir / f"clientload-{self._runs}.json"
        argv = [sys.executable, "-m", "bench.clientload", kind, str(out)]
        argv += [",".join(ADDRESSES), str(self.port), *(str(a) for a in args)]
        child = self.children.start(
            f"clientload-{self._runs}", Children.program(argv, signal.SIGKILL), self.env
        )
        try:
            child.popen.wait(seconds)
        except Exception:
            raise HarnessError(f"bench.clientload {kind} did not finish in {seconds:g} s") from None
        finally:
            self.children.stop(child)
        if child.popen.returncode != 0 or not out.exists():
            raise HarnessError(f"bench.clientload {kind} failed:\n{child.tail()}")
        data: dict[str, Any] = json.loads(out.read_text())
        return data

    def cost(self) -> tuple[list[CostSlice], int]:
        o = self.options
        print(
            f"--> cost: {o.rounds} x {o.requests:,} calls per variant, interleaved, "
            f"{o.concurrency} in flight",
            flush=True,
        )
        data = self._measure("cost", (o.requests, o.rounds, o.concurrency), 600.0)
        slices = [
            CostSlice(
                variant=s["variant"],
                round=int(s["round"]),
                requests=int(s["requests"]),
                ok=int(s["ok"]),
                cpu_s=float(s["cpu_s"]),
                wall_s=float(s["wall_s"]),
                failures=s["failures"],
            )
            for s in data["slices"]
        ]
        return slices, int(data["concurrency"])

    def slow(self) -> list[SlowRow]:
        o = self.options
        rows = []
        for variant in ("client", "bare"):
            print(
                f"--> slow upstream ({variant}): {o.slow_calls} calls, {o.slow_concurrency} "
                f"in flight, every task {o.slow_seconds:g} s",
                flush=True,
            )
            args = (variant, o.slow_calls, o.slow_concurrency, o.slow_seconds)
            data = self._measure("slow", args, 120.0 + 2 * o.slow_calls * o.slow_seconds)
            rows.append(slow_row(data, o.slow_seconds))
        return rows

    def big(self) -> list[BigRow]:
        o = self.options
        reads = [("client", "buffered", o.chunks[0]), ("bare", "buffered", o.chunks[0])]
        for chunk in o.chunks:
            reads += [("client", "streamed", chunk), ("bare", "streamed", chunk)]
        rows = []
        for variant, mode, chunk in reads:
            row = big_row(self._measure("big", (variant, mode, o.big_bytes, chunk), 120.0))
            rows.append(row)
            print(f"--> big answer: {row.label}: " + _big_progress(row), flush=True)
        return rows

    def run(self) -> ClientResults:
        started = time.monotonic()
        self.start()
        try:
            slices, concurrency = self.cost()
            bare, client = cost_rows(slices)
            slow = self.slow()
            big = self.big()
        finally:
            self.close()
        print(f"    client rows took {time.monotonic() - started:.0f} s", flush=True)
        return ClientResults(
            bare=bare,
            client=client,
            concurrency=concurrency,
            slow=slow,
            big=big,
            slow_seconds=self.options.slow_seconds,
        )


def _answers(url: str) -> Callable[[], bool]:
    return lambda: http_get(url)[0] == 200


def _big_progress(row: BigRow) -> str:
    if row.skipped:
        return f"skipped ({row.skipped})"
    if not row.ok:
        return f"failed ({row.error or f'HTTP {row.status}'})"
    return f"ok, peak RSS {row.above_bytes / MIB:.2f} MiB above the baseline"
