"""Settings of the local stack, from the command line of ``python -m local``.

Every address and port is configurable so that tests (and a second stack) can run beside
a developer's stack without colliding: each service gets its own loopback network, one
address per replica, as each Fargate task gets its own ENI address in a subnet.
"""

from __future__ import annotations

import argparse
import ipaddress
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from apps.hello.settings import MIN_DNS_REFRESH_SECONDS
from local.control import env_pair
from local.dns import Answers

ROOT = Path(__file__).resolve().parent.parent
NAME_NETWORK = IPv4Network("127.0.1.0/24")
HELLO_NETWORK = IPv4Network("127.0.2.0/24")
# Emulated availability zones, named like AWS's. With more than one, each service's network
# is cut in four and zone i gets the i-th quarter (127.0.1.0/26 for name in local-1a,
# 127.0.1.64/26 in local-1b...), as each zone has its own private subnet in the VPC.
ZONE_NAMES = ("local-1a", "local-1b", "local-1c")
ZONE_SPLIT = 2  # prefix bits added: four quarters, up to three zones


@dataclass(frozen=True)
class Endpoint:
    host: IPv4Address
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self}/"


@dataclass(frozen=True)
class StackConfig:
    namespace: str = "internal"
    name_count: int = 3
    hello_count: int = 2
    name_network: IPv4Network = NAME_NETWORK
    hello_network: IPv4Network = HELLO_NETWORK
    service_port: int = 3000  # both services listen on it, each replica on its own address
    front: Endpoint = Endpoint(IPv4Address("127.0.0.1"), 8080)
    control: Endpoint = Endpoint(IPv4Address("127.0.0.1"), 8081)
    # Not 53: binding it needs root. The replicas get it through DNS_SERVERS.
    dns: Endpoint = Endpoint(IPv4Address("127.0.0.1"), 8053)
    # Passed to the replicas; the defaults are the services' own (as deployed).
    drain_seconds: float = 10.0
    dns_refresh_seconds: float = 5.0
    # The local ECS: how long a replica may take to answer /health 200 after its start;
    # how long a draining replica may take to exit before SIGKILL (ECS's stopTimeout,
    # default 30 s); how long a crashed replica stays registered before the runner
    # notices and deregisters it; whether crashed replicas are replaced, as ECS does.
    start_timeout: float = 30.0
    stop_timeout: float = 30.0
    crash_deregister_seconds: float = 5.0
    replace_crashed: bool = True
    # The front's target group.
    health_interval: float = 1.0
    healthy_threshold: int = 2
    unhealthy_threshold: int = 2
    deregistration_delay: float = 5.0
    logs: Path = ROOT / ".local" / "logs"
    name_env: Mapping[str, str] = field(default_factory=dict)
    hello_env: Mapping[str, str] = field(default_factory=dict)
    zones: int = 2
    # Which eight records the Cloud Map stand-in answers when more are registered.
    dns_answers: Answers = Answers.RANDOM

    def __post_init__(self) -> None:
        problems = list(self._problems())
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def zone_names(self) -> tuple[str, ...]:
        return ZONE_NAMES[: self.zones]

    def subnets(self, network: IPv4Network) -> tuple[tuple[str, IPv4Network], ...]:
        """Each zone's share of ``network``: the whole of it with one zone, else a quarter."""
        if self.zones == 1:
            return ((ZONE_NAMES[0], network),)
        quarters = list(network.subnets(prefixlen_diff=ZONE_SPLIT))
        return tuple(zip(self.zone_names, quarters, strict=False))

    def _problems(self) -> list[str]:
        problems = [*self._network_problems(), *self._endpoint_problems(), *self._time_problems()]
        if not 1 <= self.zones <= len(ZONE_NAMES):
            problems.append(f"zones must be 1-{len(ZONE_NAMES)}, got {self.zones}")
        else:
            for label, net, count in (
                ("name", self.name_network, self.name_count),
                ("hello", self.hello_network, self.hello_count),
            ):
                if self.zones > 1 and net.prefixlen > 32 - 2 - ZONE_SPLIT:
                    problems.append(
                        f"{label} network {net} is too small to cut into {self.zones} zones"
                        f" (/{32 - 2 - ZONE_SPLIT} at most)"
                    )
                elif count > (room := sum(n.num_addresses - 2 for _, n in self.subnets(net))):
                    problems.append(
                        f"{label} network {net} has room for {room} replicas in {self.zones}"
                        f" zones, not {count}"
                    )
        return problems

    def _network_problems(self) -> list[str]:
        out: list[str] = []
        for label, net, count in (
            ("name", self.name_network, self.name_count),
            ("hello", self.hello_network, self.hello_count),
        ):
            if count < 0:
                out.append(f"{label} count must be >= 0, got {count}")
            if not net.is_loopback:
                out.append(f"{label} network {net} is not in 127.0.0.0/8: the stack stays local")
            if net.num_addresses - 2 < count:
                out.append(f"{label} network {net} has fewer than {count} host addresses")
        if self.name_network.overlaps(self.hello_network):
            out.append(f"name network {self.name_network} overlaps {self.hello_network}")
        return out

    def _endpoint_problems(self) -> list[str]:
        out: list[str] = []
        endpoints = {"front": self.front, "control": self.control, "dns": self.dns}
        for label, endpoint in endpoints.items():
            if not endpoint.host.is_loopback:
                out.append(f"{label} address {endpoint.host} is not a loopback address")
            if not 1 <= endpoint.port <= 65535:
                out.append(f"{label} port {endpoint.port} is not in 1-65535")
            out.extend(
                f"{label} address {endpoint.host} is inside {net}"
                for net in (self.name_network, self.hello_network)
                if endpoint.host in net
            )
        if not 1 <= self.service_port <= 65535:
            out.append(f"service port {self.service_port} is not in 1-65535")
        return out

    def _time_problems(self) -> list[str]:
        out = [
            f"{label} must be >= 0, got {seconds}"
            for label, seconds in (
                ("drain seconds", self.drain_seconds),
                ("crash deregister seconds", self.crash_deregister_seconds),
                ("deregistration delay", self.deregistration_delay),
            )
            if not (math.isfinite(seconds) and seconds >= 0)
        ]
        out.extend(
            f"{label} must be > 0, got {seconds}"
            for label, seconds in (("start timeout", self.start_timeout),)
            if not (math.isfinite(seconds) and seconds > 0)
        )
        # Floors: each is how often something is asked (hello's DNS queries, the front's
        # health checks); near zero, they would ask in a tight loop.
        out.extend(
            f"{label} must be >= {floor}, got {seconds}"
            for label, seconds, floor in (
                ("DNS refresh seconds", self.dns_refresh_seconds, MIN_DNS_REFRESH_SECONDS),
                ("health interval", self.health_interval, 0.1),
            )
            if not (math.isfinite(seconds) and seconds >= floor)
        )
        if not self.stop_timeout > self.drain_seconds:
            out.append(
                f"stop timeout ({self.stop_timeout}) must exceed the drain ({self.drain_seconds}),"
                " or draining replicas are killed mid-drain"
            )
        if self.healthy_threshold < 1 or self.unhealthy_threshold < 1:
            out.append("health check thresholds must be >= 1")
        return out


