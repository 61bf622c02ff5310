"""``python3 -m tools.deployment_report STACK``: why a failed ``pulumi up`` left ECS where it is.

The deploy workflow runs it after a failed update (``if: failure()``). The provider's error
says only that it stopped waiting, for instance after 20 minutes of a Fargate Spot shortage
("timeout while waiting for state to become 'tfSTABLE'"): no task failed, so nothing else
in the log says why. ECS's own account does: each service's deployments (rollout state and
its reason: a circuit-breaker rollback) and its latest events ("unable to place a task").
This prints them for the stack's services, with a line naming the likely cause.

Standard library only (the runner's python3, no project virtualenv); the Pulumi CLI and the
AWS CLI, both on the runner, with the job's credentials (the deploy role may describe the
stack's services: deploy/github_oidc/permissions.py). It never fails the job itself: it is a
report on a failure that has already happened, and prints what it could not read.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Any

# The stack outputs naming the cluster and the services (__main__.py).
CLUSTER_OUTPUT = "clusterName"
SERVICE_OUTPUTS = ("nameService", "helloService")
EVENTS_SHOWN = 8
# ECS's event when it cannot place a task (no Spot capacity, or none at all).
NOT_PLACED = "unable to place a task"
SPOT_HINT = (
    "likely cause: ECS cannot place {service}'s tasks. With Fargate Spot in the capacity "
    "strategy this is a Spot shortage: ECS retries Spot tasks until capacity returns and never "
    "moves them to FARGATE, so the deployment neither finishes nor fails. It finishes by itself "
    "once capacity returns; to deploy now, set capacity.spotWeight to 0 and run `pulumi up` "
    'again (docs/infrastructure.md, "A deployment that cannot finish").'
)
ROLLBACK_HINT = (
    "likely cause: ECS rolled {service}'s deployment back ({reason}). The stack's state may "
    "still name the failed revision: the next `pulumi up` refreshes first (docs/infrastructure.md, "
    'provider notes, "ECS deployment rollback").'
)


def report(services: Sequence[Mapping[str, Any]]) -> list[str]:
    """Lines for ``aws ecs describe-services``' services: counts, deployments, latest events,
    and the likely cause where the events or a rollout state name one."""
    lines: list[str] = []
    causes: list[str] = []
    for service in services:
        name = str(service.get("serviceName", "?"))
        lines.append(
            f"{name}: desired {service.get('desiredCount', '?')}, running "
            f"{service.get('runningCount', '?')}, pending {service.get('pendingCount', '?')}"
        )
        for deployment in service.get("deployments", []):
            state = deployment.get("rolloutState", "?")
            reason = deployment.get("rolloutStateReason", "")
            strategy = ", ".join(
                f"{s.get('capacityProvider')} base {s.get('base', 0)} weight {s.get('weight', 0)}"
                for s in deployment.get("capacityProviderStrategy", [])
            )
            lines.append(
                f"  deployment {deployment.get('id', '?')} ({deployment.get('status', '?')}): "
                f"{state}, running {deployment.get('runningCount', '?')} of "
                f"{deployment.get('desiredCount', '?')}, pending "
                f"{deployment.get('pendingCount', '?')}, failed tasks "
                f"{deployment.get('failedTasks', 0)}"
                + (f"; {strategy}" if strategy else "")
                + (f"; {reason}" if reason else "")
            )
            if state == "FAILED":
                causes.append(
                    ROLLBACK_HINT.format(service=name, reason=reason or "no reason given")
                )
        events = service.get("events", [])[:EVENTS_SHOWN]  # ECS lists the newest first
        for event in events:
            lines.append(f"  {event.get('createdAt', '?')}  {event.get('message', '')}")
        if any(NOT_PLACED in str(event.get("message", "")) for event in events):
            causes.append(SPOT_HINT.format(service=name))
    return lines + causes


def _json(command: Sequence[str]) -> Any:
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:3])} failed: {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout or "null")


def main(argv: Sequence[str]) -> int:
    if len(argv) != 1:
        print("usage: python3 -m tools.deployment_report STACK", file=sys.stderr)
        return 2
    (stack,) = argv
    print(f"ECS's account of stack {stack}'s services after the failed update:")
    try:
        outputs = _json(["pulumi", "stack", "output", "--json", "--stack", stack]) or {}
        cluster = outputs.get(CLUSTER_OUTPUT)
        names = [outputs[key] for key in SERVICE_OUTPUTS if outputs.get(key)]
        if not cluster or not names:
            print("  the stack has no services yet (its first update failed before them)")
            return 0
        command = ["aws", "ecs", "describe-services", "--cluster", cluster, "--output", "json"]
        described = _json([*command, "--services", *names])
    except (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired) as exc:
        print(f"  could not read it: {exc}")
        return 0
    for line in report(described.get("services", [])):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
