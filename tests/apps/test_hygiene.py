"""HTTP hygiene of both services, found by sending them hostile input.

Real sockets on loopback: a real ``python -m apps.name`` process for what the
process does end to end (logging configured as in a task), and the services'
runner in-process with small timeouts for the connection limits.
"""

from __future__ import annotations

import ast
import asyncio
import json
import signal
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
from aiohttp import web
from aiohttp_discovery import UpstreamSettings
from aiohttp_discovery.metrics import Registry
from yarl import URL

from apps.common import server
from apps.name.app import make_app
from tests.apps.support import ROOT, Service, quiet_log, run, services

MARKER = b"EVIL-MARKER"

# Ten of each: 50 requests aiohttp cannot accept. Each carries MARKER, which must not
# come back in the answer.
MALFORMED = {
    "invalid method": b"G\x00T /" + MARKER + b" HTTP/1.1\r\nHost: a\r\n\r\n",
    "bad request line": b"GET /" + MARKER + b" XTTP/1.1\r\nHost: a\r\n\r\n",
    "Content-Length with Transfer-Encoding": (
        b"POST /" + MARKER + b" HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ),
    "two Content-Lengths": (
        b"POST /" + MARKER + b" HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n"
        b"Content-Length: 2\r\n\r\nab"
    ),
    "control byte in a header name": (
        b"GET / HTTP/1.1\r\nHost: a\r\nX-" + MARKER + b"\x01: v\r\n\r\n"
    ),
}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


async def exchange(port: int, raw: bytes) -> bytes:
    """Send ``raw`` on a fresh connection; everything the server sends until it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        async with asyncio.timeout(10):
            return await reader.read()
    finally:
        writer.close()


def test_malformed_requests_are_one_access_line_and_one_count_each_without_traceback(
    tmp_path: Path,
) -> None:
    """aiohttp logged each at ERROR with a ~600-byte traceback (2,000 of them made 1.2 MB),
    counted none, wrote no access line, and echoed the offending bytes in the 400 body.

    And no answer names the Python or aiohttp version (aiohttp's default Server header,
    ``Python/3.11 aiohttp/3.14.5``, is a scanner's shortcut to known vulnerabilities).
    """
    port = free_port()
    servers: list[str] = []

    async def scenario() -> tuple[list[bytes], str, Service]:
        with services() as started:
            name = Service("name", tmp_path, HOST="127.0.0.1", PORT=str(port), DRAIN_SECONDS="0")
            started.append(name)
            await name.wait_healthy()
            answers = [await exchange(port, raw) for raw in MALFORMED.values() for _ in range(10)]
            async with aiohttp.ClientSession() as session:
                async with session.get(name.url("/metrics")) as response:
                    metrics = await response.text()
                for method, path in (("GET", "/"), ("GET", "/nope"), ("POST", "/health")):
                    async with session.request(method, name.url(path)) as response:
                        servers.append(f"{response.status} {response.headers.get('Server')}")
            name.signal(signal.SIGTERM)
            assert await name.wait_exit() == 0
            return answers, metrics, name

    answers, metrics, name = run(scenario())
    assert len(answers) == 50
    for answer in answers:
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.0 400 Bad Request\r\n"), answer
        assert b"\r\nServer: fargate-service-discovery\r\n" in head
        assert body == b"400 Bad Request\n"
        assert MARKER not in answer
    assert 'http_requests_total{route="unmatched",status="400"} 50' in metrics
    assert servers == [
        "200 fargate-service-discovery",
        "404 fargate-service-discovery",
        "405 fargate-service-discovery",
    ]

    stdout = name.stdout()
    lines = [json.loads(line) for line in stdout.splitlines()]
    bad = [line for line in lines if line.get("status") == 400]
    assert len(bad) == 50
    for line in bad:
        assert set(line) == {"time", "method", "path", "status", "duration_ms", "remote", "error"}
        assert line["remote"] == "127.0.0.1"
        assert line["error"] in {"BadHttpMethod", "BadStatusLine", "BadHttpMessage"}
    assert "Traceback" not in stdout + name.stderr()
    assert not [line for line in lines if "exception" in line or line.get("level") == "error"]
    assert MARKER.decode() not in stdout
    assert name.stderr() == ""


# -- connection limits: the services' runner in-process, with small timeouts ---------


@asynccontextmanager
async def serving(*, header_timeout: float, keepalive_timeout: float) -> AsyncIterator[int]:
    app = make_app(hostname="h", registry=Registry(), access_log=quiet_log())
    runner = server.make_runner(
        app,
        shutdown_timeout=1.0,
        header_timeout=header_timeout,
        keepalive_timeout=keepalive_timeout,
    )
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port
    finally:
        await runner.cleanup()


GET = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"


async def read_response(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head + await reader.readexactly(length)


async def seconds_until_closed(reader: asyncio.StreamReader, limit: float) -> float:
    """How long until the server closes the connection (it must send nothing more)."""
    began = time.monotonic()
    async with asyncio.timeout(limit):
        assert await reader.read() == b""
    return time.monotonic() - began


async def trickle(writer: asyncio.StreamWriter, data: bytes, every: float) -> None:
    """Slowloris: one byte at a time, until the server hangs up."""
    try:
        for byte in data:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(every)
    except ConnectionError:
        return


def test_a_silent_connection_is_closed_after_the_header_timeout() -> None:
    """A connection that never sends a byte was kept for aiohttp's 3,630 s keep-alive."""

    async def scenario() -> float:
        async with serving(header_timeout=0.5, keepalive_timeout=5.0) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                return await seconds_until_closed(reader, limit=4.0)
            finally:
                writer.close()

    assert 0.4 <= run(scenario()) <= 1.5


def test_a_head_sent_a_byte_at_a_time_is_cut_at_the_header_timeout() -> None:
    """Slowloris: bytes keep arriving, so no idle timer fires; only a header deadline helps.
    Scaled down: a byte every 0.1 s against a 0.5 s header timeout (in the services: 10 s).
    On a new connection the deadline counts from accept; on a kept-alive one, from the
    first byte of the next request (the connection was idle 0.3 s before it)."""

    async def slow_head(port: int, *, after_a_request: bool) -> float:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        sender = None
        try:
            if after_a_request:
                writer.write(GET)
                assert (await read_response(reader)).startswith(b"HTTP/1.1 200 OK\r\n")
                await asyncio.sleep(0.3)
            sender = asyncio.create_task(trickle(writer, GET * 10, every=0.1))
            return await seconds_until_closed(reader, limit=4.0)
        finally:
            if sender is not None:
                sender.cancel()
            writer.close()

    async def scenario() -> list[float]:
        async with serving(header_timeout=0.5, keepalive_timeout=5.0) as port:
            return await asyncio.gather(
                slow_head(port, after_a_request=False), slow_head(port, after_a_request=True)
            )

    new, kept_alive = run(scenario())
    assert 0.4 <= new <= 1.5
    assert 0.4 <= kept_alive <= 1.5


def test_an_idle_kept_alive_connection_lasts_the_keepalive_not_the_header_timeout() -> None:
    """Between requests the idle keep-alive applies, not the header timeout: the caller
    (ALB 30 s, discovery client pool 15 s) must always be the one to close an idle
    connection."""

    async def scenario() -> float:
        async with serving(header_timeout=0.4, keepalive_timeout=1.2) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                writer.write(GET)
                assert (await read_response(reader)).startswith(b"HTTP/1.1 200 OK\r\n")
                await asyncio.sleep(0.7)  # idle past the header timeout: still open
                writer.write(GET)
                assert (await read_response(reader)).startswith(b"HTTP/1.1 200 OK\r\n")
                idle = await seconds_until_closed(reader, limit=5.0)
            finally:
                writer.close()
            return idle

    assert 1.1 <= run(scenario()) <= 2.2


def _alb_idle_timeout() -> float:
    """IDLE_TIMEOUT_SECONDS from components/entry.py, read without importing Pulumi."""
    tree = ast.parse((ROOT / "components" / "entry.py").read_text())
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and [getattr(t, "id", None) for t in node.targets] == ["IDLE_TIMEOUT_SECONDS"]
            and isinstance(node.value, ast.Constant)
        ):
            return float(node.value.value)
    raise AssertionError("IDLE_TIMEOUT_SECONDS not found in components/entry.py")


def test_the_services_keep_alive_outlasts_every_callers_idle_timeout() -> None:
    """If a service closed an idle connection first, a caller could send a request into the
    close: the ALB answers that with a 502 (AWS: make the target's keep-alive longer than
    the load balancer's idle timeout). hello's caller is the ALB, name's the discovery
    client's pool. Raise one of these and this fails until the keep-alive follows."""
    keepalive = server.KEEPALIVE_TIMEOUT_SECONDS
    alb, pool = _alb_idle_timeout(), UpstreamSettings(url=URL("http://name.internal:3000/"))
    assert keepalive > alb
    assert keepalive > pool.keepalive_timeout
    assert server.HEADER_TIMEOUT_SECONDS < server.KEEPALIVE_TIMEOUT_SECONDS
