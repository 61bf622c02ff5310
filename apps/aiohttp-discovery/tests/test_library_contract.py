"""The library's contract, as another team meets it: default settings, upstreams unlike
name (slow, large answers, POST, IPv6), misuse, errors, logs and tracing.

Self-contained: imports only aiohttp_discovery, aiohttp, pytest and the standard
library, so the gate runs this file against the installed wheel at the lowest versions
the distribution's metadata allows (tests/delivery/test_library.py). Loopback only.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any, TypeVar

import aiohttp
import pytest
from aiohttp import web
from aiohttp_discovery import (
    BodyTooLarge,
    StaticAddresses,
    UpstreamClient,
    UpstreamError,
    UpstreamSettings,
)
from yarl import URL

T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MIB = 1024 * 1024


def run(coro: Awaitable[T], timeout: float = 60.0) -> T:
    async def bounded() -> T:
        async with asyncio.timeout(timeout):
            return await coro

    return asyncio.run(bounded())


def free_port(host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@asynccontextmanager
async def upstream(
    routes: dict[str, Handler], hosts: list[str], port: int, methods: tuple[str, ...] = ("GET",)
) -> AsyncIterator[list[list[str]]]:
    """The same app on every host (one list of seen paths per host)."""
    seen: list[list[str]] = []
    runners = []
    for _ in hosts:
        log: list[str] = []
        seen.append(log)
        app = web.Application()

        def wrap(handler: Handler, log: list[str] = log) -> Handler:
            async def logged(request: web.Request) -> web.StreamResponse:
                log.append(request.path)
                return await handler(request)

            return logged

        for path, handler in routes.items():
            for method in methods:
                app.router.add_route(method, path, wrap(handler))
        runners.append(web.AppRunner(app, access_log=None, shutdown_timeout=0.5))
    try:
        for runner, host in zip(runners, hosts, strict=True):
            await runner.setup()
            await web.TCPSite(runner, host, port).start()
        yield seen
    finally:
        for runner in runners:
            await runner.cleanup()


def slow(seconds: float, text: str = "slow but fine") -> Handler:
    async def handler(request: web.Request) -> web.Response:
        await asyncio.sleep(seconds)
        return web.Response(text=text)

    return handler


def big(size: int) -> Handler:
    block = b"x" * MIB

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.content_length = size
        await response.prepare(request)
        sent = 0
        while sent < size:
            part = block[: min(MIB, size - sent)]
            await response.write(part)
            sent += len(part)
        await response.write_eof()
        return response

    return handler


HOSTS = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]


def client_of(port: int, **settings: Any) -> UpstreamClient:
    """Default settings but the URL, over three loopback tasks."""
    return UpstreamClient(
        UpstreamSettings(url=f"http://orders.internal:{port}/", **settings),
        source=StaticAddresses(HOSTS),
    )


# -- defaults that serve ordinary upstreams ------------------------------------------


def test_a_healthy_upstream_answering_in_1_or_5_seconds_succeeds_with_the_defaults() -> None:
    """The whole call gets 15 s and one attempt may use all of it: a slow but healthy
    upstream is neither cut off by a per-attempt share nor ejected for being slow."""
    port = free_port()

    async def scenario() -> tuple[list[int], list[int], int]:
        routes = {"/one": slow(1.0), "/five": slow(5.0)}
        async with upstream(routes, HOSTS, port), client_of(port) as client:
            started = time.monotonic()
            ones = [client.request("GET", "/one") for _ in range(6)]
            fives = [client.request("GET", "/five") for _ in range(3)]
            answers = await asyncio.gather(*ones, *fives)
            assert time.monotonic() - started < 12
            return (
                [a.status for a in answers[:6]],
                [a.attempts for a in answers],
                client.balancer.ejections,
            )

    statuses, attempts, ejections = run(scenario())
    assert statuses == [200] * 6
    assert attempts == [1] * 9  # no retry, no hedge: nothing failed
    assert ejections == 0


def test_a_10_mib_answer_is_read_whole_with_the_defaults() -> None:
    port = free_port()

    async def scenario() -> int:
        async with upstream({"/export": big(10 * MIB)}, HOSTS, port), client_of(port) as client:
            answer = await client.request("GET", "/export")
            assert answer.status == 200
            return len(answer.body)

    assert run(scenario()) == 10 * MIB


def test_a_10_mib_answer_streams_in_bounded_chunks() -> None:
    """``stream()`` hands the answer over at its headers; the body arrives in chunks of at
    most the size asked, so the caller never holds it whole."""
    port = free_port()

    async def scenario() -> tuple[int, int, int]:
        async with (
            upstream({"/export": big(10 * MIB)}, HOSTS, port),
            client_of(port) as client,
            client.stream("GET", "/export") as answer,
        ):
            assert answer.ok
            assert answer.headers["Content-Length"] == str(10 * MIB)
            total, largest = 0, 0
            async for chunk in answer.iter_chunks(64 * 1024):
                total += len(chunk)
                largest = max(largest, len(chunk))
            return total, largest, answer.attempts

    total, largest, attempts = run(scenario())
    assert total == 10 * MIB
    assert largest <= 64 * 1024
    assert attempts == 1


def test_the_callers_body_cap_is_its_own_error_not_retried_and_ejects_nothing() -> None:
    port = free_port()

    async def scenario() -> tuple[BodyTooLarge, BodyTooLarge, int, list[list[str]]]:
        async with (
            upstream({"/export": big(2 * MIB)}, HOSTS, port) as seen,
            client_of(port, max_body_bytes=MIB) as client,
        ):
            with pytest.raises(BodyTooLarge) as whole:
                await client.request("GET", "/export")
            with pytest.raises(BodyTooLarge) as streamed:
                await drain(client, "/export")
            return whole.value, streamed.value, client.balancer.ejections, seen

    whole, streamed, ejections, seen = run(scenario())
    assert isinstance(whole, UpstreamError)
    assert whole.status == 502
    assert whole.limit == MIB
    assert whole.attempts == 1
    assert "over 1048576" in whole.message
    assert "exceeds 1048576 bytes" in streamed.message
    assert ejections == 0
    assert sum(len(s) for s in seen) == 2  # one task asked per call: no retry elsewhere


async def drain(client: UpstreamClient, path: str) -> int:
    read = 0
    async with client.stream("GET", path) as answer:
        async for chunk in answer:
            read += len(chunk)
    return read


def test_a_post_is_sent_once_and_its_json_answer_read() -> None:
    port = free_port()

    async def create(request: web.Request) -> web.Response:
        order = await request.json()
        return web.json_response({"id": 7, "sku": order["sku"]}, status=201)

    async def scenario() -> tuple[int, Any, int]:
        async with (
            upstream({"/orders": create}, HOSTS, port, methods=("POST",)) as seen,
            client_of(port) as client,
        ):
            answer = await client.request("POST", "/orders", json={"sku": "b-42"})
            return answer.status, answer.json(), sum(len(s) for s in seen)

    assert run(scenario()) == (201, {"id": 7, "sku": "b-42"}, 1)


def test_a_post_that_reached_a_task_is_not_repeated_after_it_failed() -> None:
    port = free_port()

    async def fails(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=500, text="boom")

    async def scenario() -> tuple[UpstreamError, int]:
        async with (
            upstream({"/orders": fails}, HOSTS, port, methods=("POST",)) as seen,
            client_of(port) as client,
        ):
            with pytest.raises(UpstreamError) as caught:
                await client.request("POST", "/orders", body=b"{}")
            return caught.value, sum(len(s) for s in seen)

    error, asked = run(scenario())
    assert (error.status, error.attempts, asked) == (502, 1, 1)
    assert error.answer is not None
    assert error.answer.body == b"boom"


# -- IPv6 ---------------------------------------------------------------------------


def ipv6_loopback() -> bool:
    try:
        free_port("::1")
    except OSError:
        return False
    return True


@pytest.mark.skipif(not ipv6_loopback(), reason="this machine has no IPv6 loopback (::1)")
def test_an_ipv6_literal_url_is_called() -> None:
    port = free_port("::1")

    async def scenario() -> tuple[str, str, str]:
        async with (
            upstream({"/": slow(0.0, "v6")}, ["::1"], port),
            UpstreamClient(UpstreamSettings(url=f"http://[::1]:{port}/")) as client,
        ):
            answer = await client.request()
            return answer.text(), answer.address, client.source.__class__.__name__

    assert run(scenario()) == ("v6", "::1", "StaticAddresses")


# -- the whole contract: misuse at construction, UpstreamError from every call ---------

MISUSE: dict[str, tuple[dict[str, Any], type[Exception], str]] = {
    "url not a URL": ({"url": 42}, TypeError, "UpstreamSettings.url"),
    "url scheme": ({"url": "ftp://orders.internal/"}, ValueError, "UpstreamSettings.url"),
    "url without host": ({"url": "http:///x"}, ValueError, "UpstreamSettings.url"),
    "url bad port": ({"url": "http://orders.internal:99999/"}, ValueError, "UpstreamSettings.url"),
    "timeout text": ({"request_timeout": "2"}, TypeError, "UpstreamSettings.request_timeout"),
    "timeout negative": ({"connect_timeout": -1}, ValueError, "UpstreamSettings.connect_timeout"),
    "timeout nan": ({"request_timeout": float("nan")}, ValueError, "request_timeout"),
    "timeout bool": ({"refresh_interval": True}, TypeError, "UpstreamSettings.refresh_interval"),
    "attempts zero": ({"max_attempts": 0}, ValueError, "UpstreamSettings.max_attempts"),
    "attempts float": ({"max_attempts": 2.5}, TypeError, "UpstreamSettings.max_attempts"),
    "body cap negative": ({"max_body_bytes": -1}, ValueError, "UpstreamSettings.max_body_bytes"),
    "record type": ({"record_types": ("MX",)}, ValueError, "UpstreamSettings.record_types"),
    "record types str": ({"record_types": "A"}, TypeError, "UpstreamSettings.record_types"),
    "nameservers str": ({"nameservers": "10.0.0.2"}, TypeError, "UpstreamSettings.nameservers"),
    "statuses": ({"retry_statuses": {200}}, ValueError, "UpstreamSettings.retry_statuses"),
    "headers": ({"headers": {"X-N": 1}}, TypeError, "UpstreamSettings.headers"),
    "hedges": ({"max_hedges": 2}, ValueError, "UpstreamSettings.max_hedges"),
    "attempt over call": (
        {"attempt_timeout": 20.0},
        ValueError,
        "UpstreamSettings.attempt_timeout",
    ),
    "percent": ({"max_ejection_percent": 101}, ValueError, "max_ejection_percent"),
    "probe path": ({"probe_path": "health"}, ValueError, "UpstreamSettings.probe_path"),
}


@pytest.mark.parametrize("case", list(MISUSE))
def test_every_misuse_of_the_settings_names_the_field_at_construction(case: str) -> None:
    fields, kind, named = MISUSE[case]
    with pytest.raises(kind, match=named.replace(".", r"\.")):
        UpstreamSettings(**{"url": "http://orders.internal:8080/", **fields})


def test_the_url_may_be_a_str_or_a_yarl_url() -> None:
    text = UpstreamSettings(url="http://orders.internal:8080/v1")
    typed = UpstreamSettings(url=URL("http://orders.internal:8080/v1"))
    assert text.url == typed.url == URL("http://orders.internal:8080/v1")


def test_misuse_of_the_client_and_of_a_call_is_a_type_or_value_error() -> None:
    settings = UpstreamSettings(url="http://127.0.0.2:8080/")
    with pytest.raises(TypeError, match="settings"):
        UpstreamClient({"url": "http://x/"})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="ssl"):
        UpstreamClient(settings, ssl="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="trace_configs"):
        UpstreamClient(settings, trace_configs=[object()])  # type: ignore[list-item]

    async def calls() -> list[Exception]:
        raised: list[Exception] = []
        async with UpstreamClient(settings) as client:
            for call in (
                client.request("GET", "orders"),  # not absolute
                client.request("GET", "/x", body=b"a", json={}),  # both
                client.request("POST", "/x", body=42),  # type: ignore[arg-type]
                client.request("POST", "/x", json={1, 2}),  # not JSON
                client.request("GE T"),
            ):
                try:
                    await call
                except (TypeError, ValueError) as exc:
                    raised.append(exc)
        return raised

    raised = run(calls())
    assert [type(e) for e in raised] == [ValueError, ValueError, TypeError, TypeError, ValueError]


def test_every_failure_of_a_call_is_an_upstream_error() -> None:
    """Nothing but UpstreamError leaves a call: no task listening, a task that cuts the
    connection, an address source that breaks."""
    port = free_port()

    class Broken:
        async def addresses(self) -> tuple[str, ...]:
            raise RuntimeError("the source's own bug")

        async def close(self) -> None:
            return None

    async def cut(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.close()
        return web.Response()

    async def scenario() -> list[BaseException]:
        caught: list[BaseException] = []
        settings = UpstreamSettings(url=f"http://orders.internal:{port}/")
        async with UpstreamClient(settings, source=StaticAddresses(HOSTS)) as nobody:
            caught.append(await failure_of(nobody.request()))
        async with (
            upstream({"/": cut}, HOSTS, port),
            UpstreamClient(settings, source=StaticAddresses(HOSTS)) as cutting,
        ):
            caught.append(await failure_of(cutting.request()))
        async with UpstreamClient(settings, source=Broken()) as broken:
            caught.append(await failure_of(broken.request()))
        return caught

    nobody, cutting, broken = run(scenario())
    assert isinstance(nobody, UpstreamError)
    assert nobody.status == 503
    assert isinstance(cutting, UpstreamError)
    assert cutting.status == 503  # no status line came back: as unreachable as it gets
    assert isinstance(broken, UpstreamError)
    assert broken.status == 503
    assert "the source's own bug" in broken.message


async def failure_of(call: Awaitable[object]) -> BaseException:
    try:
        await call
    except BaseException as exc:  # the test is that only UpstreamError arrives here
        return exc
    raise AssertionError("the call succeeded")


def test_log_lines_say_the_address_and_the_reason_in_their_text(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With the stdlib's default formatter (the message alone), an ejection says which
    address, why and for how long."""
    port = free_port()

    async def scenario() -> None:
        async with client_of(port) as client:
            await failure_of(client.request())

    with caplog.at_level(logging.WARNING, logger="aiohttp_discovery"):
        run(scenario())
    ejected = [r.getMessage() for r in caplog.records if "ejected" in r.getMessage()]
    assert ejected
    assert ejected[0].startswith("orders.internal: address 127.0.0.")
    assert "ejected for 1s after 1 consecutive failure(s): connect failed" in ejected[0]


