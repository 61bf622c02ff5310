"""The services as processes: startup errors, SIGTERM drain, a replica killed under load.

Real ``python -m apps.name`` / ``python -m apps.hello`` processes on loopback,
a real DNS responder, and a bounded load from an aiohttp client.
"""

from __future__ import annotations

import asyncio
import collections
import json
import signal
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from apps import healthcheck
from tests.apps.support import NAME, FakeDns, Service, run, sample, services, wait_for

IPS = [f"127.0.0.{n}" for n in range(2, 5)]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def start_name(tmp: Path, ip: str, port: int, drain: float = 1.5) -> Service:
    return Service("name", tmp, HOST=ip, PORT=str(port), DRAIN_SECONDS=str(drain))


def start_hello(tmp: Path, dns: FakeDns, name_port: int, **env: str) -> Service:
    options = {
        "HOST": "127.0.0.1",
        "PORT": str(free_port()),
        "NAME_SERVER": f"http://{NAME}:{name_port}/",
        "DNS_SERVERS": dns.server,
        "DNS_REFRESH_SECONDS": "0.3",
    } | env
    return Service("hello", tmp, **options)


def json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


class Load:
    """Workers sending GET / to hello until told to stop, bounded in count and time."""

    def __init__(self, url: str, workers: int = 6, limit: int = 20000) -> None:
        self.url = url
        self.workers = workers
        self.limit = limit
        self.statuses: collections.Counter[int] = collections.Counter()
        self.sent = 0
        self._stop = asyncio.Event()

    @property
    def failed(self) -> int:
        return sum(n for status, n in self.statuses.items() if status != 200)

    async def run(self, until: Callable[[], Awaitable[None]]) -> None:
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as session:

            async def worker() -> None:
                while not self._stop.is_set() and self.sent < self.limit:
                    self.sent += 1
                    try:
                        async with session.get(self.url) as response:
                            await response.read()
                            self.statuses[response.status] += 1
                    except aiohttp.ClientError:
                        self.statuses[0] += 1

            tasks = [asyncio.create_task(worker()) for _ in range(self.workers)]
            try:
                await until()
            finally:
                self._stop.set()
                await asyncio.gather(*tasks)

    async def wait_sent(self, count: int) -> None:
        await wait_for(lambda: self.sent >= count or self.sent >= self.limit, within=60)


# -- startup errors --------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "hello: configuration error: NAME_SERVER is required but not set"),
        (
            {"NAME_SERVER": "name.internal:3000"},
            "hello: configuration error: NAME_SERVER='name.internal:3000': the scheme must be http",
        ),
        (
            {"NAME_SERVER": "http://name.internal:3000/", "DNS_SERVERS": "resolver"},
            "hello: configuration error: DNS_SERVERS='resolver': 'resolver' is not an IP address",
        ),
        (
            {"NAME_SERVER": "http://name.internal:3000/", "MAX_ATTEMPTS": "many"},
            "hello: configuration error: MAX_ATTEMPTS='many': expected an integer from 1 to 10",
        ),
    ],
)
def test_hello_startup_errors_are_one_clear_line(
    tmp_path: Path, env: dict[str, str], expected: str
) -> None:
    service = Service("hello", tmp_path, **env)
    try:
        code = service.process.wait(timeout=30)
    finally:
        service.close()
    assert code == 2
    lines = service.stderr().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(expected)
    assert "Traceback" not in service.stderr()
    assert service.stdout() == ""


def test_a_taken_port_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        service = Service("name", tmp_path, HOST="127.0.0.1", PORT=str(port))
        try:
            code = service.process.wait(timeout=30)
        finally:
            service.close()
    assert code == 1
    assert service.stderr().strip().startswith(f"name: cannot listen on 127.0.0.1:{port}: ")
    assert "Traceback" not in service.stderr()


# -- name: endpoints, logs, drain ------------------------------------------------------


def test_name_serves_logs_and_drains_on_sigterm(tmp_path: Path, name_port: int) -> None:
    async def scenario() -> None:
        with services() as started:
            name = start_name(tmp_path, IPS[0], name_port, drain=2.0)
            started.append(name)
            await name.wait_healthy()
            async with aiohttp.ClientSession() as session:
                async with session.get(name.url("/")) as response:
                    assert response.status == 200
                    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
                    text = await response.text()
                first, _, host = text.partition(" (from ")
                assert first.isalpha()
                assert first[0].isupper()
                assert host == f"{socket.gethostname()})"
                async with session.get(name.url("/metrics")) as response:
                    metrics = await response.text()
                    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
                assert sample(metrics, "http_requests_total", route="/", status="200") == 1
                assert sample(metrics, "http_server_draining") == 0
                probe = {"HOST": IPS[0], "PORT": str(name_port)}
                assert healthcheck.main([], probe) == 0

                name.signal(signal.SIGTERM)
                # /health fails at once...
                await wait_for(lambda: name.health() == 503, within=10)
                assert healthcheck.main([], probe) == 1
                # ...while / keeps being served, each answer closing its connection
                for _ in range(5):
                    async with session.get(name.url("/")) as response:
                        assert response.status == 200
                        assert response.headers.get("Connection") == "close"
                assert name.process.poll() is None
            assert await name.wait_exit() == 0

        log = json_lines(name.stdout())
        events = [line["message"] for line in log if "message" in line]
        assert events == ["listening", "draining", "stopping", "stopped"]
        access = [line for line in log if "status" in line]
        assert {line["path"] for line in access} >= {"/", "/health", "/metrics"}
        for line in access:
            assert set(line) >= {"time", "method", "path", "status", "duration_ms", "remote"}
        assert [line["status"] for line in access if line["path"] == "/health"][-1] == 503

    run(scenario())


