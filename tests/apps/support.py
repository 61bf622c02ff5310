"""Real servers on loopback for the apps tests: DNS, name replicas, misbehaving upstreams.

Nothing here is mocked: the DNS responder answers real UDP queries (dnslib
packs and parses them), name replicas are the real name app on 127.0.0.x, and
the misbehaving upstreams are real sockets that misbehave.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from aiohttp_discovery.metrics import Registry
from dnslib import QTYPE, RCODE, RR, A, DNSRecord
from prometheus_client.parser import text_string_to_metric_families

from apps import ENVIRONMENT
from apps.common.logs import AccessLog
from apps.name.app import make_app as make_name_app

ROOT = Path(__file__).resolve().parents[2]
NAME = "name.internal"

T = TypeVar("T")


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of the sample ``name{labels}`` (exactly those labels) in a /metrics text."""
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return float(found.value)
    return None


def run(coro: Awaitable[T], timeout: float = 60.0) -> T:
    """Run one test scenario on a fresh event loop, bounded in time."""

    async def bounded() -> T:
        async with asyncio.timeout(timeout):
            return await coro

    return asyncio.run(bounded())


async def wait_for(
    condition: Callable[[], bool], within: float = 20.0, interval: float = 0.02
) -> None:
    """Poll ``condition`` until true; fail after a generous deadline (CPU is shared)."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(interval)


class NullStream:
    """A TextIO sink for access logs the test does not read."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        return None


def quiet_log() -> AccessLog:
    return AccessLog(NullStream())  # type: ignore[arg-type]


class FakeDns:
    """A real UDP DNS server on 127.0.0.1 (dnslib wire format), authoritative for its records.

    ``mode``: ``up`` answers (TTL 0, like the seed's Cloud Map service),
    ``drop`` never answers (a DNS timeout), ``servfail`` answers SERVFAIL.
    ``stop()`` closes the port (queries are refused at once); ``start()`` reopens it.
    ``queries`` counts the queries that arrived, per name.
    """

    def __init__(self) -> None:
        self.records: dict[str, list[str]] = {}
        self.mode = "up"
        self.queries: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.start()

    @property
    def server(self) -> str:
        return f"127.0.0.1:{self.port}"

    def set(self, name: str, *addresses: str) -> None:
        with self._lock:
            self.records[name] = list(addresses)

    def count(self, name: str = NAME) -> int:
        with self._lock:
            return self.queries[name]

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.settimeout(0.05)
        self.port = sock.getsockname()[1]
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, args=(sock,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _serve(self, sock: socket.socket) -> None:
        while self._sock is sock:
            try:
                data, peer = sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            request = DNSRecord.parse(data)
            name = str(request.q.qname).rstrip(".")
            with self._lock:
                self.queries[name] += 1
                mode = self.mode
                addresses = list(self.records.get(name, ()))
                known = name in self.records
            if mode == "drop":
                continue
            reply = request.reply()
            if mode == "servfail":
                reply.header.rcode = RCODE.SERVFAIL
            elif not known:
                reply.header.rcode = RCODE.NXDOMAIN
            elif request.q.qtype == QTYPE.A:
                for address in addresses:
                    reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(address), ttl=0))
            with contextlib.suppress(OSError):
                sock.sendto(reply.pack(), peer)


