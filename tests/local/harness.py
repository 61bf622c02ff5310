"""Drive a real local stack (``python -m local`` in a subprocess) and load it.

The stack runs on a random block of loopback addresses with fast timings, so tests can
run beside a developer's stack and beside other test runs. Nothing here sleeps for a
fixed time: every wait is for an event or a condition, under a generous deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp

from bench import prom
from local.config import ROOT
from local.control import Client
from tests.local.ports import free_port, random_block

# Fast timings for tests. The drain outlasts a few refreshes, so a drained replica is
# out of every hello's records before it stops listening.
REFRESH = 0.5
DRAIN = 1.5
CRASH_DEREGISTER = 2.0
TIMINGS = [
    f"--dns-refresh-seconds={REFRESH}",
    f"--drain-seconds={DRAIN}",
    f"--crash-deregister-seconds={CRASH_DEREGISTER}",
    "--stop-timeout=15",
    "--health-interval=0.5",
    "--deregistration-delay=2",
    "--start-timeout=60",
]
START_DEADLINE = 120.0  # seconds for a stack to come up on a busy 2-core machine
STOP_DEADLINE = 60.0
ANSWER = re.compile(r"^Hello \(from (?P<hello>[^)\s]+)\) \S+ \(from (?P<name>[^)\s]+)\)$")


def address_of(hostname: str) -> str:
    """ip-127-0-1-3 -> 127.0.1.3 (the runner names replicas after their address)."""
    return hostname.removeprefix("ip-").replace("-", ".")


def report(scenario: str, **figures: object) -> None:
    """One line of figures per scenario; ``pytest -s`` shows them."""
    shown = ", ".join(f"{key}={value}" for key, value in figures.items())
    print(f"\n[local stack] {scenario}: {shown}", flush=True)


@dataclass
class StackProcess:
    process: subprocess.Popen[bytes]
    output: Path
    client: Client
    front_url: str
    stack_id: str = ""

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def status(self) -> dict[str, Any]:
        return self.client.status()

    def replicas(self, service: str) -> list[dict[str, Any]]:
        replicas: list[dict[str, Any]] = self.status()["services"][service]["replicas"]
        return replicas

    def pids(self) -> set[int]:
        status = self.status()
        return {
            int(r["pid"])
            for svc in status["services"].values()
            for r in svc["replicas"]
            if r["pid"] is not None
        }

    def settle(self, service: str, count: int) -> dict[str, Any]:
        self.client.scale(service, count)
        return self.client.wait_settled(service, timeout=START_DEADLINE)

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], deadline: float = START_DEADLINE
    ) -> dict[str, Any]:
        """Poll the stack's status until ``predicate(status)`` holds; return that status."""
        end = time.monotonic() + deadline
        while not predicate(status := self.status()):
            if time.monotonic() > end:
                raise AssertionError(f"condition not met within {deadline:.0f}s: {status}")
            time.sleep(0.1)
        return status

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def leftovers(self) -> list[int]:
        return leftovers(self.stack_id)


