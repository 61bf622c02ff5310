"""After ECS rolls a deployment back, Pulumi must say so, and its next refreshed preview must
still want the change.

What the source shows (docs/infrastructure.md, provider notes, "ECS deployment rollback"):

* terraform-provider-aws's ECS service waiter (`wait_for_steady_state`; `statusServiceWaitForStable`
  in internal/service/ecs/service.go, in every release that has `sigint_rollback`, as the installed
  pulumi-aws does) follows the new deployment through ListServiceDeployments and
  DescribeServiceDeployments and fails the update on ROLLBACK_SUCCESSFUL, STOPPED or
  ROLLBACK_FAILED with the deployment's status reason. Older releases called a service stable
  when it had one deployment and its running count matched (pulumi-aws#4487, pulumi-awsx#1848:
  "updated" after a rollback).
* On that failure the SDK returns the planned state (`schema.Resource.Apply` returns
  `data.State()`, which merges the diff: the new task definition), the bridge hands it to the
  engine as a partial failure (pulumi-terraform-bridge pkg/tfbridge/provider.go, `Update`:
  `initializationError` with those properties), and the engine saves it with init errors. The
  next `pulumi up` without a refresh plans an update only because of the init errors; its diff is
  empty (state and program both name the new revision), so the provider sends nothing to ECS and
  the update succeeds: the service stays on the rolled-back revision with a clean state.
* A refresh reads the service's task definition back from ECS (`resourceServiceRead`): the
  rolled-back one, so the diff names `taskDefinition` and the next update redeploys.

So the end-to-end test deploys a name revision that cannot start, requires `up` to fail on the
ECS service, then requires a refreshed preview to update name's service with a `taskDefinition`
diff. The workflows update with `refresh: true` for the same reason.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ECS_SERVICE_TYPE = "aws:ecs/service:Service"
# The provider's error for a failed ECS wait: "waiting for ECS Service (<arn>) update: <reason>".
ECS_WAIT_FAILURE = "waiting for ECS Service"
# name's container exits as soon as it starts: ECS counts each task as a failed launch and the
# circuit breaker rolls the deployment back after its threshold (0.5 x desired, at least 3).
UNHEALTHY_CMD = (
    'CMD ["python", "-c", "raise SystemExit(\'e2e: a name revision that cannot become healthy\')"]'
)
# What a copy of the project leaves out: history, caches, the virtualenv (linked instead).
NOT_COPIED = (".git", ".venv", ".uv", ".local", "__pycache__", "*_cache", "node_modules", "bench")


@dataclass(frozen=True)
class Step:
    """One resource step of a preview: its URN, type, operation and the keys that changed."""

    urn: str
    type: str
    op: str
    diffs: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.urn.rsplit("::", 1)[-1]


class RollbackReportedAsSuccess(AssertionError):
    """`up` of a revision that cannot run succeeded: a rollback would pass unnoticed."""


class RollbackHidden(AssertionError):
    """After the rollback, a refreshed preview does not want name's task definition back."""


def require_failed_update(error: BaseException | None) -> None:
    """The unhealthy revision's `up` must fail, and on the ECS service's wait; any other failure
    (a build, a policy) is not the one under test and is raised as it is."""
    if error is None:
        raise RollbackReportedAsSuccess(
            "`pulumi up` of a name revision that cannot start succeeded: after a circuit-breaker "
            "rollback Pulumi would report success (pulumi-aws#4487, pulumi-awsx#1848)"
        )
    if ECS_WAIT_FAILURE not in str(error):
        raise error


def require_rollback_visible(steps: Sequence[Step], service: str = "name") -> None:
    """A refreshed preview after the rollback updates the service's task definition."""
    for step in steps:
        ours = step.type == ECS_SERVICE_TYPE and step.name == service
        if ours and step.op == "update" and "taskDefinition" in step.diffs:
            return
    planned = [f"{s.op} {s.type} {s.name} {list(s.diffs)}" for s in steps if s.op != "same"]
    raise RollbackHidden(
        f"after ECS rolled {service} back, a refreshed preview plans no taskDefinition update of "
        f"its ECS service, so Pulumi's state claims the failed revision runs; planned: {planned}"
    )


def unhealthy_dockerfile(text: str) -> str:
    """The Dockerfile with a last CMD that exits at once (the last CMD is the one that counts)."""
    return f"{text.rstrip()}\n# e2e: this revision must be rolled back\n{UNHEALTHY_CMD}\n"


def runtime_in_place(project: Mapping[str, Any], venv: Path) -> dict[str, Any]:
    """The project file with its program run by the project's own virtualenv as it is. Pulumi's
    uv toolchain would `uv sync` it from the copy, repointing the editable install of the
    discovery client (a workspace member) at a directory deleted afterwards; the pip toolchain
    uses an existing virtualenv without installing anything (there is no requirements.txt)."""
    runtime = dict(project["runtime"])
    runtime["options"] = {**(runtime.get("options") or {}), "toolchain": "pip"}
    runtime["options"]["virtualenv"] = str(venv)
    return {**project, "runtime": runtime}


def unhealthy_copy(root: Path, dest: Path, settings: Sequence[Path], app: str = "name") -> Path:
    """A copy of the project at `dest` whose `app` image cannot start, with the stack settings
    files given (Pulumi.<stack>.yaml), run by the project's virtualenv. Returns `dest`."""
    shutil.copytree(root, dest, ignore=shutil.ignore_patterns(*NOT_COPIED), symlinks=True)
    project = yaml.safe_load((root / "Pulumi.yaml").read_text())
    copied = runtime_in_place(project, (root / ".venv").resolve())
    (dest / "Pulumi.yaml").write_text(yaml.safe_dump(copied, sort_keys=False))
    for path in settings:
        shutil.copy2(path, dest / path.name)
    dockerfile = dest / "apps" / app / "Dockerfile"
    dockerfile.write_text(unhealthy_dockerfile(dockerfile.read_text()))
    return dest