def test_a_second_sigterm_cuts_the_drain_short(tmp_path: Path, name_port: int) -> None:
    async def scenario() -> None:
        with services() as started:
            name = start_name(tmp_path, IPS[1], name_port, drain=600)
            started.append(name)
            await name.wait_healthy()
            name.signal(signal.SIGTERM)
            await wait_for(lambda: name.health() == 503, within=10)
            name.signal(signal.SIGTERM)
            assert await name.wait_exit(within=30) == 0  # not 600 s

    run(scenario())


# -- hello end to end ------------------------------------------------------------------


def test_hello_end_to_end(tmp_path: Path, dns: FakeDns, name_port: int) -> None:
    dns.set(NAME, *IPS)

    async def scenario() -> None:
        with services() as started:
            names = [start_name(tmp_path, ip, name_port) for ip in IPS]
            started.extend(names)
            hello = start_hello(tmp_path, dns, name_port)
            started.append(hello)
            for service in (*names, hello):
                await service.wait_healthy()
            async with aiohttp.ClientSession() as session:
                for _ in range(30):
                    async with session.get(hello.url("/")) as response:
                        assert response.status == 200
                        text = await response.text()
                    host = socket.gethostname()
                    assert text.startswith(f"Hello (from {host}) ")
                    assert text.endswith(f" (from {host})")
                async with session.get(hello.url("/metrics")) as response:
                    metrics = await response.text()
            hello.signal(signal.SIGTERM)
            assert await hello.wait_exit() == 0

        assert sample(metrics, "hello_upstream_requests_total", upstream=NAME, outcome="ok") == 30
        assert sample(metrics, "discovery_dns_records", host=NAME) == 3
        for ip in IPS:
            assert sample(metrics, "hello_upstream_in_flight", upstream=NAME, address=ip) == 0
        access = [line for line in json_lines(hello.stdout()) if line.get("path") == "/"]
        assert len(access) == 30
        assert {line["upstream"] for line in access} == set(IPS)
        assert all(line["upstream_attempts"] == 1 for line in access)

    run(scenario())


def test_hello_answers_503_quickly_when_every_replica_is_down(
    tmp_path: Path, dns: FakeDns, name_port: int
) -> None:
    dns.set(NAME, *IPS)  # listed, nothing listening

    async def scenario() -> None:
        with services() as started:
            hello = start_hello(tmp_path, dns, name_port, REQUEST_TIMEOUT_SECONDS="5")
            started.append(hello)
            await hello.wait_healthy()
            async with aiohttp.ClientSession() as session:
                loop = asyncio.get_running_loop()
                began = loop.time()
                async with session.get(hello.url("/")) as response:
                    assert response.status == 503
                    body = await response.text()
                took = loop.time() - began
            assert body == "service unavailable: no name service task could be reached\n"
            assert took < 5.0  # refused connections: no attempt waited out a timeout

        line = next(x for x in json_lines(hello.stdout()) if x.get("path") == "/")
        assert line["status"] == 503
        assert line["upstream_attempts"] == 3
        assert "connect failed" in str(line["upstream_error"])

    run(scenario())


# -- a name replica leaving under load ---------------------------------------------


@pytest.mark.parametrize(
    "how",
    ["sigterm after deregistering", "sigterm while still listed", "sigkill while still listed"],
)
def test_a_name_replica_leaving_under_load_costs_no_request(
    tmp_path: Path, dns: FakeDns, name_port: int, how: str
) -> None:
    dns.set(NAME, *IPS)
    leaving = IPS[0]

    async def scenario() -> Load:
        with services() as started:
            names = {ip: start_name(tmp_path, ip, name_port, drain=1.5) for ip in IPS}
            started.extend(names.values())
            hello = start_hello(tmp_path, dns, name_port)
            started.append(hello)
            for service in (*names.values(), hello):
                await service.wait_healthy()
            load = Load(hello.url("/"))
            exit_code: list[int] = []

            async def scenario_steps() -> None:
                await load.wait_sent(200)
                if how == "sigterm after deregistering":
                    dns.set(NAME, *IPS[1:])  # what ECS does first: Cloud Map deregistration
                if how.startswith("sigkill"):
                    names[leaving].signal(signal.SIGKILL)
                else:
                    names[leaving].signal(signal.SIGTERM)
                exit_code.append(await names[leaving].wait_exit())
                sent = load.sent
                await load.wait_sent(sent + 300)  # keep going with the replica gone

            await load.run(scenario_steps)
            expected = -signal.SIGKILL if how.startswith("sigkill") else 0
            assert exit_code == [expected]
            hello.signal(signal.SIGTERM)
            await hello.wait_exit()
            return load, json_lines(hello.stdout())

    load, log = run(scenario())
    assert load.failed == 0, load.statuses
    assert load.statuses[200] >= 500
    served = [line for line in log if line.get("path") == "/"]
    assert len(served) == load.statuses[200]
    assert {line["upstream"] for line in served} == set(IPS)
    # The last 200 requests: only the replicas that stayed answered them.
    assert {line["upstream"] for line in served[-200:]} == set(IPS[1:])
