"""Application Auto Scaling for one ECS service: a scalable target and a target tracking policy.

name scales on its tasks' average CPU (`ECSServiceAverageCPUUtilization`): its work is CPU
(the handler is instantaneous, so CPU follows requests). hello scales on the load balancer's
requests per task (`ALBRequestCountPerTarget`): it mostly waits on name, so its CPU says little
about its load, while the requests each task gets are exactly what the ALB spreads.

Target tracking creates and owns its two CloudWatch alarms (`TargetTracking-service/...`); it
scales out quickly and in slowly (scale-in needs 15 minutes of low readings). The ECS service
ignores `desired_count` after creation (components/service.py), so `pulumi up` never undoes a
scaling decision.
"""

from typing import NotRequired, TypedDict

import pulumi
import pulumi_aws as aws

_tracking = aws.appautoscaling
_Metric = _tracking.PolicyTargetTrackingScalingPolicyConfigurationPredefinedMetricSpecificationArgs

# ECS services are scaled by their desired count, in this namespace.
SERVICE_NAMESPACE = "ecs"
SCALABLE_DIMENSION = "ecs:service:DesiredCount"
# The predefined metrics, and the statistic each one tracks.
CPU_METRIC = "ECSServiceAverageCPUUtilization"
REQUESTS_METRIC = "ALBRequestCountPerTarget"
# The provider's default policy_type is "StepScaling" (appautoscaling/policy.go): a target
# tracking configuration under it is refused by the API, so the type is always spelt out.
POLICY_TYPE = "TargetTrackingScaling"

# Seconds after a scale-out before another scale-out counts the new tasks in. A Fargate task takes
# about a minute to pull, start and pass its health checks (startPeriod 10 s, then checks every
# 10 s; behind the ALB, two passing checks 10 s apart), and the metrics are one-minute
# averages: scaling out again sooner would add tasks for load that the first ones are about to
# take. Target tracking still scales out during the cooldown if the metric keeps rising.
SCALE_OUT_COOLDOWN_SECONDS = 60
# Seconds after a scale-in before the next scale-in. Removing a task is the slow, risky direction
# here: a stopping name task keeps serving for its drain (75 s) plus 10 s, hello's targets
# deregister for 10 s, and the metric only reflects the smaller fleet a minute after the tasks
# are gone. Five minutes covers that several times over and keeps a bursty load (a spike every
# few minutes) from flapping the count, at the price of paying for idle tasks a little longer.
SCALE_IN_COOLDOWN_SECONDS = 300


class CpuTarget(TypedDict):
    """Keep the service's average CPU near `percent`."""

    percent: int
    """The average CPU utilisation to track, in percent."""


class RequestsTarget(TypedDict):
    """Keep the load balancer's requests per task per minute near `requests`."""

    requests: int
    """Requests per task per minute to track."""
    resource_label: pulumi.Input[str]
    """The target group the count is taken from:
    `app/<load balancer>/<id>/targetgroup/<target group>/<id>`, the two ARN suffixes joined."""


class ServiceAutoscalingArgs(TypedDict):
    cluster_name: pulumi.Input[str]
    service_name: pulumi.Input[str]
    min_count: int
    """The fewest tasks scale-in may leave."""
    max_count: int
    """The most tasks scale-out may start."""
    cpu: NotRequired[CpuTarget]
    """Track average CPU (exactly one of cpu and requests)."""
    requests: NotRequired[RequestsTarget]
    """Track the load balancer's requests per task (exactly one of cpu and requests)."""


def resource_label(
    load_balancer_arn_suffix: pulumi.Input[str], target_group_arn_suffix: pulumi.Input[str]
) -> pulumi.Output[str]:
    """`ALBRequestCountPerTarget`'s resource label, from the two ARN suffixes (no apply)."""
    return pulumi.Output.concat(load_balancer_arn_suffix, "/", target_group_arn_suffix)


def policy_configuration(
    args: ServiceAutoscalingArgs,
) -> aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationArgs:
    """The target tracking configuration for the CPU or the request-count target."""
    cpu, requests = args.get("cpu"), args.get("requests")
    if cpu is not None and requests is None:
        metric = _Metric(predefined_metric_type=CPU_METRIC)
        value = float(cpu["percent"])
    elif requests is not None and cpu is None:
        metric = _Metric(
            predefined_metric_type=REQUESTS_METRIC, resource_label=requests["resource_label"]
        )
        value = float(requests["requests"])
    else:
        given = "both" if cpu is not None else "neither"
        raise ValueError(f"ServiceAutoscalingArgs: give exactly one of cpu and requests ({given})")
    return aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationArgs(
        predefined_metric_specification=metric,
        target_value=value,
        scale_in_cooldown=SCALE_IN_COOLDOWN_SECONDS,
        scale_out_cooldown=SCALE_OUT_COOLDOWN_SECONDS,
        # Scale-in stays on: the cooldown and the drain make it safe (no request is lost, see
        # docs/infrastructure.md), and a service that only grows is a cost that only grows.
        disable_scale_in=False,
    )


class ServiceAutoscaling(pulumi.ComponentResource):
    """Application Auto Scaling for one ECS service: a scalable target on its desired count
    and a target tracking policy on its CPU or on its load balancer's requests per task."""

    resource_id: pulumi.Output[str]
    """`service/<cluster>/<service>`."""
    policy_arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: ServiceAutoscalingArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(
            "fargate-service-discovery:autoscaling:ServiceAutoscaling", name, None, opts
        )
        child = pulumi.ResourceOptions(parent=self)
        # Integers reach a component through the package as floats (Pulumi's provider SDK).
        min_count, max_count = int(args["min_count"]), int(args["max_count"])
        if not 0 <= min_count <= max_count:
            raise ValueError(
                f"ServiceAutoscalingArgs: need 0 <= min_count <= max_count, got {min_count} and "
                f"{max_count}"
            )
        configuration = policy_configuration(args)

        # resource_id, scalable_dimension and service_namespace are ForceNew; min and max update
        # in place (RegisterScalableTarget again). role_arn is left unset: Application Auto
        # Scaling uses its service-linked role (AWSServiceRoleForApplicationAutoScaling_ECSService,
        # created on first use) and the provider reads its ARN back into the computed role_arn,
        # so leaving it unset never shows a diff. Built from the service's name, the target is
        # registered after the service exists (the provider also retries "ECS service doesn't
        # exist") and deregistered before it is deleted.
        target = aws.appautoscaling.Target(
            name,
            service_namespace=SERVICE_NAMESPACE,
            scalable_dimension=SCALABLE_DIMENSION,
            resource_id=pulumi.Output.concat(
                "service/", args["cluster_name"], "/", args["service_name"]
            ),
            min_capacity=min_count,
            max_capacity=max_count,
            opts=child,
        )
        # name, resource_id, dimension and namespace are ForceNew; the configuration updates in
        # place (PutScalingPolicy). Taking the target's own outputs orders it after the target.
        policy = aws.appautoscaling.Policy(
            name,
            policy_type=POLICY_TYPE,
            service_namespace=target.service_namespace,
            scalable_dimension=target.scalable_dimension,
            resource_id=target.resource_id,
            target_tracking_scaling_policy_configuration=configuration,
            opts=child,
        )

        self.resource_id = target.resource_id
        self.policy_arn = policy.arn
        self.register_outputs({"resourceId": self.resource_id, "policyArn": self.policy_arn})
