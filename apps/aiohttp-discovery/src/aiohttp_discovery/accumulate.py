"""Every healthy task, not just eight: DNS answers accumulated over several queries.

Cloud Map's MULTIVALUE routing answers at most eight healthy records, chosen among all
when there are more. One query per refresh would balance over a random eight at a time.
``AccumulatingLookup`` wraps a lookup and, per refresh:

1. asks once; an answer with fewer than eight records is the whole set (Route 53 answers
   every healthy record when it has eight or fewer), so that is the end of it;
2. a full answer may be a sample: it keeps asking, in batches, and returns the union of
   the answers, until enough queries were made that a task present all along is missed
   with probability at most ``miss_probability``: with ``n`` tasks each answer holds a
   given task with probability ``8 / n``, so ``q`` answers all miss it with
   ``(1 - 8/n) ** q``, and ``q = ln(p) / ln(1 - 8/n)``: 18 queries for 24 tasks at
   p = 0.1%, 83 for 100 tasks, 861 for 1,000. ``n`` is estimated as the union so far,
   so the count grows as new tasks turn up;
3. the number of queries per refresh is capped by ``max_queries_per_second`` times the
   refresh interval (50/s: 5% of the VPC resolver's 1,024 packets per second per
   network interface), so a large service costs a bounded query rate and, beyond
   about 290 tasks at the 5 s refresh, a higher miss probability instead (13% at 1,000).
   Why 0.1% and not 1%: with 24 tasks and p = 1%, a refresh misses one of them 21% of the
   time; at 0.1%, 2%, for 50% more queries.

A task is kept while it keeps appearing: the result of one refresh replaces the last, so
a stopped task leaves one refresh after Route 53 stops answering it (as with one query),
and a task missed by chance (probability p) is back at the next refresh. A task that
fails before that is ejected by the balancer. Any failed query fails the whole refresh
(the record cache then keeps serving the last good set): a partial union would drop
tasks that are there.

Route 53 documents that it gives "different combinations of healthy records" to
different resolvers; it does not promise a new combination per query from the same
resolver. ``repeats`` counts refreshes whose full answers all came back identical
(``discovery_dns_answers_repeated_total``): with exactly eight tasks that is expected;
with more it means answers do not vary and only eight are seen, which is then visible
instead of quietly skewing the load (use Cloud Map's DiscoverInstances API there; see
docs/apps.md).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence

from aiohttp_discovery.metrics import Registry
from aiohttp_discovery.records import DnsLookup, EitherFamily, Lookup, RecordCache

# Route 53 answers a MULTIVALUE query with up to eight healthy records.
MAX_ANSWER = 8
# Queries sent at once within a refresh (c-ares multiplexes them on one socket).
BATCH = 8


def queries_needed(tasks: int, miss_probability: float, answer: int = MAX_ANSWER) -> int:
    """Queries after which a task present in every answer's pool is missed with at most
    ``miss_probability``, when each answer holds ``answer`` of ``tasks`` at random."""
    if tasks <= answer:
        return 1
    return math.ceil(math.log(miss_probability) / math.log(1.0 - answer / tasks))


class AccumulatingLookup:
    """A ``Lookup`` that returns the union of as many answers as it takes (see above)."""

    def __init__(
        self,
        inner: Lookup,
        *,
        refresh_interval: float,
        miss_probability: float = 0.001,
        max_queries_per_second: float = 50.0,
        registry: Registry | None = None,
    ) -> None:
        if not 0 < miss_probability < 1:
            raise ValueError("miss_probability must be between 0 and 1")
        self._inner = inner
        self.miss_probability = miss_probability
        self.max_queries = max(1, math.floor(max_queries_per_second * refresh_interval))
        self.last_queries = 0
        self.repeats = 0
        registry = registry or Registry()
        self._queries = registry.counter(
            "discovery_dns_queries_total",
            "DNS queries sent (a refresh sends several when answers are full).",
            ("host",),
        )
        self._repeated = registry.counter(
            "discovery_dns_answers_repeated_total",
            "Refreshes whose full answers never varied: exactly 8 tasks, or answers that do"
            " not vary (then no task beyond those 8 is seen).",
            ("host",),
        )

    async def __call__(self, host: str) -> tuple[str, ...]:
        first = await self._ask(host, 1)
        self.last_queries = 1
        if len(first[0]) < MAX_ANSWER:
            return first[0]
        seen = set(first[0])
        sent = 1
        varied = False
        while sent < (wanted := self._wanted(len(seen))):
            batch = min(BATCH, wanted - sent)
            for answer in await self._ask(host, batch):
                varied = varied or set(answer) != set(first[0])
                seen.update(answer)
            sent += batch
            self.last_queries = sent
        if not varied and sent > 1:
            self.repeats += 1
            self._repeated.inc(host=host)
        return tuple(sorted(seen))

    def _wanted(self, seen: int) -> int:
        # A full answer means at least eight tasks, maybe more: assume one more than seen
        # so far when nothing beyond eight has turned up yet.
        tasks = max(seen, MAX_ANSWER + 1)
        return min(self.max_queries, queries_needed(tasks, self.miss_probability))

    async def _ask(self, host: str, count: int) -> list[tuple[str, ...]]:
        self._queries.inc(float(count), host=host)
        answers = await asyncio.gather(
            *(self._inner(host) for _ in range(count)), return_exceptions=True
        )
        for answer in answers:
            if isinstance(answer, BaseException):
                raise answer
        return [a for a in answers if not isinstance(a, BaseException)]

    async def close(self) -> None:
        await self._inner.close()


def every_task(
    host: str,
    *,
    nameservers: Sequence[str] = (),
    record_types: Sequence[str] = ("A",),
    refresh_interval: float = 5.0,
    dns_timeout: float = 0.5,
    dns_tries: int = 2,
    miss_probability: float = 0.001,
    max_queries_per_second: float = 50.0,
    registry: Registry | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> RecordCache:
    """A record cache of every healthy task of ``host``: answers accumulated per refresh
    (above) from DNS queries sent straight to ``nameservers`` (empty: the system's), one
    accumulation per record type (Route 53 answers up to eight of each), each type's
    query cap a share of ``max_queries_per_second``."""
    per_type = max_queries_per_second / max(1, len(record_types))
    return RecordCache(
        host,
        EitherFamily(
            [
                AccumulatingLookup(
                    DnsLookup(nameservers, timeout=dns_timeout, tries=dns_tries, record_type=t),
                    refresh_interval=refresh_interval,
                    miss_probability=miss_probability,
                    max_queries_per_second=per_type,
                    registry=registry,
                )
                for t in record_types
            ]
        ),
        refresh_interval=refresh_interval,
        registry=registry,
        clock=clock,
    )
