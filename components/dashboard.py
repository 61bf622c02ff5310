"""One CloudWatch dashboard for the pattern, `<project>-<stack>`.

Top row: what visitors get (requests, 5xx and latency at the load balancer). Middle row: how
hello's discovery client fares with name (calls by outcome, retries; from the EMF lines) and how
its calls spread over name's tasks (hello's access log, which names the task each call went
to, through a CloudWatch Logs Insights query: no per-task metric, whose cost would grow with
every task ever started). Bottom row: running and desired tasks per service (Container
Insights).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.alarms import (
    ALB_NAMESPACE,
    CONTAINER_INSIGHTS_NAMESPACE,
    EMF_SERVICE_DIMENSION,
    OUTCOMES,
    PERIOD_SECONDS,
    UPSTREAM_REQUESTS,
    UPSTREAM_RETRIES,
)

WIDTH, HEIGHT = 12, 6


@dataclass(frozen=True)
class DashboardArgs:
    # The dashboard's name: letters, digits, "-" and "_" (the stack prefix qualifies).
    name: str
    region: pulumi.Input[str]
    metrics_namespace: str
    upstream_host: pulumi.Input[str]
    load_balancer_arn_suffix: pulumi.Input[str]
    target_group_arn_suffix: pulumi.Input[str]
    hello_log_group: pulumi.Input[str]
    cluster_name: pulumi.Input[str]
    # ECS service names by app.
    services: Mapping[str, pulumi.Input[str]]


def spread_query(log_group: str) -> str:
    """Logs Insights: hello's calls per name task (the access log's `upstream` address)."""
    return (
        f"SOURCE '{log_group}' | filter ispresent(upstream) "
        "| stats count(*) as calls by upstream | sort calls desc"
    )


def dashboard_body(args: DashboardArgs) -> dict[str, Any]:
    """The dashboard's JSON as a dict whose values may be Outputs (json_dumps resolves them)."""
    lb, tg = args.load_balancer_arn_suffix, args.target_group_arn_suffix
    upstream = [EMF_SERVICE_DIMENSION, "hello", "upstream", args.upstream_host]

    def metric(
        title: str, metrics: list[list[Any]], x: int, y: int, **extra: Any
    ) -> dict[str, Any]:
        return {
            "type": "metric",
            "x": x,
            "y": y,
            "width": WIDTH,
            "height": HEIGHT,
            "properties": {
                "title": title,
                "region": args.region,
                "view": "timeSeries",
                "period": PERIOD_SECONDS,
                "stat": "Sum",
                "metrics": metrics,
                **extra,
            },
        }

    return {
        "widgets": [
            metric(
                "Load balancer: requests and 5xx per minute",
                [
                    [ALB_NAMESPACE, "RequestCount", "LoadBalancer", lb],
                    [ALB_NAMESPACE, "HTTPCode_ELB_5XX_Count", "LoadBalancer", lb],
                    [
                        ALB_NAMESPACE,
                        "HTTPCode_Target_5XX_Count",
                        "LoadBalancer",
                        lb,
                        "TargetGroup",
                        tg,
                    ],
                ],
                0,
                0,
            ),
            metric(
                "Load balancer: hello's response time (s)",
                [
                    [ALB_NAMESPACE, "TargetResponseTime", "LoadBalancer", lb, {"stat": "p50"}],
                    [ALB_NAMESPACE, "TargetResponseTime", "LoadBalancer", lb, {"stat": "p99"}],
                ],
                WIDTH,
                0,
            ),
            metric(
                "hello -> name: calls by outcome, and retries, per minute",
                [
                    *(
                        [args.metrics_namespace, UPSTREAM_REQUESTS, *upstream, "outcome", o]
                        for o in OUTCOMES
                    ),
                    [args.metrics_namespace, UPSTREAM_RETRIES, *upstream],
                ],
                0,
                HEIGHT,
            ),
            {
                "type": "log",
                "x": WIDTH,
                "y": HEIGHT,
                "width": WIDTH,
                "height": HEIGHT,
                "properties": {
                    "title": "hello -> name: calls per name task (hello's access log)",
                    "region": args.region,
                    "view": "table",
                    "query": pulumi.Output.from_input(args.hello_log_group).apply(spread_query),
                },
            },
            metric(
                "Tasks: running and desired",
                [
                    [
                        CONTAINER_INSIGHTS_NAMESPACE,
                        count,
                        "ClusterName",
                        args.cluster_name,
                        "ServiceName",
                        service,
                        {"label": f"{app} {count.removesuffix('TaskCount').lower()}"},
                    ]
                    for app, service in args.services.items()
                    for count in ("RunningTaskCount", "DesiredTaskCount")
                ],
                0,
                2 * HEIGHT,
                stat="Minimum",
            ),
        ]
    }


class Dashboard(pulumi.ComponentResource):
    dashboard_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: DashboardArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("fargate-service-discovery:dashboard:Dashboard", name, None, opts)
        # dashboard_name is ForceNew (fixed: the stack prefix); the body is sent as is
        # (PutDashboard on create and update), stored normalised (sorted keys) and compared as
        # JSON, so key order and whitespace never show as a diff. Delete: DeleteDashboards.
        dashboard = aws.cloudwatch.Dashboard(
            name,
            dashboard_name=args.name,
            dashboard_body=pulumi.Output.json_dumps(dashboard_body(args)),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.dashboard_name = dashboard.dashboard_name
        self.register_outputs({"dashboardName": self.dashboard_name})
