"""Alarms a team can act on, and where they go: an SNS topic (and an e-mail address, if given).

What each alarm says, in the order a request meets the failure:

- `alb-5xx`: the load balancer itself answers 5xx (no healthy hello task, a hello task that
  closed the connection): visitors see errors.
- `hello-target-5xx`: hello answers 5xx (it could not get an answer from name): visitors see
  errors. Also a deployment alarm of hello.
- `hello-unhealthy-targets`: a hello task fails the load balancer's health checks for three
  minutes. Also a deployment alarm of hello.
- `name-running-tasks`: fewer name tasks run than name.minCount (from Container Insights):
  capacity is missing (failed starts, Spot reclaims not replaced, a zone down).
- `hello-upstream-503`: hello's discovery client found no name task that answers, from the
  counters hello writes as CloudWatch Embedded Metric Format lines (apps/common/emf.py). Also a
  deployment alarm of name.
- `hello-upstream-retries`: more than one call in ten needs a retry while answers still succeed:
  retries are hiding a failing name task. Also a deployment alarm of name.

Every alarm notifies the topic on ALARM and on OK. Alarms on rates use metric math, so that
a quiet hour (no requests) is "no data", treated as not breaching, rather than a false alarm.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

ALB_NAMESPACE = "AWS/ApplicationELB"
CONTAINER_INSIGHTS_NAMESPACE = "ECS/ContainerInsights"
# What the services' EMF lines carry (apps/common/emf.py): the dimension naming the service, and
# the discovery client's counters (hello's, prefix hello_upstream; apps/hello/app.py), each with
# its labels as further dimensions.
EMF_SERVICE_DIMENSION = "Service"
UPSTREAM_REQUESTS = "hello_upstream_requests_total"
UPSTREAM_RETRIES = "hello_upstream_retries_total"
# The outcomes of a call to name (label `outcome`): answered, answered badly (502), none (503).
OUTCOMES = ("ok", "bad_gateway", "unavailable")
PERIOD_SECONDS = 60
# Every alarm's description ends with where its runbook entry is: what it means, the first three
# things to look at, the usual fixes (one section per alarm, headed by the alarm's short name).
RUNBOOK = "docs/runbook.md"

# Percent of requests answered 5xx by the load balancer or by hello. One in a hundred over three
# of five minutes: a single failed request at low traffic stays quiet, a real failure does not.
ERROR_RATE_PERCENT = 1.0
# Percent of hello's calls to name that end in a 503: the client tried every task it knows.
UPSTREAM_503_PERCENT = 1.0
# Percent of calls that needed a retry. The retry budget allows 20% of requests (+10/s); a
# healthy fleet retries far less than 1% (a task stopping at the end of its drain). One in ten
# for five minutes in a row means one task of a few keeps failing and retries hide it.
RETRY_RATE_PERCENT = 10.0


@dataclass(frozen=True)
class AlarmsArgs:
    # Names: "<prefix>-<alarm>", "<prefix>-alarms" (the CI deploy role is scoped by them).
    prefix: str
    # The namespace the services' EMF lines use (apps/common/emf.py, METRICS_NAMESPACE).
    metrics_namespace: str
    # The host hello's client calls (its `upstream` label): name.<namespace>.
    upstream_host: pulumi.Input[str]
    load_balancer_arn_suffix: pulumi.Input[str]
    target_group_arn_suffix: pulumi.Input[str]
    # Also subscribe this address to the topic (SNS e-mails a confirmation link first).
    email: str | None = None


def alarm_name(prefix: str, alarm: str) -> str:
    return f"{prefix}-{alarm}"


def _metric(
    query_id: str,
    namespace: str,
    metric: str,
    dimensions: Mapping[str, pulumi.Input[str]],
    stat: str = "Sum",
) -> aws.cloudwatch.MetricAlarmMetricQueryArgs:
    return aws.cloudwatch.MetricAlarmMetricQueryArgs(
        id=query_id,
        metric=aws.cloudwatch.MetricAlarmMetricQueryMetricArgs(
            namespace=namespace,
            metric_name=metric,
            dimensions=dict(dimensions),
            period=PERIOD_SECONDS,
            stat=stat,
        ),
        return_data=False,
    )


def _expression(expression: str, label: str) -> aws.cloudwatch.MetricAlarmMetricQueryArgs:
    return aws.cloudwatch.MetricAlarmMetricQueryArgs(
        id="rate", expression=expression, label=label, return_data=True
    )


def upstream_queries(
    namespace: str, upstream_host: pulumi.Input[str]
) -> list[aws.cloudwatch.MetricAlarmMetricQueryArgs]:
    """hello's calls to name by outcome (ids ok, bad_gateway, unavailable) and its retries."""
    base = {EMF_SERVICE_DIMENSION: "hello", "upstream": upstream_host}
    return [
        *(
            _metric(outcome, namespace, UPSTREAM_REQUESTS, {**base, "outcome": outcome})
            for outcome in OUTCOMES
        ),
        _metric("retries", namespace, UPSTREAM_RETRIES, base),
    ]


