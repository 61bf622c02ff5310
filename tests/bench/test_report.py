"""The nginx configuration, the Prometheus reader, the table and the aims."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import prom
from bench.nginx import NginxSite, render
from bench.report import Row, aims, merge, spread_text, table
from bench.wrk import Histogram, WrkResult


def test_nginx_config_keeps_upstream_connections_alive(tmp_path: Path) -> None:
    conf = render(
        NginxSite(
            listen="127.0.0.1:8080", upstreams=["127.0.0.2:3000", "127.0.0.3:3000"], prefix=tmp_path
        )
    )
    assert "server 127.0.0.2:3000;" in conf
    assert "server 127.0.0.3:3000;" in conf
    assert "keepalive 64;" in conf
    assert "proxy_http_version 1.1;" in conf
    assert 'proxy_set_header Connection "";' in conf
    assert "daemon off;" in conf
    assert "worker_processes 1;" in conf
    assert "listen 127.0.0.1:8080;" in conf
    # Everything nginx writes stays in the run's own directory.
    for line in conf.splitlines():
        if "_path " in line or line.strip().startswith(("pid ", "error_log ", "access_log ")):
            assert str(tmp_path) in line, line


def test_nginx_config_needs_upstreams(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="upstream"):
        render(NginxSite(listen="127.0.0.1:1", upstreams=[], prefix=tmp_path))


METRICS = """\
# HELP hello_upstream_retries_total Attempts after the first.
# TYPE hello_upstream_retries_total counter
hello_upstream_retries_total{upstream="name.internal"} 11
http_requests_total{route="/",status="200"} 900
http_requests_total{route="/",status="503"} 2
http_requests_total{route="/metrics",status="200"} 4
odd{label="a \\"quoted\\" value"} 1.5
"""


def test_prometheus_totals_filter_by_label() -> None:
    samples = prom.parse(METRICS)
    assert prom.total(samples, "hello_upstream_retries_total") == 11
    assert prom.total(samples, "http_requests_total", route="/") == 902
    assert prom.total(samples, "http_requests_total") == 906
    assert prom.total(samples, "absent") == 0
    assert samples[-1].labels == {"label": 'a "quoted" value'}


def test_prometheus_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="not a Prometheus sample"):
        prom.parse("this is not { a sample\n")


def result(rps: float, p99_us: int, *, errors: int = 0) -> WrkResult:
    """A 10 s result whose histogram has the given p99 (99 fast samples, 1 at p99_us)."""
    hist = Histogram({1000: 99, p99_us: 1} if p99_us != 1000 else {1000: 100})
    return WrkResult(
        requests=int(rps * 10),
        duration_us=10_000_000,
        connect=0,
        read=0,
        write=0,
        status=errors,
        timeout=0,
        latency=hist,
        served=hist,
    )


def test_aims_pass_and_miss_on_ratios() -> None:
    nginx = Row("nginx, steady", result(10_000, 4_000))
    hello = Row("hello, steady", result(3_000, 10_000), dns_queries=2)
    dead = Row("hello, 1 of 3 killed", result(2_900, 19_000), dns_queries=3)
    verdicts = {a.text: a.passed for a in aims(nginx, hello, dead)}
    assert list(verdicts.values()) == [True, True, True, True, True, True]

    slow = Row("hello, steady", result(2_000, 13_000), dns_queries=40)
    broken = Row("hello, 1 of 3 killed", result(2_000, 30_000, errors=1), dns_queries=3)
    assert [a.passed for a in aims(nginx, slow, broken)] == [
        False,
        False,
        False,
        True,
        False,
        False,
    ]


def test_table_and_spread() -> None:
    rows = [
        Row("nginx, steady", result(10_000, 4_000), spread=[100, 100, 100]),
        Row(
            "hello, 1 of 3 killed",
            result(3_000, 9_000),
            dns_queries=3,
            retries=11,
            ejections=3,
            spread=[150, None, 150],
        ),
    ]
    text = table(rows)
    lines = text.splitlines()
    assert len({len(line) for line in lines}) == 1  # aligned
    assert "10,000" in lines[2]
    assert "33/33/33" in lines[2]
    assert "0.00010" in lines[3]
    assert "50/?/50" in lines[3]
    assert spread_text([]) == "-"


def test_merge_sums_slices_and_keeps_unknowns_unknown() -> None:
    slices = [
        Row(
            "hello, steady",
            result(3_000, 9_000),
            dns_queries=1,
            retries=0,
            ejections=0,
            spread=[10, 10, 10],
        ),
        Row(
            "hello, steady",
            result(5_000, 9_000),
            dns_queries=2,
            retries=1,
            ejections=0,
            spread=[20, None, 20],
            event="something",
        ),
    ]
    row = merge("hello, steady", slices)
    assert row.result.requests == 80_000
    assert row.result.rps == pytest.approx(4_000)
    assert (row.dns_queries, row.retries, row.ejections) == (3, 1, 0)
    assert list(row.spread) == [30, None, 30]
    assert row.event == "something"
    nginx = Row("nginx, steady", result(10_000, 4_000))
    assert merge("nginx", [nginx, nginx]).dns_queries is None
