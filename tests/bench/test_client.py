"""The client rows' pure parts: the figures and the judgement of each aim, both sides."""

from __future__ import annotations

import asyncio
import math

import pytest
from aiohttp import web

from bench.__main__ import parse_args
from bench.clientload import closed_loop
from bench.clientrows import (
    MIB,
    BigRow,
    ClientResults,
    CostSlice,
    SlowRow,
    aims,
    big_aims,
    big_row,
    big_table,
    cost_aim,
    cost_rows,
    cost_table,
    cpu_ratio,
    notes,
    round_ratios,
    slow_aims,
    slow_row,
    slow_table,
)
from bench.upstream import make_app


def slices(bare_cpu: list[float], client_cpu: list[float], requests: int = 1000) -> list[CostSlice]:
    out = []
    for i, (b, c) in enumerate(zip(bare_cpu, client_cpu, strict=True)):
        out.append(CostSlice("bare", i + 1, requests, requests, b, 1.0))
        out.append(CostSlice("client", i + 1, requests, requests, c, 1.0))
    return out


def test_cost_is_cpu_per_call_summed_over_slices_against_the_bare_session() -> None:
    bare, client = cost_rows(slices([0.25, 0.25], [0.25, 0.35]))
    assert bare.requests == client.requests == 2000
    assert bare.us_per_call == pytest.approx(250.0)
    assert cpu_ratio(client, bare) == 1.2
    assert round_ratios(client, bare) == pytest.approx([1.0, 1.4])
    aim = cost_aim(client, bare)
    assert aim.passed  # at the bound: <= 1.2x
    assert aim.detail == "300.0 / 250.0 us = 1.20x; rounds 1.00-1.40x"
    over = cost_aim(*reversed(cost_rows(slices([0.25, 0.25], [0.25, 0.351]))))
    assert not over.passed  # 1.202x
    assert "1.20x" in cost_table(results(*cost_rows(slices([0.05], [0.06]))))


def test_a_failed_call_misses_the_cost_aim_and_no_reference_is_infinitely_slow() -> None:
    failing = [CostSlice("client", 1, 100, 99, 0.001, 1.0, {"UpstreamError 503": 1})]
    bare = [CostSlice("bare", 1, 100, 100, 0.002, 1.0)]
    b, c = cost_rows(bare + failing)
    aim = cost_aim(c, b)
    assert not aim.passed  # 0.5x, but a call failed
    assert "1 calls failed" in aim.detail
    empty, client = cost_rows(failing)
    assert math.isinf(cpu_ratio(client, empty))
    assert not cost_aim(client, empty).passed


def slow(ok: int, ejections: int | None, calls: int = 60) -> SlowRow:
    counters = None if ejections is None else {"attempts": calls, "ejections": ejections}
    failures = {"UpstreamError 503": calls - ok} if ok < calls else {}
    return SlowRow("slow", "client", calls, ok, [1000.0] * ok, failures, counters)


def test_a_slow_upstream_needs_every_call_to_succeed_and_no_ejection() -> None:
    assert [a.passed for a in slow_aims(slow(60, 0), 1.0)] == [True, True]
    assert [a.passed for a in slow_aims(slow(59, 0), 1.0)] == [False, True]
    assert [a.passed for a in slow_aims(slow(60, 1), 1.0)] == [True, False]
    unknown = slow_aims(slow(60, None), 1.0)[1]
    assert (unknown.passed, unknown.detail) == (False, "unknown")
    assert not slow_aims(slow(0, 0, calls=0), 1.0)[0].passed  # no call, no success
    # A failed call counts as infinitely slow, as in the gray rows.
    assert slow(59, 0).percentile(50) == 1000.0
    assert math.isinf(slow(59, 0).percentile(100))


def test_the_worker_output_becomes_rows() -> None:
    row = slow_row(
        {
            "variant": "client",
            "calls": 3,
            "ok": 2,
            "failures": {"UpstreamError 503": 1},
            "latencies_ms": [1001.5, 1003.0],
            "counters": {"attempts": 4, "retries": 1, "hedges": 0, "ejections": 0},
        },
        1.0,
    )
    assert (row.label, row.success, row.ejections) == (
        "UpstreamClient, defaults, every task 1 s",
        2 / 3,
        0,
    )
    assert "66.7%" in slow_table([row])
    big = big_row({"variant": "bare", "mode": "streamed", "bytes": 10 * MIB, "chunk": 65536})
    assert big.label == "bare session, 10 MiB streamed, 64 KiB chunks"
    assert not big.ok  # nothing read


