"""wrk's output parsing and the exact undoing of its coordinated-omission correction."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from bench.wrk import (
    Histogram,
    Load,
    WrkOutputError,
    combine,
    command,
    correct,
    correction_interval,
    parse,
    script,
    uncorrect,
)

# The shape of what DONE_HOOK prints after wrk's own summary (values from a real run).
OUTPUT = """\
Running 5s test @ http://127.0.0.1:35941/
  2 threads and 32 connections
  37434 requests in 5.01s, 6.82MB read
Requests/sec:   7466.50
BENCH_RESULT requests=5 duration_us=1000000 connect=0 read=1 write=0 status=2 timeout=0 \
latency_count=5 latency_min=100 latency_max=900
BENCH_HIST 100:2 200:1
BENCH_HIST 900:2
"""


def test_parse_reads_totals_errors_and_histogram() -> None:
    result = parse(OUTPUT, connections=32)
    assert result.requests == 5
    assert result.rps == pytest.approx(5.0)
    assert result.errors == 3
    assert result.error_detail() == "status 2, read 1"
    assert result.latency.counts == {100: 2, 200: 1, 900: 2}
    assert result.max_us == 900


def test_parse_rejects_a_histogram_that_disagrees_with_wrk() -> None:
    # A stats layout other than wrk 4's would dump garbage: the count gives it away.
    with pytest.raises(WrkOutputError, match="does not match"):
        parse(OUTPUT.replace("latency_count=5", "latency_count=6"), connections=32)


def test_parse_without_a_result_line_fails() -> None:
    with pytest.raises(WrkOutputError, match="no BENCH_RESULT"):
        parse("unable to connect to 127.0.0.1:1 Connection refused\n", connections=32)


def test_percentile_follows_wrks_rank_rule() -> None:
    histogram = Histogram({10: 50, 20: 49, 30: 1})
    # rank = round(p/100 * 100 + 0.5): p50 -> rank 51 -> value 20; p99 -> 100 -> 30.
    assert histogram.percentile(50) == 20
    assert histogram.percentile(49) == 10
    assert histogram.percentile(99) == 30
    assert Histogram().percentile(99) == 0


def test_correction_matches_wrk_on_a_known_case() -> None:
    # One 10-unit response with interval 3: wrk adds samples at 7 and 4 (not 1: m > interval).
    assert correct(Histogram({10: 1, 2: 5}), 3).counts == {10: 1, 7: 1, 4: 1, 2: 5}


def test_uncorrect_undoes_correct_exactly() -> None:
    rng = random.Random(7)
    for _ in range(50):
        raw = Histogram({rng.randint(1, 5000): rng.randint(1, 20) for _ in range(200)})
        interval = rng.randint(1, 300)
        assert uncorrect(correct(raw, interval), interval) == raw


def test_uncorrect_refuses_a_histogram_wrk_did_not_correct() -> None:
    with pytest.raises(WrkOutputError):
        uncorrect(Histogram({10: 1}), 3)


def test_correction_interval_uses_wrks_integer_arithmetic() -> None:
    assert correction_interval(10_000_000, 64_010, 32) == 10_000_000 // 2000
    assert correction_interval(10_000_000, 10, 32) == 0  # fewer requests than connections


def test_every_row_gets_the_same_load() -> None:
    argv = command("wrk", "http://127.0.0.1:1/", 12, Load(), script=Path("x.lua"))
    assert argv[1:5] == ["--threads=2", "--connections=32", "--duration=12s", "--timeout=5s"]


def test_combine_sums_totals_and_histograms() -> None:
    one = parse(OUTPUT, connections=32)
    both = combine([one, one])
    assert both.requests == 10
    assert both.duration_us == 2_000_000
    assert both.rps == pytest.approx(one.rps)
    assert both.errors == 6
    assert both.latency.counts == {100: 4, 200: 2, 900: 4}
    assert both.served.count == 2 * one.served.count
    with pytest.raises(ValueError, match="nothing"):
        combine([])


def test_paced_script_adds_a_fixed_delay() -> None:
    assert "delay" not in script()
    assert script(12).rstrip().endswith("delay = function() return 12 end")
    with pytest.raises(ValueError, match="at least 1"):
        script(0)
