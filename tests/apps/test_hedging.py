"""The hedge delay alone: a quantile of recent answers, within a floor and a cap."""

import random

import pytest
from aiohttp_discovery.hedging import HedgeDelay


def test_until_enough_answers_are_seen_the_delay_is_the_cap() -> None:
    hedge = HedgeDelay(cap=0.25, min_samples=20)
    for _ in range(19):
        hedge.observe(0.001)
    assert hedge.delay == 0.25


def test_the_delay_follows_the_quantile_of_recent_answers() -> None:
    rng = random.Random(1)
    hedge = HedgeDelay(quantile=0.95, floor=0.001, cap=1.0, size=200)
    for _ in range(400):
        hedge.observe(rng.uniform(0.0, 0.1))  # p95 = 0.095
    assert 0.085 < hedge.delay < 0.1
    for _ in range(400):  # the window moves on: old answers are forgotten
        hedge.observe(rng.uniform(0.0, 0.01))
    assert 0.008 < hedge.delay < 0.01


def test_the_floor_and_the_cap_bound_it() -> None:
    hedge = HedgeDelay(floor=0.005, cap=0.25)
    for _ in range(300):
        hedge.observe(0.0001)
    assert hedge.delay == 0.005  # tiny latencies: hedging would only add load
    for _ in range(300):
        hedge.observe(5.0)
    assert hedge.delay == 0.25  # a slow spell: hedges still go out in time


def test_invalid_settings() -> None:
    with pytest.raises(ValueError, match="quantile"):
        HedgeDelay(quantile=1.0)
    with pytest.raises(ValueError, match="floor"):
        HedgeDelay(floor=0.5, cap=0.1)