# -- hooks: tracing --------------------------------------------------------------------


def test_trace_configs_see_every_attempt_and_the_header_reaches_the_upstream() -> None:
    """What OpenTelemetry's aiohttp-client instrumentation does: a TraceConfig whose
    on_request_start adds ``traceparent``. On a retried call each attempt gets its own
    span, and each task that was asked saw a traceparent."""
    port = free_port()
    spans: list[str] = []
    received: list[str | None] = []

    async def start(session: aiohttp.ClientSession, context: SimpleNamespace, params: Any) -> None:
        span = f"{len(spans) + 1:016x}"
        spans.append(span)
        params.headers["traceparent"] = f"00-{'a' * 32}-{span}-01"

    tracing = aiohttp.TraceConfig()
    tracing.on_request_start.append(start)
    first = True

    async def flaky(request: web.Request) -> web.Response:
        nonlocal first
        received.append(request.headers.get("traceparent"))
        if first:
            first = False
            return web.Response(status=503)
        return web.Response(text="ok")

    async def scenario() -> int:
        async with (
            upstream({"/": flaky}, HOSTS, port),
            UpstreamClient(
                UpstreamSettings(url=f"http://orders.internal:{port}/"),
                source=StaticAddresses(HOSTS),
                trace_configs=[tracing],
            ) as client,
        ):
            return (await client.request()).attempts

    assert run(scenario()) == 2
    assert len(spans) == 2
    assert received == [f"00-{'a' * 32}-{span}-01" for span in spans]


