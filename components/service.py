"""A Fargate service that other services find through Cloud Map DNS: used for name and hello.

ECS registers each running task's private address in the Cloud Map service, which answers
`<service>.<namespace>` with an A record per healthy task; callers balance across them on the
client side (apps/aiohttp-discovery). The service's security group admits nothing until a caller is
allowed in with `allow_from`, which opens exactly one flow: TCP to this service's port, from
that caller's group.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from config import Architecture, Capacity, ServiceSettings

# The images' non-root user and group (USER in apps/*/Dockerfile). Set on the container as well,
# so the task runs unprivileged even if an image ever forgets to drop root.
CONTAINER_USER = "10001:10001"
HEALTH_PATH = "/health"
# The container health check. The slim images have no curl; apps.healthcheck (shipped in both
# images) asks 127.0.0.1:$PORT/health with Python's stdlib and exits non-zero unless it gets a
# 200 within 2 s, so a draining task (503) turns unhealthy as well.
HEALTH_CHECK_COMMAND = ["CMD", "python", "-m", "apps.healthcheck", HEALTH_PATH]
# awslogs blocks the application when CloudWatch is slow unless told not to; non-blocking mode
# buffers up to this much and then drops lines, which beats stalling request handling.
LOG_BUFFER = "25m"
# How long `pulumi up` waits for a service's deployment to finish (wait_for_steady_state)
# before it fails. Pinned to the provider's own default (ecs/service.go: 20 minutes for create
# and update) so a provider upgrade cannot change it unseen. Not shorter: ECS's circuit breaker
# may need most of it to roll a failing deployment back (pulumi-awsx#1848: three failed tasks
# and the rollback over 18 minutes), and a wait that ends first reports a timeout instead of
# the deployment's reason. A deployment that can never finish (Fargate Spot with no capacity:
# ECS keeps retrying and never falls back to FARGATE) fails here, loudly, not later
# (docs/infrastructure.md, "A deployment that cannot finish").
DEPLOYMENT_WAIT = pulumi.CustomTimeouts(create="20m", update="20m")
# Cloud Map's health fed by ECS. A dict, not ServiceHealthCheckCustomConfigArgs(...), so that the
# Python SDK does not log its deprecation warning for failure_threshold on every run (the
# provider may still mention the deprecation); the value is the one AWS fixes anyway. See the
# Cloud Map service below for why it must be set at all.
CUSTOM_HEALTH_CHECK: aws.servicediscovery.ServiceHealthCheckCustomConfigArgsDict = {
    "failure_threshold": 1
}
# The Cloud Map service's settings that force its replacement (with its name and namespace).
RECORD_TYPE = "A"
ROUTING_POLICY = "MULTIVALUE"
# Docker label on the container naming those settings; see registry_settings.
REGISTRY_LABEL = "fargate-service-discovery.cloud-map-service"


def registry_settings(name: str, namespace: pulumi.Input[str]) -> pulumi.Output[str]:
    """What the Cloud Map service is, as far as a replacement goes: name, namespace, record
    type, routing policy and health config (everything else updates in place).

    The task definition carries it as a label, so whatever replaces the Cloud Map service also
    rolls the ECS service's tasks. A recreated Cloud Map service can get the same id as the one
    it replaces (terraform-provider-aws issue 46930); the ECS service would then see no change,
    and the running tasks, deregistered when the old one was deleted, would never register in
    the new one. A new task definition is a deployment, and new tasks register.
    """
    return pulumi.Output.concat(
        name,
        ".",
        namespace,
        f" {RECORD_TYPE} {ROUTING_POLICY} ",
        f"failureThreshold={CUSTOM_HEALTH_CHECK['failure_threshold']}",
    )


def container_definition(
    *,
    name: str,
    image: pulumi.Input[str],
    settings: ServiceSettings,
    environment: Mapping[str, pulumi.Input[str]],
    log_group: pulumi.Input[str],
    region: pulumi.Input[str],
    labels: Mapping[str, pulumi.Input[str]] | None = None,
) -> dict[str, Any]:
    """The one container of the task, in ECS's JSON shape (values may still be Outputs)."""
    env = {
        "PORT": str(settings.port),
        "DRAIN_SECONDS": str(settings.drain_seconds),
        **environment,
    }
    return {
        "name": name,
        "image": image,
        "essential": True,
        "user": CONTAINER_USER,
        # Left out when empty: ECS does not return an empty map, so {} would differ forever.
        **({"dockerLabels": dict(labels)} if labels else {}),
        "readonlyRootFilesystem": True,
        "portMappings": [
            {"containerPort": settings.port, "hostPort": settings.port, "protocol": "tcp"}
        ],
        # Sorted so that a reordering in code never shows up as a diff.
        "environment": [{"name": k, "value": env[k]} for k in sorted(env)],
        "healthCheck": {
            "command": HEALTH_CHECK_COMMAND,
            "interval": 10,
            "timeout": 5,
            "retries": 3,
            "startPeriod": 10,
        },
        # ECS sends SIGTERM, then SIGKILL after this many seconds: the drain period plus time
        # to finish requests already in flight.
        "stopTimeout": settings.stop_timeout,
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {
                "awslogs-group": log_group,
                "awslogs-region": region,
                "awslogs-stream-prefix": name,
                "mode": "non-blocking",
                "max-buffer-size": LOG_BUFFER,
            },
        },
    }


