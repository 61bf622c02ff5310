"""Client-side load balancing: power of two choices over peak-EWMA latency, with capped ejection.

**Choosing (p2c over peak EWMA, as in Finagle and Linkerd).** Pick two addresses
at random and send to the one with the lower *load*: its latency estimate times
(requests in flight + 1). Random choice alone keeps feeding a replica that slowed
down; least-loaded over all addresses herds every client onto the same one. Two
random choices avoid both with O(1) work and no shared state. Two loads within
1.75x or 0.5 ms of each other are a tie, broken by fewer requests in flight, then
at random: estimates of equal replicas never agree exactly, and always taking
the lower one would pile a zone's calls onto one of two equal replicas. The latency
estimate is a *peak* EWMA with two memories: slower news (an answer, or a hedge race
lost) counts at once but only for about PEAK_MEMORY_SECONDS, while the answers'
EWMA (time constant ``decay``) keeps a replica that stays slow; with no answers
both decay towards zero, so an address that was slow is tried again after a while
and readmitted if it has recovered. One slow answer thus no longer keeps an equal
replica out of rotation for ``decay x ln(h / 1.75)`` seconds (17 s for a 10x
hiccup, a new task's first answer included). A replica that answers 300 ms late
is never ejected (nothing failed) but costs 100 times more than its peers and gets
almost no traffic; one that answers nothing piles up requests in flight.

**Ejection (outlier detection).** An address whose attempt failed (connection
refused or timed out, 5xx, an unusable body) is skipped for a backoff period
that doubles with each consecutive failure (base, 2x base, ... up to a cap).
When the period ends it is readmitted on probation: one request at a time until
one succeeds. ``readmit()`` (the client's active health probe) ends an ejection
at once. Failures of attempts that started before the current ejection belong
to the same incident and do not extend it.

**Limits, as in Envoy.** ``max_ejection_percent``: at most this share of the
addresses is ejected at once (at least one may always be), so a burst of
failures cannot concentrate the load on a few survivors; a failure beyond the
cap is counted but ejects nothing. ``panic_threshold_percent``: when fewer than
this share of the addresses is available, health is ignored and every address
is a candidate, because a guess is better than a certain failure (DNS may lag,
or the failures may have been ours).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass

from aiohttp_discovery.zones import ZoneRouter

# Load of an address with requests in flight but no latency observed yet
# (Finagle's "penalty"): high, so a new address gets one request before more.
_PENALTY = 1e3
# A replica whose attempt lost a hedge race ranks at least this many times the winner's
# estimate (see Balancer.lost_race). It must sit well above the tie band (1.75x, below),
# so a replica known only from lost races is avoided: decaying with no answers, the
# floor is back within the band after decay * ln(factor / 1.75) (8.3 s at 4x, with the
# 10 s decay), and then the replica is tried like its peers again. Only a replica known
# from lost races alone gets the floor, so equal replicas are not affected.
RACE_LOSS_FACTOR = 4.0
# How long one slow answer (or one hedge race lost) weighs: the peak's time constant.
# A hiccup h times the usual latency keeps a replica out of the tie band for about
# ln(h / 1.75) of it (1.7 s for 10x). It must stay short: with many replicas each gets
# few calls, and a peak that weighed for the EWMA's 10 s would keep several equal
# replicas out of rotation at any moment. A replica that stays slow is kept out by the
# EWMA, which its next answer (seconds later, so weighted fully) moves.
PEAK_MEMORY_SECONDS = 1.0
# Two loads are a tie when the larger is within 1.75x the smaller or 0.5 ms of it.
# Relative: a peak EWMA keeps an equal replica's latest hiccup for a while, so equal
# replicas' estimates differ by tens of percent, and always taking the lower one would
# starve some of them. Below 2x: one request more in flight at equal latency (2x) still
# counts, and so does the rank of a hedge race's loser (RACE_LOSS_FACTOR, 4x its
# winner). Absolute: below a millisecond, same-zone round trips and a busy event
# loop's scheduling jitter are a few hundred microseconds. A gray failure (50 ms,
# 300 ms, 2 s against ~1 ms) is far outside both.
_TIE_RELATIVE = 0.75
_TIE_ABSOLUTE = 0.0005


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
    latency: float = 0.0
    """EWMA latency estimate in seconds, as of ``latency_at`` (the long memory)."""
    latency_at: float = 0.0
    peak: float = 0.0
    """The slowest recent news in seconds, as of ``peak_at`` (the short memory)."""
    peak_at: float = 0.0
    answered_at: float = -math.inf
    """When an attempt on it last got an answer (lost hedge races are not answers)."""
    fresh: bool = True
    """No answer since it was added or its estimate was forgotten (after a failure)."""
    races_lost: int = 0
    """Hedge races lost since its last answer (see ``Balancer.lost_race``)."""

    def ejected(self, now: float) -> bool:
        return now < self.ejected_until

    def on_probation(self, now: float) -> bool:
        """Readmitted after an ejection but not yet proven healthy."""
        return self.consecutive_failures > 0 and not self.ejected(now)


class Balancer:
    """Chooses an endpoint per attempt among the current addresses.

    - ``base_ejection``/``max_ejection``: the first ejection lasts ``base_ejection``
      seconds, each consecutive failure doubles it, up to ``max_ejection``.
    - ``max_ejection_percent``: the most addresses ejected at once, in percent
      (at least one); ``panic_threshold_percent``: below this share of available
      addresses, health is ignored.
    - ``decay``: the peak EWMA's time constant, in seconds.
    - ``ejects``: False never ejects (one proxy address that balances and ejects itself:
      failures are counted by the caller, and the only address stays in use).
    """

    def __init__(
        self,
        *,
        base_ejection: float = 1.0,
        max_ejection: float = 30.0,
        max_ejection_percent: float = 50.0,
        panic_threshold_percent: float = 50.0,
        decay: float = 10.0,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        router: ZoneRouter | None = None,
        ejects: bool = True,
    ) -> None:
        if base_ejection <= 0 or max_ejection < base_ejection:
            raise ValueError("need 0 < base_ejection <= max_ejection")
        if not 0 <= max_ejection_percent <= 100 or not 0 <= panic_threshold_percent <= 100:
            raise ValueError("max_ejection_percent and panic_threshold_percent must be 0-100")
        if decay <= 0:
            raise ValueError("decay must be positive")
        self._base = base_ejection
        self._max = max_ejection
        self._max_ejected_share = max_ejection_percent / 100.0
        self._panic_share = panic_threshold_percent / 100.0
        self._decay = decay
        self._ejects = ejects
        self._rng = rng or random.Random()  # noqa: S311 - load spreading, not security
        self._clock = clock
        self.router = router
        """Narrows each pick to one zone (``ZoneRouter``), or None: zone-unaware."""
        self._addresses: Sequence[str] = ()
        self._endpoints: dict[str, Endpoint] = {}
        self._pool: tuple[Endpoint, ...] = ()  # the endpoints, in a tuple for the picks
        self.ejections = 0
        self.panicking = False
        """True when the last pick ignored health (too few addresses available)."""

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
        self._pool = tuple(self._endpoints.values())

    def pick(self, exclude: Container[str] = ()) -> Endpoint | None:
        """An endpoint not in ``exclude`` (the addresses this request already tried).

        None only when every address was excluded.
        """
        now = self._clock()
        pool: Sequence[Endpoint] = self._pool
        if not exclude and self.router is None:
            # The usual case, a first attempt with every address well: no filtering.
            for e in pool:
                if e.consecutive_failures or now < e.ejected_until:
                    break
            else:
                self.panicking = False
                return self._p2c(pool, now) if pool else None
        candidates: list[Endpoint] = []
        available: list[Endpoint] = []
        healthy: list[Endpoint] = []  # not ejected, tried by this request or not
        for e in self._endpoints.values():
            if now < e.ejected_until:
                if e.address not in exclude:
                    candidates.append(e)
                continue
            healthy.append(e)
            if e.address in exclude:
                continue
            candidates.append(e)
            # Available: not ejected, and not on probation with a request in flight.
            if not (e.in_flight and e.consecutive_failures):
                available.append(e)
        if not candidates:
            return None
        # Panic: with too few healthy, ignore health (never eject all).
        self.panicking = not available or len(healthy) < self._panic_share * len(self._endpoints)
        pool = candidates if self.panicking else available
        if self.router is not None:
            # One zone, drawn by its share of the healthy tasks (aiohttp_discovery/zones.py);
            # a retry or a hedge takes an untried task of that zone, or crosses zones.
            basis = self.endpoints if self.panicking else healthy
            pool = list(self.router.narrow(pool, _address, basis))
        return self._p2c(pool, now)

    def _p2c(self, pool: Sequence[Endpoint], now: float) -> Endpoint:
        """The less loaded of two distinct endpoints of ``pool`` drawn at random."""
        n = len(pool)
        if n == 1:
            return pool[0]
        draw = self._rng.random
        i = int(draw() * n)
        j = int(draw() * (n - 1))
        first, second = pool[i], pool[j + (j >= i)]
        a, b = self.load(first, now), self.load(second, now)
        if abs(a - b) > max(_TIE_ABSOLUTE, _TIE_RELATIVE * min(a, b)):
            return first if a < b else second
        # A tie: fewer in flight, else the random order of the draw.
        return second if second.in_flight < first.in_flight else first

    def latency(self, endpoint: Endpoint, now: float) -> float:
        """The latency estimate: the larger of the EWMA and the recent peak, each decayed
        towards zero since it was set (the EWMA over ``decay``, the peak over
        PEAK_MEMORY_SECONDS)."""
        estimate = self._ewma(endpoint, now)
        if endpoint.peak > 0:
            peak = endpoint.peak * math.exp(-max(now - endpoint.peak_at, 0.0) / PEAK_MEMORY_SECONDS)
            estimate = max(estimate, peak)
        return estimate

    def _ewma(self, endpoint: Endpoint, now: float) -> float:
        """The long memory alone, decayed towards zero since ``latency_at``."""
        elapsed = now - endpoint.latency_at
        if endpoint.latency > 0 and elapsed > 0:
            return endpoint.latency * math.exp(-elapsed / self._decay)
        return endpoint.latency

    def load(self, endpoint: Endpoint, now: float) -> float:
        """Latency estimate times (requests in flight + 1), as p2c compares them."""
        if endpoint.latency <= 0 and endpoint.in_flight:
            return _PENALTY + endpoint.in_flight
        return self.latency(endpoint, now) * (endpoint.in_flight + 1)

    def observe(self, endpoint: Endpoint, seconds: float) -> None:
        """Feed one latency observation (an answer, or how long a cancelled attempt waited)."""
        now = self._clock()
        if endpoint.fresh:
            # A first answer pays for a new connection and, on a task that just started,
            # a cold process: it goes to the short memory only, so a healthy new task is
            # not kept out of rotation for the EWMA's decay. The EWMA stays as it stands
            # now (a race-loss floor, decayed): restamping its clock without decaying it
            # would put a floor that had decayed into the tie band back at full height.
            endpoint.fresh = False
            endpoint.latency = self._ewma(endpoint, now)
        elif endpoint.latency <= 0:
            endpoint.latency = seconds  # unknown until now
        else:
            weight = math.exp(-max(now - endpoint.latency_at, 0.0) / self._decay)
            endpoint.latency = endpoint.latency * weight + seconds * (1.0 - weight)
        endpoint.latency_at = now
        self._raise_peak(endpoint, seconds, now)

    def _raise_peak(self, endpoint: Endpoint, seconds: float, now: float) -> None:
        """Slower news counts at once, for about PEAK_MEMORY_SECONDS."""
        if seconds > self.latency(endpoint, now):
            endpoint.peak = seconds
            endpoint.peak_at = now

    def observe_at_least(self, endpoint: Endpoint, seconds: float) -> None:
        """An attempt was cancelled after ``seconds`` without an answer (it lost a hedge
        race): a lower bound of its latency, which may raise the estimate, never lower it."""
        self._raise_peak(endpoint, seconds, self._clock())

    def lost_race(self, loser: str, winner: str) -> None:
        """``loser``'s attempt was cancelled because ``winner`` answered first (a hedge race).

        Unless the loser answered within the last ``decay`` seconds (then its own
        answers inform its estimate), it was the slower of the two just now and is known
        only from lost races, so its estimate rises to at least ``RACE_LOSS_FACTOR`` times
        the winner's. The bound scales with the winner: after a
        stall of this process has inflated the estimates of every replica that answered, a
        replica known only from lost races still ranks behind them, where a fixed bound (the
        hedge delay it waited) would make it look fastest for as long as the stall decays.

        The first race lost since its last answer weighs like a first answer, in the
        short memory (PEAK_MEMORY_SECONDS): a task that has just started loses its first
        race to a cold process, and in a boot storm (20 tasks starting on two cores) its
        winner's estimate is inflated too, so 4x that in the 10 s memory kept a healthy
        task out of the tie band for about 16 s. The second race lost with no answer in
        between sets the floor in the long memory: a replica that really is slow (a gray
        failure answers nothing before the hedge wins) pays one extra pick for this.
        """
        slow, fast = self._endpoints.get(loser), self._endpoints.get(winner)
        if slow is None or fast is None or slow is fast or slow.consecutive_failures:
            # A failing replica (ejected, or on probation) has its estimate forgotten;
            # a race it "lost" meanwhile says it failed, which ejection already counts.
            return
        now = self._clock()
        if now - slow.answered_at < self._decay:
            # It answered recently: its estimate rests on real answers, and an equal
            # replica that lost one race by chance must not be avoided for seconds.
            return
        floor = RACE_LOSS_FACTOR * self.latency(fast, now)
        slow.races_lost += 1
        if floor <= self.latency(slow, now):
            return
        if slow.races_lost == 1:
            slow.peak, slow.peak_at = floor, now
        else:
            slow.latency = floor
            slow.latency_at = now

    def on_success(self, endpoint: Endpoint, started_at: float) -> None:
        """An attempt that started at ``started_at`` got an answer: readmit fully."""
        self.observe(endpoint, self._clock() - started_at)
        endpoint.answered_at = endpoint.latency_at  # observe's clock reading: no second one
        endpoint.races_lost = 0
        if started_at < endpoint.ejected_at:
            return
        endpoint.consecutive_failures = 0
        endpoint.ejected_until = 0.0

    def on_failure(self, endpoint: Endpoint, started_at: float) -> str:
        """An attempt failed. Returns "ejected", "capped" (the cap held it in) or ""."""
        if not self._ejects or started_at < endpoint.ejected_at:
            return ""  # same incident as the current ejection
        now = self._clock()
        # What we knew of its latency is stale once it comes back: unknown, so its
        # next answers set the estimate afresh (it must not be avoided after it
        # recovered for what it was before the incident).
        endpoint.latency = endpoint.peak = 0.0
        endpoint.fresh = True
        endpoint.races_lost = 0
        if not endpoint.ejected(now) and not self._may_eject(now):
            endpoint.consecutive_failures += 1  # still remembered: probation on the next one
            return "capped"
        endpoint.consecutive_failures += 1
        period = min(self._max, self._base * 2.0 ** (endpoint.consecutive_failures - 1))
        endpoint.ejected_at = now
        endpoint.ejected_until = now + period
        self.ejections += 1
        return "ejected"

    def _may_eject(self, now: float) -> bool:
        ejected = sum(1 for e in self._endpoints.values() if e.ejected(now))
        allowed = max(1, math.floor(self._max_ejected_share * len(self._endpoints)))
        return ejected < allowed

    def readmit(self, endpoint: Endpoint) -> None:
        """End an ejection now (a health probe succeeded). Attempts that started
        before this moment can no longer eject it again."""
        endpoint.consecutive_failures = 0
        endpoint.ejected_until = 0.0
        endpoint.ejected_at = self._clock()
        endpoint.latency = 0.0

    def has_answered(self, address: str) -> bool:
        """Has this address ever answered an attempt (or is it no longer known)?"""
        endpoint = self._endpoints.get(address)
        return endpoint is None or endpoint.answered_at > -math.inf

    def ejected(self) -> list[Endpoint]:
        now = self._clock()
        return [e for e in self._endpoints.values() if e.ejected(now)]


def _address(endpoint: Endpoint) -> str:
    return endpoint.address
