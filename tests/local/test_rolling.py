"""The rolling deployment's arithmetic (local/rolling.py), without processes: ECS's 200/75
bounds for several desired counts, the documented examples, and the circuit breaker's
threshold."""

from __future__ import annotations

import pytest

from local.rolling import Rolling, Step, breaker_threshold

ROLLING = Rolling()  # 75/200, as components/service.py deploys both services


@pytest.mark.parametrize(
    ("desired", "floor", "ceiling", "first"),
    [
        # desired: at least ceil(0.75 d) healthy, at most floor(2 d) running; the first step
        # starts the whole new revision and stops the old replicas above the floor.
        (1, 1, 2, Step(start=1, stop=0)),
        (2, 2, 4, Step(start=2, stop=0)),
        (3, 3, 6, Step(start=3, stop=0)),
        (4, 3, 8, Step(start=4, stop=1)),
        (5, 4, 10, Step(start=5, stop=1)),
        (8, 6, 16, Step(start=8, stop=2)),
        (10, 8, 20, Step(start=10, stop=2)),
        (12, 9, 24, Step(start=12, stop=3)),
    ],
)
def test_75_200_bounds_and_first_step(desired: int, floor: int, ceiling: int, first: Step) -> None:
    assert ROLLING.minimum_healthy(desired) == floor, "rounded up"
    assert ROLLING.maximum(desired) == ceiling, "rounded down"
    assert ROLLING.step(desired, new=0, old=desired, healthy=desired) == first


def test_the_guides_examples() -> None:
    """ECS Developer Guide, "Deploy Amazon ECS services by replacing tasks"."""
    # 50% of four: "the scheduler can stop two existing tasks before starting two new tasks"
    # (with 100% maximum: no room above four).
    assert Rolling(50, 100).step(4, new=0, old=4, healthy=4) == Step(start=2, stop=2)
    # 75% of two is two: "the scheduler can't stop any tasks".
    assert ROLLING.step(2, new=0, old=2, healthy=2).stop == 0
    # 125% of three is three: "the scheduler can't start any tasks".
    assert Rolling(100, 125).step(3, new=0, old=3, healthy=3) == Step(start=0, stop=0)


@pytest.mark.parametrize("desired", [1, 2, 3, 4, 5, 7, 8, 10, 25])
def test_a_rollout_stays_within_the_bounds_and_ends_on_the_new_revision(desired: int) -> None:
    """Replay a deployment: each round applies a step, then one new replica becomes healthy.
    Stopping replicas (draining) count toward neither bound, as ECS's DEACTIVATING/STOPPING
    tasks are past RUNNING."""
    old, starting, new_healthy = desired, 0, 0
    for _ in range(desired + 2):
        step = ROLLING.step(desired, new=starting + new_healthy, old=old, healthy=old + new_healthy)
        old -= step.stop
        starting += step.start
        assert old + new_healthy >= ROLLING.minimum_healthy(desired)
        assert old + starting + new_healthy <= ROLLING.maximum(desired)
        if starting:
            starting, new_healthy = starting - 1, new_healthy + 1
    assert (old, starting, new_healthy) == (0, 0, desired)


@pytest.mark.parametrize("desired", [1, 3, 4, 8, 10])
def test_a_revision_that_never_becomes_healthy_keeps_the_floor_of_old_replicas(
    desired: int,
) -> None:
    old = desired
    for _ in range(5):  # retries of new replicas that keep failing: none ever healthy
        step = ROLLING.step(desired, new=0, old=old, healthy=old)
        old -= step.stop
        assert step.start == desired
    assert old == ROLLING.minimum_healthy(desired), "serving on 75% until the rollback"


@pytest.mark.parametrize(
    ("desired", "threshold"),
    [(0, 3), (1, 3), (2, 3), (6, 3), (7, 4), (25, 13), (399, 200), (400, 200), (800, 200)],
)
def test_circuit_breaker_threshold(desired: int, threshold: int) -> None:
    """0.5 x the desired count, rounded up, at least 3 and at most 200 (ECS API reference,
    ServiceDeploymentCircuitBreaker; the Developer Guide's example: 25 tasks give 13)."""
    assert breaker_threshold(desired) == threshold
