"""apps/common/emf.py: the counters as CloudWatch Embedded Metric Format lines.

The shape is checked against the EMF specification (an `_aws` object with a millisecond
Timestamp and CloudWatchMetrics directives of Namespace, Dimensions and Metrics; every
dimension and metric a member of the line; at most 100 metrics per directive and 30 keys per
dimension set), and the names against what the alarms and the dashboard read
(components/alarms.py), on the real discovery client's registry.
"""

from __future__ import annotations

import io
import json
import signal
import socket
from pathlib import Path
from typing import Any

import aiohttp
import aiohttp.web
import pytest
from aiohttp_discovery import Registry, UpstreamClient, UpstreamError, UpstreamSettings
from aiohttp_discovery.records import StaticAddresses
from yarl import URL

from apps.common import emf
from apps.common.env import EnvError
from components import alarms
from tests.apps.support import Service, run, services, wait_for


def check_spec(document: dict[str, Any]) -> None:
    """What CloudWatch requires of an EMF object before it extracts a metric from it."""
    meta = document["_aws"]
    assert isinstance(meta["Timestamp"], int)
    assert meta["Timestamp"] > 10**12, "milliseconds since the epoch"
    for directive in meta["CloudWatchMetrics"]:
        assert isinstance(directive["Namespace"], str)
        assert 1 <= len(directive["Metrics"]) <= emf.MAX_METRICS_PER_DIRECTIVE
        for dimension_set in directive["Dimensions"]:
            assert len(dimension_set) <= emf.MAX_DIMENSIONS_PER_SET
            for key in dimension_set:
                assert isinstance(document[key], str), key
        for metric in directive["Metrics"]:
            assert isinstance(document[metric["Name"]], int | float), metric
            assert metric["Unit"] == "Count"


class Captured:
    """An EmfWriter over a registry, writing into a buffer; `lines()` flushes and parses."""

    def __init__(self, registry: Registry, service: str = "hello", **options: Any) -> None:
        self.out = io.StringIO()
        self.writer = emf.EmfWriter(
            "ns", service, emf.exposition_counters(registry.render), stream=self.out, **options
        )

    def lines(self) -> list[dict[str, Any]]:
        self.out.seek(0)
        self.out.truncate()
        self.writer.flush()
        return [json.loads(line) for line in self.out.getvalue().splitlines()]


def test_counters_are_read_from_prometheus_text_and_gauges_left_out() -> None:
    registry = Registry()
    requests = registry.counter("x_requests_total", "h", ("route", "status"))
    registry.counter("x_plain_total", "h")
    registry.gauge("x_in_flight", "h").set(3)
    requests.inc(2, route="/", status="200")
    requests.inc(route='/a"b\\c', status="503")
    samples = emf.parse_counters(registry.render())
    assert {(s.name, tuple(sorted(s.labels.items())), s.value) for s in samples} == {
        ("x_requests_total", (("route", "/"), ("status", "200")), 2.0),
        ("x_requests_total", (("route", '/a"b\\c'), ("status", "503")), 1.0),
        ("x_plain_total", (), 0.0),
    }


def test_collect_and_the_text_give_the_same_counters() -> None:
    """serve() reads the prometheus-client registry through collect(); the text path is the
    fallback for any registry. Both must give the same samples, _created left out."""
    registry = Registry()
    registry.counter("z_calls_total", "h", ("outcome",)).inc(3, outcome="ok")
    registry.counter("z_plain_total", "h")
    registry.gauge("z_in_flight", "h").set(2)
    collected = emf.collector_counters(registry.collector_registry)()
    parsed = emf.exposition_counters(registry.render)()
    key = lambda s: (s.name, sorted(s.labels.items()))  # noqa: E731
    assert sorted(collected, key=key) == sorted(parsed, key=key)
    assert {s.name for s in collected} == {"z_calls_total", "z_plain_total"}


def test_prometheus_client_counters_keep_total_and_drop_created() -> None:
    """prometheus-client types the family without _total and adds a _created sample."""
    text = (
        "# HELP y_calls Calls.\n# TYPE y_calls counter\n"
        'y_calls_total{outcome="ok"} 5.0\ny_calls_created{outcome="ok"} 1.7e+09\n'
    )
    assert emf.parse_counters(text) == [emf.Sample("y_calls_total", {"outcome": "ok"}, 5.0)]


