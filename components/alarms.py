"""Alarms a team can act on, for any set of services, and where they go: an SNS topic (and an
e-mail address, if given).

Each service gets the alarms its args give the metrics for, named `<prefix>-<alarm>`:

- with `load_balancer_arn_suffix` (the public entry): `alb-5xx`, the load balancer itself
  answers 5xx (no healthy target, a target that closed the connection): visitors see errors.
- a service with a `load_balancer` (its target group): `<service>-target-5xx` (it answers 5xx)
  and `<service>-unhealthy-targets` (a task fails the health checks for three minutes). Both
  are deployment alarms of that service.
- a service with `callers` (services that call it through the discovery client,
  aiohttp_discovery, whose counters reach CloudWatch as EMF lines), for each caller:
  `<caller>-<service>-5xx` (the service answers the caller's attempts with 5xx),
  `<caller>-<service>-503` (the caller found no task that answers) and
  `<caller>-<service>-retries` (retries hide a failing task). All three are deployment alarms
  of the called service: its tasks pass their health checks, yet fail their callers.

The running-task count needs the ECS service's name, which exists only once the service does
(after its deployment alarms): that alarm is components/running_tasks.py.

Only ALARM notifies the topic. An OK action would also fire on every new alarm's first
evaluation (INSUFFICIENT_DATA -> OK: PutMetricAlarm creates an alarm in INSUFFICIENT_DATA),
so each fresh stack or new service would message whoever subscribed; recoveries show in the
console, and EventBridge has every state change ("CloudWatch Alarm State Change") for a team
that wants them elsewhere. Alarms on rates use metric math, so that a quiet hour (no
requests) is "no data", treated as not breaching, rather than a false alarm.
"""

import re
from collections.abc import Mapping, Sequence
from typing import NotRequired, TypedDict

import pulumi
import pulumi_aws as aws

ALB_NAMESPACE = "AWS/ApplicationELB"
CONTAINER_INSIGHTS_NAMESPACE = "ECS/ContainerInsights"
# What the services' EMF lines carry (apps/common/emf.py): the dimension naming the service
# that wrote the line, and the discovery client's counters, `<metrics_prefix>_<counter>`
# (aiohttp_discovery: hello's prefix is hello_upstream), each with its labels as dimensions.
EMF_SERVICE_DIMENSION = "Service"
REQUESTS_COUNTER = "requests_total"
RETRIES_COUNTER = "retries_total"
ATTEMPTS_COUNTER = "attempts_total"
# The outcomes of a call (label `outcome`): answered, answered badly (502), none (503).
OUTCOMES = ("ok", "bad_gateway", "unavailable")
# The results of one attempt (label `result`) that got an answer: usable, or a 5xx.
ANSWERED = ("ok", "status_5xx")
PERIOD_SECONDS = 60
# Every alarm's description ends with where its runbook entry is: what it means, the first three
# things to look at, the usual fixes (one section per alarm, headed by the alarm's short name).
RUNBOOK = "docs/runbook.md"

# Percent of requests answered 5xx by the load balancer or by a service behind it. One in a
# hundred over three of five minutes: a single failed request at low traffic stays quiet.
ERROR_RATE_PERCENT = 1.0
# Percent of a caller's calls that end in a 503: the client tried every task it knows.
UPSTREAM_503_PERCENT = 1.0
# Percent of calls that needed a retry. The retry budget allows 20% of requests (+10/s); a
# healthy fleet retries far less than 1% (a task stopping at the end of its drain). One in ten
# for five minutes in a row means one task of a few keeps failing and retries hide it.
RETRY_RATE_PERCENT = 10.0
# Percent of a caller's answered attempts that got a 5xx. A healthy task never answers 5xx;
# a release that does on every call puts every minute at 100% once it serves alone.
ANSWER_5XX_PERCENT = 5.0

# How each alarm evaluates: (evaluation periods N, datapoints to alarm M), periods of 60 s.
RATE_EVALUATION = (5, 3)
RETRY_EVALUATION = (5, 5)
UNHEALTHY_EVALUATION = (3, 3)
# The 5xx alarm must trip within the time ECS watches a deployment's alarms after the new
# tasks serve alone (the bake time, which ECS computes from its alarms' evaluation time, the
# longest of them; see docs/runbook.md, "Deployment alarm timing"): two bad minutes of ten.
ANSWER_5XX_EVALUATION = (10, 2)

