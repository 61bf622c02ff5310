"""When to hedge: a delay taken from the recently observed latency of answers.

A hedged request ("The Tail at Scale", Dean and Barroso, 2013) sends one more
attempt, to a different address, when the first has not answered after a delay,
and takes whichever answers first. With the delay at the ``quantile`` of recent
answers' latency, 1 - quantile of the calls hedge when all is well. The paper
uses the p95 (5% more requests); the default here is the p97, because the
window lags a changing latency distribution and the share then overshoots, and
5% is the most the hedges may add.

- ``floor`` keeps that share far lower when latency is tiny anyway (on a LAN, the
  difference between 1 ms and 3 ms is not worth a second request);
- ``cap`` (optional) bounds what a gray failure can cost while the window is still
  full of slow answers. None: no cap, so an upstream that is slow on every call (a
  report that takes 5 s) is hedged for 1 - quantile of its calls, not for every one;
- until ``min_samples`` answers are seen, the delay is the cap (None: no hedge yet).

Hedges also spend the retry budget, so they cannot multiply load on an upstream
that is slow because it is overloaded.

The window holds the last ``size`` latencies; the quantile is recomputed every
``size // 8`` answers (a sort of a few hundred floats), not per request.
"""

from __future__ import annotations

import math


class HedgeDelay:
    """The current hedge delay, from a sliding window of answer latencies."""

    def __init__(
        self,
        *,
        quantile: float = 0.97,
        floor: float = 0.005,
        cap: float | None = None,
        size: int = 256,
        min_samples: int = 20,
    ) -> None:
        if not 0 < quantile < 1:
            raise ValueError("quantile must be between 0 and 1")
        if not floor > 0 or (cap is not None and cap < floor):
            raise ValueError("need 0 < floor <= cap")
        if size < min_samples or min_samples < 1:
            raise ValueError("need 1 <= min_samples <= size")
        self.quantile = quantile
        self.floor = floor
        self.cap = cap
        self._cap = math.inf if cap is None else cap
        self._size = size
        self._min_samples = min_samples
        self._every = max(1, size // 8)
        self._window: list[float] = []
        self._next = 0
        self._since = 0
        self.delay: float | None = cap
        """Seconds an attempt may go unanswered before the hedge; None: no hedge yet."""

    def observe(self, seconds: float) -> None:
        """Record one answer's latency."""
        if len(self._window) < self._size:
            self._window.append(seconds)
        else:
            self._window[self._next] = seconds
            self._next = (self._next + 1) % self._size
        self._since += 1
        if self._since >= self._every and len(self._window) >= self._min_samples:
            self._since = 0
            ordered = sorted(self._window)
            value = ordered[min(len(ordered) - 1, int(self.quantile * len(ordered)))]
            self.delay = min(self._cap, max(self.floor, value))
