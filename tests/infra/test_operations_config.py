"""Validation of the production keys (issue 10): autoscaling ranges and targets, capacity
providers (Fargate Spot), zone redundancy and the alarm e-mail. Pure: stack.parse_settings."""

from __future__ import annotations

import json

import pytest

import stack as stack_settings
from apps.hello.settings import Settings as HelloAppSettings
from components import entry
from stack import Capacity, ConfigError, parse_settings
from tests.infra.test_config import VPC, raw_of

# Spot-free defaults elsewhere; these cases add what they test.
SPOT = {"capacity": {"onDemandBase": 1, "spotWeight": 3}, "hello": {"drainSeconds": 10}}


def problems(raw: dict[str, object]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_settings(raw)
    return caught.value.problems


BAD = [
    ({"name": {"minCount": 0, "desiredCount": 1}}, "name.minCount", "allowed: 1 to 5000"),
    ({"hello": {"maxCount": 0}}, "hello.maxCount", "allowed: 1 to 5000"),
    ({"name": {"minCount": 5, "maxCount": 4}}, "name.minCount", "at most name.maxCount"),
    ({"name": {"targetCpuPercent": 95}}, "name.targetCpuPercent", "allowed: 10 to 90"),
    ({"hello": {"targetCpuPercent": 50}}, "hello.targetCpuPercent", "unknown key"),
    ({"name": {"targetRequestsPerTask": 50}}, "name.targetRequestsPerTask", "unknown key"),
    ({"hello": {"targetRequestsPerTask": 5}}, "hello.targetRequestsPerTask", "10 to 100000"),
    ({"capacity": {"spotWeight": 1001}}, "capacity.spotWeight", "allowed: 0 to 1000"),
    ({"capacity": {"onDemandBase": -1}}, "capacity.onDemandBase", "allowed: 0 to 100000"),
    ({"capacity": {"onDemandWeight": 0}}, "capacity.spotWeight", "at least one must be 1"),
    ({"capacity": {"spot": 3}}, "capacity.spot", "unknown key"),
    ({"capacity": "spot"}, "capacity", "expected an object"),
    ({"zoneRedundant": "yes"}, "zoneRedundant", "allowed: true, false"),
    ({"alarms": {"email": "ops"}}, "alarms.email", "not an e-mail address"),
    ({"alarms": {"email": "a b@example.com"}}, "alarms.email", "not an e-mail address"),
    ({"alarms": {"sms": "+15550100"}}, "alarms.sms", "unknown key; allowed: email"),
    # Spot's SIGTERM comes as the load balancer starts deregistering: hello must drain.
    ({"capacity": {"spotWeight": 1}}, "hello.drainSeconds", "deregistration delay"),
    # One task per zone, always, when the stack promises it.
    (
        {
            "zoneRedundant": True,
            "network": {"availabilityZones": 3},
            "name": {"minCount": 2},
            "hello": {"minCount": 3, "desiredCount": 3},
        },
        "name.minCount",
        "network.availabilityZones",
    ),
    (
        {"zoneRedundant": True, "network": VPC, "name": {"minCount": 2}, "hello": {"minCount": 1}},
        "hello.minCount",
        "network.privateSubnetIds",
    ),
    (
        {
            **SPOT,
            "zoneRedundant": True,
            "name": {"minCount": 2},
            "hello": {"minCount": 2, "drainSeconds": 10},
        },
        "capacity.onDemandBase",
        "FARGATE task per zone",
    ),
]


@pytest.mark.parametrize(("raw", "key", "allowed"), BAD)
def test_each_bad_value_is_reported_under_its_full_key(
    raw: dict[str, object], key: str, allowed: str
) -> None:
    """One message per problem, naming the full key and what is allowed."""
    found = problems(raw)
    assert len(found) == 1, found
    assert found[0].startswith(f"fargate-service-discovery:{key}: "), found
    assert allowed in found[0], found


@pytest.mark.parametrize(
    ("service", "desired", "expected"),
    [({"desiredCount": 9}, 9, 4), ({"desiredCount": 0}, 0, 1), ({"desiredCount": 3}, 3, 3)],
)
def test_a_new_service_starts_with_desired_count_moved_into_the_range(
    service: dict[str, int], desired: int, expected: int
) -> None:
    """desiredCount is the count a service is created with, inside minCount..maxCount (1..4
    here): autoscaling would move a count outside the range at once, so the program does."""
    s = parse_settings({"name": service, "hello": service})
    assert s.name.desired_count == s.hello.desired_count == expected


def test_raising_min_count_alone_is_valid_on_both_stacks() -> None:
    """The documented scaling step, `pulumi config set --path name.minCount 4`, on stack files
    whose desiredCount (2, 3) is below the new floor: the floor wins, nothing is refused."""
    for stack in ("dev", "prod"):
        raw = raw_of(stack)
        name = json.loads(str(raw["name"])) | {"minCount": 4}
        s = parse_settings(raw | {"name": json.dumps(name)})
        assert (s.name.min_count, s.name.desired_count) == (4, 4), stack


def test_good_production_values_parse() -> None:
    s = parse_settings(
        {
            **SPOT,
            "zoneRedundant": "true",
            "network": {"availabilityZones": 2},
            "capacity": {"onDemandBase": 2, "onDemandWeight": 1, "spotWeight": 4},
            "name": {"minCount": 2, "maxCount": 10, "desiredCount": 2, "targetCpuPercent": 50},
            "hello": {
                "minCount": 2,
                "maxCount": 6,
                "drainSeconds": 10,
                "targetRequestsPerTask": 500,
            },
            "alarms": {"email": "ops@example.com"},
        }
    )
    assert (s.name.min_count, s.name.max_count, s.name.target_cpu_percent) == (2, 10, 50)
    assert (s.hello.min_count, s.hello.max_count, s.hello.target_requests_per_task) == (2, 6, 500)
    assert s.capacity == Capacity(on_demand_base=2, on_demand_weight=1, spot_weight=4)
    assert s.zone_redundant is True
    assert s.alarms.email == "ops@example.com"


def test_stack_files_keep_their_promises() -> None:
    """dev runs mostly on Spot with a FARGATE base; prod runs on FARGATE only and keeps a task
    per zone of each service at its minimum."""
    dev, prod = parse_settings(raw_of("dev")), parse_settings(raw_of("prod"))
    assert dev.capacity.uses_spot
    assert dev.capacity.on_demand_base >= 1
    assert dev.capacity.spot_weight > dev.capacity.on_demand_weight
    assert not prod.capacity.uses_spot
    assert prod.zone_redundant
    assert prod.name.min_count >= prod.zones
    assert prod.hello.min_count >= prod.zones


def test_the_drain_fits_the_spot_warning() -> None:
    """A Spot reclaim is a SIGTERM two minutes before the end: every task's stopTimeout (the
    drain plus 10 s) must fit, so the drain's arithmetic covers Spot as it covers a scale-in."""
    assert stack_settings.STOP_TIMEOUT_MAX <= stack_settings.SPOT_INTERRUPTION_WARNING_SECONDS
    for stack in ("dev", "prod"):
        s = parse_settings(raw_of(stack))
        for service in (s.name, s.hello):
            assert service.stop_timeout <= stack_settings.SPOT_INTERRUPTION_WARNING_SECONDS


def test_hello_scale_in_loses_no_request_behind_the_load_balancer() -> None:
    """On a scale-in ECS deregisters hello's target, waits the target group's deregistration
    delay, then sends SIGTERM: a request in flight at deregistration has that long to finish.
    hello's slowest answer is one upstream deadline (REQUEST_TIMEOUT_SECONDS), so the delay
    must be longer; config's copy of the delay (the Spot rule) must be the real one."""
    assert stack_settings.ALB_DEREGISTRATION_DELAY_SECONDS == entry.DEREGISTRATION_DELAY_SECONDS
    assert HelloAppSettings.request_timeout_seconds < entry.DEREGISTRATION_DELAY_SECONDS
