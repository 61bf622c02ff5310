"""An alarm when fewer of a service's tasks run than its minimum, three minutes in a row.

Container Insights reports RunningTaskCount per ECS service once a minute; the alarm needs
the ECS service's name, so it is declared after the service (its deployment alarms,
components/alarms.py, come before it).

Missing data keeps the alarm's state (`ignore`). A new alarm starts in INSUFFICIENT_DATA and
is evaluated at once (PutMetricAlarm); a new service has no datapoint until its tasks run and
Container Insights publishes their first minute (ECS reports a service's metrics only while it
has RUNNING tasks: ECS developer guide, "Amazon ECS CloudWatch metrics"), and a replaced
service (a new name, so a new dimension) starts from none while the alarm, updated in place,
keeps its state. With missing data breaching, as it was, a three-minute range without a
datapoint put the alarm in ALARM at its first evaluation on every fresh stack, and after every
replacement: a page for a deploy that worked (CloudWatch user guide, "Configuring how
CloudWatch alarms treat missing data"). With `ignore` the alarm waits for real counts. A
service that falls to zero tasks goes below its minimum first (a breaching datapoint: ALARM),
and stays in ALARM if the counts then stop; its callers' 503 alarm (no task answers) covers
the service that never had one.
"""

import re
from typing import TypedDict

import pulumi

from components.alarms import CONTAINER_INSIGHTS_NAMESPACE, metric_alarm

# Three minutes of one-minute counts below the minimum (a task replaced after a Spot
# reclaim or a failed start takes about a minute to start again).
EVALUATION = (3, 3)
MISSING_DATA = "ignore"


class RunningTasksAlarmArgs(TypedDict):
    """Watch one ECS service's running task count against its minimum."""

    prefix: str
    """The alarm is named `<prefix>-<service>-task-count`."""
    service: str
    """The service's short name (lowercase letters, digits, '-')."""
    topic_arn: pulumi.Input[str]
    """The SNS topic the alarm notifies on ALARM (Alarms.topic_arn)."""
    cluster_name: pulumi.Input[str]
    """The ECS cluster's name (Container Insights enabled): the metric's ClusterName."""
    service_name: pulumi.Input[str]
    """The ECS service's name: the metric's ServiceName."""
    minimum: int
    """The fewest tasks that should run (the autoscaling minimum), at least 1."""


class RunningTasksAlarm(pulumi.ComponentResource):
    """An alarm when fewer tasks of an ECS service run than its minimum for three minutes
    (Container Insights' RunningTaskCount)."""

    alarm_name: pulumi.Output[str]
    """The alarm's name."""

    def __init__(
        self,
        name: str,
        args: RunningTasksAlarmArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(
            "fargate-service-discovery:running_tasks:RunningTasksAlarm", name, None, opts
        )
        service = args["service"]
        if not re.fullmatch(r"[a-z][a-z0-9-]*", service):
            raise ValueError(
                f"RunningTasksAlarmArgs.service={service!r}: expected lowercase letters, "
                "digits and '-'"
            )
        minimum = int(args["minimum"])
        if minimum < 1:
            raise ValueError(
                f"RunningTasksAlarmArgs.minimum={minimum}: expected at least 1 (an alarm on "
                "fewer than 0 tasks could never fire)"
            )
        short = f"{service}-task-count"
        alarm = metric_alarm(
            short,
            prefix=args["prefix"],
            description=(
                f"Fewer {service} tasks run than its minimum ({minimum}) for three minutes: "
                "capacity is missing (tasks failing to start, Spot tasks not replaced, a zone "
                "down)."
            ),
            topic_arn=args["topic_arn"],
            metric=(
                "RunningTaskCount",
                CONTAINER_INSIGHTS_NAMESPACE,
                {"ClusterName": args["cluster_name"], "ServiceName": args["service_name"]},
                "Minimum",
            ),
            threshold=minimum,
            comparison="LessThanThreshold",
            evaluation=EVALUATION,
            missing=MISSING_DATA,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.alarm_name = alarm.name
        self.register_outputs({"alarmName": self.alarm_name})
