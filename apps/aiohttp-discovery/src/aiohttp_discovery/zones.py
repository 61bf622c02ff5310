"""Zone-aware routing: prefer upstream tasks in the caller's availability zone.

The rule is Envoy's zone-aware routing (``upstream/load_balancer_impl.cc``, "zone aware
routing"), on the caller's side alone:

- ``upstream[z]``: zone z's fraction of the healthy upstream tasks (the capacity);
- ``callers[z]``: zone z's fraction of the callers (hello tasks);
- if ``upstream[local] >= callers[local]``, the local zone can take all of its callers'
  traffic: every call stays local;
- otherwise a caller keeps ``upstream[local] / callers[local]`` of its calls local and
  spills the rest to the other zones in proportion to their spare capacity,
  ``max(0, upstream[z] - callers[z])``.

Summed over all callers this sends each zone exactly its share of the capacity, so no
task is hotter than in zone-unaware balancing, and as many calls as possible stay in
their zone. Calls are spread evenly only if the callers are spread as ``callers`` says,
so the router observes it where it can: the callers' own addresses (hello's tasks, from
their Cloud Map name, as Envoy reads its own cluster's membership) placed by the same
zone map; with none, an even spread over the mapped zones (see ``ZoneRouter``).

Zone-unaware balancing (every task, any zone) whenever the rule cannot be trusted:
the caller's zone is unknown, a task's address is in no known zone, or there are fewer
than ``min_per_zone`` healthy tasks per zone on average (with one task per zone, one
busy or failing task would take its zone's whole share). The local zone with no
healthy task is no special case: its share is 0, so everything spills.

Pure: no I/O, no clock. ``ZoneMap`` says which zone an address is in (from the private
subnets' CIDR blocks per zone, IPv4 and IPv6), ``zone_shares`` is the rule, ``ZoneRouter``
applies it to the endpoints a balancer is about to choose from. ``ZoneRouting`` is what a
caller passes to ``UpstreamClient(zone_routing=...)`` to turn all of it on.
"""

from __future__ import annotations

import ipaddress
import json
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network
from typing import TypeVar

from aiohttp_discovery.metrics import Registry, Sample

# Below this many healthy upstream tasks per zone on average, route zone-unaware.
# AWS Service Connect turns its zone-aware routing off below two endpoints per zone.
MIN_PER_ZONE = 2.0

E = TypeVar("E")
Network = IPv4Network | IPv6Network


class ZoneMapError(ValueError):
    """A zone map that cannot be used; the message says what is wrong."""


@dataclass(frozen=True)
class ZoneMap:
    """Which availability zone an address is in, from CIDR blocks (IPv4 or IPv6) per zone."""

    blocks: Mapping[str, tuple[Network, ...]]

    def __post_init__(self) -> None:
        if not self.blocks:
            raise ZoneMapError("no zone given")
        seen: list[tuple[str, Network]] = []
        for zone, networks in self.blocks.items():
            if not zone or not zone.isascii() or not zone.replace("-", "").isalnum():
                raise ZoneMapError(f"{zone!r} is not a zone name (letters, digits, hyphens)")
            if not networks:
                raise ZoneMapError(f"zone {zone} has no CIDR block")
            for network in networks:
                if not isinstance(network, IPv4Network | IPv6Network):
                    raise ZoneMapError(f"zone {zone}: {network!r} is not an ipaddress network")
                for other_zone, other in seen:
                    if network.version == other.version and network.overlaps(other):
                        raise ZoneMapError(
                            f"{network} ({zone}) overlaps {other} ({other_zone}):"
                            " an address would be in two zones"
                        )
                seen.append((zone, network))

    @property
    def zones(self) -> tuple[str, ...]:
        return tuple(sorted(self.blocks))

    def zone_of(self, address: str) -> str | None:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return None
        for zone, networks in self.blocks.items():
            if any(ip in network for network in networks):
                return zone
        return None

    def to_json(self) -> str:
        return json.dumps(
            {zone: [str(n) for n in self.blocks[zone]] for zone in self.zones}, sort_keys=True
        )

    @classmethod
    def from_json(cls, text: str) -> ZoneMap:
        """``{"us-east-1a": ["10.0.0.0/19", "2600:1f18::/64"], "us-east-1b": [...]}``, or
        ZoneMapError."""
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise ZoneMapError(f"not JSON: {exc}") from None
        if not isinstance(raw, dict) or not all(
            isinstance(v, list) and all(isinstance(c, str) for c in v) for v in raw.values()
        ):
            raise ZoneMapError('expected {"<zone>": ["<CIDR>", ...], ...}')
        return cls.of(raw)

    @classmethod
    def of(cls, cidrs: Mapping[str, Iterable[str]]) -> ZoneMap:
        """From CIDR strings per zone (``{"us-east-1a": ["10.0.0.0/19"]}``), or ZoneMapError."""
        blocks: dict[str, tuple[Network, ...]] = {}
        for zone, blocks_of_zone in cidrs.items():
            if isinstance(blocks_of_zone, str):
                raise ZoneMapError(f"zone {zone}: expected a list of CIDR blocks, not a string")
            try:
                blocks[str(zone)] = tuple(ipaddress.ip_network(c) for c in blocks_of_zone)
            except (ValueError, TypeError) as exc:
                raise ZoneMapError(f"zone {zone}: {exc}") from None
        return cls(blocks)


