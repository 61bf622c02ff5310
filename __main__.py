"""Service discovery for AWS Fargate tasks with AWS Cloud Map: the Pulumi program.

    internet -> [domain: Route 53 alias, ACM certificate] -> ALB (public subnets)
             -> hello tasks -> name tasks (private subnets)
                  \\-- DNS: name.<namespace> (Cloud Map) --/

hello finds name's tasks through Cloud Map DNS and balances across them itself; traffic
between the two goes task to task. The configuration is validated in full (stack/) before
any resource is declared.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pulumi
import pulumi_aws as aws

import stack
from components.alarms import (
    Alarms,
    AlarmsArgs,
    DiscoveryCaller,
    TargetGroupDimensions,
    WatchedService,
)
from components.autoscaling import (
    CpuTarget,
    RequestsTarget,
    ServiceAutoscaling,
    ServiceAutoscalingArgs,
    resource_label,
)
from components.dashboard import Dashboard, DashboardArgs, DashboardCaller, DashboardService
from components.domain import PublicDomain, PublicDomainArgs
from components.entry import PublicEntry, PublicEntryArgs
from components.image import ServiceImage, ServiceImageArgs
from components.network import Network
from components.platform import AwsContext, Platform, PlatformArgs
from components.running_tasks import RunningTasksAlarm, RunningTasksAlarmArgs
from components.service import (
    DiscoverableService,
    DiscoverableServiceArgs,
    ServiceLoadBalancer,
    dns_name,
)
from stack.args import HEALTH_PATH, network_args
from stack.args import service_args as stack_service_args

# The services' build context, relative to this directory (see components/image.py).
APPS_DIR = "apps"

settings = stack.load()

# Looked up once and handed to whatever needs them.
context = AwsContext(
    region=aws.get_region_output().region,
    account_id=aws.get_caller_identity_output().account_id,
    partition=aws.get_partition_output().partition,
)
prefix = f"{pulumi.get_project()}-{pulumi.get_stack()}"

network = Network("network", network_args(settings.network))
platform = Platform(
    "platform",
    PlatformArgs(
        vpc_id=network.vpc_id,
        namespace=settings.namespace,
        cluster_name=prefix,
        aws=context,
    ),
)
images = {
    app: ServiceImage(
        app,
        ServiceImageArgs(
            context=APPS_DIR,
            dockerfile=f"{APPS_DIR}/{app}/Dockerfile",
            platform=settings.image_platform,
        ),
    )
    for app in ("name", "hello")
}


# The services' cluster, handed out once its capacity providers are attached: ECS refuses a
# strategy naming a provider the cluster lacks, and PutClusterCapacityProviders fails while a
# service still uses one, so each service is created after them and deleted before them.
cluster_arn = pulumi.Output.all(platform.cluster_arn, platform.capacity_providers.urn).apply(
    lambda v: str(v[0])
)


def service_args(
    app: str,
    service: stack.ServiceSettings,
    deployment_alarms: Sequence[pulumi.Input[str]],
    *,
    environment: Mapping[str, pulumi.Input[str]] | None = None,
    load_balancer: ServiceLoadBalancer | None = None,
    caller_dns_refresh_seconds: int | None = None,
) -> DiscoverableServiceArgs:
    """Everything name and hello have in common, plus what sets them apart."""
    return stack_service_args(
        settings,
        service,
        image=images[app].image_uri,
        cluster_arn=cluster_arn,
        execution_role_arn=platform.execution_role_arn,
        namespace_id=platform.namespace_id,
        namespace_name=platform.namespace_name,
        vpc_id=network.vpc_id,
        subnet_ids=network.private_subnet_ids,
        region=context["region"],
        prefix=prefix,
        # The discovery client's counters go to CloudWatch as EMF lines in this namespace
        # (apps/common/emf.py); the alarms and the dashboard read them there.
        environment={"METRICS_NAMESPACE": prefix, **(environment or {})},
        deployment_alarm_names=deployment_alarms,
        load_balancer=load_balancer,
        caller_dns_refresh_seconds=caller_dns_refresh_seconds,
    )


def autoscale(
    app: str,
    service: DiscoverableService,
    counts: stack.ServiceSettings,
    cpu: CpuTarget | None = None,
    requests: RequestsTarget | None = None,
) -> ServiceAutoscaling:
    args = ServiceAutoscalingArgs(
        cluster_name=platform.cluster_name,
        service_name=service.service_name,
        min_count=counts.min_count,
        max_count=counts.max_count,
    )
    if cpu is not None:
        args["cpu"] = cpu
    if requests is not None:
        args["requests"] = requests
    return ServiceAutoscaling(f"{app}-autoscaling", args)


# The public name and its certificate, when the stack has a domain (stack/ refuses a
# certificate without one: it could never match the load balancer's own name).
domain = (
    PublicDomain(
        "domain",
        PublicDomainArgs(
            name=settings.domain.name,
            zone_id=settings.domain.zone_id,
            zone_name=settings.domain.zone_name,
            certificate_arn=settings.certificate_arn,
        ),
    )
    if settings.domain
    else None
)

entry = PublicEntry(
    "entry",
    PublicEntryArgs(
        vpc_id=network.vpc_id,
        subnet_ids=network.public_subnet_ids,
        target_port=settings.hello.port,
        health_check_path=HEALTH_PATH,
        certificate_arn=domain.certificate_arn if domain else None,
    ),
)
if domain:
    domain.route_to(entry.dns_name, entry.zone_id)

# hello's client calls name by this host name (its `upstream` label in the metrics).
upstream_host = pulumi.Output.concat("name.", platform.namespace_name)
# hello calls name through the discovery client, whose counters (prefix hello_upstream,
# apps/hello/app.py) reach CloudWatch as EMF lines in the namespace METRICS_NAMESPACE = prefix.
hello_calls_name = DiscoveryCaller(
    service="hello", metrics_prefix="hello_upstream", upstream=upstream_host
)
hello_target_group = TargetGroupDimensions(
    load_balancer_arn_suffix=entry.load_balancer_arn_suffix,
    target_group_arn_suffix=entry.target_group_arn_suffix,
)
alarm_args = AlarmsArgs(
    prefix=prefix,
    metrics_namespace=prefix,
    load_balancer_arn_suffix=entry.load_balancer_arn_suffix,
    services=[
        WatchedService(service="name", callers=[hello_calls_name]),
        WatchedService(service="hello", load_balancer=hello_target_group),
    ],
)
if settings.alarms.email:
    alarm_args["email"] = settings.alarms.email
alarms = Alarms("alarms", alarm_args)

name = DiscoverableService(
    "name",
    service_args(
        "name",
        settings.name,
        alarms.deployment_alarms["name"],
        # hello finds name's tasks through Cloud Map: name's drain must outlast hello's cache.
        caller_dns_refresh_seconds=settings.hello.dns_refresh_seconds,
    ),
)
autoscale("name", name, settings.name, cpu=CpuTarget(percent=settings.name.target_cpu_percent))
RunningTasksAlarm(
    "name-running-tasks",
    RunningTasksAlarmArgs(
        prefix=prefix,
        service="name",
        topic_arn=alarms.topic_arn,
        cluster_name=platform.cluster_name,
        service_name=name.service_name,
        minimum=settings.name.min_count,
    ),
)

hello = DiscoverableService(
    "hello",
    service_args(
        "hello",
        settings.hello,
        alarms.deployment_alarms["hello"],
        environment={
            # Derived from the name service's Cloud Map registration, never typed twice.
            "NAME_SERVER": name.endpoint,
            "DNS_REFRESH_SECONDS": str(settings.hello.dns_refresh_seconds),
            # Zone-aware routing: hello reads its own zone from the task metadata endpoint
            # and places name's tasks by these subnets (docs/apps.md, "Zones").
            "ZONE_AWARE": "true" if settings.hello.zone_aware else "false",
            # Its own Cloud Map name: hello's tasks are the callers whose spread over the
            # zones the rule weighs (an autoscaled count the zones do not divide).
            **(
                {
                    "ZONE_SUBNETS": pulumi.Output.json_dumps(network.private_subnet_zones),
                    "ZONE_CALLERS": dns_name("hello", platform.namespace_name),
                }
                if settings.hello.zone_aware
                else {}
            ),
        },
        # ECS refuses a service whose target group no load balancer uses yet: the listener rule
        # attaches it, so the service waits for the rule.
        load_balancer=ServiceLoadBalancer(
            target_group_arn=pulumi.Output.all(entry.target_group_arn, entry.forwarding.urn).apply(
                lambda v: str(v[0])
            )
        ),
    ),
)

autoscale(
    "hello",
    hello,
    settings.hello,
    requests=RequestsTarget(
        requests=settings.hello.target_requests_per_task,
        resource_label=resource_label(
            entry.load_balancer_arn_suffix, entry.target_group_arn_suffix
        ),
    ),
)
dashboard = Dashboard(
    "dashboard",
    DashboardArgs(
        name=prefix,
        region=context["region"],
        cluster_name=platform.cluster_name,
        metrics_namespace=prefix,
        services=[
            DashboardService(
                service="hello", service_name=hello.service_name, load_balancer=hello_target_group
            ),
            DashboardService(
                service="name",
                service_name=name.service_name,
                callers=[
                    DashboardCaller(**hello_calls_name, access_log_group=hello.log_group_name)
                ],
            ),
        ],
    ),
)

# The two flows this pattern needs, TCP to one port each; nothing else reaches a task.
hello.allow_from("entry", entry.security_group_id)
name.allow_from("hello", hello.security_group_id)

pulumi.export("url", domain.url if domain else entry.url)
pulumi.export("clusterName", platform.cluster_name)
pulumi.export("namespace", platform.namespace_name)
pulumi.export("nameService", name.service_name)
pulumi.export("helloService", hello.service_name)
pulumi.export("nameEndpoint", name.endpoint)
pulumi.export("logGroups", {"name": name.log_group_name, "hello": hello.log_group_name})
pulumi.export("repositories", {app: image.repository_url for app, image in images.items()})
pulumi.export("vpcId", network.vpc_id)
pulumi.export("alarmTopicArn", alarms.topic_arn)
pulumi.export("dashboard", dashboard.dashboard_name)