def free_port_on(addresses: list[str]) -> int:
    """A TCP port free on every given loopback address (name replicas share one port)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind((addresses[0], 0))
            port = probe.getsockname()[1]
        try:
            for address in addresses:
                with socket.socket() as other:
                    other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    other.bind((address, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no common free port on " + ", ".join(addresses))


class Replica:
    """A real name app served in-process on ``ip:port``, counting what it served."""

    def __init__(self, ip: str, port: int, delay: float = 0.0) -> None:
        self.ip = ip
        self.port = port
        self.delay = delay
        """Seconds every answer is held back (a slow but alive replica); may change live."""
        self.registry = Registry()
        self._runner: web.AppRunner | None = None

    @property
    def served(self) -> int:
        counter = self.registry.counter(
            "http_requests_total", "Requests served, by route and status.", ("route", "status")
        )
        return int(counter.value(route="/", status="200"))

    async def start(self) -> Replica:
        app = make_name_app(
            hostname=f"replica-{self.ip}", registry=self.registry, access_log=quiet_log()
        )

        @web.middleware
        async def slow(
            request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
        ) -> web.StreamResponse:
            if self.delay:
                await asyncio.sleep(self.delay)
            return await handler(request)

        app.middlewares.append(slow)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.ip, self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


class RawServer:
    """A misbehaving upstream on ``ip:port`` built from raw asyncio streams.

    ``behaviour(reader, writer)`` handles each connection. Connections are tracked
    so ``stop()`` can cut them.
    """

    def __init__(
        self,
        ip: str,
        port: int,
        behaviour: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
    ) -> None:
        self.ip = ip
        self.port = port
        self._behaviour = behaviour
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.connections = 0

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        try:
            await self._behaviour(reader, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def start(self) -> RawServer:
        self._server = await asyncio.start_server(
            self._handle, self.ip, self.port, reuse_address=True
        )
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            await self._server.wait_closed()
            self._server = None


async def read_request(reader: asyncio.StreamReader) -> None:
    await reader.readuntil(b"\r\n\r\n")


async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accept, then never reply (a wedged process)."""
    await asyncio.sleep(3600)


def respond_with(head: bytes, body: bytes = b"", then_hang: bool = False) -> Any:
    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(head + body)
            await writer.drain()
            if then_hang:
                await asyncio.sleep(3600)

    return behaviour


async def endless_chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """200 text/plain with a chunked body that never ends."""
    await read_request(reader)
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"x" * 16384
    while True:
        writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        await writer.drain()


# -- processes -----------------------------------------------------------------


def service_env(**overrides: str) -> dict[str, str]:
    # The services' own variables are never inherited: a test sets exactly the ones it means.
    env = {k: v for k, v in os.environ.items() if k not in ENVIRONMENT}
    env.update(PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1")
    env.update(overrides)
    return env


class Service:
    """``python -m apps.<module>`` as a child process, stdout/stderr captured to files."""

    def __init__(self, module: str, tmp: Path, cwd: Path = ROOT, **env: str) -> None:
        self.module = module
        self.stdout_path = tmp / f"{module}-{env.get('HOST', '')}-{time.monotonic_ns()}.out"
        self.stderr_path = self.stdout_path.with_suffix(".err")
        self._stdout = self.stdout_path.open("wb")
        self._stderr = self.stderr_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", f"apps.{module}"],
            cwd=cwd,
            env=service_env(**env),
            stdout=self._stdout,
            stderr=self._stderr,
        )
        self.host = env.get("HOST", "127.0.0.1")
        self.port = int(env.get("PORT", "3000"))

    def url(self, path: str = "/") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def health(self) -> int | None:
        try:
            with urllib.request.urlopen(self.url("/health"), timeout=2) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return None

    async def wait_healthy(self, within: float = 30.0) -> Service:
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + within
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"{self.module} exited: {self.stderr()}")
            if await loop.run_in_executor(None, self.health) == 200:
                return self
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.module} not healthy within {within}s")
            await asyncio.sleep(0.05)

    def signal(self, sig: signal.Signals) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)

    async def wait_exit(self, within: float = 30.0) -> int:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, lambda: self.process.wait(timeout=within))

    def stdout(self) -> str:
        return self.stdout_path.read_text()

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self._stdout.close()
        self._stderr.close()


@contextlib.contextmanager
def services() -> Iterator[list[Service]]:
    """Collects started services and kills whatever is left when the test ends."""
    started: list[Service] = []
    try:
        yield started
    finally:
        for service in started:
            service.close()