# Every call to name, whatever its outcome (no data for an outcome counts as none).
_CALLS = " + ".join(f"FILL({o}, 0)" for o in OUTCOMES)


class Alarms(pulumi.ComponentResource):
    topic_arn: pulumi.Output[str]
    # ECS deployment alarms (roll back while in ALARM), by service.
    deployment_alarms: Mapping[str, Sequence[pulumi.Output[str]]]

    def __init__(
        self, name: str, args: AlarmsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("fargate-service-discovery:alarms:Alarms", name, None, opts)
        self._child = pulumi.ResourceOptions(parent=self)
        self._prefix = args.prefix

        # Not encrypted with the AWS managed key alias/aws/sns: its key policy cannot be changed
        # to let CloudWatch use it, and CloudWatch alarms need kms:GenerateDataKey*/Decrypt on
        # the topic's key to publish (SNS developer guide, "compatibility with AWS services"):
        # every notification would be dropped without an error. A customer managed key with
        # that grant costs $1 a month and KMS permissions for the deploy role; the messages are
        # alarm names, states and metric values, no data of the service's users.
        topic = aws.sns.Topic(name, name=alarm_name(args.prefix, "alarms"), opts=self._child)
        self._topic = topic
        if args.email:
            # Pending until the address confirms; the provider then reads the real state. A
            # pending subscription cannot be unsubscribed (the provider ignores that error on
            # delete), and deleting the topic deletes it.
            aws.sns.TopicSubscription(
                f"{name}-email",
                topic=topic.arn,
                protocol="email",
                endpoint=args.email,
                opts=self._child,
            )

        alb = {"LoadBalancer": args.load_balancer_arn_suffix}
        target_group = {**alb, "TargetGroup": args.target_group_arn_suffix}
        ns = args.metrics_namespace
        alb_5xx = self._alarm(
            "alb-5xx",
            "The load balancer itself answers 5xx to more than 1% of requests (no healthy "
            "hello task, or tasks closing connections): visitors see errors.",
            [
                _metric("errors", ALB_NAMESPACE, "HTTPCode_ELB_5XX_Count", alb),
                # RequestCount leaves out requests the load balancer answered without a target.
                _metric("requests", ALB_NAMESPACE, "RequestCount", alb),
                _expression(
                    "100 * FILL(errors, 0) / (FILL(requests, 0) + FILL(errors, 0))",
                    "ELB 5xx, % of requests",
                ),
            ],
            threshold=ERROR_RATE_PERCENT,
            periods=5,
            datapoints=3,
        )
        target_5xx = self._alarm(
            "hello-target-5xx",
            "hello answers 5xx to more than 1% of requests: it got no usable answer from name "
            "(see hello-upstream-503), or it fails itself.",
            [
                _metric("errors", ALB_NAMESPACE, "HTTPCode_Target_5XX_Count", target_group),
                _metric("requests", ALB_NAMESPACE, "RequestCount", target_group),
                _expression("100 * FILL(errors, 0) / requests", "hello 5xx, % of requests"),
            ],
            threshold=ERROR_RATE_PERCENT,
            periods=5,
            datapoints=3,
        )
        unhealthy = self._alarm(
            "hello-unhealthy-targets",
            "A hello task has failed the load balancer's health checks for three minutes.",
            metric=("UnHealthyHostCount", ALB_NAMESPACE, target_group, "Maximum"),
            threshold=1,
            comparison="GreaterThanOrEqualToThreshold",
            periods=3,
            datapoints=3,
        )
        upstream_503 = self._alarm(
            "hello-upstream-503",
            "hello's discovery client found no name task that answers for more than 1% of "
            "calls (503): name has no healthy task hello can reach.",
            [
                *upstream_queries(ns, args.upstream_host),
                _expression(f"100 * FILL(unavailable, 0) / ({_CALLS})", "503, % of calls"),
            ],
            threshold=UPSTREAM_503_PERCENT,
            periods=5,
            datapoints=3,
        )
        retries = self._alarm(
            "hello-upstream-retries",
            "More than one call in ten from hello to name needed a retry, five minutes in a "
            "row: answers still succeed, but retries are hiding a failing name task (look for "
            "ejections on hello's /metrics and errors in name's logs).",
            [
                *upstream_queries(ns, args.upstream_host),
                _expression(f"100 * FILL(retries, 0) / ({_CALLS})", "retries, % of calls"),
            ],
            threshold=RETRY_RATE_PERCENT,
            periods=5,
            datapoints=5,
        )

        self.topic_arn = topic.arn
        self.deployment_alarms = {
            # A hello deployment that answers 5xx or fails its health checks rolls back.
            "hello": [target_5xx.name, unhealthy.name],
            # A name deployment whose tasks pass their health checks but fail hello's calls
            # (503s, or retries) rolls back.
            "name": [upstream_503.name, retries.name],
        }
        self.alarm_names = [a.name for a in (alb_5xx, target_5xx, unhealthy, upstream_503, retries)]
        self.register_outputs({"topicArn": self.topic_arn, "alarmNames": self.alarm_names})

    def watch_running_tasks(
        self,
        service: str,
        cluster_name: pulumi.Input[str],
        service_name: pulumi.Input[str],
        minimum: int,
    ) -> aws.cloudwatch.MetricAlarm:
        """Alarm when fewer than `minimum` tasks of the service run, three minutes in a row.

        Created once the ECS service exists (its name is a dimension). Container Insights
        reports RunningTaskCount per service every minute; no data at all means no task or no
        Container Insights, both worth a look, so missing data breaches.
        """
        return self._alarm(
            f"{service}-running-tasks",
            f"Fewer {service} tasks run than its minCount ({minimum}) for three minutes: "
            "capacity is missing (tasks failing to start, Spot tasks not replaced, a zone down).",
            metric=(
                "RunningTaskCount",
                CONTAINER_INSIGHTS_NAMESPACE,
                {"ClusterName": cluster_name, "ServiceName": service_name},
                "Minimum",
            ),
            threshold=minimum,
            comparison="LessThanThreshold",
            periods=3,
            datapoints=3,
            missing="breaching",
        )

    def _alarm(
        self,
        alarm: str,
        description: str,
        queries: Sequence[aws.cloudwatch.MetricAlarmMetricQueryArgs] | None = None,
        *,
        metric: tuple[str, str, Mapping[str, pulumi.Input[str]], str] | None = None,
        threshold: float,
        periods: int,
        datapoints: int,
        comparison: str = "GreaterThanThreshold",
        missing: str = "notBreaching",
    ) -> aws.cloudwatch.MetricAlarm:
        return aws.cloudwatch.MetricAlarm(
            alarm,
            # name (alarm_name) is the only ForceNew argument; the provider refuses to create an
            # alarm whose name exists (PutMetricAlarm would silently overwrite it).
            name=alarm_name(self._prefix, alarm),
            alarm_description=f"{description} Runbook: {RUNBOOK}#{alarm}",
            metric_queries=list(queries) if queries else None,
            threshold=threshold,
            comparison_operator=comparison,
            evaluation_periods=periods,
            datapoints_to_alarm=datapoints,
            treat_missing_data=missing,
            alarm_actions=[self._topic.arn],
            ok_actions=[self._topic.arn],
            metric_name=metric[0] if metric else None,
            namespace=metric[1] if metric else None,
            dimensions=dict(metric[2]) if metric else None,
            statistic=metric[3] if metric else None,
            period=PERIOD_SECONDS if metric else None,
            opts=self._child,
        )
