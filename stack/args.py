"""The stack's settings as the components' arguments, and what this project's images need.

The components know nothing of this stack (components/service.py takes any image); what makes
name and hello this project's services is here: the images' user, their health check command, the
environment contract the apps read (PORT, DRAIN_SECONDS), and the drain relation they are held to.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pulumi

from components.network import ExistingVpc, NatGateways, NetworkArgs, NewVpc
from components.service import (
    CapacityStrategy,
    ContainerHealthCheck,
    CpuArchitecture,
    DiscoverableServiceArgs,
    ServiceLoadBalancer,
)
from stack import settings as s

# The images' non-root user and group (USER in apps/*/Dockerfile). Set on the container as well,
# so the task runs unprivileged even if an image ever forgets to drop root.
CONTAINER_USER = "10001:10001"
HEALTH_PATH = "/health"
# The container health check. The slim images have no curl; apps.healthcheck (shipped in both
# images) asks 127.0.0.1:$PORT/health with Python's stdlib and exits non-zero unless it gets a
# 200 within 2 s, so a draining task (503) turns unhealthy as well.
HEALTH_CHECK_COMMAND = ["CMD", "python", "-m", "apps.healthcheck", HEALTH_PATH]
HEALTH_CHECK = ContainerHealthCheck(
    command=HEALTH_CHECK_COMMAND,
    interval_seconds=10,
    timeout_seconds=5,
    retries=3,
    start_period_seconds=10,
)
# The roles the components create live under this path: the CI deploy role manages roles there
# only (deploy/github_oidc).
ROLE_PATH = f"/{s.PROJECT}/"


def network_args(network: s.NewVpc | s.ExistingVpc) -> NetworkArgs:
    if isinstance(network, s.ExistingVpc):
        return NetworkArgs(
            existing_vpc=ExistingVpc(
                vpc_id=network.vpc_id,
                public_subnet_ids=list(network.public_subnet_ids),
                private_subnet_ids=list(network.private_subnet_ids),
            )
        )
    return NetworkArgs(
        new_vpc=NewVpc(
            cidr_block=network.cidr_block,
            availability_zones=network.availability_zones,
            nat_gateways=NatGateways(network.nat_gateways),
        )
    )


def capacity_strategy(capacity: s.Capacity) -> CapacityStrategy:
    return CapacityStrategy(
        on_demand_base=capacity.on_demand_base,
        on_demand_weight=capacity.on_demand_weight,
        spot_weight=capacity.spot_weight,
    )


def service_args(
    settings: s.Settings,
    service: s.ServiceSettings,
    *,
    image: pulumi.Input[str],
    cluster_arn: pulumi.Input[str],
    execution_role_arn: pulumi.Input[str],
    namespace_id: pulumi.Input[str],
    namespace_name: pulumi.Input[str],
    vpc_id: pulumi.Input[str],
    subnet_ids: pulumi.Input[Sequence[str]],
    region: pulumi.Input[str],
    prefix: str,
    environment: Mapping[str, pulumi.Input[str]],
    deployment_alarm_names: Sequence[pulumi.Input[str]],
    load_balancer: ServiceLoadBalancer | None = None,
    caller_dns_refresh_seconds: int | None = None,
) -> DiscoverableServiceArgs:
    """One of this project's services (name, hello) as DiscoverableService's arguments.

    `caller_dns_refresh_seconds` is set for a service callers find through Cloud Map (name:
    hello's refresh interval), so the component checks the drain relation as well.
    """
    args = DiscoverableServiceArgs(
        image=image,
        port=service.port,
        cluster_arn=cluster_arn,
        namespace_id=namespace_id,
        namespace_name=namespace_name,
        vpc_id=vpc_id,
        subnet_ids=subnet_ids,
        prefix=prefix,
        cpu=service.cpu,
        memory=service.memory,
        architecture=CpuArchitecture(settings.architecture),
        desired_count=service.desired_count,
        # Application Auto Scaling owns the count (components/autoscaling.py).
        autoscaled=True,
        health_check=HEALTH_CHECK,
        user=CONTAINER_USER,
        read_only_root_filesystem=True,
        # The contract the apps read: the port to listen on and how long to keep serving
        # after SIGTERM.
        environment={
            "PORT": str(service.port),
            "DRAIN_SECONDS": str(service.drain_seconds),
            **environment,
        },
        execution_role_arn=execution_role_arn,
        role_path=ROLE_PATH,
        drain_seconds=service.drain_seconds,
        stop_timeout_seconds=service.stop_timeout,
        dns_ttl=settings.dns_ttl,
        log_retention_days=settings.log_retention_days,
        region=region,
        capacity=capacity_strategy(settings.capacity),
        deployment_alarm_names=deployment_alarm_names,
    )
    if load_balancer is not None:
        args["load_balancer"] = load_balancer
    if caller_dns_refresh_seconds is not None:
        args["caller_dns_refresh_seconds"] = caller_dns_refresh_seconds
    return args
