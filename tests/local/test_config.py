"""The local stack's settings: parsed from the command line, refused when unsafe."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest

from local.config import Endpoint, StackConfig, from_args, loopback
from local.stack import service_specs


def test_defaults_are_what_dev_up_documents() -> None:
    config = from_args([])
    assert (config.name_count, config.hello_count) == (3, 2)
    assert str(config.front) == "127.0.0.1:8080"
    assert str(config.control) == "127.0.0.1:8081"
    assert str(config.dns) == "127.0.0.1:8053"
    assert (config.drain_seconds, config.dns_refresh_seconds) == (10.0, 5.0)
    assert config.replace_crashed


def test_every_address_and_timing_can_be_set() -> None:
    config = from_args(
        [
            "--name=5",
            "--hello=1",
            "--name-network=127.0.10.0/24",
            "--hello-network=127.0.11.0/24",
            "--front=127.0.12.1:9000",
            "--control=127.0.12.1:9001",
            "--dns=127.0.12.1:9053",
            "--port=4000",
            "--drain-seconds=1.5",
            "--dns-refresh-seconds=0.5",
            "--no-replace",
            "--hello-env=MAX_ATTEMPTS=2",
        ]
    )
    assert config.name_network == IPv4Network("127.0.10.0/24")
    assert config.front == Endpoint(IPv4Address("127.0.12.1"), 9000)
    assert not config.replace_crashed
    name, hello = service_specs(config)
    assert name.env["DRAIN_SECONDS"] == "1.5"
    assert hello.env == {
        "NAME_SERVER": "http://name.internal:4000/",
        "DNS_SERVERS": "127.0.12.1:9053",
        "DNS_REFRESH_SECONDS": "0.5",
        "ZONE_SUBNETS": '{"local-1a": ["127.0.10.0/26", "127.0.11.0/26"],'
        ' "local-1b": ["127.0.10.64/26", "127.0.11.64/26"]}',
        "ZONE_CALLERS": "hello.internal",
        "MAX_ATTEMPTS": "2",
        # The local stack prints the EMF lines CloudWatch would receive (apps/common/emf.py).
        "METRICS_NAMESPACE": "fargate-service-discovery-local",
        "METRICS_INTERVAL_SECONDS": "10",
    }
    assert name.env["METRICS_NAMESPACE"] == "fargate-service-discovery-local"
    assert (name.discoverable, name.load_balanced) == (True, False)
    # hello is in Cloud Map too, as the program registers it (its tasks are the callers
    # the zone rule weighs), and a target of the front.
    assert (hello.discoverable, hello.load_balanced) == (True, True)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--front=10.0.0.1:80"], "front address 10.0.0.1 is not a loopback address"),
        (["--name-network=10.1.0.0/24"], "is not in 127.0.0.0/8"),
        (["--hello-network=127.0.1.0/25"], "overlaps"),
        (["--name-network=127.0.1.0/30", "--name=3"], "fewer than 3 host addresses"),
        (["--dns=127.0.1.1:8053"], "inside 127.0.1.0/24"),
        (["--drain-seconds=30"], "stop timeout (30.0) must exceed the drain (30.0)"),
        (["--dns-refresh-seconds=0"], "DNS refresh seconds must be >= 0.1, got 0.0"),
        (["--dns-refresh-seconds=1e-9"], "DNS refresh seconds must be >= 0.1"),
        (["--health-interval=0.001"], "health interval must be >= 0.1"),
        (["--name=-1"], "name count must be >= 0"),
        (["--front=localhost"], "expected IPv4:PORT"),
        (["--name-env=NOEQUALS"], "expected KEY=VALUE"),
        (["--zones=0"], "zones must be 1-3, got 0"),
        (["--zones=4"], "zones must be 1-3, got 4"),
        (["--name-network=127.0.1.0/29"], "too small to cut into 2 zones (/28 at most)"),
        # Two zones of a /24 are two /26 quarters: 124 replicas, not 254.
        (["--name=125"], "has room for 124 replicas in 2 zones, not 125"),
    ],
)
def test_bad_settings_are_refused_with_what_is_wrong(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        from_args(args)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_several_problems_are_reported_at_once() -> None:
    with pytest.raises(ValueError, match="not in 1-65535") as error:
        StackConfig(
            front=Endpoint(IPv4Address("127.0.0.1"), 0),
            control=Endpoint(IPv4Address("8.8.8.8"), 8081),
        )
    assert "front port 0 is not in 1-65535" in str(error.value)
    assert "control address 8.8.8.8 is not a loopback address" in str(error.value)


def test_the_control_api_accepts_only_loopback_addresses() -> None:
    assert loopback("127.0.1.3") == IPv4Address("127.0.1.3")
    for bad in ("10.0.0.1", "::1", "not-an-address"):
        with pytest.raises(ValueError, match=r"loopback|does not appear"):
            loopback(bad)


def test_zones_cut_each_network_in_quarters_and_hello_gets_the_map() -> None:
    """Each zone is a private subnet of each service, as in the VPC; hello is handed the
    blocks per zone (ZONE_SUBNETS) as the program hands it the private subnets."""
    three = from_args(["--zones=3"])
    assert three.subnets(IPv4Network("127.0.1.0/24")) == (
        ("local-1a", IPv4Network("127.0.1.0/26")),
        ("local-1b", IPv4Network("127.0.1.64/26")),
        ("local-1c", IPv4Network("127.0.1.128/26")),
    )
    name, hello = service_specs(three)
    assert [z for z, _ in name.subnets] == ["local-1a", "local-1b", "local-1c"]
    assert '"local-1c": ["127.0.1.128/26", "127.0.2.128/26"]' in hello.env["ZONE_SUBNETS"]
    one = from_args(["--zones=1"])
    assert one.subnets(IPv4Network("127.0.1.0/24")) == (("local-1a", IPv4Network("127.0.1.0/24")),)
