"""The gray rows' pure helpers: percentiles over every request sent, and the aims."""

import math

from bench.gray import GrayRow, aims, table


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