def big(mode: str, chunk: int, above_kib: int, **kw: object) -> BigRow:
    fields: dict[str, object] = {
        "status": 200,
        "read": 10 * MIB,
        "baseline_kib": 40_000,
        "peak_kib": 40_000 + above_kib,
    } | kw
    return BigRow("big", "client", mode, 10 * MIB, chunk, **fields)  # type: ignore[arg-type]


def test_a_streamed_read_stays_under_two_chunks_above_its_baseline() -> None:
    under = big_aims(big("streamed", MIB, 2047))
    assert [(a.text, a.passed) for a in under] == [
        ("10 MiB streamed, 1 MiB chunks: success", True),
        ("10 MiB streamed, 1 MiB chunks: peak RSS < 2x chunk + baseline", True),
    ]
    assert under[1].detail == "2,047 KiB above 40,000 KiB = 1.999x the chunk"
    assert not big_aims(big("streamed", MIB, 2048))[1].passed  # exactly 2x: not under
    # A read that failed or was cut short meets neither aim, however little memory it took.
    assert [a.passed for a in big_aims(big("streamed", MIB, 10, read=MIB))] == [False, False]
    assert [a.passed for a in big_aims(big("streamed", MIB, 10, status=502))] == [False, False]
    # Below 1 MiB the peak is aiohttp's buffer and the allocator's: shown, not judged.
    assert [a.text for a in big_aims(big("streamed", 65536, 900))] == [
        "10 MiB streamed, 64 KiB chunks: success"
    ]


def test_a_buffered_read_needs_only_success_and_a_missing_stream_is_not_a_pass() -> None:
    assert [a.passed for a in big_aims(big("buffered", 65536, 20_000))] == [True]
    failed = big_aims(big("buffered", 65536, 0, status=0, read=0, error="UpstreamError 502: x"))
    assert not failed[0].passed
    assert "UpstreamError 502: x" in failed[0].detail
    skipped = big_aims(big("streamed", MIB, 0, skipped="no stream()"))
    assert [(a.passed, a.detail) for a in skipped] == [(False, "not measured: no stream()")]
    assert "skipped" in big_table([big("streamed", MIB, 0, skipped="no stream()")])


def results(bare: object, client: object) -> ClientResults:
    return ClientResults(bare, client, 8, [slow(60, 0)], [big("streamed", MIB, 100)])  # type: ignore[arg-type]


def test_every_aim_is_judged_once_and_the_bare_rows_are_references_only() -> None:
    bare, client = cost_rows(slices([0.05], [0.055]))
    measured = ClientResults(
        bare,
        client,
        8,
        [slow(60, 0), SlowRow("bare", "bare", 60, 60, [1000.0] * 60)],
        [
            big("buffered", 65536, 20_000),
            big("streamed", MIB, 900),
            BigRow("b", "bare", "streamed", 10 * MIB, MIB),
        ],
    )
    assert [a.passed for a in aims(measured)] == [True] * 6
    assert notes(measured)[0] == "  cost, client over bare per round: 1.10x"


def test_only_client_runs_alone() -> None:
    args = parse_args(["--only-client", "--client-requests", "500"])
    assert (args.only_client, args.client_requests, args.client_rounds) == (True, 500, 5)
    for bad in (
        ["--only-client", "--no-client"],
        ["--only-client", "--only-gray"],
        ["--only-client", "--only-zones"],
        ["--client-requests", "0"],
    ):
        with pytest.raises(SystemExit):
            parse_args(bad)


def test_the_upstream_answers_big_and_slow_and_the_closed_loop_counts_by_kind() -> None:
    async def scenario() -> tuple[int, int, float, tuple[int, dict[str, int]]]:
        runner = web.AppRunner(make_app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            import aiohttp  # noqa: PLC0415

            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{port}/big?bytes=200000") as r:
                    size, length = len(await r.read()), r.content_length or 0
                loop = asyncio.get_running_loop()
                started = loop.time()
                async with session.get(f"http://127.0.0.1:{port}/slow?seconds=0.05") as r:
                    await r.read()
                waited = loop.time() - started
            calls = iter([True, False, True])

            async def call() -> bool:
                if next(calls):
                    return True
                raise TimeoutError

            ok, failures = await closed_loop(call, 3, 2)
            return size, length, waited, (ok, dict(failures))
        finally:
            await runner.cleanup()

    size, length, waited, counted = asyncio.run(scenario())
    assert size == length == 200_000
    assert waited >= 0.05
    assert counted == (2, {"TimeoutError": 1})
