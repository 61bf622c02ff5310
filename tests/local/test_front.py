"""The front on its own, in front of small real backends on loopback."""

from __future__ import annotations

import asyncio
import gzip
import inspect
import json
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import aiohttp
from aiohttp import web

from components.entry import NOT_FOUND_BODY as ALB_NOT_FOUND_BODY
from components.entry import PUBLIC_PATHS as ALB_PUBLIC_PATHS
from local.front import NOT_FOUND_BODY, PUBLIC_PATHS, Front, HealthCheck, TargetState
from tests.local.ports import free_port

HOST = "127.0.0.1"
DEADLINE = 20.0  # generous: the machine is shared; checks run every 50 ms
FAST_CHECKS = HealthCheck(interval=0.05, timeout=1.0, healthy_threshold=2, unhealthy_threshold=2)


class Backend:
    """A target: answers its name on /, with a /health the test can fail."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.healthy = True
        self.hits = 0
        self.peers: set[int] = set()
        self.release = asyncio.Event()
        self.arrived = asyncio.Event()  # a /slow request is waiting for release
        self.seen: list[dict[str, object]] = []
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_get("/", self._index)
        app.router.add_get("/slow", self._slow)
        app.router.add_get("/gzip", self._gzip)
        app.router.add_route("*", "/echo/{tail:.*}", self._echo)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, HOST, 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def close(self) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _health(self, _: web.Request) -> web.Response:
        return web.Response(status=200 if self.healthy else 503)

    async def _index(self, request: web.Request) -> web.Response:
        self.hits += 1
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer:
            self.peers.add(int(peer[1]))
        return web.Response(text=self.name)

    async def _slow(self, _: web.Request) -> web.Response:
        self.hits += 1
        self.arrived.set()
        await self.release.wait()
        return web.Response(text=f"{self.name} slow")

    async def _gzip(self, _: web.Request) -> web.Response:
        return web.Response(
            body=gzip.compress(b"compressed " * 100),
            headers={"Content-Encoding": "gzip", "Content-Type": "text/plain"},
        )

    async def _echo(self, request: web.Request) -> web.Response:
        self.seen.append(
            {
                "path": request.raw_path,
                "headers": dict(request.headers),
                "body": (await request.read()).decode(),
                "method": request.method,
            }
        )
        return web.Response(
            text=self.name,
            headers={"X-From-Backend": "yes", "Proxy-Authenticate": "Basic"},
        )


@asynccontextmanager
async def backends(*names: str) -> AsyncIterator[list[Backend]]:
    started = [Backend(name) for name in names]
    try:
        for backend in started:
            await backend.start()
        yield started
    finally:
        for backend in started:
            await backend.close()


@asynccontextmanager
async def front_for(
    targets: list[Backend], *, public: tuple[str, ...] | None = None, **options: float
) -> AsyncIterator[Front]:
    """A front over these targets; by default a plain proxy of every path (the tests of the
    ALB's path rules pass ``public``)."""
    front = Front(HOST, free_port(HOST), health=FAST_CHECKS, public_paths=public, **options)
    await front.start()
    try:
        for backend in targets:
            front.register(HOST, backend.port)
        yield front
    finally:
        await front.close()


async def until(front: Front, predicate: Callable[[], bool]) -> None:
    """Wait for a change of the front's targets to make ``predicate`` true."""
    async with asyncio.timeout(DEADLINE):
        await front.wait_for(predicate)


def state_of(front: Front, backend: Backend) -> TargetState | None:
    return front.state(HOST, backend.port)


async def get(session: aiohttp.ClientSession, front: Front, path: str = "/") -> tuple[int, str]:
    async with session.get(f"http://{HOST}:{front.port}{path}") as response:
        return response.status, await response.text()


async def served_by(front: Front, n: int) -> Counter[str]:
    async with aiohttp.ClientSession() as session:
        answers = [await get(session, front) for _ in range(n)]
    assert {status for status, _ in answers} == {200}, answers
    return Counter(body for _, body in answers)


async def test_spreads_round_robin_over_healthy_targets() -> None:
    async with backends("a", "b", "c") as targets, front_for(targets) as front:
        await until(front, lambda: all(state_of(front, b) is TargetState.HEALTHY for b in targets))
        assert await served_by(front, 90) == {"a": 30, "b": 30, "c": 30}


async def test_skips_unhealthy_targets_and_takes_recovered_ones_back() -> None:
    async with backends("a", "b", "c") as targets:
        a, b, c = targets
        b.healthy = False
        async with front_for(targets) as front:
            await until(
                front,
                lambda: (
                    state_of(front, a) is state_of(front, c) is TargetState.HEALTHY
                    and state_of(front, b) is TargetState.UNHEALTHY
                ),
            )
            assert set(await served_by(front, 40)) == {"a", "c"}

            a.healthy = False
            await until(front, lambda: state_of(front, a) is TargetState.UNHEALTHY)
            assert set(await served_by(front, 20)) == {"c"}

            b.healthy = True
            await until(front, lambda: state_of(front, b) is TargetState.HEALTHY)
            assert set(await served_by(front, 20)) == {"b", "c"}


async def test_fails_open_when_no_target_is_healthy() -> None:
    async with backends("a", "b") as targets:
        for backend in targets:
            backend.healthy = False
        async with front_for(targets) as front:
            await until(
                front, lambda: all(state_of(front, b) is TargetState.UNHEALTHY for b in targets)
            )
            assert set(await served_by(front, 10)) == {"a", "b"}


async def test_503_without_targets_and_502_when_the_target_is_gone() -> None:
    async with backends() as none, front_for(none) as front, aiohttp.ClientSession() as session:
        status, body = await get(session, front)
        assert status == 503
        assert "no registered targets" in body

        gone = free_port(HOST)  # nothing listens there
        front.register(HOST, gone)
        status, body = await get(session, front)
        assert status == 502
        assert f"{HOST}:{gone}" in body


async def test_504_when_the_target_does_not_answer_within_the_idle_timeout() -> None:
    async with (
        backends("slow") as targets,
        front_for(targets, idle_timeout=0.3) as front,
        aiohttp.ClientSession() as session,
    ):
        status, body = await get(session, front, "/slow")
        assert status == 504
        assert "timed out" in body


async def test_deregistering_drains_in_flight_requests_and_routes_new_ones_elsewhere() -> None:
    async with backends("a", "b") as targets, front_for(targets) as front:
        a, b = targets
        await until(front, lambda: all(state_of(front, t) is TargetState.HEALTHY for t in targets))
        async with aiohttp.ClientSession() as session:
            # Round robin: of two requests, one is in flight on a.
            slow = [asyncio.create_task(get(session, front, "/slow")) for _ in range(2)]
            async with asyncio.timeout(DEADLINE):
                await a.arrived.wait()
                await b.arrived.wait()
            draining = asyncio.create_task(front.deregister(HOST, a.port))
            await until(front, lambda: state_of(front, a) is TargetState.DRAINING)
            assert set(await served_by(front, 10)) == {"b"}
            assert not draining.done(), "returns only once a's request is done"
            a.release.set()
            b.release.set()
            assert sorted(await asyncio.gather(*slow)) == [(200, "a slow"), (200, "b slow")]
            async with asyncio.timeout(DEADLINE):
                await draining
        assert state_of(front, a) is None


async def test_forwards_as_a_proxy_should() -> None:
    async with backends("a") as targets, front_for(targets) as front:
        (a,) = targets
        await until(front, lambda: state_of(front, a) is TargetState.HEALTHY)
        url = f"http://{HOST}:{front.port}/echo/a%2Fb?x=1&y=%20z"
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                url,
                data=b'{"k": 1}',
                headers={
                    "Connection": "keep-alive, X-Per-Hop",
                    "X-Per-Hop": "must not pass",
                    "Proxy-Authorization": "Basic Zm9vOmJhcg==",
                    "TE": "trailers",
                    "X-End-To-End": "passes",
                    "X-Forwarded-For": "203.0.113.9",
                    "Content-Type": "application/json",
                },
            ) as response,
        ):
            assert response.status == 200
            assert response.headers["X-From-Backend"] == "yes"
            assert "Proxy-Authenticate" not in response.headers
        (seen,) = a.seen
        headers = seen["headers"]
        assert isinstance(headers, dict)
        assert seen["method"] == "POST"
        assert seen["path"] == "/echo/a%2Fb?x=1&y=%20z", "path and query unchanged"
        assert json.loads(str(seen["body"])) == {"k": 1}
        assert headers["Host"] == f"{HOST}:{front.port}", "the client's Host, as the ALB keeps it"
        assert headers["X-End-To-End"] == "passes"
        assert "X-Per-Hop" not in headers, "named by Connection: hop-by-hop"
        assert "Proxy-Authorization" not in headers, "hop-by-hop by definition"
        assert "TE" not in headers
        assert headers["X-Forwarded-For"] == f"203.0.113.9, {HOST}"
        assert headers["X-Forwarded-Proto"] == "http"
        assert headers["X-Forwarded-Port"] == str(front.port)