# --- The timing a deployment alarm must meet (docs/runbook.md, "Deployment alarm timing") ---
# apps/common/emf.py writes each task's counters every 60 s (DEFAULT_INTERVAL_SECONDS).
EMF_INTERVAL_SECONDS = 60
# The awslogs log driver sends what a task wrote every 5 s (moby daemon/logger/awslogs,
# batchPublishFrequency), the flush interval CloudWatch's EMF alarm guidance asks for.
LOG_BATCH_SECONDS = 5
# CloudWatch evaluates an alarm whose period is 60 s or more once a minute.
EVALUATION_CADENCE_SECONDS = 60
# What the design leaves CloudWatch Logs to turn a log line into a metric datapoint: AWS
# publishes no figure for it, so the design keeps this much room and tests it.
EXTRACTION_ALLOWANCE_SECONDS = 240

# CloudWatch alarm names (and the deploy role's scope, `<prefix>-*`): printable ASCII.
_NAME = re.compile(r"^[a-z][a-z0-9-]*$")
MAX_ALARM_NAME = 255


class TargetGroupDimensions(TypedDict):
    """The load balancer target group a service's tasks serve behind."""

    load_balancer_arn_suffix: pulumi.Input[str]
    """The load balancer's ARN suffix (`app/<name>/<id>`), its CloudWatch dimension."""
    target_group_arn_suffix: pulumi.Input[str]
    """The target group's ARN suffix (`targetgroup/<name>/<id>`), its CloudWatch dimension."""


class DiscoveryCaller(TypedDict):
    """A service that calls this one through the discovery client (aiohttp_discovery), whose
    counters reach CloudWatch as EMF lines (apps/common/emf.py)."""

    service: str
    """The caller's short name: its EMF lines' `Service` dimension (e.g. `hello`)."""
    metrics_prefix: str
    """The `metrics_prefix` the caller gave its UpstreamClient (e.g. `hello_upstream`)."""
    upstream: pulumi.Input[str]
    """The host the caller calls, its counters' `upstream` label: `<service>.<namespace>`."""


class WatchedService(TypedDict):
    """One service to watch, and what it can be watched by."""

    service: str
    """The service's short name (lowercase letters, digits, '-'), part of its alarms' names."""
    load_balancer: NotRequired[TargetGroupDimensions]
    """The target group it serves behind: alarms on its 5xx and its unhealthy targets."""
    callers: NotRequired[Sequence[DiscoveryCaller]]
    """Services that call it: alarms on what each sees of it (5xx, 503s, retries)."""


class AlarmsArgs(TypedDict):
    """The alarms of a set of services, and the topic they notify."""

    prefix: str
    """Names: `<prefix>-<alarm>` and the topic `<prefix>-alarms` (a deploy role can be scoped
    by them)."""
    services: Sequence[WatchedService]
    """The services to watch."""
    metrics_namespace: NotRequired[str]
    """The CloudWatch namespace of the callers' EMF lines (METRICS_NAMESPACE); needed when a
    service has callers."""
    load_balancer_arn_suffix: NotRequired[pulumi.Input[str]]
    """The public load balancer's ARN suffix: an alarm on its own 5xx (`alb-5xx`)."""
    email: NotRequired[str]
    """Also subscribe this address to the topic (SNS e-mails a confirmation link first)."""


def alarm_name(prefix: str, alarm: str) -> str:
    return f"{prefix}-{alarm}"


def evaluation_seconds(evaluation: tuple[int, int], period: int = PERIOD_SECONDS) -> int:
    """How far back an alarm looks: evaluation periods x period."""
    return evaluation[0] * period


def detection_seconds(evaluation: tuple[int, int], period: int = PERIOD_SECONDS) -> int:
    """At worst, seconds from the moment every call fails to the alarm in ALARM.

    The first minute whose EMF lines cover only failed calls starts within one EMF interval
    plus one period and closes a period later; its lines reach CloudWatch Logs within the
    driver's batch, become datapoints within the extraction allowance; M datapoints take
    M - 1 more periods; the alarm is evaluated within a minute of the last.
    """
    datapoints = evaluation[1]
    return (
        EMF_INTERVAL_SECONDS
        + period
        + period
        + LOG_BATCH_SECONDS
        + EXTRACTION_ALLOWANCE_SECONDS
        + (datapoints - 1) * period
        + EVALUATION_CADENCE_SECONDS
    )