# -- rules the client claims -----------------------------------------------------------


def test_hedges_spend_the_retry_budget() -> None:
    """hedging.py: hedges spend retry-budget tokens like retries, so an upstream that is
    slow because it is overloaded is not sent twice the load. With a budget of one token
    and nothing earned, ten calls that would each be hedged send one hedge."""
    port = free_port()

    async def scenario() -> tuple[int, int]:
        async with (
            upstream({"/": slow(0.05)}, HOSTS, port) as seen,
            client_of(
                port,
                hedge_min_delay=0.005,
                hedge_max_delay=0.01,  # hedge after 10 ms: every call would
                retry_burst=1.0,
                retry_ratio=0.0,
                retry_min_per_second=0.0,
            ) as client,
        ):
            hedged = 0
            for _ in range(10):
                hedged += (await client.request()).attempts - 1
            await asyncio.sleep(0.1)  # the losers' requests arrive too
            return hedged, sum(len(s) for s in seen)

    hedged, asked = run(scenario())
    assert hedged == 1
    assert asked == 11


def test_a_hedge_that_wins_interrupts_the_first_attempt_and_leaves_the_caller_uncancelled() -> None:
    """The first attempt runs in the caller's own task; a hedge that answers first
    interrupts it with a cancellation the call takes back: the caller's task carries no
    pending cancellation afterwards, and its next await runs normally."""
    port = free_port()
    slow_host, fast_host = HOSTS[0], HOSTS[1]

    async def scenario() -> tuple[list[tuple[str, bool]], list[int]]:
        outcomes, cancelling = [], []
        async with (
            upstream({"/": slow(0.5, "slow")}, [slow_host], port),
            upstream({"/": slow(0.0, "fast")}, [fast_host], port),
            UpstreamClient(
                UpstreamSettings(url=f"http://orders.internal:{port}/", hedge_max_delay=0.02),
                source=StaticAddresses([slow_host, fast_host]),
            ) as client,
        ):
            for _ in range(12):
                started = time.monotonic()
                answer = await client.request()
                assert time.monotonic() - started < 0.4  # never waited for the slow one
                outcomes.append((answer.text(), answer.hedged))
                task = asyncio.current_task()
                assert task is not None
                cancelling.append(task.cancelling())
                await asyncio.sleep(0.001)  # would raise a leftover cancellation
        return outcomes, cancelling

    outcomes, cancelling = run(scenario())
    assert {text for text, _ in outcomes} == {"fast"}
    assert any(hedged for _, hedged in outcomes)  # the slow one was tried first at least once
    assert cancelling == [0] * 12