def _endpoint(text: str) -> Endpoint:
    host, sep, port = text.rpartition(":")
    try:
        if not sep:
            raise ValueError
        return Endpoint(IPv4Address(host), int(port))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected IPv4:PORT, got {text!r}") from None


def _network(text: str) -> IPv4Network:
    try:
        return IPv4Network(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def parser() -> argparse.ArgumentParser:
    d = StackConfig()
    p = argparse.ArgumentParser(
        prog="python -m local",
        description="Run the whole system on this machine: a Cloud Map stand-in (DNS), "
        "name and hello replicas on their own loopback addresses, and a front in the "
        "role of the ALB. Runs until Ctrl-C or SIGTERM.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = p.add_argument
    add("--name", type=int, default=d.name_count, dest="name_count", help="name replicas")
    add("--hello", type=int, default=d.hello_count, dest="hello_count", help="hello replicas")
    add("--namespace", default=d.namespace, help="the Cloud Map namespace (DNS zone)")
    add("--name-network", type=_network, default=d.name_network, help="name replicas' addresses")
    add("--hello-network", type=_network, default=d.hello_network, help="hello's addresses")
    add("--port", type=int, default=d.service_port, dest="service_port", help="services' port")
    add("--front", type=_endpoint, default=d.front, help="the front (ALB) listener")
    add("--control", type=_endpoint, default=d.control, help="the control endpoint")
    add("--dns", type=_endpoint, default=d.dns, help="the Cloud Map stand-in (UDP and TCP)")
    add("--drain-seconds", type=float, default=d.drain_seconds, help="name's DRAIN_SECONDS")
    add(
        "--dns-refresh-seconds",
        type=float,
        default=d.dns_refresh_seconds,
        help="hello's DNS_REFRESH_SECONDS",
    )
    add("--start-timeout", type=float, default=d.start_timeout, help="seconds to healthy")
    add("--stop-timeout", type=float, default=d.stop_timeout, help="SIGTERM to SIGKILL")
    add(
        "--crash-deregister-seconds",
        type=float,
        default=d.crash_deregister_seconds,
        help="a crashed replica stays registered this long",
    )
    add(
        "--no-replace",
        action="store_false",
        dest="replace_crashed",
        help="leave a crashed replica down; by default it is replaced, as ECS replaces a "
        "stopped task",
    )
    add("--health-interval", type=float, default=d.health_interval, help="front's checks")
    add("--healthy-threshold", type=int, default=d.healthy_threshold)
    add("--unhealthy-threshold", type=int, default=d.unhealthy_threshold)
    add("--deregistration-delay", type=float, default=d.deregistration_delay)
    add("--logs", type=Path, default=d.logs, help="one log file per replica")
    add(
        "--dns-answers",
        type=Answers,
        choices=list(Answers),
        default=d.dns_answers,
        help="with more than 8 records: a new random 8 per query, or the same 8 per resolver",
    )
    add(
        "--zones",
        type=int,
        default=d.zones,
        help=f"emulated availability zones (1-{len(ZONE_NAMES)}), replicas spread across them",
    )
    add("--name-env", type=env_pair, action="append", default=[], metavar="KEY=VALUE")
    add("--hello-env", type=env_pair, action="append", default=[], metavar="KEY=VALUE")
    return p


def from_args(argv: Sequence[str]) -> StackConfig:
    p = parser()
    args = vars(p.parse_args(argv))
    args["name_env"] = dict(args["name_env"])
    args["hello_env"] = dict(args["hello_env"])
    try:
        return StackConfig(**args)
    except ValueError as error:
        p.error(str(error))


def loopback(text: str) -> IPv4Address:
    """Parse an address the control API was given, refusing anything off loopback."""
    address = ipaddress.ip_address(text)
    if not isinstance(address, IPv4Address) or not address.is_loopback:
        raise ValueError(f"{text} is not an IPv4 loopback address")
    return address