def capacity_provider_strategy(
    capacity: Capacity,
) -> list[aws.ecs.ServiceCapacityProviderStrategyArgs]:
    """The stack's capacity provider strategy: the base on FARGATE, the rest by weight.

    FARGATE_SPOT is left out when its weight is 0 (prod): a zero-weight entry places nothing and
    would only make the strategy differ from what the stack file says.
    """
    strategy = [
        aws.ecs.ServiceCapacityProviderStrategyArgs(
            capacity_provider="FARGATE",
            base=capacity.on_demand_base,
            weight=capacity.on_demand_weight,
        )
    ]
    if capacity.spot_weight:
        strategy.append(
            aws.ecs.ServiceCapacityProviderStrategyArgs(
                capacity_provider="FARGATE_SPOT", weight=capacity.spot_weight
            )
        )
    return strategy


@dataclass(frozen=True)
class LoadBalancerTarget:
    """Puts the service's tasks behind a target group (hello behind the ALB)."""

    target_group_arn: pulumi.Input[str]
    # ECS fails to create a service whose target group has no load balancer yet; the listener
    # is what ties the two together, so the service waits for it.
    listener: pulumi.Resource
    # Load balancer health checks are ignored this long after a task starts.
    health_check_grace_seconds: int = 30


@dataclass(frozen=True)
class DiscoverableServiceArgs:
    settings: ServiceSettings
    architecture: Architecture
    image_uri: pulumi.Input[str]
    cluster_arn: pulumi.Input[str]
    execution_role_arn: pulumi.Input[str]
    namespace_id: pulumi.Input[str]
    namespace_name: pulumi.Input[str]
    vpc_id: pulumi.Input[str]
    subnet_ids: pulumi.Input[Sequence[str]]
    region: pulumi.Input[str]
    dns_ttl: int
    log_retention_days: int
    # Names the task definition family and the log group: "<prefix>-<service>".
    prefix: str
    environment: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    load_balancer: LoadBalancerTarget | None = None
    # Where the tasks run (FARGATE / FARGATE_SPOT by weight); the cluster's capacity providers
    # resource, which the service must be created after and deleted before.
    capacity: Capacity = field(default_factory=Capacity)
    capacity_providers: pulumi.Resource | None = None
    # CloudWatch alarms that roll a deployment back while they are in ALARM (ECS deployment
    # alarms), beside the circuit breaker. Empty: circuit breaker only.
    deployment_alarm_names: Sequence[pulumi.Input[str]] = ()
    # Application Auto Scaling owns the task count after creation (components/autoscaling.py):
    # `pulumi up` must then never send desired_count again.
    autoscaled: bool = True


def dns_name(service: str, namespace: pulumi.Input[str]) -> pulumi.Output[str]:
    """``<service>.<namespace>``: what Cloud Map answers for the DiscoverableService named
    ``service`` (its Cloud Map service takes the component's name). For what cannot wait
    on the component's outputs: its own tasks' environment (hello's ZONE_CALLERS)."""
    return pulumi.Output.concat(service, ".", namespace)