async def _raw(front: Front, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(HOST, front.port)
    try:
        writer.write(request)
        async with asyncio.timeout(DEADLINE):
            return await reader.read()
    finally:
        writer.close()


async def test_absolute_form_targets_are_forwarded_and_other_forms_refused() -> None:
    """``GET http://host/ HTTP/1.1`` got a 500 and a traceback (the target was pasted after
    the backend's address). Every server must accept absolute-form (RFC 9112 3.2.2): it is
    forwarded in origin-form, the URL's authority as the Host. Targets that name no path
    (``*``, ``host:port``) or another scheme are a 400, not a 500."""
    async with backends("a") as targets, front_for(targets) as front:
        (a,) = targets
        await until(front, lambda: state_of(front, a) is TargetState.HEALTHY)
        answer = await _raw(
            front,
            b"GET http://example.test:8080/echo/a%2Fb?y=%2F HTTP/1.1\r\n"
            b"Host: ignored.test\r\nConnection: close\r\n\r\n",
        )
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer
        assert answer.endswith(b"\r\n\r\na")
        (seen,) = a.seen
        assert seen["path"] == "/echo/a%2Fb?y=%2F", "origin-form, byte for byte"
        headers = seen["headers"]
        assert isinstance(headers, dict)
        assert headers["Host"] == "example.test:8080"
        answer = await _raw(
            front, b"GET http://example.test HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer
        for line in (
            b"OPTIONS * HTTP/1.1",
            b"CONNECT example.test:443 HTTP/1.1",
            b"GET ftp://example.test/ HTTP/1.1",
            b"GET http://u:p@example.test/ HTTP/1.1",
        ):
            answer = await _raw(front, line + b"\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n"), (line, answer)
        assert a.hits == 1, "refused targets reach no backend"


async def test_bodies_pass_through_byte_for_byte() -> None:
    async with backends("a") as targets, front_for(targets) as front:
        await until(front, lambda: state_of(front, targets[0]) is TargetState.HEALTHY)
        async with (
            aiohttp.ClientSession(auto_decompress=False) as session,
            session.get(f"http://{HOST}:{front.port}/gzip") as response,
        ):
            assert response.headers["Content-Encoding"] == "gzip"
            assert gzip.decompress(await response.read()) == b"compressed " * 100


async def test_keeps_connections_to_targets_alive() -> None:
    async with backends("a") as targets, front_for(targets) as front:
        (a,) = targets
        await until(front, lambda: state_of(front, a) is TargetState.HEALTHY)
        assert await served_by(front, 25) == {"a": 25}
        assert len(a.peers) == 1, f"25 sequential requests over {len(a.peers)} connections"


def test_the_front_forwards_what_the_alb_forwards_and_nothing_else() -> None:
    """The local stack stands in for the ALB: the same public paths and the same 404 body as
    the listener rule and default action of components/entry.py."""
    assert PUBLIC_PATHS == ALB_PUBLIC_PATHS
    assert NOT_FOUND_BODY == ALB_NOT_FOUND_BODY
    # The local stack (local/stack.py) builds its front with the default.
    assert inspect.signature(Front).parameters["public_paths"].default == PUBLIC_PATHS


async def test_only_the_public_paths_reach_a_target_the_rest_is_the_fronts_404() -> None:
    """As on AWS: only / reaches hello, so its /metrics (the private address of every name
    task) and /health are not reachable through the front, in any spelling the ALB would
    not forward either; the query string does not count; the 404 comes from the front even
    with no target registered."""
    async with backends("a") as targets, front_for(targets, public=PUBLIC_PATHS) as front:
        (a,) = targets
        await until(front, lambda: state_of(front, a) is TargetState.HEALTHY)
        async with aiohttp.ClientSession() as session:
            assert await get(session, front, "/") == (200, "a")
            assert await get(session, front, "/?x=/metrics") == (200, "a")
            for path in ("/metrics", "/health", "/%6Detrics", "/metrics?x=1", "//", "/echo/x"):
                assert await get(session, front, path) == (404, NOT_FOUND_BODY), path
        answer = await _raw(
            front,
            b"GET http://example.test/metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        assert answer.startswith(b"HTTP/1.1 404 Not Found\r\n"), answer
        assert a.hits == 2, "only the two requests for / reached the target"
        assert a.seen == []
        await front.deregister(HOST, a.port)
        async with aiohttp.ClientSession() as session:
            assert await get(session, front, "/metrics") == (404, NOT_FOUND_BODY)
            assert (await get(session, front, "/"))[0] == 503
