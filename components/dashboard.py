"""One CloudWatch dashboard for any set of services.

A row per service behind the load balancer (requests and 5xx, response time), a row per caller
of a service (its calls by outcome and its retries, from the discovery client's EMF lines; how
its calls spread over the service's tasks, from the caller's access log, which names the task
each call went to, through a CloudWatch Logs Insights query: no per-task metric, whose cost
would grow with every task ever started), and a last row with every service's running and
desired tasks (Container Insights).
"""

from collections.abc import Sequence
from typing import Any, NotRequired, TypedDict

import pulumi
import pulumi_aws as aws

from components.alarms import (
    ALB_NAMESPACE,
    CONTAINER_INSIGHTS_NAMESPACE,
    EMF_SERVICE_DIMENSION,
    OUTCOMES,
    PERIOD_SECONDS,
    REQUESTS_COUNTER,
    RETRIES_COUNTER,
    DiscoveryCaller,
    TargetGroupDimensions,
)

WIDTH, HEIGHT = 12, 6


class DashboardCaller(DiscoveryCaller):
    """A caller of the service (as for its alarms), and where its access log is."""

    access_log_group: NotRequired[pulumi.Input[str]]
    """The caller's log group, whose access log names the task of each call (`upstream`):
    a widget of the calls per task."""


class DashboardService(TypedDict):
    """One service on the dashboard."""

    service: str
    """The service's short name, in the widgets' titles and labels."""
    service_name: pulumi.Input[str]
    """The ECS service's name (Container Insights' ServiceName)."""
    load_balancer: NotRequired[TargetGroupDimensions]
    """The target group it serves behind: its requests, 5xx and response time."""
    callers: NotRequired[Sequence[DashboardCaller]]
    """Services that call it through the discovery client: their calls by outcome."""


class DashboardArgs(TypedDict):
    """The dashboard's name and the services it shows."""

    name: str
    """The dashboard's name: letters, digits, '-' and '_' (e.g. the stack prefix)."""
    region: pulumi.Input[str]
    """The region of the metrics and logs."""
    cluster_name: pulumi.Input[str]
    """The ECS cluster's name (Container Insights' ClusterName)."""
    services: Sequence[DashboardService]
    """The services to show."""
    metrics_namespace: NotRequired[str]
    """The CloudWatch namespace of the callers' EMF lines; needed when a service has callers."""


def spread_query(log_group: str) -> str:
    """Logs Insights: a caller's calls per task (its access log's `upstream` address)."""
    return (
        f"SOURCE '{log_group}' | filter ispresent(upstream) "
        "| stats count(*) as calls by upstream | sort calls desc"
    )


def validate(args: DashboardArgs) -> None:
    name = args["name"]
    if not name or len(name) > 255 or not all(c.isalnum() or c in "-_" for c in name):
        raise ValueError(
            f"DashboardArgs.name={name!r}: expected 1 to 255 letters, digits, '-' and '_'"
        )
    for index, service in enumerate(args["services"]):
        if service.get("callers") and not args.get("metrics_namespace"):
            raise ValueError(
                f"DashboardArgs.services[{index}] ({service['service']!r}) has callers: "
                "DashboardArgs.metrics_namespace (the callers' METRICS_NAMESPACE) is required"
            )


