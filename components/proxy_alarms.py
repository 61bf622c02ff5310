"""Alarms on what ECS Service Connect's proxies report for a service (docs/service-connect.md).

In the `serviceConnect` discovery mode the proxy in every task publishes the service's
traffic to CloudWatch (`AWS/ECS`, one-minute, per ClusterName, ServiceName and DiscoveryName:
ECS developer guide, "Amazon ECS CloudWatch metrics"): `RequestCount`,
`HTTPCode_Target_5XX_Count`, `TargetResponseTime` (HTTP only: the port mapping's appProtocol).
Two alarms for a client-server service:

- `<service>-proxy-5xx`: more than 1% of the requests its proxies received got a 5xx from
  its tasks, three minutes of five (the rate the load balancer's alarms use);
- `<service>-proxy-latency`: the p99 of its tasks' response time, as its proxies measured it,
  above the proxies' per-request timeout for three minutes of five: callers are getting 504s.

The metrics carry the ECS service's name, which exists only once the service does, so these
alarms come after it (as components/running_tasks.py) and are not deployment alarms: a release
that fails its callers is still rolled back by the callers' own alarms (components/alarms.py:
hello's discovery client keeps counting its calls by outcome in this mode). Missing data is
not breaching: a quiet minute is no traffic, not an incident.
"""

import re
from typing import TypedDict

import pulumi

from components.alarms import ERROR_RATE_PERCENT, RATE_EVALUATION, _expression, _metric
from components.alarms import metric_alarm as _metric_alarm

NAMESPACE = "AWS/ECS"
MISSING_DATA = "notBreaching"


class ProxyAlarmsArgs(TypedDict):
    """Watch one client-server service through its Service Connect proxies."""

    prefix: str
    """The alarms are named `<prefix>-<service>-proxy-5xx` and `-proxy-latency`."""
    service: str
    """The service's short name (lowercase letters, digits, '-')."""
    topic_arn: pulumi.Input[str]
    """The SNS topic the alarms notify on ALARM (Alarms.topic_arn)."""
    cluster_name: pulumi.Input[str]
    """The ECS cluster's name: the metrics' ClusterName."""
    service_name: pulumi.Input[str]
    """The ECS service's name: the metrics' ServiceName."""
    discovery_name: str
    """The service's Service Connect discovery name: the metrics' DiscoveryName."""
    per_request_timeout_seconds: int
    """The proxies' per-request timeout: a p99 above it means callers get 504s."""


def check(args: ProxyAlarmsArgs) -> None:
    """One clear error naming the argument and what is allowed."""
    service = args["service"]
    if not re.fullmatch(r"[a-z][a-z0-9-]*", service):
        raise ValueError(
            f"ProxyAlarmsArgs.service={service!r}: expected lowercase letters, digits and '-'"
        )
    timeout = int(args["per_request_timeout_seconds"])
    if timeout < 1:
        raise ValueError(
            f"ProxyAlarmsArgs.per_request_timeout_seconds={timeout}: expected at least 1"
        )


class ProxyAlarms(pulumi.ComponentResource):
    """Alarms on a Service Connect client-server service's 5xx rate and p99 response time."""

    alarm_names: pulumi.Output[list[str]]
    """Both alarms' names."""

    def __init__(
        self, name: str, args: ProxyAlarmsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        check(args)
        super().__init__("fargate-service-discovery:proxy_alarms:ProxyAlarms", name, None, opts)
        service = args["service"]
        timeout = int(args["per_request_timeout_seconds"])
        child = pulumi.ResourceOptions(parent=self)
        dimensions = {
            "ClusterName": args["cluster_name"],
            "ServiceName": args["service_name"],
            "DiscoveryName": args["discovery_name"],
        }
        answers_5xx = _metric_alarm(
            f"{service}-proxy-5xx",
            prefix=args["prefix"],
            description=(
                f"{service}'s tasks answered more than 1% of the requests their Service Connect "
                "proxies received with 5xx, three minutes of five: its callers see errors."
            ),
            topic_arn=args["topic_arn"],
            queries=[
                _metric("errors", NAMESPACE, "HTTPCode_Target_5XX_Count", dimensions),
                _metric("requests", NAMESPACE, "RequestCount", dimensions),
                _expression("100 * FILL(errors, 0) / FILL(requests, 1)", "5xx, % of requests"),
            ],
            threshold=ERROR_RATE_PERCENT,
            comparison="GreaterThanThreshold",
            evaluation=RATE_EVALUATION,
            missing=MISSING_DATA,
            opts=child,
        )
        latency = _metric_alarm(
            f"{service}-proxy-latency",
            prefix=args["prefix"],
            description=(
                f"The p99 of {service}'s response time, as its Service Connect proxies measured "
                f"it, is above their {timeout} s per-request timeout three minutes of five: "
                "callers are getting 504s from the proxy."
            ),
            topic_arn=args["topic_arn"],
            queries=[
                _metric("p99", NAMESPACE, "TargetResponseTime", dimensions, stat="p99"),
                # TargetResponseTime is in milliseconds.
                _expression("p99", "p99 response time, ms"),
            ],
            threshold=timeout * 1000,
            comparison="GreaterThanThreshold",
            evaluation=RATE_EVALUATION,
            missing=MISSING_DATA,
            opts=child,
        )
        self.alarm_names = pulumi.Output.all(answers_5xx.name, latency.name)
        self.register_outputs({"alarmNames": self.alarm_names})