def launch(
    workdir: Path, output: Path, *, name: int, hello: int, extra: list[str] | None = None
) -> StackProcess:
    """Start ``python -m local`` on a fresh block of loopback addresses; do not wait."""
    name_net, hello_net, host = random_block()
    front, control = free_port(str(host)), free_port(str(host))
    dns = free_port(str(host), udp_too=True)
    args = [
        sys.executable,
        "-m",
        "local",
        f"--name={name}",
        f"--hello={hello}",
        f"--name-network={name_net}",
        f"--hello-network={hello_net}",
        f"--front={host}:{front}",
        f"--control={host}:{control}",
        f"--dns={host}:{dns}",
        f"--logs={workdir / 'logs'}",
        *TIMINGS,
        *(extra or []),
    ]
    with output.open("wb") as out:
        process = subprocess.Popen(
            args,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    return StackProcess(
        process, output, Client(f"http://{host}:{control}"), f"http://{host}:{front}/"
    )


def start_stack(
    workdir: Path, *, name: int, hello: int, extra: list[str] | None = None
) -> StackProcess:
    """Start a stack and wait until it serves (another address block if one was taken)."""
    workdir.mkdir(parents=True, exist_ok=True)
    for attempt in range(3):
        output = workdir / f"stack-{attempt}.out"
        stack = launch(workdir, output, name=name, hello=hello, extra=extra)
        process = stack.process
        deadline = time.monotonic() + START_DEADLINE
        while process.poll() is None and "local stack up" not in stack.text():
            if time.monotonic() > deadline:
                stack.stop(signal.SIGKILL)
                raise AssertionError(f"stack not up in {START_DEADLINE:.0f}s:\n{stack.text()}")
            time.sleep(0.1)
        if process.poll() is None:
            stack.stack_id = stack.status()["stack_id"]
            return stack
        if "cannot listen" not in stack.text():
            raise AssertionError(f"stack exited with {process.returncode}:\n{stack.text()}")
        # An address or port was taken between our check and its bind: another block.
    raise AssertionError(f"no free loopback block after 3 attempts:\n{stack.text()}")


def leftovers(stack_id: str) -> list[int]:
    """Processes (other than zombies) that carry this stack's LOCAL_STACK_ID."""
    marker = f"LOCAL_STACK_ID={stack_id}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue  # gone, or not ours to read
        if marker in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def wait_gone(stack_id: str, deadline: float = STOP_DEADLINE) -> list[int]:
    """Wait until no process of the stack is left; return what is left at the deadline."""
    end = time.monotonic() + deadline
    left = leftovers(stack_id)
    while left and time.monotonic() < end:
        time.sleep(0.1)
        left = leftovers(stack_id)
    return left


@dataclass(frozen=True)
class Sample:
    start: float  # time.time(), comparable with the runner's timestamps
    end: float
    status: int | None
    body: str
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200 and ANSWER.match(self.body) is not None

    @property
    def name(self) -> str | None:
        """Address of the name replica that answered."""
        match = ANSWER.match(self.body)
        return address_of(match["name"]) if match else None

    @property
    def hello(self) -> str | None:
        match = ANSWER.match(self.body)
        return address_of(match["hello"]) if match else None


@dataclass
class Load:
    """A bounded closed-loop load on the front: ``concurrency`` clients, each sending its
    next request when the previous one is answered, until stopped or a bound is hit."""

    url: str
    concurrency: int = 4
    max_requests: int = 20_000
    max_seconds: float = 90.0
    timeout: float = 10.0
    samples: list[Sample] = field(default_factory=list)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _tick: asyncio.Event = field(default_factory=asyncio.Event)
    _workers: list[asyncio.Task[None]] = field(default_factory=list)
    _session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Load:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.concurrency),
            timeout=aiohttp.ClientTimeout(total=self.timeout),
        )
        self._workers = [asyncio.create_task(self._worker()) for _ in range(self.concurrency)]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stopping.set()
        await asyncio.gather(*self._workers, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    async def _worker(self) -> None:
        assert self._session is not None
        end = time.monotonic() + self.max_seconds
        while (
            not self._stopping.is_set()
            and len(self.samples) < self.max_requests
            and time.monotonic() < end
        ):
            start = time.time()
            try:
                async with self._session.get(self.url) as response:
                    body = await response.text()
                sample = Sample(start, time.time(), response.status, body)
            except (aiohttp.ClientError, TimeoutError) as error:
                sample = Sample(start, time.time(), None, "", f"{type(error).__name__}: {error}")
            self.samples.append(sample)
            self._tick.set()
            self._tick = asyncio.Event()

    async def until(self, predicate: Callable[[], bool], deadline: float = 60.0) -> None:
        """Wait until ``predicate()`` holds, re-checked after every answer."""
        async with asyncio.timeout(deadline):
            while not predicate():
                if all(w.done() for w in self._workers):
                    raise AssertionError("the load hit its bounds before the condition held")
                await self._tick.wait()

    async def more(self, n: int, deadline: float = 60.0) -> None:
        """Wait for ``n`` more answers."""
        target = len(self.samples) + n
        await self.until(lambda: len(self.samples) >= target, deadline)

    def failed(self) -> list[Sample]:
        return [s for s in self.samples if not s.ok]

    def names(self, since: float = 0.0, until: float = float("inf")) -> Counter[str]:
        return Counter(
            s.name for s in self.samples if s.name is not None and since <= s.start < until
        )

    def first_seen(self, address: str, since: float = 0.0) -> float | None:
        ends = [s.end for s in self.samples if s.name == address and s.start >= since]
        return min(ends, default=None)

    def last_seen(self, address: str) -> float | None:
        return max((s.end for s in self.samples if s.name == address), default=None)


def metrics(url: str) -> dict[str, float]:
    """A service's Prometheus counters, summed over their labels."""
    import urllib.request  # noqa: PLC0415 - only the metrics scrape needs it

    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    totals: Counter[str] = Counter()
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        with contextlib.suppress(ValueError):
            totals[name.split("{", 1)[0]] += float(value)
    return dict(totals)


def scrape(url: str) -> list[prom.Sample]:
    """A service's /metrics, every sample with its labels."""
    import urllib.request  # noqa: PLC0415 - only the metrics scrape needs it

    with urllib.request.urlopen(url, timeout=5) as response:
        return prom.parse(response.read().decode())


def hello_counters(stack: StackProcess) -> dict[str, float]:
    """Retries, ejections and DNS refreshes/failures summed over every hello replica."""
    wanted = (
        "hello_upstream_retries_total",
        "hello_upstream_ejections_total",
        "discovery_dns_refreshes_total",
        "discovery_dns_failures_total",
    )
    totals: Counter[str] = Counter()
    for replica in stack.replicas("hello"):
        scraped = metrics(f"http://{replica['address']}:{replica['port']}/metrics")
        for key in wanted:
            totals[key] += scraped.get(key, 0.0)
    return dict(totals)


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, int]:
    return {key.removesuffix("_total"): round(after[key] - before.get(key, 0)) for key in after}


@contextlib.contextmanager
def running(workdir: Path, **kwargs: Any) -> Iterator[StackProcess]:
    stack = start_stack(workdir, **kwargs)
    try:
        yield stack
    finally:
        with contextlib.suppress(subprocess.TimeoutExpired):
            stack.stop()
        for pid in stack.leftovers():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