def zone_shares(
    local: str, upstream: Mapping[str, int], callers: Mapping[str, float]
) -> dict[str, float]:
    """The share of a ``local`` caller's calls to send to each zone (summing to 1).

    ``upstream``: healthy upstream tasks per zone; ``callers``: each zone's fraction of
    the callers (any positive weights; normalised here). Zones with no upstream task get
    nothing. Raises ValueError when there is no upstream task at all.
    """
    total = sum(n for n in upstream.values() if n > 0)
    if total <= 0:
        raise ValueError("no upstream task")
    weight = sum(w for w in callers.values() if w > 0)
    up = {z: n / total for z, n in upstream.items() if n > 0}
    calling = {z: (w / weight if weight > 0 else 0.0) for z, w in callers.items() if w > 0}
    local_up = up.get(local, 0.0)
    local_calling = calling.get(local, 0.0)
    if local_calling <= 0.0:
        # Not a zone the callers are assumed to be in: stay out of the others' way.
        return up
    if local_up >= local_calling:
        return {local: 1.0}
    local_share = local_up / local_calling
    spare = {z: max(0.0, up[z] - calling.get(z, 0.0)) for z in up if z != local}
    spare_total = sum(spare.values())
    shares = {local: local_share} if local_share > 0 else {}
    if spare_total <= 0:
        # Cannot happen when the fractions are consistent (the local zone's shortfall is
        # someone's surplus); spread by capacity rather than divide by zero.
        others = {z: up[z] for z in up if z != local}
        spare, spare_total = others, sum(others.values())
    for zone, room in spare.items():
        if room > 0:
            shares[zone] = (1.0 - local_share) * room / spare_total
    return shares


