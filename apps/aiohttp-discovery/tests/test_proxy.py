"""Through one local proxy that balances, ejects and retries itself (ECS Service Connect's).

Pinned here: one attempt per call (the proxy's retries are the only ones, so one failure
is not retried 3 x 3 times), the only address never ejected, the name resolved once and
never polled, and the client's bound just above the proxy's so the proxy's own answer
reaches the caller. Self-contained like test_library_contract.py (runs against the
installed wheel too). Loopback only; the "proxy" is an aiohttp server on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import pytest
from aiohttp import web
from aiohttp_discovery import (
    ProxyAddress,
    Registry,
    UpstreamClient,
    UpstreamError,
    UpstreamSettings,
    ZoneRouting,
    through_proxy,
)

T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def run(coro: Awaitable[T], timeout: float = 30.0) -> T:
    async def bounded() -> T:
        async with asyncio.timeout(timeout):
            return await coro

    return asyncio.run(bounded())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@asynccontextmanager
async def proxy(port: int, handler: Handler) -> AsyncIterator[list[str]]:
    """A stand-in for the proxy's listener: every request's path, in order."""
    seen: list[str] = []

    async def counted(request: web.Request) -> web.StreamResponse:
        seen.append(request.path)
        return await handler(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", counted)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        yield seen
    finally:
        await runner.cleanup()


def answer(status: int, text: str = "Sophia") -> Handler:
    async def handler(_: web.Request) -> web.Response:
        return web.Response(status=status, text=text)

    return handler


class Resolver:
    """A system resolver stand-in: ``proxy.test`` -> 127.0.0.1, counted; fails on demand."""

    def __init__(self) -> None:
        self.calls = 0
        self.fail = False

    async def __call__(self, host: str, port: int) -> list[tuple[Any, ...]]:
        self.calls += 1
        await asyncio.sleep(0.01)  # a lookup takes time: concurrent first calls overlap
        if self.fail:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]


def client_through(port: int, resolver: Resolver, **fields: Any) -> UpstreamClient:
    settings = through_proxy(f"http://proxy.test:{port}/", **fields)
    return UpstreamClient(
        settings, source=ProxyAddress("proxy.test", port, resolve=resolver), registry=Registry()
    )


def test_a_failure_is_one_attempt_and_the_only_address_is_never_ejected() -> None:
    """The proxy already retried (twice, after a connection failure or a 503): a 503
    from it is the call's answer, after exactly one request, and the next call goes to
    the proxy again. In the DNS mode the same failure would be retried on other tasks
    and eject this one."""
    port = free_port()

    async def scenario() -> None:
        resolver = Resolver()
        async with (
            proxy(port, answer(503, "no healthy upstream")) as seen,
            client_through(port, resolver) as client,
        ):
            for expected in (1, 2, 3):
                with pytest.raises(UpstreamError) as failed:
                    await client.request("GET", "/")
                assert failed.value.status == 502
                assert failed.value.attempts == 1
                assert len(seen) == expected
            assert client.balancer.ejected() == []
            assert client.balancer.ejections == 0
        assert resolver.calls == 1

    run(scenario())


def test_a_proxy_not_listening_is_a_503_and_the_next_call_reaches_it_once_it_listens() -> None:
    """The proxy container restarting: connection refused is one attempt and a 503; the
    address is not ejected, so the first call after it listens again is answered."""
    port = free_port()

    async def scenario() -> None:
        async with client_through(port, Resolver()) as client:
            with pytest.raises(UpstreamError) as failed:
                await client.request("GET", "/")
            assert (failed.value.status, failed.value.attempts) == (503, 1)
            async with proxy(port, answer(200)) as seen:
                reply = await client.request("GET", "/")
                assert (reply.status, reply.text(), len(seen)) == (200, "Sophia", 1)

    run(scenario())


def test_the_name_is_resolved_once_by_concurrent_first_calls_and_never_polled() -> None:
    port = free_port()

    async def scenario() -> None:
        resolver = Resolver()
        async with proxy(port, answer(200)) as seen, client_through(port, resolver) as client:
            replies = await asyncio.gather(*(client.request("GET", "/") for _ in range(20)))
            assert {r.status for r in replies} == {200}
            await asyncio.sleep(0.05)
            await client.request("GET", "/")
            assert resolver.calls == 1
            assert len(seen) == 21

    run(scenario())


def test_a_name_that_does_not_resolve_is_a_503_naming_it_and_is_asked_again_next_call() -> None:
    port = free_port()

    async def scenario() -> None:
        resolver = Resolver()
        resolver.fail = True
        async with proxy(port, answer(200)), client_through(port, resolver) as client:
            with pytest.raises(UpstreamError) as failed:
                await client.request("GET", "/")
            assert failed.value.status == 503
            assert "proxy.test" in failed.value.message
            resolver.fail = False
            assert (await client.request("GET", "/")).status == 200
            assert resolver.calls == 2

    run(scenario())


def test_the_proxys_own_timeout_answer_arrives_before_the_clients_bound() -> None:
    """The proxy answers 504 when its per-request timeout passes; the call's bound is a
    second longer, so the caller gets that answer (a 502 carrying the 504), not a
    timeout of its own with the proxy's answer still on its way."""
    port = free_port()
    per_request = 0.2

    async def late(_: web.Request) -> web.Response:
        await asyncio.sleep(per_request)
        return web.Response(status=504, text="upstream request timeout")

    async def scenario() -> None:
        async with (
            proxy(port, late),
            client_through(port, Resolver(), per_request_timeout=per_request) as client,
        ):
            with pytest.raises(UpstreamError) as failed:
                await client.request("GET", "/")
            assert failed.value.status == 502
            assert failed.value.answer is not None
            assert failed.value.answer.status == 504

    run(scenario())


