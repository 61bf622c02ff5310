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
from components.proxy_alarms import ProxyAlarms, ProxyAlarmsArgs
from components.running_tasks import RunningTasksAlarm, RunningTasksAlarmArgs
from components.service import (
    DiscoverableService,
    DiscoverableServiceArgs,
    ServiceLoadBalancer,
    dns_name,
)
from components.service_connect import ServiceConnect, ServiceConnectServer
from stack.args import HEALTH_PATH, network_args
from stack.args import service_args as stack_service_args

# The services' build context, relative to this directory (see components/image.py).
APPS_DIR = "apps"
# Service Connect (discoveryMode: serviceConnect): name's client alias, port name and discovery
# name, what hello puts in its URL; the proxies' per-request timeout, a second under hello's own
# 2 s bound (REQUEST_TIMEOUT_SECONDS) so the proxy's answer reaches hello first; their idle
# timeout, ECS's HTTP default, set on purpose (docs/service-connect.md).
PROXY_ALIAS = "name"
PROXY_TIMEOUT_SECONDS = 1
PROXY_IDLE_TIMEOUT_SECONDS = 300

settings = stack.load()

# Looked up once and handed to whatever needs them.
context = AwsContext(
    region=aws.get_region_output().region,
    account_id=aws.get_caller_identity_output().account_id,
    partition=aws.get_partition_output().partition,
)
prefix = f"{pulumi.get_project()}-{pulumi.get_stack()}"

network = Network("network", network_args(settings.network))
# How hello finds name (discoveryMode; docs/service-connect.md): Cloud Map DNS and the discovery
# client, or the Service Connect proxy in every task.
service_connect = settings.discovery_mode == "serviceConnect"
platform = Platform(
    "platform",
    PlatformArgs(
        vpc_id=network.vpc_id,
        namespace=settings.namespace,
        cluster_name=prefix,
        aws=context,
        # docs/service-connect.md: the cluster's Service Connect namespace, in that mode.
        service_connect=service_connect,
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

# hello's client calls name by this host name (its `upstream` label in the metrics): through
# Service Connect, name's client alias.
upstream_host = (
    pulumi.Output.from_input(PROXY_ALIAS)
    if service_connect
    else pulumi.Output.concat("name.", platform.namespace_name)
)
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

name_args = service_args(
    "name",
    settings.name,
    alarms.deployment_alarms["name"],
    # hello finds name's tasks through Cloud Map: name's drain must outlast hello's cache.
    caller_dns_refresh_seconds=settings.hello.dns_refresh_seconds,
)
if service_connect:
    # A client-server service; it keeps its DNS registration, so hello tasks still in the DNS
    # mode find its tasks while a switch rolls out (docs/service-connect.md, the switch order).
    name_args["service_connect"] = ServiceConnect(
        namespace_arn=platform.service_connect_namespace_arn,
        server=ServiceConnectServer(
            port_name=PROXY_ALIAS,
            discovery_name=PROXY_ALIAS,
            dns_name=PROXY_ALIAS,
            port=settings.name.port,
            per_request_timeout_seconds=PROXY_TIMEOUT_SECONDS,
            idle_timeout_seconds=PROXY_IDLE_TIMEOUT_SECONDS,
        ),
    )
name = DiscoverableService("name", name_args)
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
if service_connect:
    # After the service: the proxies' metrics carry its name (components/proxy_alarms.py).
    ProxyAlarms(
        "name-proxy",
        ProxyAlarmsArgs(
            prefix=prefix,
            service="name",
            topic_arn=alarms.topic_arn,
            cluster_name=platform.cluster_name,
            service_name=name.service_name,
            discovery_name=PROXY_ALIAS,
            per_request_timeout_seconds=PROXY_TIMEOUT_SECONDS,
        ),
    )

hello_args = service_args(
    "hello",
    settings.hello,
    alarms.deployment_alarms["hello"],
    environment=(
        {
            # Through the task's Service Connect proxy, which balances, retries and ejects:
            # the client makes one attempt and leaves zones to the proxy (apps/hello).
            "DISCOVERY_MODE": "serviceConnect",
            "NAME_SERVER": f"http://{PROXY_ALIAS}:{settings.name.port}/",
            "PROXY_TIMEOUT_SECONDS": str(PROXY_TIMEOUT_SECONDS),
            "PROXY_IDLE_TIMEOUT_SECONDS": str(PROXY_IDLE_TIMEOUT_SECONDS),
            "ZONE_AWARE": "false",
        }
        if service_connect
        else {
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
        }
    ),
    # ECS refuses a service whose target group no load balancer uses yet: the listener rule
    # attaches it, so the service waits for the rule.
    load_balancer=ServiceLoadBalancer(
        target_group_arn=pulumi.Output.all(entry.target_group_arn, entry.forwarding.urn).apply(
            lambda v: str(v[0])
        )
    ),
)
if service_connect:
    # A client: its tasks get a proxy that knows the namespace's endpoints as of their start.
    hello_args["service_connect"] = ServiceConnect(
        namespace_arn=platform.service_connect_namespace_arn
    )
    # Only tasks started after name's deployment know its endpoint (ECS developer guide,
    # "Service Connect components"): hello deploys once name's service has reached its steady
    # state. Not depends_on=[name]: the component's children include the rule that lets hello
    # in (name.allow_from below), which needs hello's security group, a cycle. The reverse
    # switch is two steps (docs/service-connect.md).
    hello_args["deploy_after"] = [name.service_name]
hello = DiscoverableService("hello", hello_args)

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