class DiscoverableService(pulumi.ComponentResource):
    security_group_id: pulumi.Output[str]
    service_name: pulumi.Output[str]
    log_group_name: pulumi.Output[str]
    # How callers reach it: http://<service>.<namespace>:<port>/
    endpoint: pulumi.Output[str]

    def __init__(
        self, name: str, args: DiscoverableServiceArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("fargate-service-discovery:service:DiscoverableService", name, None, opts)
        self._name = name
        self._port = args.settings.port
        child = pulumi.ResourceOptions(parent=self)

        group = aws.ec2.SecurityGroup(
            name,
            description=f"{name} tasks",
            vpc_id=args.vpc_id,
            opts=child,
        )
        self._group = group
        # No inline rules, and the provider drops AWS's default allow-all egress rule: what a
        # task may send is exactly the egress rules below and those added by allow_from.
        #
        # Port 443 to anywhere: Fargate pulls the image from ECR (its API and the S3 layer
        # store) and ships logs to CloudWatch through the task's own network interface, out
        # through the NAT gateway. None of those endpoints has a fixed address range to narrow
        # this to; VPC endpoints would (see docs/infrastructure.md).
        #
        # No DNS rule: security groups cannot filter traffic to the VPC's own resolver (the
        # Route 53 Resolver at the VPC base address + 2), which is what answers for the Cloud
        # Map namespace. A rule for it would be decoration.
        https_out = aws.vpc.SecurityGroupEgressRule(
            f"{name}-https-out",
            security_group_id=group.id,
            description="HTTPS to ECR and CloudWatch Logs",
            ip_protocol="tcp",
            from_port=443,
            to_port=443,
            cidr_ipv4="0.0.0.0/0",
            opts=child,
        )

        log_group = aws.cloudwatch.LogGroup(
            name,
            name=f"/ecs/{args.prefix}/{name}",
            retention_in_days=args.log_retention_days,
            opts=child,
        )

        definition = container_definition(
            name=name,
            image=args.image_uri,
            settings=args.settings,
            environment=args.environment,
            log_group=log_group.name,
            region=args.region,
            labels={REGISTRY_LABEL: registry_settings(name, args.namespace_name)},
        )
        task = aws.ecs.TaskDefinition(
            name,
            family=f"{args.prefix}-{name}",
            cpu=str(args.settings.cpu),
            memory=str(args.settings.memory),
            network_mode="awsvpc",
            requires_compatibilities=["FARGATE"],
            runtime_platform=aws.ecs.TaskDefinitionRuntimePlatformArgs(
                operating_system_family="LINUX",
                cpu_architecture=args.architecture,
            ),
            execution_role_arn=args.execution_role_arn,
            container_definitions=pulumi.Output.json_dumps([definition]),
            opts=child,
        )

        registry = aws.servicediscovery.Service(
            name,
            name=name,
            dns_config=aws.servicediscovery.ServiceDnsConfigArgs(
                namespace_id=args.namespace_id,
                dns_records=[
                    aws.servicediscovery.ServiceDnsConfigDnsRecordArgs(
                        ttl=args.dns_ttl, type=RECORD_TYPE
                    )
                ],
                # One A record per healthy task (up to eight per answer), not one picked at
                # random: the client balances across all of them itself.
                routing_policy=ROUTING_POLICY,
            ),
            # ECS reports each task's container health to Cloud Map, so an unhealthy task leaves
            # the DNS answers (about 30 s after ECS reports it; a stopping task is deregistered).
            #
            # failure_threshold is deprecated, and AWS fixes it at 1, but it must be set: the
            # provider (terraform-provider-aws, servicediscovery/service.go) sends
            # HealthCheckCustomConfig only for a non-empty block, so an empty one is dropped,
            # CreateService goes out without it, every registered task is answered whatever its
            # health, and the next `pulumi up` shows the block as a replacement (provider issue
            # 44285). AWS cannot add the setting to an existing service.
            health_check_custom_config=CUSTOM_HEALTH_CHECK,
            # Destroy must not fail on instances ECS has not deregistered yet.
            force_destroy=True,
            opts=pulumi.ResourceOptions(
                parent=self,
                # Cloud Map service names are unique in a namespace, and `name` is fixed: a
                # replacement created before the old service is deleted fails with
                # ServiceAlreadyExists. Replacements come from code changes (name, record type,
                # routing policy, health config), a new namespace, or upgrading a stack created
                # without the health config; deleting first lets each of them succeed, at the
                # cost of a gap in the records that hello rides out on its cached answer. The
                # tasks then re-register through a deployment (see registry_settings).
                delete_before_replace=True,
            ),
        )

        lb = args.load_balancer
        alarm_names = list(args.deployment_alarm_names)
        service = aws.ecs.Service(
            name,
            cluster=args.cluster_arn,
            task_definition=task.arn,
            # Sent at creation only once autoscaling owns the count (ignore_changes below).
            desired_count=args.settings.desired_count,
            # A capacity provider strategy instead of launch_type (the two exclude each other):
            # FARGATE and FARGATE_SPOT by the stack's weights. See force_new_deployment below
            # for what a change of it does.
            capacity_provider_strategies=capacity_provider_strategy(args.capacity),
            # terraform-provider-aws (ecs/service.go, capacityProviderStrategyCustomizeDiff)
            # refuses to update a strategy in place unless force_new_deployment is set (older
            # releases replace the service instead), and ECS applies a new strategy only to new
            # tasks anyway. Set, a strategy change is a rolling deployment of the same service
            # (same name, same scalable target, autoscaled count kept). The price: every
            # in-place update of the service rolls its tasks (UpdateService always carries
            # forceNewDeployment), which a task definition change does anyway.
            force_new_deployment=True,
            network_configuration=aws.ecs.ServiceNetworkConfigurationArgs(
                subnets=args.subnet_ids,
                security_groups=[group.id],
                # Private subnets only; tasks reach out through NAT and are reached through
                # Cloud Map (name) or the load balancer (hello), never directly.
                assign_public_ip=False,
            ),
            # Start new tasks before stopping old ones, never dropping below 75% of the count.
            deployment_maximum_percent=200,
            deployment_minimum_healthy_percent=75,
            # A deployment whose tasks keep failing rolls back to the last good one instead of
            # replacing healthy tasks with broken ones.
            deployment_circuit_breaker=aws.ecs.ServiceDeploymentCircuitBreakerArgs(
                enable=True, rollback=True
            ),
            # ... and so does one whose tasks start and pass their health checks but break the
            # service (5xx, retries, unhealthy targets): ECS watches these alarms during the
            # deployment and rolls back when one goes to ALARM.
            alarms=(
                aws.ecs.ServiceAlarmsArgs(alarm_names=alarm_names, enable=True, rollback=True)
                if alarm_names
                else None
            ),
            service_registries=aws.ecs.ServiceServiceRegistriesArgs(registry_arn=registry.arn),
            load_balancers=(
                [
                    aws.ecs.ServiceLoadBalancerArgs(
                        target_group_arn=lb.target_group_arn,
                        container_name=name,
                        container_port=args.settings.port,
                    )
                ]
                if lb
                else None
            ),
            health_check_grace_period_seconds=lb.health_check_grace_seconds if lb else None,
            propagate_tags="SERVICE",
            enable_ecs_managed_tags=True,
            # `pulumi up` returns once the tasks run healthy, or fails if the circuit breaker
            # rolled the deployment back: success means the service actually works.
            wait_for_steady_state=True,
            opts=pulumi.ResourceOptions(
                parent=self,
                # Tasks pull their image over 443 the moment they start; the strategy's
                # providers must be on the cluster first (and stay until the service is gone).
                depends_on=[
                    https_out,
                    *([lb.listener] if lb else []),
                    *([args.capacity_providers] if args.capacity_providers else []),
                ],
                # The provider reads desiredCount back from ECS; once Application Auto Scaling
                # has changed it, sending the configured count again would undo the scaling on
                # every `pulumi up`.
                ignore_changes=["desiredCount"] if args.autoscaled else None,
                # wait_for_steady_state's bound (DEPLOYMENT_WAIT above).
                custom_timeouts=DEPLOYMENT_WAIT,
            ),
        )

        self.security_group_id = group.id
        self.service_name = service.name
        self.log_group_name = log_group.name
        self.endpoint = pulumi.Output.concat(
            "http://", registry.name, ".", args.namespace_name, ":", str(self._port), "/"
        )
        self.register_outputs(
            {
                "securityGroupId": self.security_group_id,
                "serviceName": self.service_name,
                "logGroupName": self.log_group_name,
                "endpoint": self.endpoint,
            }
        )

    def allow_from(self, source: str, source_security_group_id: pulumi.Input[str]) -> None:
        """Let members of another security group open TCP connections to this service's port.

        One flow, two rules: ingress here from the source group, and egress on the source
        group to this one (no group in this stack allows egress it was not given). TCP and the
        one port only; the reference design's IpProtocol -1 would open every port and protocol.
        """
        child = pulumi.ResourceOptions(parent=self)
        aws.vpc.SecurityGroupIngressRule(
            f"{self._name}-from-{source}",
            security_group_id=self._group.id,
            description=f"{source} to {self._name}",
            ip_protocol="tcp",
            from_port=self._port,
            to_port=self._port,
            referenced_security_group_id=source_security_group_id,
            opts=child,
        )
        aws.vpc.SecurityGroupEgressRule(
            f"{source}-to-{self._name}",
            security_group_id=source_security_group_id,
            description=f"{source} to {self._name}",
            ip_protocol="tcp",
            from_port=self._port,
            to_port=self._port,
            referenced_security_group_id=self._group.id,
            opts=child,
        )