def test_settings_through_a_proxy_follow_its_timeouts() -> None:
    settings = through_proxy("http://name:8080/", per_request_timeout=1, idle_timeout=300)
    assert settings.proxy
    assert (settings.max_attempts, settings.max_hedges) == (1, 0)
    assert settings.request_timeout == 2.0  # the proxy's 1 s, and a second for its answer
    assert settings.attempt_timeout is None
    assert settings.keepalive_timeout == 15.0  # well below the proxy's 300 s
    assert through_proxy("http://name:8080/", idle_timeout=10).keepalive_timeout == 5.0
    assert through_proxy("http://name:8080/", per_request_timeout=0).request_timeout == 15.0
    assert through_proxy("http://name:8080/", headers={"X-A": "b"}).headers == {"X-A": "b"}


@pytest.mark.parametrize(
    ("fields", "error", "words"),
    [
        ({"max_attempts": 3}, ValueError, "3 x 3"),
        ({"max_hedges": 1}, ValueError, "3 x 3"),
        ({"per_request_timeout": -1}, ValueError, "per_request_timeout"),
        ({"idle_timeout": "300"}, TypeError, "idle_timeout"),
        ({"idle_timeout": 20, "keepalive_timeout": 20}, ValueError, "idle_timeout"),
        ({"per_request_timeout": 5, "request_timeout": 5}, ValueError, "per_request_timeout"),
    ],
)
def test_settings_that_would_fight_the_proxy_are_refused(
    fields: dict[str, Any], error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words):
        through_proxy("http://name:8080/", **fields)


def test_proxy_settings_need_one_attempt_and_no_hedge_whoever_builds_them() -> None:
    with pytest.raises(ValueError, match=r"UpstreamSettings\.proxy"):
        UpstreamSettings(url="http://name:8080/", proxy=True)
    with pytest.raises(TypeError, match=r"UpstreamSettings\.proxy"):
        UpstreamSettings(url="http://name:8080/", proxy="yes")  # type: ignore[arg-type]


def test_the_client_uses_the_proxys_address_and_leaves_zone_routing_to_the_proxy() -> None:
    settings = through_proxy("http://name:8080/")
    assert isinstance(UpstreamClient(settings).source, ProxyAddress)
    routing = ZoneRouting(subnets={"a": ["10.0.0.0/24"], "b": ["10.0.1.0/24"]}, zone="a")
    with pytest.raises(ValueError, match="proxy"):
        UpstreamClient(settings, zone_routing=routing)