def test_lines_carry_increases_per_label_set_within_the_spec() -> None:
    registry = Registry()
    calls = registry.counter("hello_upstream_requests_total", "h", ("upstream", "outcome"))
    retries = registry.counter("hello_upstream_retries_total", "h", ("upstream",))
    captured = Captured(registry, clock=lambda: 1764446400.5)
    calls.inc(10, upstream="name.internal", outcome="ok")
    retries.inc(3, upstream="name.internal")
    first = captured.lines()
    calls.inc(4, upstream="name.internal", outcome="ok")
    second = captured.lines()
    for document in first + second:
        check_spec(document)
    assert first[0]["_aws"]["Timestamp"] == 1764446400500
    by_dims = {tuple(d["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0]): d for d in second}
    ok = by_dims[("Service", "outcome", "upstream")]
    assert (ok["Service"], ok["upstream"], ok["outcome"]) == ("hello", "name.internal", "ok")
    assert ok["hello_upstream_requests_total"] == 4  # the increase, not the total (14)
    assert ok["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "ns"
    # Unchanged counters are written as 0, so a rate alarm sees "none", not "no data".
    assert by_dims[("Service", "upstream")]["hello_upstream_retries_total"] == 0


def test_many_counters_are_split_into_directives_of_at_most_100() -> None:
    registry = Registry()
    for n in range(150):
        registry.counter(f"c{n}_total", "h").inc()
    documents = Captured(registry, "svc").lines()
    assert [len(d["_aws"]["CloudWatchMetrics"][0]["Metrics"]) for d in documents] == [100, 50]
    for document in documents:
        check_spec(document)


def test_settings_from_the_environment() -> None:
    assert emf.EmfSettings.from_env({}) is None
    assert emf.EmfSettings.from_env({"METRICS_NAMESPACE": "fsd-dev"}) == emf.EmfSettings(
        "fsd-dev", 60.0
    )
    custom = {"METRICS_NAMESPACE": "x", "METRICS_INTERVAL_SECONDS": "10"}
    assert emf.EmfSettings.from_env(custom) == emf.EmfSettings("x", 10.0)
    for bad in ({"METRICS_NAMESPACE": "AWS/ECS"}, {**custom, "METRICS_INTERVAL_SECONDS": "0"}):
        with pytest.raises(EnvError):
            emf.EmfSettings.from_env(bad)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_alarms_read_what_hellos_discovery_client_writes() -> None:
    """A call that finds no task (two, both refusing) and a call to a task that answers 500:
    the real client's counters, through the EMF writer, must give the metric names and
    dimensions the 503, retry and 5xx alarms query."""
    registry = Registry()
    prefix = "hello_upstream"

    async def call() -> None:
        async with UpstreamClient(
            UpstreamSettings(
                url=URL(f"http://name.internal:{closed_port()}/"),
                request_timeout=1.0,
                max_attempts=2,
            ),
            registry=registry,
            metrics_prefix=prefix,
            source=StaticAddresses(["127.0.0.1", "127.0.0.2"]),
        ) as client:
            with pytest.raises(UpstreamError):
                await client.get_text()

        # A task that answers every call with a 500 (a broken release), on loopback.
        async def broken(_: aiohttp.web.Request) -> aiohttp.web.Response:
            return aiohttp.web.Response(status=500)

        app = aiohttp.web.Application()
        app.router.add_get("/", broken)
        runner = aiohttp.web.AppRunner(app)
        await runner.setup()
        site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            port = runner.addresses[0][1]
            async with UpstreamClient(
                UpstreamSettings(
                    url=URL(f"http://name.internal:{port}/"), request_timeout=1.0, max_attempts=1
                ),
                registry=registry,
                metrics_prefix=prefix,
                source=StaticAddresses(["127.0.0.1"]),
            ) as client:
                with pytest.raises(UpstreamError):
                    await client.get_text()
        finally:
            await runner.cleanup()

    run(call())
    found = set()
    for document in Captured(registry).lines():
        (directive,) = document["_aws"]["CloudWatchMetrics"]
        dimensions = tuple(sorted((k, document[k]) for k in directive["Dimensions"][0]))
        found |= {(m["Name"], dimensions) for m in directive["Metrics"]}
    base = (("Service", "hello"), ("upstream", "name.internal"))
    assert (
        f"{prefix}_{alarms.REQUESTS_COUNTER}",
        tuple(sorted((*base, ("outcome", "unavailable")))),
    ) in found
    assert (f"{prefix}_{alarms.RETRIES_COUNTER}", base) in found
    assert set(alarms.OUTCOMES) >= {"unavailable"}
    for result in alarms.ANSWERED:
        assert (
            f"{prefix}_{alarms.ATTEMPTS_COUNTER}",
            tuple(sorted((*base, ("result", result)))),
        ) in found, result


def test_a_service_writes_emf_lines_on_its_interval_and_at_the_end(
    tmp_path: Path, name_port: int
) -> None:
    """The wiring in apps/common/server.py: with METRICS_NAMESPACE set, a real name process
    writes EMF lines to stdout (what awslogs ships) every interval, and once more after the
    drain, so the counts of its last seconds are not lost; every request is counted once."""

    async def scenario() -> Service:
        with services() as started:
            name = Service(
                "name",
                tmp_path,
                HOST="127.0.0.2",
                PORT=str(name_port),
                DRAIN_SECONDS="0.5",
                METRICS_NAMESPACE="fargate-service-discovery-test",
                METRICS_INTERVAL_SECONDS="1",
            )
            started.append(name)
            await name.wait_healthy()
            async with aiohttp.ClientSession() as session:
                async with session.get(name.url("/")) as response:
                    assert response.status == 200
                await wait_for(lambda: '"_aws"' in name.stdout(), within=20)
                async with session.get(name.url("/")) as response:
                    assert response.status == 200
            name.signal(signal.SIGTERM)
            assert await name.wait_exit() == 0
            return name

    name = run(scenario())
    documents = [
        json.loads(line) for line in name.stdout().splitlines() if line.startswith('{"_aws"')
    ]
    assert len(documents) >= 2
    for document in documents:
        check_spec(document)
        assert document["Service"] == "name"
        assert document["_aws"]["CloudWatchMetrics"][0]["Namespace"] == (
            "fargate-service-discovery-test"
        )
    served = [
        d["http_requests_total"]
        for d in documents
        if d.get("route") == "/" and d.get("status") == "200"
    ]
    # Increases, not totals: the two requests add up to 2 across the lines, the second one
    # written by the final flush after SIGTERM.
    assert sum(served) == 2
