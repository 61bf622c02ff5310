"""What the internet reaches on hello through the load balancer, tried against the real app.

hello serves `/` (the greeting), `/health` and `/metrics`; `/metrics` lists the private address of
every name task and the failure counters, so it must not be reachable from the internet. The
load balancer forwards only the paths in `components.entry.PUBLIC_PATHS` and answers 404 itself
for the rest. These tests model the ALB's side as AWS documents it (path patterns are compared
with the path only, never the query string; case-sensitive; `*` and `?` are the only wildcards)
and send every request the model forwards to the real hello app on loopback, to see which handler
aiohttp picks. AWS does not say whether the ALB percent-decodes a path before matching, so both
readings are checked.
"""

from __future__ import annotations

import asyncio
import re
from urllib.parse import unquote, urlsplit

import pytest
from aiohttp import web
from yarl import URL

from apps.hello.app import make_app
from apps.hello.settings import Settings
from components.entry import PUBLIC_PATHS

# Spellings of /metrics and of paths around it. The ones aiohttp routes to the metrics handler
# when they reach hello are pinned in test_these_spellings_reach_metrics_when_sent_to_hello.
TARGETS = [
    "/",
    "/?name=x",
    "/?/metrics",
    "/#/metrics",
    "/metrics",
    "/metrics/",
    "/METRICS",
    "/Metrics",
    "/metrics?x=1",
    "/metrics#x",
    "/%6Detrics",
    "/%6detrics",
    "/%6D%65%74%72%69%63%73",
    "/metrics%2F",
    "/%2Fmetrics",
    "//metrics",
    "///metrics",
    "/./metrics",
    "/x/../metrics",
    "/health/../metrics",
    "/metrics;x",
    "/metrics%00",
    "/metrics.",
    "http://example.com/metrics",
    "http://example.com/",
    "/health",
    "/health?x",
    "/%68ealth",
]
DIRECTLY_TO_METRICS = {
    "/metrics",
    "/metrics?x=1",
    "/metrics#x",
    "/%6Detrics",
    "/%6detrics",
    "/%6D%65%74%72%69%63%73",
    "http://example.com/metrics",
}


def alb_path(target: str, *, decoded: bool) -> str:
    """The path an ALB path-pattern condition sees for a request target: no query string (AWS:
    "compared only to the path of the URL, not to its query string"), no fragment."""
    if target.startswith("/"):
        path = re.split(r"[?#]", target, maxsplit=1)[0]
    else:  # absolute-form: http://host/path
        path = urlsplit(target).path or "/"
    return unquote(path) if decoded else path


def pattern_matches(pattern: str, path: str) -> bool:
    """AWS's path-pattern semantics: case-sensitive, `*` = 0 or more characters, `?` = exactly 1."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, path) is not None


def forwarded(target: str, patterns: tuple[str, ...], *, decoded: bool) -> bool:
    return any(pattern_matches(p, alb_path(target, decoded=decoded)) for p in patterns)


async def answers(targets: list[str]) -> dict[str, tuple[int, bytes]]:
    """Send each raw request target to the real hello app on loopback: status and body."""
    # name behind an IP literal on a closed port: no DNS query leaves the machine, and `/`
    # answers 503 at once (still hello's index handler, not a 404).
    settings = Settings(name_server=URL("http://127.0.0.1:9/"), request_timeout_seconds=0.5)
    runner = web.AppRunner(make_app(settings, hostname="test"), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    out = {}
    try:
        for target in targets:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                f"GET {target} HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n".encode()
            )
            await writer.drain()
            raw = await asyncio.wait_for(reader.read(), timeout=30)
            writer.close()
            head, _, body = raw.partition(b"\r\n\r\n")
            out[target] = (int(head.split(b" ")[1]), body)
    finally:
        await runner.cleanup()
    return out


@pytest.fixture(scope="module")
def hello_answers() -> dict[str, tuple[int, bytes]]:
    return asyncio.run(asyncio.wait_for(answers(TARGETS), timeout=120))


def is_metrics(answer: tuple[int, bytes]) -> bool:
    status, body = answer
    return status == 200 and b"# TYPE " in body


def test_hello_serves_only_the_paths_this_file_knows() -> None:
    """A new route on hello must be judged here: public or not."""
    app = make_app(Settings(name_server=URL("http://127.0.0.1:9/")), hostname="test")
    routes = {r.canonical for r in app.router.resources()}
    assert routes == {"/", "/health", "/metrics"}


def test_these_spellings_reach_metrics_when_sent_to_hello(
    hello_answers: dict[str, tuple[int, bytes]],
) -> None:
    """Why a rule that blocks "/metrics" is not enough: aiohttp percent-decodes the path, ignores
    the query string and the fragment, and takes absolute-form targets."""
    reached = {t for t, a in hello_answers.items() if is_metrics(a)}
    assert reached == DIRECTLY_TO_METRICS


def test_a_deny_rule_for_metrics_would_leak(hello_answers: dict[str, tuple[int, bytes]]) -> None:
    """Forward everything except path-pattern /metrics, the other design: if the ALB does not
    percent-decode before matching, /%6Detrics goes through and aiohttp serves metrics."""

    def deny_forwards(target: str) -> bool:
        return not pattern_matches("/metrics", alb_path(target, decoded=False))

    leaked = {t for t in TARGETS if deny_forwards(t) and is_metrics(hello_answers[t])}
    assert "/%6Detrics" in leaked


@pytest.mark.parametrize("decoded", [False, True], ids=["alb-matches-raw", "alb-decodes"])
def test_nothing_the_alb_forwards_reaches_metrics_or_health(
    hello_answers: dict[str, tuple[int, bytes]], decoded: bool
) -> None:
    for target in TARGETS:
        if forwarded(target, PUBLIC_PATHS, decoded=decoded):
            status, body = hello_answers[target]
            assert not is_metrics((status, body)), target
            assert body not in (b"ok\n", b"draining\n"), target  # /health's answers


def test_visitors_still_get_the_greeting(hello_answers: dict[str, tuple[int, bytes]]) -> None:
    for target in ("/", "/?name=x", "http://example.com/"):
        for decoded in (False, True):
            assert forwarded(target, PUBLIC_PATHS, decoded=decoded), target
        # hello's index handler answered (503: no name task behind 127.0.0.1:9 in this test).
        status, body = hello_answers[target]
        assert status == 503, (target, status, body)
        assert body.startswith(b"service unavailable"), body


def test_path_pattern_model() -> None:
    # AWS: case-sensitive; `*` matches 0 or more characters, `?` exactly one; no query string.
    assert pattern_matches("/", "/")
    assert not pattern_matches("/", "/metrics")
    assert pattern_matches("/m*", "/metrics")
    assert pattern_matches("/metric?", "/metrics")
    assert not pattern_matches("/metrics", "/METRICS")
    assert alb_path("/a?b=/c", decoded=False) == "/a"
    assert alb_path("http://h/x?y", decoded=False) == "/x"
    assert alb_path("/%6Detrics", decoded=True) == "/metrics"