class ZoneRouter:
    """Narrows a balancer's candidates to one zone per pick, by ``zone_shares``.

    - ``local``: the caller's zone (None: zone-unaware);
    - ``zones``: where the upstream's addresses are (None: zone-unaware);
    - ``callers``: each zone's share of the callers when they cannot be observed; by
      default every zone of ``zones`` gets an equal share (ECS spreads a service's tasks
      evenly over the zones of its subnets, as far as the count allows).
    - ``caller_addresses``: the callers' addresses now (hello's own tasks, from the
      record cache of their Cloud Map name), read on every pick and cheap: the spread is
      recomputed only when a new tuple comes back. While it gives no address, or one in no
      mapped zone, ``callers`` is used. The local zone counts at least one caller, this
      one (a task is registered only once it is healthy, so it may not see itself yet).
    """

    def __init__(
        self,
        local: str | None,
        zones: ZoneMap | None,
        *,
        callers: Mapping[str, float] | None = None,
        caller_addresses: Callable[[], Sequence[str]] | None = None,
        min_per_zone: float = MIN_PER_ZONE,
        rng: random.Random | None = None,
        registry: Registry | None = None,
    ) -> None:
        self.local = local
        self.zones = zones
        if callers is None and zones is not None:
            callers = dict.fromkeys(zones.zones, 1.0)
        self.callers = dict(callers or {})
        self._caller_addresses = caller_addresses
        self._callers_from: Sequence[str] | None = None
        self._observed: dict[str, float] | None = None
        self.min_per_zone = min_per_zone
        self._rng = rng or random.Random()  # noqa: S311 - load spreading, not security
        self._zone_cache: dict[str, str | None] = {}
        registry = registry or Registry()
        self._picks = registry.counter(
            "discovery_zone_picks_total",
            "Attempts routed by zone: same (the caller's zone), other (spilled or retried"
            " across), any (zone-unaware: no zone data, or too few tasks).",
            ("locality",),
        )
        registry.gauge_func(
            "discovery_zone_callers",
            "Callers per zone as the zone rule counts them: observed from the callers'"
            " addresses (source=observed), or the even spread assumed (source=assumed).",
            self._caller_samples,
        )

    @property
    def aware(self) -> bool:
        """Whether it can route by zone at all (it knows its zone and the map)."""
        return self.local is not None and self.zones is not None and bool(self.callers)

    def zone_of(self, address: str) -> str | None:
        if self.zones is None:
            return None
        try:
            return self._zone_cache[address]
        except KeyError:
            if len(self._zone_cache) > 4096:  # addresses churn with tasks; stay bounded
                self._zone_cache.clear()
            zone = self._zone_cache[address] = self.zones.zone_of(address)
            return zone

    def shares(self, addresses: Iterable[str]) -> dict[str, float] | None:
        """Each zone's share for these (healthy) addresses; None: route zone-unaware."""
        if not self.aware or self.local is None:
            return None
        counts = self._by_zone(addresses)
        if counts is None:
            return None
        callers = self.current_callers()
        total = sum(counts.values())
        zones_present = len(set(counts) | {z for z, w in callers.items() if w > 0})
        if total == 0 or total < self.min_per_zone * zones_present:
            return None
        return zone_shares(self.local, counts, callers)

    def current_callers(self) -> Mapping[str, float]:
        """The callers per zone the rule uses now: observed, else ``callers``."""
        if self._caller_addresses is None:
            return self.callers
        addresses = self._caller_addresses()
        if addresses is not self._callers_from:
            self._callers_from = addresses
            self._observed = self._spread(addresses)
        return self._observed or self.callers

    def _spread(self, addresses: Sequence[str]) -> dict[str, float] | None:
        local = self.local
        counts = self._by_zone(addresses) if addresses else None
        if counts is None or local is None:
            return None
        spread = {zone: float(n) for zone, n in counts.items()}
        spread[local] = max(spread.get(local, 0.0), 1.0)  # this caller
        return spread

    def _by_zone(self, addresses: Iterable[str]) -> dict[str, int] | None:
        """Addresses per zone; None if one is in no zone (the map is stale or wrong)."""
        counts: dict[str, int] = {}
        for address in addresses:
            zone = self.zone_of(address)
            if zone is None:
                return None
            counts[zone] = counts.get(zone, 0) + 1
        return counts

    def _caller_samples(self) -> list[Sample]:
        if not self.aware:
            return []
        callers = self.current_callers()
        source = "observed" if callers is self._observed else "assumed"
        return [({"zone": z, "source": source}, float(n)) for z, n in sorted(callers.items())]

    def narrow(
        self,
        candidates: Sequence[E],
        address: Callable[[E], str],
        healthy: Sequence[E] | None = None,
    ) -> Sequence[E]:
        """The candidates of one zone drawn by its share, or all of them (zone-unaware).

        ``candidates`` are the endpoints this attempt may go to (healthy, not yet tried by
        this request); ``healthy`` is every healthy endpoint, tried or not (default: the
        candidates). The shares come from ``healthy``: a hedge or a retry is routed by the
        same rule as the request's first attempt, so with two local tasks the hedge goes
        to the other local one (it used to count only the untried three of four tasks,
        fall below ``min_per_zone`` and cross zones two times in three). When the zone
        drawn has no untried candidate left the draw is among the zones that have one,
        so a retry crosses zones rather than fail, and a zone whose tasks are all ejected
        gets no calls.
        """
        basis = candidates if healthy is None else healthy
        shares = self.shares(address(c) for c in basis)
        if shares is None:
            self._picks.inc(locality="any")
            return candidates
        by_zone: dict[str, list[E]] = {}
        for candidate in candidates:
            by_zone.setdefault(self.zone_of(address(candidate)) or "", []).append(candidate)
        weights = {z: w for z, w in shares.items() if w > 0 and z in by_zone}
        if not weights:
            # Every zone with a share is tried out: what is left, by its capacity.
            weights = {z: float(len(c)) for z, c in by_zone.items()}
        if len(weights) == 1:
            (zone,) = weights
        else:
            zones = list(weights)
            zone = self._rng.choices(zones, weights=[weights[z] for z in zones])[0]
        self._picks.inc(locality="same" if zone == self.local else "other")
        return by_zone[zone]


