"""A retry budget: retries may add at most a fixed share of load, plus a small floor.

Without one, bounded attempts still multiply load during an outage: with 3
attempts, every request becomes 3 when everything fails, exactly when the
upstream can least take it. This is a token bucket:

- each request deposits ``ratio`` tokens (0.2: retries up to 20% of requests);
- time adds ``min_per_second`` tokens, so a quiet client can still retry;
- each retry spends one token, and is refused when none is left;
- the balance is capped at ``burst``, which bounds how many retries a calm
  period can save up for a sudden failure (say, one replica dying under load,
  when all requests in flight to it need a retry at once).

Over any window, retries <= ratio * requests + min_per_second * seconds + burst.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class RetryBudget:
    def __init__(
        self,
        *,
        ratio: float = 0.2,
        min_per_second: float = 10.0,
        burst: float = 100.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ratio < 0 or min_per_second < 0 or burst < 1:
            raise ValueError("need ratio >= 0, min_per_second >= 0 and burst >= 1")
        self._ratio = ratio
        self._per_second = min_per_second
        self._burst = burst
        self._clock = clock
        self._balance = burst
        self._updated = clock()

    @property
    def balance(self) -> float:
        self._refill()
        return self._balance

    def _refill(self) -> None:
        now = self._clock()
        elapsed = now - self._updated
        self._updated = now
        if elapsed > 0:
            self._balance = min(self._burst, self._balance + elapsed * self._per_second)

    def on_request(self) -> None:
        """Record a new request (not a retry)."""
        self._balance = min(self._burst, self._balance + self._ratio)

    def try_retry(self) -> bool:
        """Spend one token for a retry; False when the budget is exhausted."""
        self._refill()
        if self._balance >= 1.0:
            self._balance -= 1.0
            return True
        return False
