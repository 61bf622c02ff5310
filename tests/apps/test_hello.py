"""The hello app in-process (AppRunner) in front of real name replicas and a real DNS."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from aiohttp import web
from aiohttp_discovery.metrics import Registry
from yarl import URL

from apps.common.logs import AccessLog
from apps.common.server import Lifecycle
from apps.hello.app import make_app
from apps.hello.settings import Settings
from tests.apps.support import NAME, FakeDns, RawServer, Replica, never_answer, run, sample

IPS = [f"127.0.0.{n}" for n in range(2, 5)]


@asynccontextmanager
async def hello(
    dns: FakeDns, name_port: int, log: io.StringIO, lifecycle: Lifecycle | None = None
) -> AsyncIterator[tuple[str, Registry]]:
    settings = Settings(
        name_server=URL(f"http://{NAME}:{name_port}/"),
        dns_servers=(dns.server,),
        dns_refresh_seconds=0.3,
        request_timeout_seconds=1.5,
    )
    registry = Registry()
    app = make_app(
        settings,
        hostname="hello-test",
        registry=registry,
        lifecycle=lifecycle,
        access_log=AccessLog(log),  # type: ignore[arg-type]
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", registry
    finally:
        await runner.cleanup()


def test_a_wedged_replica_costs_no_hello_request_and_the_log_shows_the_retry(
    dns: FakeDns, name_port: int
) -> None:
    dns.set(NAME, *IPS)
    log = io.StringIO()

    async def scenario() -> list[int]:
        replicas = [await Replica(ip, name_port).start() for ip in IPS[:2]]
        wedged = await RawServer(IPS[2], name_port, never_answer).start()
        statuses: list[int] = []
        try:
            async with hello(dns, name_port, log) as (url, _), aiohttp.ClientSession() as session:

                async def one() -> None:
                    async with session.get(url + "/") as response:
                        statuses.append(response.status)
                        text = await response.text()
                        assert text.startswith("Hello (from hello-test) ")
                        assert text.endswith(
                            ("(from replica-127.0.0.2)", "(from replica-127.0.0.3)")
                        )

                for _ in range(20):
                    await asyncio.gather(*(one() for _ in range(5)))
        finally:
            await wedged.stop()
            for replica in replicas:
                await replica.stop()
        return statuses

    statuses = run(scenario())
    assert statuses == [200] * 100
    lines = [json.loads(line) for line in log.getvalue().splitlines()]
    served = [line for line in lines if line["path"] == "/"]
    assert len(served) == 100
    assert {line["upstream"] for line in served} == set(IPS[:2])
    assert any(
        line["upstream_attempts"] == 2 for line in served
    )  # hedged, or retried after a timeout


def test_hello_health_and_metrics(dns: FakeDns, name_port: int) -> None:
    dns.set(NAME, IPS[0])
    lifecycle = Lifecycle()

    async def scenario() -> tuple[str, str]:
        replica = await Replica(IPS[0], name_port).start()
        try:
            async with (
                hello(dns, name_port, io.StringIO(), lifecycle) as (url, _),
                aiohttp.ClientSession() as session,
            ):
                async with session.get(url + "/") as response:
                    assert response.status == 200
                async with session.get(url + "/health") as response:
                    assert (response.status, await response.text()) == (200, "ok\n")
                lifecycle.request_stop()
                async with session.get(url + "/health") as response:
                    assert (response.status, await response.text()) == (503, "draining\n")
                async with session.get(url + "/nope") as response:
                    assert response.status == 404
                async with session.get(url + "/metrics") as response:
                    return response.headers["Content-Type"], await response.text()
        finally:
            await replica.stop()

    content_type, text = run(scenario())
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    for name, labels, value in [
        ("http_requests_total", {"route": "/", "status": "200"}, 1),
        ("http_requests_total", {"route": "/health", "status": "200"}, 1),
        ("http_requests_total", {"route": "/health", "status": "503"}, 1),
        ("http_requests_total", {"route": "unmatched", "status": "404"}, 1),
        ("http_server_draining", {}, 1),
        ("hello_upstream_requests_total", {"upstream": NAME, "outcome": "ok"}, 1),
        ("hello_upstream_attempts_total", {"upstream": NAME, "result": "ok"}, 1),
        ("hello_upstream_in_flight", {"upstream": NAME, "address": IPS[0]}, 0),
        ("hello_upstream_ejected", {"upstream": NAME, "address": IPS[0]}, 0),
        ("hello_upstream_hedges_total", {"upstream": NAME}, 0),
        ("discovery_dns_refreshes_total", {"host": NAME}, 1),
        ("discovery_dns_records", {"host": NAME}, 1),
    ]:
        assert sample(text, name, **labels) == value, (name, labels)
    for family in [
        "hello_upstream_retries_total",
        "hello_upstream_retries_denied_total",
        "hello_upstream_ejections_total",
        "hello_upstream_hedges_won_total",
        "hello_upstream_ejections_capped_total",
        "hello_upstream_hedge_delay_seconds",
        "hello_upstream_latency_seconds",
        "hello_upstream_panic",
        "hello_upstream_probes_total",
        "discovery_dns_failures_total",
        "discovery_dns_records_age_seconds",
    ]:
        assert f"# TYPE {family} " in text