def validate(args: AlarmsArgs) -> None:
    """One clear error naming the argument and what is allowed."""
    prefix = args["prefix"]
    if not prefix or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", prefix):
        raise ValueError(
            f"AlarmsArgs.prefix={prefix!r}: expected letters, digits, '.', '_' and '-'"
        )
    seen: set[str] = set()
    for index, watched in enumerate(args["services"]):
        service = watched["service"]
        where = f"AlarmsArgs.services[{index}].service={service!r}"
        if not _NAME.fullmatch(service):
            raise ValueError(f"{where}: expected lowercase letters, digits and '-'")
        if service in seen:
            raise ValueError(f"{where}: each service may be listed once")
        seen.add(service)
        callers = watched.get("callers", ())
        if callers and not args.get("metrics_namespace"):
            raise ValueError(
                f"{where} has callers: AlarmsArgs.metrics_namespace (the callers' "
                "METRICS_NAMESPACE) is required to read their EMF metrics"
            )
        caller_names = [c["service"] for c in callers]
        for caller in caller_names:
            if not _NAME.fullmatch(caller) or caller_names.count(caller) > 1:
                raise ValueError(
                    f"{where}: callers[].service={caller!r}: expected lowercase letters, "
                    "digits and '-', each caller once"
                )
    longest = max((len(n) for n in _all_alarms(args)), default=0)
    if len(prefix) + 1 + longest > MAX_ALARM_NAME:
        raise ValueError(
            f"AlarmsArgs.prefix={prefix!r}: alarm names would exceed CloudWatch's "
            f"{MAX_ALARM_NAME} characters"
        )


def _all_alarms(args: AlarmsArgs) -> list[str]:
    names = ["alb-5xx"] if args.get("load_balancer_arn_suffix") is not None else []
    for watched in args["services"]:
        service = watched["service"]
        if "load_balancer" in watched:
            names += [f"{service}-target-5xx", f"{service}-unhealthy-targets"]
        for caller in watched.get("callers", ()):
            edge = f"{caller['service']}-{service}"
            names += [f"{edge}-5xx", f"{edge}-503", f"{edge}-retries"]
    return names


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


def caller_dimensions(caller: DiscoveryCaller) -> dict[str, pulumi.Input[str]]:
    return {EMF_SERVICE_DIMENSION: caller["service"], "upstream": caller["upstream"]}


def outcome_queries(
    namespace: str, caller: DiscoveryCaller
) -> list[aws.cloudwatch.MetricAlarmMetricQueryArgs]:
    """A caller's calls by outcome (ids ok, bad_gateway, unavailable) and its retries."""
    base = caller_dimensions(caller)
    prefix = caller["metrics_prefix"]
    return [
        *(
            _metric(o, namespace, f"{prefix}_{REQUESTS_COUNTER}", {**base, "outcome": o})
            for o in OUTCOMES
        ),
        _metric("retries", namespace, f"{prefix}_{RETRIES_COUNTER}", base),
    ]


def answer_queries(
    namespace: str, caller: DiscoveryCaller
) -> list[aws.cloudwatch.MetricAlarmMetricQueryArgs]:
    """A caller's attempts that got an answer, by result (ids ok, status_5xx)."""
    base = caller_dimensions(caller)
    metric = f"{caller['metrics_prefix']}_{ATTEMPTS_COUNTER}"
    return [_metric(r, namespace, metric, {**base, "result": r}) for r in ANSWERED]


# Every call, whatever its outcome (no data for an outcome counts as none).
_CALLS = " + ".join(f"FILL({o}, 0)" for o in OUTCOMES)


