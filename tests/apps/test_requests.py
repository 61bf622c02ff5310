"""The general request API with a second caller, and retries that respect HTTP semantics.

The second caller is a small "orders" service on loopback that takes JSON by
POST: nothing about hello or name. Whether a failed call may be repeated
depends on the method (RFC 9110 9.2.2) and on whether the request could have
reached a server: only a connection that was never established proves it did
not (aiohttp_discovery/attempt.py).
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiohttp import web
from aiohttp_discovery import Answer, Registry, UpstreamClient, UpstreamError, UpstreamSettings
from yarl import URL

from tests.apps.support import NAME, FakeDns, RawServer, run, sample

IPS = [f"127.0.0.{n}" for n in range(2, 5)]


class Orders:
    """A tiny JSON service: ``POST /orders`` creates an order (201) or refuses it (422)."""

    def __init__(self, ip: str, port: int) -> None:
        self.ip, self.port = ip, port
        self.received: list[dict[str, object]] = []
        self._runner: web.AppRunner | None = None

    async def create(self, request: web.Request) -> web.Response:
        try:
            order = await request.json()
        except ValueError:
            return web.json_response({"error": "not JSON"}, status=422)
        if not isinstance(order, dict) or "sku" not in order:
            return web.json_response({"error": "sku is required"}, status=422)
        self.received.append(order)
        return web.json_response(
            {
                "id": len(self.received),
                "sku": order["sku"],
                "source": request.query.get("source"),
                "request_id": request.headers.get("X-Request-Id"),
                "host": request.host,
            },
            status=201,
        )

    async def start(self) -> Orders:
        app = web.Application()
        app.router.add_post("/orders", self.create)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.ip, self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@asynccontextmanager
async def orders_client(
    dns: FakeDns, port: int, registry: Registry | None = None
) -> AsyncIterator[UpstreamClient]:
    settings = UpstreamSettings(
        url=URL(f"http://{NAME}:{port}/"),
        nameservers=(dns.server,),
        request_timeout=1.5,
        max_hedges=0,
        probe_path=None,
    )
    async with UpstreamClient(
        settings, registry=registry, metrics_prefix="orders", rng=random.Random(5)
    ) as client:
        yield client


class Failing:
    """Reads each request (counting it), then fails it: with ``answer``, or by dropping
    the connection (after which the server may well have acted on the request)."""

    def __init__(self, answer: bytes | None) -> None:
        self.answer = answer
        self.methods: list[str] = []

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return
            length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
            await reader.readexactly(int(length.group(1)) if length else 0)
            self.methods.append(head.split(b" ", 1)[0].decode())
            if self.answer is None:
                writer.transport.abort()
                return
            writer.write(self.answer)
            await writer.drain()


def test_a_second_caller_posts_json_and_gets_answers_4xx_included(
    dns: FakeDns, name_port: int
) -> None:
    dns.set(NAME, *IPS[:2])

    async def scenario() -> tuple[Answer, Answer, list[Orders]]:
        services = [await Orders(ip, name_port).start() for ip in IPS[:2]]
        try:
            async with orders_client(dns, name_port) as client:
                created = await client.request(
                    "POST",
                    "/orders",
                    query={"source": "web shop"},
                    headers={"X-Request-Id": "r-1"},
                    json={"sku": "b-42", "quantity": 2},
                )
                refused = await client.request("POST", "/orders", body=b"{not json")
        finally:
            for service in services:
                await service.stop()
        return created, refused, services

    created, refused, services = run(scenario())
    assert (created.status, created.attempts) == (201, 1)
    assert created.headers["Content-Type"].startswith("application/json")
    assert created.json() == {
        "id": 1,
        "sku": "b-42",
        "source": "web shop",
        "request_id": "r-1",
        "host": f"{NAME}:{name_port}",
    }
    assert json.loads(created.text())["sku"] == "b-42"
    # A 4xx is the upstream's answer, returned as such, and not retried elsewhere.
    assert (refused.status, refused.attempts, refused.ok) == (422, 1, False)
    assert refused.json() == {"error": "not JSON"}
    assert sum(len(s.received) for s in services) == 1


@pytest.mark.parametrize(
    ("answer", "status"),
    [(None, 503), (b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n", 502)],
    ids=["connection cut after the request", "503"],
)
def test_a_post_that_may_have_reached_a_server_is_not_repeated(
    dns: FakeDns, name_port: int, answer: bytes | None, status: int
) -> None:
    """POST is not idempotent: after a failure that may follow the server acting on it,
    repeating it could create a second order. GET, or a POST marked idempotent, is retried."""
    dns.set(NAME, *IPS[:2])

    async def scenario() -> tuple[UpstreamError, UpstreamError, UpstreamError, int]:
        behaviour = Failing(answer)
        servers = [await RawServer(ip, name_port, behaviour).start() for ip in IPS[:2]]
        try:
            async with orders_client(dns, name_port) as client:
                errors = []
                for call in (
                    client.request("POST", "/orders", json={"sku": "a"}),
                    client.request("GET", "/orders"),
                    client.request("POST", "/orders", json={"sku": "a"}, idempotent=True),
                ):
                    with pytest.raises(UpstreamError) as caught:
                        await call
                    errors.append(caught.value)
        finally:
            for server in servers:
                await server.stop()
        return errors[0], errors[1], errors[2], behaviour.methods.count("POST")

    post, get, keyed_post, posts = run(scenario())
    # 503 when no status line came back (the cut), 502 when one did.
    assert (post.status, post.attempts) == (status, 1), post.causes
    assert (get.status, get.attempts) == (status, 2), get.causes
    assert (keyed_post.status, keyed_post.attempts) == (status, 2), keyed_post.causes
    # The plain POST reached a server exactly once; the keyed one twice. (GETs are
    # not counted: on a cut connection aiohttp itself resends an idempotent
    # request once, as RFC 9112 9.3.1 allows.)
    assert posts == 1 + 2
    if answer is not None:  # the last retryable answer comes with the error
        assert post.answer is not None
        assert post.answer.status == 503


def test_a_post_is_retried_when_the_connection_was_never_made(dns: FakeDns, name_port: int) -> None:
    """Connection refused proves the request never left: the POST goes to another task,
    and each order is created exactly once."""
    dns.set(NAME, IPS[0], IPS[1])  # nothing listens on IPS[0]
    registry = Registry()

    async def scenario() -> tuple[list[Answer], Orders]:
        service = await Orders(IPS[1], name_port).start()
        try:
            async with orders_client(dns, name_port, registry) as client:
                answers = [
                    await client.request("POST", "/orders", json={"sku": f"s-{n}"})
                    for n in range(10)
                ]
        finally:
            await service.stop()
        return answers, service

    answers, service = run(scenario())
    assert [a.status for a in answers] == [201] * 10
    assert any(a.attempts == 2 for a in answers)  # the refused task was tried, then the other
    assert [o["sku"] for o in service.received] == [f"s-{n}" for n in range(10)]
    text = registry.render()
    assert (sample(text, "orders_attempts_total", upstream=NAME, result="connect_error") or 0) >= 1
    assert (sample(text, "orders_retries_total", upstream=NAME) or 0) >= 1


def test_paths_are_encoded_once_per_client_and_every_call_reaches_its_own(
    dns: FakeDns, name_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client keeps the paths it has encoded (yarl's parse is a visible share of a
    call's CPU), a bounded number of them: each call, first or repeated, before or after
    the cache starts over, reaches exactly the path it asked for."""
    monkeypatch.setattr("aiohttp_discovery.client._PATHS_KEPT", 3)
    dns.set(NAME, IPS[0])

    async def echo(request: web.Request) -> web.Response:
        return web.Response(text=request.raw_path)

    async def scenario() -> tuple[list[str], int]:
        app = web.Application()
        app.router.add_get("/{tail:.*}", echo)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, IPS[0], name_port).start()
        try:
            async with orders_client(dns, name_port) as client:
                seen = []
                for path in [
                    "/a b",
                    "/a b",
                    "/orders/7?x=1",
                    "/a b",
                    "/orders/7?x=1",
                    *(f"/n/{i}" for i in range(5)),
                ]:
                    seen.append((await client.request("GET", path)).text())
                seen.append((await client.request("GET", "/a b", query={"q": "1"})).text())
                seen.append((await client.request("GET", "/a b")).text())
                return seen, len(client._paths)  # the bound is the point
        finally:
            await runner.cleanup()

    seen, kept = run(scenario())
    assert seen == [
        "/a%20b",
        "/a%20b",
        "/orders/7?x=1",
        "/a%20b",
        "/orders/7?x=1",
        *(f"/n/{i}" for i in range(5)),
        "/a%20b?q=1",
        "/a%20b",
    ]
    assert kept <= 3