def dashboard_body(args: DashboardArgs) -> dict[str, Any]:
    """The dashboard's JSON as a dict whose values may be Outputs (json_dumps resolves them)."""
    region = args["region"]
    namespace = args.get("metrics_namespace", "")
    widgets: list[dict[str, Any]] = []

    def place(widget: dict[str, Any]) -> None:
        index = len(widgets)
        widgets.append(
            {**widget, "x": (index % 2) * WIDTH, "y": (index // 2) * HEIGHT}
            | {"width": WIDTH, "height": HEIGHT}
        )

    def metric(title: str, metrics: list[list[Any]], **extra: Any) -> None:
        place(
            {
                "type": "metric",
                "properties": {
                    "title": title,
                    "region": region,
                    "view": "timeSeries",
                    "period": PERIOD_SECONDS,
                    "stat": "Sum",
                    "metrics": metrics,
                    **extra,
                },
            }
        )

    def new_row() -> None:
        if len(widgets) % 2:
            widgets.append({})  # a placeholder, dropped below, keeps rows aligned

    for service in args["services"]:
        name = service["service"]
        lb = service.get("load_balancer")
        if lb:
            new_row()
            alb, tg = lb["load_balancer_arn_suffix"], lb["target_group_arn_suffix"]
            metric(
                f"Load balancer -> {name}: requests and 5xx per minute",
                [
                    [ALB_NAMESPACE, "RequestCount", "LoadBalancer", alb],
                    [ALB_NAMESPACE, "HTTPCode_ELB_5XX_Count", "LoadBalancer", alb],
                    [
                        ALB_NAMESPACE,
                        "HTTPCode_Target_5XX_Count",
                        "LoadBalancer",
                        alb,
                        "TargetGroup",
                        tg,
                    ],
                ],
            )
            metric(
                f"Load balancer -> {name}: response time (s)",
                [
                    [
                        ALB_NAMESPACE,
                        "TargetResponseTime",
                        "LoadBalancer",
                        alb,
                        "TargetGroup",
                        tg,
                        {"stat": stat},
                    ]
                    for stat in ("p50", "p99")
                ],
            )
        for caller in service.get("callers", ()):
            new_row()
            who = caller["service"]
            dims = [EMF_SERVICE_DIMENSION, who, "upstream", caller["upstream"]]
            prefix = caller["metrics_prefix"]
            metric(
                f"{who} -> {name}: calls by outcome, and retries, per minute",
                [
                    *(
                        [namespace, f"{prefix}_{REQUESTS_COUNTER}", *dims, "outcome", o]
                        for o in OUTCOMES
                    ),
                    [namespace, f"{prefix}_{RETRIES_COUNTER}", *dims],
                ],
            )
            log_group = caller.get("access_log_group")
            if log_group is not None:
                place(
                    {
                        "type": "log",
                        "properties": {
                            "title": f"{who} -> {name}: calls per {name} task ({who}'s access log)",
                            "region": region,
                            "view": "table",
                            "query": pulumi.Output.from_input(log_group).apply(spread_query),
                        },
                    }
                )
    new_row()
    metric(
        "Tasks: running and desired",
        [
            [
                CONTAINER_INSIGHTS_NAMESPACE,
                count,
                "ClusterName",
                args["cluster_name"],
                "ServiceName",
                service["service_name"],
                {"label": f"{service['service']} {count.removesuffix('TaskCount').lower()}"},
            ]
            for service in args["services"]
            for count in ("RunningTaskCount", "DesiredTaskCount")
        ],
        stat="Minimum",
    )
    return {"widgets": [w for w in widgets if w.get("type")]}


class Dashboard(pulumi.ComponentResource):
    """A CloudWatch dashboard for any set of services: load balancer traffic, what callers see
    of the services they call, and running tasks."""

    dashboard_name: pulumi.Output[str]
    """The dashboard's name (CloudWatch > Dashboards)."""

    def __init__(
        self, name: str, args: DashboardArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("fargate-service-discovery:dashboard:Dashboard", name, None, opts)
        validate(args)
        # dashboard_name is ForceNew (fixed: the stack prefix); the body is sent as is
        # (PutDashboard on create and update), stored normalised (sorted keys) and compared as
        # JSON, so key order and whitespace never show as a diff. Delete: DeleteDashboards.
        dashboard = aws.cloudwatch.Dashboard(
            name,
            dashboard_name=args["name"],
            dashboard_body=pulumi.Output.json_dumps(dashboard_body(args)),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.dashboard_name = dashboard.dashboard_name
        self.register_outputs({"dashboardName": self.dashboard_name})
