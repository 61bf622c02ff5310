"""The network: public subnets for the load balancer, private subnets for the tasks.

Either a new VPC built with awsx (one public and one private subnet per availability zone,
NAT gateways per the chosen strategy), or an existing VPC whose ids are given. Both
paths expose the same outputs, so nothing downstream knows which one ran.

`private_subnet_zones` (zone -> the private subnets' CIDR blocks) is what hello needs to tell
which zone a name task's address is in (ZONE_SUBNETS, aiohttp_discovery/zones.py). It comes from
`aws.ec2.get_subnet` lookups of the private subnet ids on both paths: invokes, not resources,
so a lookup inside `apply` (needed for a new VPC, whose ids exist only after creation) creates
nothing; for a new VPC they run once awsx has created the subnets.
"""

# No `from __future__ import annotations`: Pulumi's schema analyzer reads the args' annotations
# at run time (components/service.py).

import enum
import ipaddress
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NotRequired, TypedDict

import pulumi
import pulumi_aws as aws
import pulumi_awsx as awsx


@dataclass(frozen=True)
class SubnetMasks:
    """Prefix lengths of each zone's range and of the subnets carved from it."""

    zone: int
    private: int
    public: int


def subnet_masks(vpc_prefix: int, zones: int) -> SubnetMasks:
    """Split the VPC evenly across zones, then give each zone's private subnet half of the
    zone's range and its public subnet a quarter.

    Tasks (one address each, in private subnets) are what grows, so they get the room; the
    public subnets hold only the load balancer's and NAT gateways' interfaces. The last quarter
    of each zone stays free for later subnets (endpoints, databases) without renumbering.
    """
    zone = vpc_prefix + math.ceil(math.log2(zones))
    return SubnetMasks(zone=zone, private=zone + 1, public=zone + 2)


def subnet_zones(subnet_ids: Sequence[str]) -> pulumi.Output[dict[str, list[str]]]:
    """Zone -> sorted CIDR blocks of these subnets, looked up by id (invokes only)."""
    found = [aws.ec2.get_subnet_output(id=subnet_id) for subnet_id in subnet_ids]
    pairs = [pulumi.Output.all(s.availability_zone, s.cidr_block) for s in found]
    return pulumi.Output.all(*pairs).apply(_by_zone)


def _by_zone(pairs: Sequence[Sequence[str]]) -> dict[str, list[str]]:
    zones: dict[str, list[str]] = {}
    for zone, cidr in pairs:
        zones.setdefault(zone, []).append(cidr)
    return {zone: sorted(zones[zone]) for zone in sorted(zones)}


class NatGateways(enum.StrEnum):
    """How many NAT gateways a new VPC gets (awsx's NatGatewayStrategy words)."""

    SINGLE = "Single"
    """One, in the first zone: one hourly fee, but egress of every zone fails with its zone."""
    ONE_PER_AZ = "OnePerAz"
    """One per zone: no zone's egress depends on another zone."""


class NewVpc(TypedDict):
    """A VPC built here with awsx: one public and one private subnet per zone."""

    cidr_block: str
    """The VPC's private (RFC 1918) IPv4 range, /16 to /22."""
    availability_zones: int
    """Zones to spread over, 2 to 6."""
    nat_gateways: NatGateways
    """Single or OnePerAz (no "None": tasks in private subnets need NAT to reach ECR)."""


class ExistingVpc(TypedDict):
    """A VPC that already exists; nothing is created in it here."""

    vpc_id: pulumi.Input[str]
    """The VPC's id."""
    public_subnet_ids: pulumi.Input[Sequence[str]]
    """Subnets for the load balancer."""
    private_subnet_ids: pulumi.Input[Sequence[str]]
    """Subnets for the tasks."""


class NetworkArgs(TypedDict):
    """Exactly one of new_vpc and existing_vpc."""

    new_vpc: NotRequired[NewVpc]
    """Build a VPC."""
    existing_vpc: NotRequired[ExistingVpc]
    """Use a VPC that exists."""


class NetworkArgsError(ValueError):
    """Arguments that cannot work; raised before the component declares anything."""


