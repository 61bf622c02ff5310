"""Every task beyond Cloud Map's eight records per answer: answers accumulated per refresh."""

from __future__ import annotations

import random

import pytest
from aiohttp_discovery.accumulate import AccumulatingLookup, queries_needed
from aiohttp_discovery.metrics import Registry
from aiohttp_discovery.records import LookupFailed

from tests.apps.support import run


class Sampling:
    """A Cloud Map stand-in for one name: at most 8 of its tasks per answer, at random."""

    def __init__(self, tasks: int, seed: int = 0, fail_on: int | None = None) -> None:
        self.tasks = [f"10.0.{i // 250}.{i % 250 + 1}" for i in range(tasks)]
        self.rng = random.Random(seed)
        self.queries = 0
        self.fail_on = fail_on
        self.fixed: list[str] | None = None  # answer this every time (answers that repeat)

    async def __call__(self, host: str) -> tuple[str, ...]:
        self.queries += 1
        if self.fail_on is not None and self.queries == self.fail_on:
            raise LookupFailed("timeout", "no answer")
        if self.fixed is not None:
            return tuple(self.fixed)
        if len(self.tasks) <= 8:
            return tuple(self.tasks)
        return tuple(self.rng.sample(self.tasks, 8))

    async def close(self) -> None:
        return None


def lookup(source: Sampling, refresh: float = 5.0, **kwargs: float) -> AccumulatingLookup:
    return AccumulatingLookup(source, refresh_interval=refresh, registry=Registry(), **kwargs)


def test_eight_or_fewer_tasks_take_one_query() -> None:
    """Route 53 answers every healthy record when it has eight or fewer: one query is exact."""
    source = Sampling(5)
    found = run(lookup(source)("name.internal"))
    assert set(found) == set(source.tasks)
    assert source.queries == 1


@pytest.mark.parametrize("tasks", [9, 24, 100])
def test_more_than_eight_tasks_are_all_seen(tasks: int) -> None:
    """One query would see 8 of them; the accumulated answers see all (miss rate <= 0.1%)."""
    misses = 0
    for seed in range(20):
        source = Sampling(tasks, seed)
        accumulating = lookup(source)
        found = run(accumulating("name.internal"))
        assert set(found) <= set(source.tasks)
        misses += len(set(source.tasks) - set(found))
        assert source.queries == accumulating.last_queries
        assert source.queries <= queries_needed(tasks, 0.001) + 8, "no more than it takes"
    assert misses <= 0.005 * 20 * tasks, misses


def test_the_query_count_follows_the_miss_probability() -> None:
    assert queries_needed(8, 0.001) == 1
    assert queries_needed(24, 0.001) == 18  # (16/24) ** 18 < 0.1%
    assert (16 / 24) ** 18 < 0.001 < (16 / 24) ** 17
    assert queries_needed(100, 0.001) == 83


def test_queries_per_refresh_are_capped_by_a_rate() -> None:
    """At 50 queries a second, a 0.5 s refresh sends at most 25, whatever the task count."""
    source = Sampling(1000)
    accumulating = lookup(source, refresh=0.5)
    run(accumulating("name.internal"))
    assert accumulating.max_queries == 25
    assert source.queries == 25


def test_a_failed_query_fails_the_whole_refresh() -> None:
    """A partial union would drop tasks that are there; the cache keeps the last good set."""
    with pytest.raises(LookupFailed):
        run(lookup(Sampling(24, fail_on=3))("name.internal"))


def test_answers_that_never_vary_are_counted() -> None:
    source = Sampling(24)
    source.fixed = source.tasks[:8]
    accumulating = lookup(source)
    assert len(run(accumulating("name.internal"))) == 8
    assert accumulating.repeats == 1
    varied = lookup(Sampling(24))
    run(varied("name.internal"))
    assert varied.repeats == 0