class Alarms(pulumi.ComponentResource):
    """Alarms for any set of services (their 5xx, unhealthy targets, what their callers see),
    the SNS topic they notify on ALARM, and the alarms each service's deployments watch."""

    topic_arn: pulumi.Output[str]
    """The topic every alarm notifies: subscribe whatever you use (e-mail, chat, paging)."""
    alarm_names: pulumi.Output[list[str]]
    """Every alarm's name."""
    deployment_alarm_names: pulumi.Output[dict[str, list[str]]]
    """By service: the alarms that roll its deployments back (ECS deployment alarms)."""

    def __init__(
        self, name: str, args: AlarmsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("fargate-service-discovery:alarms:Alarms", name, None, opts)
        validate(args)
        self._child = pulumi.ResourceOptions(parent=self)
        self._prefix = args["prefix"]

        # Not encrypted with the AWS managed key alias/aws/sns: its key policy cannot be changed
        # to let CloudWatch use it, and CloudWatch alarms need kms:GenerateDataKey*/Decrypt on
        # the topic's key to publish (SNS developer guide, "compatibility with AWS services"):
        # every notification would be dropped without an error. A customer managed key with
        # that grant costs $1 a month and KMS permissions for the deploy role; the messages are
        # alarm names, states and metric values, no data of the service's users.
        topic = aws.sns.Topic(name, name=alarm_name(self._prefix, "alarms"), opts=self._child)
        self._topic = topic
        email = args.get("email")
        if email:
            # Pending until the address confirms; the provider then reads the real state. A
            # pending subscription cannot be unsubscribed (the provider ignores that error on
            # delete), and deleting the topic deletes it.
            aws.sns.TopicSubscription(
                f"{name}-email",
                topic=topic.arn,
                protocol="email",
                endpoint=email,
                opts=self._child,
            )

        created: list[aws.cloudwatch.MetricAlarm] = []
        lb_suffix = args.get("load_balancer_arn_suffix")
        if lb_suffix is not None:
            alb = {"LoadBalancer": lb_suffix}
            created.append(
                self._alarm(
                    "alb-5xx",
                    "The load balancer itself answers 5xx to more than 1% of requests (no "
                    "healthy task, or tasks closing connections): visitors see errors.",
                    [
                        _metric("errors", ALB_NAMESPACE, "HTTPCode_ELB_5XX_Count", alb),
                        # RequestCount leaves out requests the load balancer answered alone.
                        _metric("requests", ALB_NAMESPACE, "RequestCount", alb),
                        _expression(
                            "100 * FILL(errors, 0) / (FILL(requests, 0) + FILL(errors, 0))",
                            "ELB 5xx, % of requests",
                        ),
                    ],
                    threshold=ERROR_RATE_PERCENT,
                    evaluation=RATE_EVALUATION,
                )
            )

        # Python programs use these directly; other languages read deployment_alarm_names.
        self.deployment_alarms: dict[str, list[pulumi.Output[str]]] = {}
        for watched in args["services"]:
            service = watched["service"]
            own: list[aws.cloudwatch.MetricAlarm] = []
            if "load_balancer" in watched:
                own += self._load_balancer_alarms(service, watched["load_balancer"])
            for caller in watched.get("callers", ()):
                own += self._caller_alarms(service, caller, args.get("metrics_namespace", ""))
            created += own
            self.deployment_alarms[service] = [a.name for a in own]

        self.topic_arn = topic.arn
        self.alarm_names = pulumi.Output.all(*(a.name for a in created))
        self.deployment_alarm_names = pulumi.Output.all(
            **{s: pulumi.Output.all(*names) for s, names in self.deployment_alarms.items()}
        )
        self.register_outputs(
            {
                "topicArn": self.topic_arn,
                "alarmNames": self.alarm_names,
                "deploymentAlarmNames": self.deployment_alarm_names,
            }
        )

    def _load_balancer_alarms(
        self, service: str, lb: TargetGroupDimensions
    ) -> list[aws.cloudwatch.MetricAlarm]:
        """A deployment of the service that answers 5xx or fails its health checks rolls back."""
        target_group = {
            "LoadBalancer": lb["load_balancer_arn_suffix"],
            "TargetGroup": lb["target_group_arn_suffix"],
        }
        errors = self._alarm(
            f"{service}-target-5xx",
            f"{service} answers 5xx to more than 1% of requests: it got no usable answer from "
            "a service it calls (see its callers' alarms), or it fails itself.",
            [
                _metric("errors", ALB_NAMESPACE, "HTTPCode_Target_5XX_Count", target_group),
                _metric("requests", ALB_NAMESPACE, "RequestCount", target_group),
                _expression("100 * FILL(errors, 0) / requests", f"{service} 5xx, % of requests"),
            ],
            threshold=ERROR_RATE_PERCENT,
            evaluation=RATE_EVALUATION,
        )
        unhealthy = self._alarm(
            f"{service}-unhealthy-targets",
            f"A {service} task has failed the load balancer's health checks for three minutes.",
            metric=("UnHealthyHostCount", ALB_NAMESPACE, target_group, "Maximum"),
            threshold=1,
            comparison="GreaterThanOrEqualToThreshold",
            evaluation=UNHEALTHY_EVALUATION,
        )
        return [errors, unhealthy]

    def _caller_alarms(
        self, service: str, caller: DiscoveryCaller, namespace: str
    ) -> list[aws.cloudwatch.MetricAlarm]:
        """A deployment of the service whose tasks pass their health checks but fail this
        caller (5xx answers, no task answering, retries) rolls back."""
        edge = f"{caller['service']}-{service}"
        who = f"{caller['service']}'s calls to {service}"
        answers_5xx = self._alarm(
            f"{edge}-5xx",
            f"{service} answered more than 5% of {who} with 5xx in 2 minutes of 10: a "
            f"{service} release or task that fails every call (its tasks still pass their "
            "health checks).",
            [
                *answer_queries(namespace, caller),
                _expression(
                    "100 * FILL(status_5xx, 0) / (FILL(ok, 0) + FILL(status_5xx, 0))",
                    "5xx, % of answered attempts",
                ),
            ],
            threshold=ANSWER_5XX_PERCENT,
            evaluation=ANSWER_5XX_EVALUATION,
        )
        unavailable = self._alarm(
            f"{edge}-503",
            f"The discovery client found no {service} task that answers for more than 1% of "
            f"{who} (503): {service} has no healthy task {caller['service']} can reach.",
            [
                *outcome_queries(namespace, caller),
                _expression(f"100 * FILL(unavailable, 0) / ({_CALLS})", "503, % of calls"),
            ],
            threshold=UPSTREAM_503_PERCENT,
            evaluation=RATE_EVALUATION,
        )
        retries = self._alarm(
            f"{edge}-retries",
            f"More than one in ten of {who} needed a retry, five minutes in a row: answers "
            f"still succeed, but retries are hiding a failing {service} task (look for "
            f"ejections on {caller['service']}'s /metrics and errors in {service}'s logs).",
            [
                *outcome_queries(namespace, caller),
                _expression(f"100 * FILL(retries, 0) / ({_CALLS})", "retries, % of calls"),
            ],
            threshold=RETRY_RATE_PERCENT,
            evaluation=RETRY_EVALUATION,
        )
        return [answers_5xx, unavailable, retries]

    def _alarm(
        self,
        alarm: str,
        description: str,
        queries: Sequence[aws.cloudwatch.MetricAlarmMetricQueryArgs] | None = None,
        *,
        metric: tuple[str, str, Mapping[str, pulumi.Input[str]], str] | None = None,
        threshold: float,
        evaluation: tuple[int, int],
        comparison: str = "GreaterThanThreshold",
    ) -> aws.cloudwatch.MetricAlarm:
        return metric_alarm(
            alarm,
            prefix=self._prefix,
            description=description,
            topic_arn=self._topic.arn,
            queries=queries,
            metric=metric,
            threshold=threshold,
            evaluation=evaluation,
            comparison=comparison,
            missing="notBreaching",
            opts=self._child,
        )


def metric_alarm(
    alarm: str,
    *,
    prefix: str,
    description: str,
    topic_arn: pulumi.Input[str],
    queries: Sequence[aws.cloudwatch.MetricAlarmMetricQueryArgs] | None = None,
    metric: tuple[str, str, Mapping[str, pulumi.Input[str]], str] | None = None,
    threshold: float,
    evaluation: tuple[int, int],
    comparison: str,
    missing: str,
    opts: pulumi.ResourceOptions,
) -> aws.cloudwatch.MetricAlarm:
    """One alarm, `<prefix>-<alarm>`, notifying the topic on ALARM only (module docstring)."""
    periods, datapoints = evaluation
    return aws.cloudwatch.MetricAlarm(
        alarm,
        # name (alarm_name) is the only ForceNew argument; the provider refuses to create an
        # alarm whose name exists (PutMetricAlarm would silently overwrite it).
        name=alarm_name(prefix, alarm),
        alarm_description=f"{description} Runbook: {RUNBOOK}#{alarm}",
        metric_queries=list(queries) if queries else None,
        threshold=threshold,
        comparison_operator=comparison,
        evaluation_periods=periods,
        datapoints_to_alarm=datapoints,
        treat_missing_data=missing,
        alarm_actions=[topic_arn],
        metric_name=metric[0] if metric else None,
        namespace=metric[1] if metric else None,
        dimensions=dict(metric[2]) if metric else None,
        statistic=metric[3] if metric else None,
        period=PERIOD_SECONDS if metric else None,
        opts=opts,
    )
