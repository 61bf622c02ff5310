"""The runner's placement across emulated zones, without processes: ECS spreads a service's
tasks evenly over its zones, scale-in keeps them even, rebalancing moves one at a time."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from local.runner import Replica, Runner, Service, ServiceSpec, State, _victims

SPEC = ServiceSpec(
    name="name",
    module="apps.name",
    network=IPv4Network("127.0.1.0/24"),
    port=3000,
    env={},
    discoverable=True,
    load_balanced=False,
    subnets=(("a", IPv4Network("127.0.1.0/26")), ("b", IPv4Network("127.0.1.64/26"))),
)


def replica(zone: str, n: int, started: float, state: State = State.RUNNING) -> Replica:
    third = {"a": 0, "b": 64}[zone]
    return Replica(
        SPEC,
        IPv4Address(f"127.0.1.{third + n}"),
        Path("/dev/null"),
        zone=zone,
        state=state,
        started_at=started,
    )


def test_scale_in_stops_the_newest_in_the_fullest_zone() -> None:
    svc = Service(SPEC, desired=2)
    live = [replica("a", 1, 1), replica("b", 1, 2), replica("b", 2, 3), replica("b", 3, 4)]
    victims = _victims(svc, live, 2)
    assert [(v.zone, v.started_at) for v in victims] == [("b", 4), ("b", 3)]


def test_replicas_in_a_zone_that_is_down_are_stopped_first() -> None:
    svc = Service(SPEC, desired=2, down={"a"})
    live = [replica("a", 1, 1), replica("b", 1, 2), replica("b", 2, 3)]
    assert [v.zone for v in _victims(svc, live, 1)] == ["a"]


def test_a_new_replica_goes_to_the_zone_with_the_fewest() -> None:
    svc = Service(SPEC, desired=3)
    svc.replicas = [replica("a", 1, 1), replica("a", 2, 2), replica("b", 1, 3)]
    runner = Runner.__new__(Runner)
    runner.registry = _NoRegistry()  # type: ignore[assignment]
    assert runner._free_address(svc) == ("b", IPv4Address("127.0.1.66"))
    svc.down.add("b")
    assert runner._free_address(svc) == ("a", IPv4Address("127.0.1.3"))


def test_rebalancing_starts_only_when_settled_and_two_apart() -> None:
    svc = Service(SPEC, desired=3)
    three_in_b = [replica("b", 1, 1), replica("b", 2, 2), replica("b", 3, 3)]
    assert Runner._unbalanced(svc, three_in_b)
    assert not Runner._unbalanced(svc, [*three_in_b[:2], replica("a", 1, 4)])
    assert not Runner._unbalanced(svc, [*three_in_b[:2], replica("b", 3, 3, State.STARTING)])
    svc.az_rebalancing = False
    assert not Runner._unbalanced(svc, three_in_b)


class _NoRegistry:
    def addresses(self, service: str) -> list[IPv4Address]:
        return []
