"""The deployment rows: rolling deployments of name on the real local stack, under load.

The stack is the one ``./dev up`` runs (``python -m local``, every timing at its default:
5 s DNS refresh, 10 s drain, 30 s stop timeout), started by the bench on a random block of
loopback addresses (``bench.zones.LocalStack``) with 4 name and 2 hello replicas in two
emulated zones, and driven through its control endpoint as ``python -m local.control
deploy`` does. Load is **closed loop** through the front: ``connections`` clients, each
sending its next request when the last one is answered (5 s client timeout), so requests/s
is what the stack delivers while it deploys. Rows, each a window of ``seconds`` (longer
when a deployment is still going at its end):

- **no deployment**: the reference, steady load, before, between and after the two
  deployment rows; each deployment row's requests/s is compared with the mean of the
  references on either side of it (the machine's speed drifts; alternating spreads that);
- **deployment**: ``deploy name --env METRICS_INTERVAL_SECONDS=5`` at the window's start (a
  real change of name's environment that changes nothing a caller sees): 4 new replicas
  start at once, 1 old one is retired at once (75% of 4 is 3), the other 3 as new ones
  become healthy, each deregistered from the Cloud Map stand-in and drained 10 s;
- **rolled back**: ``deploy name --env DRAIN_SECONDS=soon``, a value name refuses at
  startup: 4 new replicas start and exit, 1 old one is retired at once, the circuit breaker
  fails the deployment at its threshold (3) and the rollback starts an old-revision replica
  again.

The figures and aims are ``bench.deployrows``'s pure functions (tests/bench/test_deploy.py).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp

from bench.deployrows import DeployRow, served_by_revision
from bench.procs import Children, HarnessError
from bench.zones import SETTLE_DEADLINE, LocalStack, run_rows
from bench.zonestats import Call, parse_answer, since

CLIENT_TIMEOUT = 5.0  # above hello's 2 s request deadline: a slow answer is latency
NAME_REPLICAS = 4  # 75% of 4 is 3: a deployment retires one old replica at once
HELLO_REPLICAS = 2
HARMLESS = {"METRICS_INTERVAL_SECONDS": "5"}  # name writes its EMF lines every 5 s, not 10
REFUSED = {"DRAIN_SECONDS": "soon"}  # name exits at startup: not a number
POLL_SECONDS = 0.2
# A row must outlast a deployment's drain (10 s) after its new replicas start.
MIN_SECONDS = 15.0


@dataclass(frozen=True)
class DeployOptions:
    seconds: float = 20.0  # per row: a deployment with the 10 s drain fits with room
    connections: int = 16
    warmup: float = 6.0  # one 5 s DNS refresh and a second before the first row


@dataclass
class ClosedLoop:
    """``connections`` clients, each sending its next request when the last one is answered,
    every request kept as a ``Call`` (``due``: when it was sent)."""

    url: str
    connections: int
    calls: list[Call] = field(default_factory=list)
    _stopping: bool = False
    _workers: list[asyncio.Task[None]] = field(default_factory=list)
    _session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ClosedLoop:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.connections),
            timeout=aiohttp.ClientTimeout(total=CLIENT_TIMEOUT),
        )
        self._workers = [asyncio.create_task(self._worker()) for _ in range(self.connections)]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stopping = True
        await asyncio.gather(*self._workers, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    async def _worker(self) -> None:
        assert self._session is not None
        while not self._stopping:
            sent, started = time.time(), time.perf_counter()
            try:
                async with self._session.get(self.url) as response:
                    body = await response.text()
                latency = (time.perf_counter() - started) * 1000
                answer = parse_answer(body) if response.status == 200 else None
                if answer is None:
                    call = Call(sent, None, failure=f"HTTP {response.status}")
                else:
                    call = Call(sent, latency, answer[0], answer[1])
            except (aiohttp.ClientError, TimeoutError) as error:
                call = Call(sent, None, failure=type(error).__name__)
            self.calls.append(call)


class Deploys:
    """The three rows on one stack."""

    def __init__(
        self, children: Children, env: Mapping[str, str], workdir: Path, options: DeployOptions
    ) -> None:
        self.options = options
        self.stack = LocalStack(children, env, workdir / "deploy")

    def close(self) -> None:
        self.stack.stop()

    def _name(self) -> dict[str, Any]:
        name: dict[str, Any] = self.stack.status()["services"]["name"]
        return name

    async def _row(
        self, load: ClosedLoop, label: str, kind: str, env: Mapping[str, str] | None
    ) -> DeployRow:
        stack, seconds = self.stack, self.options.seconds
        await asyncio.to_thread(
            stack.wait_for,
            "name settled",
            lambda s: s["services"]["name"]["settled"],
            SETTLE_DEADLINE,
        )
        print(f"--> {label}: {self.options.connections} clients, closed loop", flush=True)
        before = await asyncio.to_thread(self._name)
        start = time.time()
        first = None
        if env is not None:
            first = (await asyncio.to_thread(stack.client.deploy, "name", dict(env)))["id"]
        await asyncio.sleep(seconds)
        name = await asyncio.to_thread(self._name)
        deadline = time.monotonic() + SETTLE_DEADLINE
        # Until the deployment (and the rollback after it) is over: the row's window then
        # runs past ``seconds``, and says so in its length.
        while first is not None and name["deployments"][-1]["state"] == "in progress":
            if time.monotonic() > deadline:
                raise HarnessError(f"{label}: deployment {first} not over in {SETTLE_DEADLINE:g} s")
            await asyncio.sleep(POLL_SECONDS)
            name = await asyncio.to_thread(self._name)
        deployments = [d for d in name["deployments"] if first is not None and d["id"] >= first]
        end = max(start + seconds, time.time())
        calls = since(load.calls, start, end)
        row = DeployRow(
            label=label,
            kind=kind,
            calls=calls,
            start=start,
            end=end,
            deployments=deployments,
            revision_before=before["revision"],
            revision_after=name["revision"],
            served_by_revision=served_by_revision(calls, [*name["replicas"], *name["finished"]]),
        )
        print(
            f"    {row.requests:,} requests, {row.per_second:,.0f}/s, {row.failed} failed;"
            f" {row.outcome()}",
            flush=True,
        )
        return row

    async def rows(self) -> list[DeployRow]:
        load_average = " ".join(f"{x:.2f}" for x in os.getloadavg())
        print(
            f"--> starting the local stack: {NAME_REPLICAS} name, {HELLO_REPLICAS} hello"
            f" (load average {load_average})",
            flush=True,
        )
        self.stack.start("stack-deploy", name=NAME_REPLICAS, hello=HELLO_REPLICAS)
        async with ClosedLoop(self.stack.front_url, self.options.connections) as load:
            await asyncio.sleep(self.options.warmup)
            rows = [
                await self._row(load, "no deployment", "reference", None),
                await self._row(load, "deployment of name", "deployment", HARMLESS),
                await self._row(load, "no deployment", "reference", None),
                await self._row(load, "broken revision, rolled back", "rollback", REFUSED),
                await self._row(load, "no deployment", "reference", None),
            ]
        self.stack.stop()
        return rows

    def run(self) -> list[DeployRow]:
        return run_rows(self.rows())