def test_a_caller_that_leaves_as_the_hedge_answers_is_cancelled_not_answered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The hedge's answer and the caller's own cancellation arrive together: the call
    takes back only its own interruption, and the caller's goes on (its task is
    cancelled, with no answer handed to code that already left)."""
    import aiohttp_discovery.client as client_module  # noqa: PLC0415

    port = free_port()
    slow_host, fast_host = HOSTS[0], HOSTS[1]
    finished = client_module._Call._hedge_finished

    def and_the_caller_leaves(call: Any, task: asyncio.Task[Any]) -> None:
        caller = call._caller
        finished(call, task)
        if call._interrupted and caller is not None:
            caller.cancel()  # the caller's own cancellation, in the same loop turn

    monkeypatch.setattr(client_module._Call, "_hedge_finished", and_the_caller_leaves)

    class SlowFirst(random.Random):
        """Draws 0.0: the first pick is the first address, the slow one."""

        def random(self) -> float:
            return 0.0

    async def scenario() -> bool:
        async with (
            upstream({"/": slow(0.5, "slow")}, [slow_host], port),
            upstream({"/": slow(0.0, "fast")}, [fast_host], port),
            UpstreamClient(
                UpstreamSettings(url=f"http://orders.internal:{port}/", hedge_max_delay=0.02),
                source=StaticAddresses([slow_host, fast_host]),
                rng=SlowFirst(),
            ) as client,
        ):
            # Both replicas answer once first: an attempt on a replica that has never answered
            # runs as a task, left to finish when it loses (the inline path is what is tested).
            await client.request()
            await asyncio.sleep(0.7)  # the slow replica's attempt ends in the background
            assert all(client.balancer.has_answered(host) for host in (slow_host, fast_host))
            for endpoint in client.balancer.endpoints:  # equal estimates: the draw picks slow
                endpoint.latency = endpoint.peak = 0.0
            call = asyncio.create_task(client.request())
            try:
                await call
            except asyncio.CancelledError:
                return True
            return False

    assert run(scenario())


def test_a_caller_that_leaves_while_a_hedge_runs_is_cancelled_and_the_hedge_too() -> None:
    port = free_port()
    seen_cancel: list[bool] = []

    async def hang(request: web.Request) -> web.Response:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            seen_cancel.append(True)
            raise
        return web.Response(text="late")

    async def scenario() -> tuple[bool, int]:
        async with (
            upstream({"/": hang}, HOSTS[:2], port),
            UpstreamClient(
                UpstreamSettings(url=f"http://orders.internal:{port}/", hedge_max_delay=0.02),
                source=StaticAddresses(HOSTS[:2]),
            ) as client,
        ):
            call = asyncio.create_task(client.request())
            await asyncio.sleep(0.2)  # the hedge is out by now
            call.cancel()
            try:
                await call
            except asyncio.CancelledError:
                cancelled = True
            else:
                cancelled = False
            await asyncio.sleep(0.2)  # both servers see their connections go
            hedges = client._hedges.value(upstream="orders.internal")
        return cancelled, int(hedges)

    cancelled, hedges = run(scenario())
    assert cancelled
    assert hedges == 1
    assert len(seen_cancel) == 2  # the first attempt and the hedge were both dropped


def test_when_the_first_attempt_fails_while_the_hedge_runs_the_hedge_answers() -> None:
    """The first attempt fails (a 503 after 50 ms) after the hedge went out (at 20 ms):
    the call then awaits the hedge, whose answer (at about 120 ms) is the call's; the
    hedge's end must not interrupt the caller, which no longer races."""
    port = free_port()
    requests = 0

    async def first_fails(request: web.Request) -> web.Response:
        nonlocal requests
        requests += 1
        if requests == 1:
            await asyncio.sleep(0.05)
            return web.Response(status=503)
        await asyncio.sleep(0.1)
        return web.Response(text="from the hedge")

    async def scenario() -> tuple[str, bool, int, int]:
        async with (
            upstream({"/": first_fails}, HOSTS[:2], port),
            UpstreamClient(
                UpstreamSettings(url=f"http://orders.internal:{port}/", hedge_max_delay=0.02),
                source=StaticAddresses(HOSTS[:2]),
            ) as client,
        ):
            answer = await client.request()
            task = asyncio.current_task()
            assert task is not None
            await asyncio.sleep(0.001)
            return answer.text(), answer.hedged, answer.attempts, task.cancelling()

    assert run(scenario()) == ("from the hedge", True, 2, 0)


