"""tools/deployment_report.py: after a failed `pulumi up`, the deploy workflow prints ECS's own
account of the stack's services, so a deployment that never finished (a Fargate Spot shortage:
no task fails, the provider only times out) or was rolled back says why in the run's log."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.delivery.test_workflows import workflow
from tools import deployment_report

ROOT = Path(__file__).resolve().parents[2]

SPOT_SHORTAGE: dict[str, Any] = {
    "serviceName": "name-7f3a",
    "desiredCount": 3,
    "runningCount": 1,
    "pendingCount": 0,
    "deployments": [
        {
            "id": "ecs-svc/1",
            "status": "PRIMARY",
            "rolloutState": "IN_PROGRESS",
            "runningCount": 1,
            "desiredCount": 3,
            "pendingCount": 0,
            "failedTasks": 0,
            "capacityProviderStrategy": [
                {"capacityProvider": "FARGATE", "base": 1, "weight": 1},
                {"capacityProvider": "FARGATE_SPOT", "weight": 3},
            ],
        }
    ],
    "events": [
        {
            "createdAt": f"2026-12-07T02:{59 - n:02d}:00Z",
            "message": "(service name-7f3a) was unable to place a task. Reason: Capacity is "
            "unavailable at this time. Please try again later or in a different "
            "availability zone.",
        }
        for n in range(12)
    ],
}
ROLLED_BACK: dict[str, Any] = {
    "serviceName": "hello-2b1c",
    "desiredCount": 2,
    "runningCount": 2,
    "pendingCount": 0,
    "deployments": [
        {
            "id": "ecs-svc/2",
            "status": "PRIMARY",
            "rolloutState": "FAILED",
            "rolloutStateReason": "ECS deployment circuit breaker: tasks failed to start.",
            "runningCount": 0,
            "desiredCount": 2,
            "failedTasks": 3,
        }
    ],
    "events": [
        {"createdAt": "2026-12-07T03:00:00Z", "message": "(service hello-2b1c) rolling back"}
    ],
}
STEADY: dict[str, Any] = {
    "serviceName": "hello-2b1c",
    "desiredCount": 2,
    "runningCount": 2,
    "pendingCount": 0,
    "deployments": [{"id": "ecs-svc/3", "status": "PRIMARY", "rolloutState": "COMPLETED"}],
    "events": [{"createdAt": "t", "message": "(service hello-2b1c) has reached a steady state."}],
}


def test_a_spot_shortage_is_named_with_the_deployment_and_the_latest_events() -> None:
    lines = deployment_report.report([SPOT_SHORTAGE])
    text = "\n".join(lines)
    assert lines[0] == "name-7f3a: desired 3, running 1, pending 0"
    assert "IN_PROGRESS, running 1 of 3" in lines[1]
    assert "FARGATE_SPOT base 0 weight 3" in lines[1]
    events = [line for line in lines if "unable to place a task" in line]
    assert len(events) == deployment_report.EVENTS_SHOWN  # the newest, not all twelve
    assert "2026-12-07T02:59:00Z" in events[0]
    assert lines[-1].startswith("likely cause: ECS cannot place name-7f3a's tasks")
    assert "capacity.spotWeight to 0" in text


def test_a_rolled_back_deployment_is_named_with_ecs_reason() -> None:
    lines = deployment_report.report([ROLLED_BACK, STEADY])
    assert lines[-1].startswith("likely cause: ECS rolled hello-2b1c's deployment back")
    assert "tasks failed to start" in lines[-1]
    assert sum(line.startswith("likely cause") for line in lines) == 1


def test_a_steady_service_names_no_cause() -> None:
    lines = deployment_report.report([STEADY])
    assert not any(line.startswith("likely cause") for line in lines)


def stand_in(bin_dir: Path, name: str, stdout: str, code: int = 0) -> None:
    """An executable `name` on PATH that prints `stdout` and exits `code`."""
    script = bin_dir / name
    script.write_text(
        f"#!{sys.executable}\nimport sys\nsys.stdout.write({stdout!r})\nsys.exit({code})\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


def run_report(tmp_path: Path, outputs: object, described: object, aws_code: int = 0) -> str:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stand_in(bin_dir, "pulumi", json.dumps(outputs))
    stand_in(bin_dir, "aws", json.dumps(described), aws_code)
    done = subprocess.run(
        [sys.executable, "-m", "tools.deployment_report", "org/dev"],
        cwd=ROOT,
        env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr  # a report never fails the job itself
    return done.stdout


def test_the_report_reads_the_stacks_services_through_the_two_clis(tmp_path: Path) -> None:
    outputs = {"clusterName": "c", "nameService": "name-7f3a", "helloService": "hello-2b1c"}
    out = run_report(tmp_path, outputs, {"services": [SPOT_SHORTAGE, STEADY]})
    assert "stack org/dev" in out
    assert "name-7f3a: desired 3, running 1, pending 0" in out
    assert "likely cause: ECS cannot place name-7f3a's tasks" in out


def test_what_the_report_cannot_read_it_says_and_still_exits_0(tmp_path: Path) -> None:
    out = run_report(tmp_path, {"clusterName": "c", "nameService": "n"}, {}, aws_code=254)
    assert "could not read it: aws ecs describe-services failed" in out


def test_a_stack_without_services_yet_is_said_so(tmp_path: Path) -> None:
    assert "no services yet" in run_report(tmp_path, {}, {})


def test_every_update_is_followed_by_the_report_of_its_own_stack_when_it_fails() -> None:
    updates = 0
    for job in workflow("deploy.yml")["jobs"].values():
        steps = job["steps"]
        found = [s for s in steps if s.get("with", {}).get("command") == "up"]
        if not found:
            continue  # the gate
        (update,) = found
        updates += 1
        after = steps[steps.index(update) + 1 :]
        (report,) = [s for s in after if "tools.deployment_report" in s.get("run", "")]
        assert report["if"] == "failure()"
        assert report["env"]["STACK"] == update["with"]["stack-name"]
        assert {"PULUMI_ACCESS_TOKEN", "PULUMI_BACKEND_URL"} <= set(report["env"])
    assert updates == 2  # dev, then prod
