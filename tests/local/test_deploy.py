"""Rolling deployments on the real local stack (``local.control deploy``), under load.

The session's stack (tests/local/conftest.py: fast timings, hello refreshing every 0.5 s,
name draining 1.5 s) takes a new revision of name, as ECS rolls a service with 200/75: a
deployment that completes, and one whose replicas never become healthy (an environment
value name refuses at startup), stopped by the circuit breaker and rolled back. Loads are
closed loop through the front, bounded in requests and seconds (tests/local/harness.py).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from local import control
from local.rolling import Rolling
from tests.local.harness import START_DEADLINE, Load, StackProcess, report

WARMUP = 100  # answers before the deployment, and again once it is over
ROLLING = Rolling()


async def settle(stack: StackProcess, count: int) -> dict[str, Any]:
    return await asyncio.to_thread(stack.settle, "name", count)


async def deploy_under_load(
    stack: StackProcess, count: int, env: str
) -> tuple[dict[str, Any], dict[str, Any], int, Load]:
    """Settle name at ``count``, load the front, ``python -m local.control deploy name --env
    ENV --wait``, then load on until every replica left has answered: name's status before
    and after, the command's exit code, and the load."""
    before = (await settle(stack, count))["services"]["name"]
    argv = ["--url", stack.client.url, "deploy", "name", "--env", env]
    async with Load(stack.front_url) as load:
        await load.more(WARMUP)
        code = await asyncio.to_thread(control.main, [*argv, "--wait", str(START_DEADLINE)])
        over = time.time()
        name = (await asyncio.to_thread(stack.status))["services"]["name"]
        await load.until(
            lambda: all(load.first_seen(r["address"], since=over) for r in name["replicas"])
        )
        await load.more(WARMUP)
    return before, name, code, load


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(entry.split("=", 1) for entry in raw.decode().split("\0") if "=" in entry)


def fewest_registered(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> int:
    """The fewest name replicas registered at once while old ones were deregistered and new
    ones registered (from the runner's timestamps): what the 75% floor bounds."""
    moments = [r["deregistered_at"] for r in old] + [r["ready_at"] for r in new]
    return min(
        sum(r["deregistered_at"] > t for r in old) + sum(r["ready_at"] <= t for r in new)
        for t in moments
    )


async def test_a_deployment_under_load_fails_no_request(stack: StackProcess) -> None:
    before, name, code, load = await deploy_under_load(stack, 3, "METRICS_INTERVAL_SECONDS=5")
    old_pids = {r["pid"] for r in before["replicas"]}
    new = name["replicas"]
    deployment = name["deployments"][-1]
    old = [r for r in name["finished"] if r["pid"] in old_pids]
    took = deployment["ended_at"] - deployment["started_at"]
    report(
        "deploy name",
        requests=len(load.samples),
        failed=len(load.failed()),
        seconds=round(took, 2),
        fewest_registered=fewest_registered(old, new),
        exit_codes=[r["returncode"] for r in old],
    )
    assert code == 0
    assert deployment["state"] == "completed"
    assert deployment["revision"] == before["revision"] + 1 == name["revision"]
    assert len(new) == 3
    for replica in new:
        assert replica["revision"] == deployment["revision"]
        assert environ(replica["pid"])["METRICS_INTERVAL_SECONDS"] == "5"
    assert sorted((r["state"], r["returncode"]) for r in old) == [("stopped", 0)] * 3
    assert fewest_registered(old, new) >= ROLLING.minimum_healthy(3)
    assert not load.failed(), load.failed()[:5]
    events = stack.text()
    for step in ("started (pid", "healthy after", "retiring it", "deregistered from Cloud Map"):
        assert step in events
    assert f"name: deployment {deployment['id']} completed" in events


async def test_a_revision_that_never_becomes_healthy_is_rolled_back_under_load(
    stack: StackProcess,
) -> None:
    # Four replicas: the deployment retires one old replica at once (75% of 4 is 3) and
    # starts four new ones; the rollback starts an old-revision replica again.
    before, name, code, load = await deploy_under_load(stack, 4, "DRAIN_SECONDS=soon")
    old_pids = {r["pid"] for r in before["replicas"]}
    after = name["replicas"]
    failed, rollback = name["deployments"][-2:]
    broken = [r for r in name["finished"] if r["revision"] == failed["revision"]]
    report(
        "broken revision rolled back",
        requests=len(load.samples),
        failed=len(load.failed()),
        circuit_breaker=f"{failed['failures']} of {failed['threshold']}",
        failed_after_seconds=round(failed["ended_at"] - failed["started_at"], 2),
        rolled_back_after_seconds=round(rollback["ended_at"] - rollback["started_at"], 2),
    )
    assert code == 1
    assert failed["state"] == "failed"
    assert failed["failures"] == failed["threshold"] == 3
    assert rollback["rollback_of"] == failed["id"]
    assert rollback["state"] == "completed"
    assert rollback["revision"] == before["revision"] == name["revision"]
    assert len(after) == 4
    assert {r["revision"] for r in after} == {before["revision"]}
    kept = {r["pid"] for r in after} & old_pids
    assert len(kept) == ROLLING.minimum_healthy(4), "the old replicas above 75% were retired"
    assert broken, "the broken revision's replicas started, and never served"
    assert all(r["state"] in ("failed", "stopped") for r in broken), broken
    assert not load.failed(), load.failed()[:5]
    events = stack.text()
    assert f"name: deployment {failed['id']} failed: circuit breaker" in events
    assert f"rollback to revision {before['revision']}" in events
    assert f"name: deployment {rollback['id']} completed" in events
