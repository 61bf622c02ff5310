"""A rolling deployment as ECS runs one (the ``ECS`` deployment controller), without processes.

The runner (local/runner.py) asks :meth:`Rolling.step` what to do each time a replica
changes; this module holds only the arithmetic and the deployment's record, so that both
are unit-tested without starting anything (tests/local/test_rolling.py).

What ECS documents, and what each piece here stands for:

- ``maximumPercent`` (200 here, as ``components/service.py`` deploys both services): at
  most ``floor(desired * 200 / 100)`` tasks RUNNING or PENDING during a deployment, old and
  new together ("rounded down"; ECS API reference, ``DeploymentConfiguration``). With every
  old task running, that leaves room for ``desired`` new tasks at once: the whole new
  revision starts in one batch.
- ``minimumHealthyPercent`` (75): at least ``ceil(desired * 75 / 100)`` tasks RUNNING and
  healthy ("rounded up"; the ECS Developer Guide, "Deploy Amazon ECS services by replacing
  tasks", gives the example of 75% of two tasks: nothing may be stopped). ECS stops old
  tasks down to that floor at once, before any new one is healthy ("the scheduler can stop
  two existing tasks before starting two new tasks"), then one more old task for each new
  task that becomes healthy.
- A stopping task (deregistered, draining after SIGTERM) is past RUNNING (DEACTIVATING,
  STOPPING in the ECS task lifecycle) and counts toward neither bound.
- The deployment circuit breaker counts the new revision's tasks that fail to reach RUNNING
  or fail their health checks; its threshold is ``0.5 * desired`` (rounded up), at least 3
  and at most 200 (ECS API reference, ``ServiceDeploymentCircuitBreaker.threshold``; the
  Developer Guide's example: 25 tasks give 13). A task that becomes healthy resets the count
  (``resetOnHealthyTask``, default true). At the threshold the deployment is FAILED and, with
  rollback on, ECS starts a new deployment of the last COMPLETED one; that rollback is not
  eligible for another rollback until it completes, and without a COMPLETED deployment to
  return to the deployment stalls: no new tasks are launched (Developer Guide, "How the
  Amazon ECS deployment circuit breaker detects failures").
"""

from __future__ import annotations

import enum
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

# components/service.py: deployment_maximum_percent=200, deployment_minimum_healthy_percent=75.
MAXIMUM_PERCENT = 200
MINIMUM_HEALTHY_PERCENT = 75
# ServiceDeploymentCircuitBreaker.threshold: 0.5 * desired, within [3, 200].
BREAKER_PERCENT = 50
BREAKER_MINIMUM = 3
BREAKER_MAXIMUM = 200


@dataclass(frozen=True)
class Step:
    """What a deployment does now: start ``start`` replicas of the new revision, stop
    ``stop`` healthy replicas of older ones (replicas of older revisions that are still
    starting are stopped whatever these say: they serve nobody)."""

    start: int
    stop: int


@dataclass(frozen=True)
class Rolling:
    """``deploymentConfiguration``'s two bounds."""

    minimum_healthy_percent: int = MINIMUM_HEALTHY_PERCENT
    maximum_percent: int = MAXIMUM_PERCENT

    def minimum_healthy(self, desired: int) -> int:
        """Replicas that must stay running and healthy: rounded up."""
        return -(-desired * self.minimum_healthy_percent // 100)

    def maximum(self, desired: int) -> int:
        """Replicas that may be starting or running, old and new: rounded down."""
        return desired * self.maximum_percent // 100

    def step(self, desired: int, *, new: int, old: int, healthy: int) -> Step:
        """``new``: the new revision's replicas starting or running; ``old``: older
        revisions' running (healthy) replicas; ``healthy``: running replicas of any revision.

        Old replicas go down to the healthy floor; new ones start up to the desired count,
        within the ceiling left once those old ones are stopping."""
        stop = max(0, min(old, healthy - self.minimum_healthy(desired)))
        start = max(0, min(desired - new, self.maximum(desired) - new - (old - stop)))
        return Step(start=start, stop=stop)


def breaker_threshold(desired: int) -> int:
    """Failed new replicas in a row that fail a deployment."""
    half = -(-desired * BREAKER_PERCENT // 100)
    return min(BREAKER_MAXIMUM, max(BREAKER_MINIMUM, half))


class Rollout(enum.StrEnum):
    """A deployment's ``rolloutState``."""

    IN_PROGRESS = "in progress"
    COMPLETED = "completed"
    FAILED = "failed"


@dataclass(frozen=True)
class Revision:
    """A task definition revision: the service's environment, numbered."""

    number: int
    env: Mapping[str, str]


@dataclass(eq=False)
class Deployment:
    """One deployment of a service, as ``describe-services`` lists them."""

    id: int
    revision: Revision
    # The last COMPLETED revision, to roll back to; None for a rollback itself (not
    # eligible for another rollback) or when nothing has completed.
    rollback_to: Revision | None
    desired: int
    changes: Mapping[str, str] = field(default_factory=dict)  # the environment asked for
    rollback_of: int | None = None  # the failed deployment this one rolls back
    state: Rollout = Rollout.IN_PROGRESS
    failures: int = 0  # the circuit breaker's count of failed new replicas in a row
    started_at: float = field(default_factory=time.time)
    ended_at: float | None = None
    reason: str = ""
    started: int = 0  # replicas of the new revision started
    stopped: int = 0  # replicas of older revisions stopped

    @property
    def threshold(self) -> int:
        return breaker_threshold(self.desired)

    def end(self, state: Rollout, reason: str) -> None:
        self.state = state
        self.reason = reason
        self.ended_at = time.time()

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "revision": self.revision.number,
            "changes": dict(self.changes),
            "rollback_to": None if self.rollback_to is None else self.rollback_to.number,
            "rollback_of": self.rollback_of,
            "state": str(self.state),
            "reason": self.reason,
            "desired": self.desired,
            "failures": self.failures,
            "threshold": self.threshold,
            "started": self.started,
            "stopped": self.stopped,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
        }