def _problems(name: str, args: NetworkArgs) -> list[str]:
    if ("new_vpc" in args) == ("existing_vpc" in args):
        return [f"Network {name!r}: set exactly one of new_vpc and existing_vpc"]
    spec = args.get("new_vpc")
    if spec is None:
        return []
    problems = []
    try:
        network = ipaddress.IPv4Network(spec["cidr_block"], strict=True)
        if not 16 <= network.prefixlen <= 22:
            problems.append(f"new_vpc.cidr_block {network} must be /16 to /22")
    except ValueError as e:
        problems.append(f"new_vpc.cidr_block {spec['cidr_block']!r} is not a network ({e})")
    # Integers arrive as floats through the component package (docs/infrastructure.md).
    zones = int(spec["availability_zones"])
    if not 2 <= zones <= 6:
        problems.append(f"new_vpc.availability_zones {zones} is out of range; allowed: 2 to 6")
    return [f"Network {name!r}: {p}" for p in problems]


class Network(pulumi.ComponentResource):
    """Public subnets for a load balancer, private subnets for tasks: built or given."""

    vpc_id: pulumi.Output[str]
    """The VPC's id."""
    public_subnet_ids: pulumi.Output[Sequence[str]]
    """The public subnets."""
    private_subnet_ids: pulumi.Output[Sequence[str]]
    """The private subnets."""
    private_subnet_zones: pulumi.Output[dict[str, list[str]]]
    """Zone -> the private subnets' CIDR blocks there."""

    def __init__(
        self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        problems = _problems(name, args)
        if problems:
            raise NetworkArgsError("\n".join(problems))
        super().__init__("fargate-service-discovery:network:Network", name, None, opts)
        existing = args.get("existing_vpc")
        if existing is not None:
            self.vpc_id = pulumi.Output.from_input(existing["vpc_id"])
            self.public_subnet_ids = pulumi.Output.from_input(existing["public_subnet_ids"])
            self.private_subnet_ids = pulumi.Output.from_input(existing["private_subnet_ids"])
        else:
            vpc = self._new_vpc(name, args["new_vpc"])
            self.vpc_id = vpc.vpc_id
            self.public_subnet_ids = vpc.public_subnet_ids
            self.private_subnet_ids = vpc.private_subnet_ids
        self.private_subnet_zones = self.private_subnet_ids.apply(subnet_zones)
        self.register_outputs(
            {
                "vpcId": self.vpc_id,
                "publicSubnetIds": self.public_subnet_ids,
                "privateSubnetIds": self.private_subnet_ids,
                "privateSubnetZones": self.private_subnet_zones,
            }
        )

    def _new_vpc(self, name: str, spec: NewVpc) -> awsx.ec2.Vpc:
        zones = int(spec["availability_zones"])
        masks = subnet_masks(int(spec["cidr_block"].split("/")[1]), zones)
        return awsx.ec2.Vpc(
            name,
            cidr_block=spec["cidr_block"],
            number_of_availability_zones=zones,
            # Explicit layout: awsx's default strategy ("Legacy") is slated to change in its
            # next major version, and a changed layout would replace every subnet.
            subnet_strategy=awsx.ec2.SubnetAllocationStrategy.AUTO,
            availability_zone_cidr_mask=masks.zone,
            subnet_specs=[
                awsx.ec2.SubnetSpecArgs(type=awsx.ec2.SubnetType.PRIVATE, cidr_mask=masks.private),
                awsx.ec2.SubnetSpecArgs(type=awsx.ec2.SubnetType.PUBLIC, cidr_mask=masks.public),
            ],
            # Single saves money in dev (one gateway, one hourly fee) at the price of a
            # zone-wide outage of egress if its zone fails; OnePerAz removes that in prod.
            nat_gateways=awsx.ec2.NatGatewayConfigurationArgs(
                strategy=awsx.ec2.NatGatewayStrategy(NatGateways(spec["nat_gateways"]).value)
            ),
            # A Cloud Map private DNS namespace is a Route 53 private hosted zone: it only
            # answers inside a VPC that has both DNS support and DNS hostnames turned on.
            enable_dns_support=True,
            enable_dns_hostnames=True,
            opts=pulumi.ResourceOptions(parent=self),
        )