@pytest.mark.parametrize("kept", [256, 1])
def test_each_answer_carries_its_own_media_type_and_charset(
    kept: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Media types are parsed once per Content-Type value (the parse costs more than the
    rest of an answer), and each answer, read whole or streamed, still carries its own:
    whatever the order, and when the cache starts over (kept=1)."""
    monkeypatch.setattr("aiohttp_discovery.answer._MEDIA_TYPES_KEPT", kept)
    monkeypatch.setattr("aiohttp_discovery.answer._media_types", {})
    port = free_port()
    types = {
        "/json": "application/json",
        "/latin": "text/plain; charset=ISO-8859-1",
        "/bytes": "application/octet-stream",
        "/utf8": 'Text/HTML; Charset="utf-8"',
    }

    def typed(content_type: str) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            return web.Response(body=b"x", headers={"Content-Type": content_type})

        return handler

    async def scenario() -> list[tuple[str, str | None]]:
        async with (
            upstream({path: typed(value) for path, value in types.items()}, HOSTS[:1], port),
            UpstreamClient(
                UpstreamSettings(url=f"http://orders.internal:{port}/"),
                source=StaticAddresses(HOSTS[:1]),
            ) as client,
        ):
            seen = []
            for path in ["/json", "/latin", "/json", "/bytes", "/utf8", "/latin", "/bytes"]:
                answer = await client.request("GET", path)
                seen.append((answer.content_type, answer.charset))
            async with client.stream("GET", "/latin") as streamed:
                seen.append((streamed.content_type, streamed.charset))
            return seen

    json_, latin = ("application/json", None), ("text/plain", "ISO-8859-1")
    octets, utf8 = ("application/octet-stream", None), ("text/html", "utf-8")
    assert run(scenario()) == [json_, latin, json_, octets, utf8, latin, octets, latin]
    import aiohttp_discovery.answer  # noqa: PLC0415 - the cache the monkeypatch replaced

    assert len(aiohttp_discovery.answer._media_types) <= kept  # bounded


def test_settings_headers_go_with_every_call_and_a_calls_own_headers_win_except_host() -> None:
    """``settings.headers`` and Host (the upstream's name) travel with every request; a
    call's own headers replace a setting of the same name, never Host."""
    port = free_port()

    async def echo(request: web.Request) -> web.Response:
        return web.json_response(
            {name: request.headers.getall(name) for name in ("Host", "X-Team", "Authorization")}
            | {"Content-Type": request.headers.getall("Content-Type", [])}
        )

    async def scenario() -> tuple[Any, Any]:
        async with (
            upstream({"/": echo}, HOSTS[:1], port, methods=("GET", "POST")),
            UpstreamClient(
                UpstreamSettings(
                    url=f"http://orders.internal:{port}/",
                    headers={"Authorization": "Bearer s", "X-Team": "a"},
                ),
                source=StaticAddresses(HOSTS[:1]),
            ) as client,
        ):
            own = await client.request(
                "POST", "/", headers={"X-Team": "b", "Host": "elsewhere"}, json={"n": 1}
            )
            plain = await client.request("GET", "/")
            return own.json(), plain.json()

    own, plain = run(scenario())
    host = [f"orders.internal:{port}"]
    assert own == {
        "Host": host,
        "X-Team": ["b"],
        "Authorization": ["Bearer s"],
        "Content-Type": ["application/json"],
    }
    assert plain == {
        "Host": host,
        "X-Team": ["a"],
        "Authorization": ["Bearer s"],
        "Content-Type": [],
    }


def test_an_attempt_with_no_time_left_is_still_bounded_and_deadlines_are_exact() -> None:
    """aiohttp reads a total timeout of 0 as no bound at all: an attempt started at its
    call's deadline (a hedge firing late) gets 1 ms, never forever. Deadlines are whole
    milliseconds, not rounded up to a whole second (aiohttp's ceil_threshold), and each
    value is built once."""
    from aiohttp_discovery.attempt import Target  # noqa: PLC0415 - an internal detail

    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            target = Target(session, 1.0, frozenset({503}), None, None, True)
            assert target.deadline(0.0).total == 0.001
            assert target.deadline(-0.5).total == 0.001
            assert target.deadline(None).total is None
            assert target.deadline(7.2349).total == 7.234
            assert target.deadline(7.2341) is target.deadline(7.234)
            assert target.deadline(6.0).sock_connect == 1.0
            assert target.deadline(6.0).ceil_threshold == float("inf")

    run(scenario())


def test_a_new_replica_slow_on_each_new_connection_still_joins_the_rotation() -> None:
    """A replica that joins with every new connection's first answer 20 ms late (a cold
    process, a TLS handshake), beside two fast ones: its first attempts are slower than
    the hedge delay and lose their races. Cancelled, each closed its connection, so the
    next was new and slow again: it never answered (none in 2,856 calls over 8 s). A race
    lost by a replica that has never answered is left to finish instead, so it warms up
    and joins (after its first, slow answer fades from the short memory, about 2.5 s)."""
    port = free_port()
    new = HOSTS[2]
    connections: set[object] = set()

    async def cold_connections(request: web.Request) -> web.Response:
        assert request.transport is not None
        peer = request.transport.get_extra_info("peername")
        if request.transport.get_extra_info("sockname")[0] == new and peer not in connections:
            connections.add(peer)
            await asyncio.sleep(0.02)
        return web.Response(text="ok")

    async def scenario() -> tuple[int, int]:
        async with (
            upstream({"/": cold_connections}, HOSTS, port),
            UpstreamClient(
                UpstreamSettings(url=f"http://orders.internal:{port}/", hedge_max_delay=0.25),
                source=StaticAddresses(HOSTS[:2]),
            ) as client,
        ):
            for _ in range(100):  # the fast two set the hedge delay (a few ms)
                await client.request()
            client.balancer.update(HOSTS)  # the new replica joins
            client._source = StaticAddresses(HOSTS)
            answered, deadline = 0, time.monotonic() + 6
            while not answered and time.monotonic() < deadline:
                await asyncio.sleep(0.002)
                answered += (await client.request()).address == new
            return answered, len(connections)

    answered, opened = run(scenario())
    assert answered == 1, f"the new replica never answered a call ({opened} connections)"
