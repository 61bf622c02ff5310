"""The retry budget alone: retries bounded by a ratio of requests plus a floor and a burst."""

import pytest
from aiohttp_discovery.budget import RetryBudget


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_in_an_outage_retries_stay_within_ratio_plus_burst() -> None:
    clock = Clock()
    budget = RetryBudget(ratio=0.2, min_per_second=0.0, burst=10.0, clock=clock)
    retries = 0
    for _ in range(1000):
        budget.on_request()
        # every request fails and wants two retries
        retries += sum(budget.try_retry() for _ in range(2))
    assert retries <= 0.2 * 1000 + 10
    assert retries >= 0.2 * 1000  # and it does allow its share
    # without a budget this would have been 2000


def test_the_floor_refills_over_time_up_to_the_burst() -> None:
    clock = Clock()
    budget = RetryBudget(ratio=0.0, min_per_second=10.0, burst=5.0, clock=clock)
    assert sum(budget.try_retry() for _ in range(100)) == 5  # the initial burst
    assert not budget.try_retry()
    clock.now += 0.3  # 3 tokens
    assert sum(budget.try_retry() for _ in range(100)) == 3
    clock.now += 60.0  # long quiet period: capped at the burst
    assert budget.balance == pytest.approx(5.0)


def test_deposits_are_capped() -> None:
    budget = RetryBudget(ratio=1.0, min_per_second=0.0, burst=3.0, clock=Clock())
    for _ in range(100):
        budget.on_request()
    assert budget.balance == pytest.approx(3.0)


def test_invalid_settings() -> None:
    with pytest.raises(ValueError, match="ratio"):
        RetryBudget(ratio=-0.1)
    with pytest.raises(ValueError, match="burst"):
        RetryBudget(burst=0.5)