@dataclass(frozen=True)
class ZoneRouting:
    """Zone-aware routing for ``UpstreamClient(zone_routing=ZoneRouting(...))``.

    - ``subnets``: where the upstream's (and the callers') addresses are: a ``ZoneMap`` or
      ``{"<zone>": ["<CIDR>", ...]}`` (on AWS: the private subnets' CIDR blocks per zone);
    - ``zone``: this caller's zone; None (the default) reads it once at start from the ECS
      task metadata endpoint v4: ``metadata_uri``, or by default the environment's
      ``ECS_CONTAINER_METADATA_URI_V4`` ("" means not on ECS). Outside ECS, pass ``zone``
      (from your platform's metadata, or a setting);
    - ``callers``: a DNS name whose records are the callers' own tasks (your service's
      Cloud Map name), to weigh the callers' real spread over the zones; None: an even
      spread over ``subnets``' zones is assumed;
    - ``min_per_zone``: below this many healthy upstream tasks per zone on average,
      route zone-unaware (Service Connect's rule: two per zone).

    When the caller's zone cannot be known (not on ECS and no ``zone``, or a zone not in
    ``subnets``), the client routes zone-unaware and logs why once: a missing zone never
    fails a call.
    """

    subnets: ZoneMap | Mapping[str, Sequence[str]]
    zone: str | None = None
    callers: str | None = None
    min_per_zone: float = MIN_PER_ZONE
    metadata_uri: str | None = None
    metadata_timeout: float = 2.0

    def __post_init__(self) -> None:
        subnets = self.subnets
        if not isinstance(subnets, ZoneMap):
            if not isinstance(subnets, Mapping):
                raise TypeError(
                    f"ZoneRouting.subnets: expected a ZoneMap or a mapping, not {subnets!r}"
                )
            try:
                subnets = ZoneMap.of(subnets)
            except ZoneMapError as exc:
                raise ZoneMapError(f"ZoneRouting.subnets: {exc}") from None
            object.__setattr__(self, "subnets", subnets)
        if self.metadata_uri is not None and not isinstance(self.metadata_uri, str):
            raise TypeError(f"ZoneRouting.metadata_uri: expected a str, not {self.metadata_uri!r}")
        for name in ("zone", "callers"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise TypeError(
                    f"ZoneRouting.{name}: expected a non-empty str or None, not {value!r}"
                )
        if self.zone is not None and self.zone not in subnets.blocks:
            zones = ", ".join(subnets.zones)
            raise ValueError(
                f"ZoneRouting.zone: {self.zone!r} is not one of subnets' zones {zones}"
            )
        for name in ("min_per_zone", "metadata_timeout"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
                raise ValueError(f"ZoneRouting.{name}: must be a number > 0, not {value!r}")

    @property
    def zone_map(self) -> ZoneMap:
        assert isinstance(self.subnets, ZoneMap)
        return self.subnets
