"""Client-side load balancing: power of two choices on in-flight requests, with ejection.

Why power of two choices (p2c): pick two addresses at random and send to the one
with fewer requests in flight. Random alone spreads evenly only on average and
keeps feeding a replica that has slowed down; least-in-flight over all addresses
needs every client to agree and herds them onto the same "best" one. Two random
choices avoid both with O(1) work and no shared state, and a slow or stuck
replica accumulates in-flight requests, so it is picked less at once.

Ejection (outlier detection): an address whose attempt failed (connection
refused or timed out, 5xx, a bad body) is skipped for a backoff period that
doubles with each consecutive failure (base, 2x base, ... up to a cap). When the
period ends it is readmitted on probation: one request at a time until one
succeeds, which clears its record; a failure on probation ejects it again for
longer. Failures of attempts that started before the current ejection belong to
the same incident and do not extend it (under load, many requests fail at once
against a replica that just died).

Never eject all: if every address is ejected (or on probation and busy), the
balancer still picks among them, because a guess is better than a certain
failure — DNS may lag, or the failures may have been ours.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass

from apps.discovery.zones import ZoneRouter


@dataclass(eq=False)
class Endpoint:
    """One upstream address and what the balancer knows about it."""

    address: str
    in_flight: int = 0
    consecutive_failures: int = 0
    ejected_until: float = 0.0
    # When the current (or last) ejection began; attempts that started earlier
    # cannot change this endpoint's state.
    ejected_at: float = -math.inf

    def ejected(self, now: float) -> bool:
        return now < self.ejected_until

    def on_probation(self, now: float) -> bool:
        """Readmitted after an ejection but not yet proven healthy."""
        return self.consecutive_failures > 0 and not self.ejected(now)


class Balancer:
    """Chooses an endpoint per attempt among the current addresses.

    - ``base_ejection``/``max_ejection``: the first ejection lasts ``base_ejection``
      seconds, each consecutive failure doubles it, up to ``max_ejection``.
    """

    def __init__(
        self,
        *,
        base_ejection: float = 1.0,
        max_ejection: float = 30.0,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        router: ZoneRouter | None = None,
    ) -> None:
        if base_ejection <= 0 or max_ejection < base_ejection:
            raise ValueError("need 0 < base_ejection <= max_ejection")
        self._base = base_ejection
        self._max = max_ejection
        self._rng = rng or random.Random()  # noqa: S311 - load spreading, not security
        self._clock = clock
        self._router = router
        self._addresses: Sequence[str] = ()
        self._endpoints: dict[str, Endpoint] = {}
        self.ejections = 0

    @property
    def endpoints(self) -> list[Endpoint]:
        return list(self._endpoints.values())

    def update(self, addresses: Sequence[str]) -> None:
        """Follow the current address list: add new addresses, forget removed ones.

        Cheap when nothing changed (the record cache hands out the same tuple).
        A removed endpoint's in-flight attempts finish on their own object.
        """
        if addresses is self._addresses:
            return
        self._addresses = addresses
        self._endpoints = {
            address: self._endpoints.get(address) or Endpoint(address) for address in addresses
        }

    def pick(self, exclude: Container[str] = ()) -> Endpoint | None:
        """An endpoint not in ``exclude`` (the addresses this request already tried).

        None only when every address was excluded.
        """
        now = self._clock()
        candidates = [e for e in self._endpoints.values() if e.address not in exclude]
        if not candidates:
            return None
        available = [
            e
            for e in candidates
            if not e.ejected(now) and not (e.in_flight > 0 and e.on_probation(now))
        ]
        # Never eject all: with nothing available, try the rest anyway.
        pool = available or candidates
        if self._router is not None:
            # One zone, drawn by its share (apps/discovery/zones.py); a retry excludes the
            # addresses tried, so it may cross zones.
            pool = list(self._router.narrow(pool, _address))
        if len(pool) == 1:
            return pool[0]
        first, second = self._rng.sample(pool, 2)
        return first if first.in_flight <= second.in_flight else second

    def on_success(self, endpoint: Endpoint, started_at: float) -> None:
        """An attempt that started at ``started_at`` succeeded: readmit fully."""
        if started_at < endpoint.ejected_at:
            return
        endpoint.consecutive_failures = 0
        endpoint.ejected_until = 0.0

    def on_failure(self, endpoint: Endpoint, started_at: float) -> bool:
        """An attempt failed. Returns True if this ejected the endpoint."""
        if started_at < endpoint.ejected_at:
            return False  # same incident as the current ejection
        now = self._clock()
        endpoint.consecutive_failures += 1
        period = min(self._max, self._base * 2.0 ** (endpoint.consecutive_failures - 1))
        endpoint.ejected_at = now
        endpoint.ejected_until = now + period
        self.ejections += 1
        return True


def _address(endpoint: Endpoint) -> str:
    return endpoint.address
