"""The gray rows' pure helpers: percentiles over every request sent, and the aims."""

import asyncio
import math
import time

from aiohttp import web

from bench import openloop
from bench.gray import GrayRow, aims, notes, table


def row(label: str, latencies: list[float], requests: int, **kw: object) -> GrayRow:
    fields: dict[str, object] = {
        "failures": {},
        "hedges": 0,
        "retries": 0,
        "upstream_requests": requests,
    } | kw
    return GrayRow(label, requests, len(latencies), sorted(latencies), **fields)  # type: ignore[arg-type]


def test_a_failed_request_counts_as_infinitely_slow() -> None:
    ok = row("x", [float(n) for n in range(1, 1001)], 1000)
    assert (ok.percentile(50), ok.percentile(99), ok.percentile(99.9)) == (500.0, 990.0, 999.0)
    failed = row("x", [float(n) for n in range(1, 996)], 1000)  # 5 of 1000 failed
    assert failed.percentile(99) == 990.0
    assert math.isinf(failed.percentile(99.9))
    assert math.isinf(failed.max_ms)
    assert failed.success == 0.995


def test_aims_are_ratios_to_the_healthy_row() -> None:
    healthy = row("6 healthy", [1.0] * 990 + [2.0] * 9 + [4.0], 1000, hedges=40)
    frozen = row("1 of 6 frozen", [1.0] * 990 + [10.0] * 9 + [19.0], 1000)
    slow = row("1 of 6 slow, 300 ms", [1.0] * 980 + [11.0] * 20, 1000)
    outage = row("all 6 down", [1.0] * 500, 1000, recovery=[0.5, 1.0, 2.9, 0.2, 0.1, 0.3])
    late = row("all 6 down", [1.0] * 500, 1000, recovery=[0.5, None, 0.1, 0.2, 0.1, 0.3])
    results = {a.text: a.passed for a in aims([healthy, frozen, slow, outage])}
    assert results == {
        "healthy: hedges <= 5% more attempts": True,
        "1 of 6 frozen: 100% success": True,
        "1 of 6 frozen: p99 <= 5x healthy": True,  # 1 / 1
        "1 of 6 frozen: p99.9 <= 5x healthy": True,  # 10 / 2
        "1 of 6 slow, 300 ms: 100% success": True,
        "1 of 6 slow, 300 ms: p99 <= 5x healthy": False,  # 11 / 1
        "1 of 6 slow, 300 ms: p99.9 <= 5x healthy": False,  # 11 / 2
        "all 6 down: each back within 3 s": True,
    }
    assert not aims([healthy, late])[1].passed  # a replica never seen back
    assert not aims([row("6 healthy", [1.0] * 100, 100, hedges=6)])[0].passed
    assert "1 of 6 frozen" in table([healthy, frozen])


def test_a_healthy_row_with_failures_is_no_reference_for_the_tail_aims() -> None:
    """Its p99 is infinite (a failed request counts as infinitely slow): a ratio to it would
    pass any row, however slow, so every tail aim misses and says why."""
    failing = row("6 healthy", [1.0] * 980, 1000)  # 20 of 1000 timed out
    slow = row("1 of 6 slow, 2000 ms", [1.0] * 990 + [900.0] * 10, 1000)
    judged = {a.text: (a.passed, a.detail) for a in aims([failing, slow])}
    assert judged["1 of 6 slow, 2000 ms: 100% success"][0]
    for p in ("p99", "p99.9"):
        passed, detail = judged[f"1 of 6 slow, 2000 ms: {p} <= 5x healthy"]
        assert not passed
        assert detail.endswith("/ inf ms = infx (no reference: the healthy row failed requests)")


def test_connection_attempts_dropped_on_full_accept_queues_are_named_in_the_notes() -> None:
    """A request whose connection attempt the kernel dropped (a full accept queue) waits
    1 s for its SYN to be sent again: a 1 s timeout that hello never saw. The rows count
    them from /proc/net/netstat, and the notes say so."""
    netstat = (
        "TcpExt: SyncookiesSent ListenOverflows ListenDrops\n"
        "TcpExt: 0 3407 3407\n"
        "IpExt: InNoRoutes\n"
        "IpExt: 0\n"
    )
    assert openloop.listen_overflows(netstat) == 3407
    assert openloop.listen_overflows("IpExt: InNoRoutes\nIpExt: 0\n") is None
    dropped = row("6 healthy", [1.0] * 100, 100, listen_overflows=135)
    assert notes([dropped, row("1 of 6 frozen", [1.0] * 100, 100, listen_overflows=0)]) == [
        "  6 healthy: the kernel dropped 135 connection attempt(s) on full accept queues "
        "meanwhile (host-wide; each waits 1 s for its SYN to be sent again, whatever hello "
        "does once it accepts)"
    ]


def test_a_host_stall_seen_by_the_load_generator_is_named_in_the_notes() -> None:
    """A row can miss its aims because the machine stalled, not because of hello: a
    370 ms stall alone puts ~110 requests of a 300 req/s row behind it (the p99.9 of a
    9,000-request row). The notes say so when the sender itself was that late."""
    stalled = row("1 of 6 slow, 300 ms", [1.0] * 100, 100, send_lag_ms=370.4)
    calm = row("1 of 6 slow, 2000 ms", [1.0] * 100, 100, send_lag_ms=3.0)
    lines = notes([stalled, calm])
    assert lines == [
        "  1 of 6 slow, 300 ms: the load generator itself was up to 370 ms late sending "
        "(a host stall: requests due meanwhile wait, whatever hello does)"
    ]


def test_the_load_generator_measures_how_late_it_sent() -> None:
    """bench.openloop reports its own worst lateness: a 150 ms stall of its process
    (as a busy host causes) shows as send_lag_ms, next to the latencies it inflated."""

    async def scenario() -> dict[str, object]:
        async def hello(_: web.Request) -> web.Response:
            return web.Response(text="hi")

        app = web.Application()
        app.router.add_get("/", hello)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            asyncio.get_running_loop().call_later(0.1, time.sleep, 0.15)  # the stall
            return await openloop.load(f"http://127.0.0.1:{port}/", 100.0, 0.4, 1.0)
        finally:
            await runner.cleanup()

    result = asyncio.run(scenario())
    assert result["ok"] == 40
    lag = result["send_lag_ms"]
    assert isinstance(lag, float)
    assert 140.0 <= lag < 1000.0, lag
    latencies = result["latencies_ms"]
    assert isinstance(latencies, list)
    assert max(latencies) >= 140.0  # the requests due during the stall waited for it
