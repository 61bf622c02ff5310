"""components/proxy_alarms.py under mocks: the two alarms on what Service Connect's proxies
report for a service, their metrics, thresholds and runbook entries."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pulumi
import pytest

from components.proxy_alarms import ProxyAlarms, ProxyAlarmsArgs, check
from tests.infra.support import ROOT

ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
RUNBOOK = (ROOT / "docs" / "runbook.md").read_text()


def program() -> None:
    """Run by the harness in a process of its own (tests/infra/harness.py)."""
    ProxyAlarms(
        "name-proxy",
        ProxyAlarmsArgs(
            prefix="fsd-dev",
            service="name",
            topic_arn="arn:aws:sns:us-east-1:123456789012:fsd-dev-alarms",
            cluster_name="fsd-dev",
            service_name="name-1a2b3c4",
            discovery_name="name",
            per_request_timeout_seconds=1,
        ),
        pulumi.ResourceOptions(),
    )


@pytest.fixture(scope="module")
def alarms() -> dict[str, dict[str, Any]]:
    code = (
        "import json, sys; from tests.infra import harness; "
        "print(json.dumps(harness.run({'stack': 'dev', "
        "'program': 'tests.infra.test_proxy_alarms:program'})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["error"] is None, result["error"]
    return {r["name"]: r["inputs"] for r in result["resources"] if r["type"] == ALARM}


def _metrics(alarm: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {q["id"]: q["metric"] for q in alarm["metricQueries"] if "metric" in q}


def test_two_alarms_on_the_proxys_metrics_of_the_service(alarms: dict[str, Any]) -> None:
    assert set(alarms) == {"name-proxy-5xx", "name-proxy-latency"}
    dimensions = {"ClusterName": "fsd-dev", "ServiceName": "name-1a2b3c4", "DiscoveryName": "name"}
    for name, alarm in alarms.items():
        assert alarm["name"] == f"fsd-dev-{name}"
        assert alarm["alarmActions"] == ["arn:aws:sns:us-east-1:123456789012:fsd-dev-alarms"]
        assert alarm["treatMissingData"] == "notBreaching"
        for metric in _metrics(alarm).values():
            assert metric["namespace"] == "AWS/ECS"
            assert metric["dimensions"] == dimensions
        # Each description ends in its runbook entry, which exists.
        assert alarm["alarmDescription"].endswith(f" Runbook: docs/runbook.md#{name}")
        assert f"\n### {name}\n" in RUNBOOK
        assert len(alarm["alarmDescription"]) <= 1024


def test_5xx_is_a_rate_of_the_proxys_requests(alarms: dict[str, Any]) -> None:
    alarm = alarms["name-proxy-5xx"]
    metrics = _metrics(alarm)
    assert {m["metricName"] for m in metrics.values()} == {
        "HTTPCode_Target_5XX_Count",
        "RequestCount",
    }
    assert all(m["stat"] == "Sum" for m in metrics.values())
    assert alarm["threshold"] == 1.0


def test_latency_is_the_p99_against_the_proxys_per_request_timeout(alarms: dict[str, Any]) -> None:
    """TargetResponseTime is in milliseconds: a 1 s per-request timeout is 1000."""
    alarm = alarms["name-proxy-latency"]
    (metric,) = _metrics(alarm).values()
    assert (metric["metricName"], metric["stat"]) == ("TargetResponseTime", "p99")
    assert alarm["threshold"] == 1000.0


@pytest.mark.parametrize(
    ("change", "words"),
    [({"service": "Name"}, "service="), ({"per_request_timeout_seconds": 0}, "at least 1")],
)
def test_bad_args_are_refused_naming_them(change: dict[str, Any], words: str) -> None:
    args = ProxyAlarmsArgs(
        prefix="p",
        service="name",
        topic_arn="t",
        cluster_name="c",
        service_name="s",
        discovery_name="name",
        per_request_timeout_seconds=1,
    )
    with pytest.raises(ValueError, match=words):
        check({**args, **change})  # type: ignore[typeddict-item]
