"""The stack's settings: a typed, frozen tree (what `stack.parse.parse_settings` returns), and
the defaults a stack file may leave out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from stack.limits import DRAIN_MARGIN_SECONDS, ROUTE53_PROPAGATION_SECONDS, STOP_GRACE_SECONDS

PROJECT = "fargate-service-discovery"

Architecture = Literal["X86_64", "ARM64"]
NatStrategy = Literal["Single", "OnePerAz"]
ARCHITECTURES: tuple[Architecture, ...] = ("X86_64", "ARM64")
# awsx's NatGatewayStrategy words. "None" is rejected: see _network.
NAT_STRATEGIES: tuple[NatStrategy, ...] = ("Single", "OnePerAz")
# How hello finds name (docs/service-connect.md): Cloud Map DNS and the discovery client, or
# ECS Service Connect's proxy in every task.
DiscoveryMode = Literal["dns", "serviceConnect"]
DISCOVERY_MODES: tuple[DiscoveryMode, ...] = ("dns", "serviceConnect")


@dataclass(frozen=True)
class ServiceSettings:
    """One Fargate service: task size, replica count, container port, drain period."""

    cpu: int
    memory: int
    # The task count a new service starts with: desiredCount moved into min_count..max_count.
    # Afterwards Application Auto Scaling owns the count (components/autoscaling.py), and
    # `pulumi up` leaves it alone (components/service.py, ignore_changes).
    desired_count: int
    port: int
    # Seconds the service keeps serving after SIGTERM while DNS forgets it (DRAIN_SECONDS).
    drain_seconds: int
    min_count: int = field(default=1, kw_only=True)
    max_count: int = field(default=4, kw_only=True)

    @property
    def stop_timeout(self) -> int:
        """Seconds ECS waits after SIGTERM before SIGKILL: the drain plus time to finish."""
        return self.drain_seconds + STOP_GRACE_SECONDS


@dataclass(frozen=True)
class NameSettings(ServiceSettings):
    """The discovered service: it scales on its tasks' average CPU."""

    target_cpu_percent: int = field(default=60, kw_only=True)


@dataclass(frozen=True)
class HelloSettings(ServiceSettings):
    """The public service, which also runs the discovery client."""

    # How often hello re-resolves name's records (DNS_REFRESH_SECONDS).
    dns_refresh_seconds: int
    # It scales on the load balancer's requests per task per minute (ALBRequestCountPerTarget).
    target_requests_per_task: int = field(default=1000, kw_only=True)
    # Prefer name tasks in hello's own availability zone (ZONE_AWARE; aiohttp_discovery/zones.py):
    # cross-zone traffic costs $0.01/GB each way.
    zone_aware: bool = field(default=True, kw_only=True)


@dataclass(frozen=True)
class Capacity:
    """Where the services' tasks run: a capacity provider strategy, the same for both.

    The first `on_demand_base` tasks of each service run on FARGATE; the rest are spread over
    FARGATE and FARGATE_SPOT by weight (ECS CapacityProviderStrategyItem).
    """

    on_demand_base: int = 0
    on_demand_weight: int = 1
    spot_weight: int = 0

    @property
    def uses_spot(self) -> bool:
        return self.spot_weight > 0


@dataclass(frozen=True)
class Alarms:
    """Where alarm notifications go besides the SNS topic (None: topic only)."""

    email: str | None = None


@dataclass(frozen=True)
class NewVpc:
    """A VPC created by this stack with awsx: public and private subnets in each zone."""

    cidr_block: str
    availability_zones: int
    nat_gateways: NatStrategy


@dataclass(frozen=True)
class ExistingVpc:
    """A VPC the platform team already runs; this stack only places resources in it."""

    vpc_id: str
    public_subnet_ids: tuple[str, ...]
    private_subnet_ids: tuple[str, ...]


@dataclass(frozen=True)
class Domain:
    """The public name visitors use, in a Route 53 public hosted zone of the same account.

    Exactly one of `zone_id` and `zone_name` is set; a zone given by name is looked up.
    """

    name: str
    zone_id: str | None
    zone_name: str | None


@dataclass(frozen=True)
class Settings:
    architecture: Architecture
    namespace: str
    dns_ttl: int
    log_retention_days: int
    # A certificate of the stack's region for `domain.name`; unset with a domain: ACM issues one.
    certificate_arn: str | None
    network: NewVpc | ExistingVpc
    name: NameSettings
    hello: HelloSettings
    # Unset: plain HTTP on the load balancer's own name.
    domain: Domain | None = None
    capacity: Capacity = field(default_factory=Capacity)
    # Each service keeps at least one task per availability zone (minCount >= zones).
    zone_redundant: bool = False
    alarms: Alarms = field(default_factory=Alarms)
    discovery_mode: DiscoveryMode = "dns"

    @property
    def zones(self) -> int:
        """Availability zones the tasks spread over (one private subnet per zone)."""
        if isinstance(self.network, NewVpc):
            return self.network.availability_zones
        return len(self.network.private_subnet_ids)

    @property
    def image_platform(self) -> str:
        """The Docker platform matching the task definitions' CPU architecture."""
        return "linux/arm64" if self.architecture == "ARM64" else "linux/amd64"


# Defaults: the dev choices. Pulumi.<stack>.yaml files spell the tunables out anyway.
DEFAULTS_SERVICE: dict[str, int] = {
    "cpu": 256,
    "memory": 512,
    "desiredCount": 2,
    "port": 3000,
    "minCount": 1,
    "maxCount": 4,
}
DEFAULT_TARGET_CPU = 60
DEFAULT_TARGET_REQUESTS = 1000
DEFAULT_DNS_REFRESH = 5
DEFAULT_DNS_TTL = 0
DEFAULT_DRAIN = {
    # Route 53 propagation (60) + dnsTtl (0) + hello.dnsRefreshSeconds (5) + margin (10) = 75:
    # the apps' own default (10 s, for the local stack, which has no Route 53) is far too short
    # on AWS. hello drains through the load balancer instead (see stack/rules.py).
    "name": ROUTE53_PROPAGATION_SECONDS
    + DEFAULT_DNS_TTL
    + DEFAULT_DNS_REFRESH
    + DRAIN_MARGIN_SECONDS,
    "hello": 0,
}
DEFAULT_CIDR = "10.0.0.0/16"
