"""Running it in production (issue 10), on the program runs under mocks: autoscaling that
`pulumi up` never undoes, Fargate Spot per stack (alarms and the dashboard: test_alarms.py).
The provider findings behind each are in docs/infrastructure.md ("Autoscaling, alarms,
dashboard and Spot")."""

from __future__ import annotations

from typing import Any

import pytest

from components import autoscaling
from components.platform import CAPACITY_PROVIDERS
from tests.infra.conftest import settings_for
from tests.infra.support import Resource, Run, Runs

ECS_SERVICE = "aws:ecs/service:Service"
TARGET = "aws:appautoscaling/target:Target"
POLICY = "aws:appautoscaling/policy:Policy"
CAPACITY = "aws:ecs/clusterCapacityProviders:ClusterCapacityProviders"


# --- Autoscaling ------------------------------------------------------------------------------


def test_pulumi_up_never_resets_a_count_autoscaling_changed(run: Run, key: str) -> None:
    """The provider reads desired_count back from ECS; without ignore_changes the next
    `pulumi up` would send the configured count and undo every scaling decision. The count is
    still sent once, at creation."""
    s = settings_for(key)
    for app, service in (("name", s.name), ("hello", s.hello)):
        ecs = run.one(ECS_SERVICE, app)
        assert ecs.ignore_changes == ["desiredCount"], app
        assert ecs.inputs["desiredCount"] == service.desired_count


def test_each_service_is_a_scalable_target_within_its_configured_range(run: Run, key: str) -> None:
    """resource_id is service/<cluster>/<service> with the names ECS gave them; no role_arn
    (Application Auto Scaling uses its service-linked role, read back as computed)."""
    s = settings_for(key)
    cluster = run.one("aws:ecs/cluster:Cluster", "platform").state["name"]
    for app, service in (("name", s.name), ("hello", s.hello)):
        target = run.one(TARGET, f"{app}-autoscaling")
        ecs_name = run.one(ECS_SERVICE, app).state["name"]
        assert target.inputs["resourceId"] == f"service/{cluster}/{ecs_name}"
        assert target.inputs["serviceNamespace"] == "ecs"
        assert target.inputs["scalableDimension"] == "ecs:service:DesiredCount"
        assert (target.inputs["minCapacity"], target.inputs["maxCapacity"]) == (
            service.min_count,
            service.max_count,
        )
        assert "roleArn" not in target.inputs


def policy_of(run: Run, app: str) -> tuple[Resource, dict[str, Any]]:
    policy = run.one(POLICY, f"{app}-autoscaling")
    return policy, policy.inputs["targetTrackingScalingPolicyConfiguration"]


def test_name_tracks_average_cpu(run: Run, key: str) -> None:
    policy, tracking = policy_of(run, "name")
    # The provider's default policy_type is StepScaling, which refuses this configuration.
    assert policy.inputs["policyType"] == "TargetTrackingScaling"
    assert tracking["predefinedMetricSpecification"] == {
        "predefinedMetricType": "ECSServiceAverageCPUUtilization"
    }
    assert tracking["targetValue"] == settings_for(key).name.target_cpu_percent
    assert policy.inputs["resourceId"] == run.one(TARGET, "name-autoscaling").state["resourceId"]
    # Ordered after the target it scales (the provider retries ObjectNotFound, but only so long).
    assert run.one(TARGET, "name-autoscaling").urn in policy.dependencies


def test_hello_tracks_requests_per_task_of_its_target_group(run: Run, key: str) -> None:
    """ALBRequestCountPerTarget's resource label is app/<lb>/<id>/targetgroup/<tg>/<id>: the
    load balancer's and the target group's ARN suffixes, as the provider computes them."""
    policy, tracking = policy_of(run, "hello")
    lb = run.one("aws:lb/loadBalancer:LoadBalancer", "entry").state["arnSuffix"]
    tg = run.one("aws:lb/targetGroup:TargetGroup", "entry").state["arnSuffix"]
    assert policy.inputs["policyType"] == "TargetTrackingScaling"
    assert tracking["predefinedMetricSpecification"] == {
        "predefinedMetricType": "ALBRequestCountPerTarget",
        "resourceLabel": f"{lb}/{tg}",
    }
    assert lb.startswith("app/")
    assert tg.startswith("targetgroup/")
    assert tracking["targetValue"] == settings_for(key).hello.target_requests_per_task


def test_cooldowns_let_a_scale_in_finish_before_the_next(run: Run, key: str) -> None:
    """Scale-out reacts within a minute (a task needs about that to serve); scale-in waits
    longer than a stopping name task drains, so the next decision sees the smaller fleet."""
    s = settings_for(key)
    for app in ("name", "hello"):
        _, tracking = policy_of(run, app)
        assert tracking["scaleOutCooldown"] == autoscaling.SCALE_OUT_COOLDOWN_SECONDS == 60
        assert tracking["scaleInCooldown"] == autoscaling.SCALE_IN_COOLDOWN_SECONDS == 300
        assert tracking["disableScaleIn"] is False
    assert s.name.stop_timeout < autoscaling.SCALE_IN_COOLDOWN_SECONDS


@pytest.mark.parametrize(
    ("targets", "given"),
    [({}, "neither"), ({"cpu": {"percent": 60}, "requests": {"requests": 50}}, "both")],
)
def test_autoscaling_tracks_exactly_one_target(targets: dict[str, Any], given: str) -> None:
    """One of cpu and requests, never both: the package's schema cannot say "one of" (a Union
    is refused by Pulumi's analyzer), so the component does, naming the fields."""
    args: Any = {"cluster_name": "c", "service_name": "s", "min_count": 1, "max_count": 2}
    with pytest.raises(ValueError, match=rf"exactly one of cpu and requests \({given}\)"):
        autoscaling.policy_configuration({**args, **targets})


# --- Capacity providers (Fargate Spot) -------------------------------------------------------


def test_spot_strategy_per_stack(runs: Runs) -> None:
    """dev: the first task of each service on FARGATE, the rest 1:3 on FARGATE_SPOT; prod:
    FARGATE only (no zero-weight Spot entry)."""
    expected = {
        "dev": [
            {"capacityProvider": "FARGATE", "base": 1, "weight": 1},
            {"capacityProvider": "FARGATE_SPOT", "weight": 3},
        ],
        "prod": [{"capacityProvider": "FARGATE", "base": 0, "weight": 1}],
    }
    for stack, strategy in expected.items():
        for app in ("name", "hello"):
            service = runs[stack].one(ECS_SERVICE, app).inputs
            assert service["capacityProviderStrategies"] == strategy, (stack, app)
            assert "launchType" not in service


def test_strategy_changes_roll_the_service_instead_of_failing(run: Run) -> None:
    """terraform-provider-aws refuses an in-place strategy update without
    force_new_deployment (older releases replace the service, resetting the autoscaled count)."""
    for app in ("name", "hello"):
        assert run.one(ECS_SERVICE, app).inputs["forceNewDeployment"] is True


def test_the_cluster_has_its_providers_before_a_service_names_them(run: Run) -> None:
    """ECS refuses a strategy naming a provider the cluster lacks; destroy must delete the
    services before PutClusterCapacityProviders empties the list (ResourceInUse otherwise)."""
    providers = run.one(CAPACITY, "platform")
    assert providers.inputs["capacityProviders"] == list(CAPACITY_PROVIDERS)
    # By name: the provider validates cluster_name as a name, not an ARN.
    assert (
        providers.inputs["clusterName"]
        == run.one("aws:ecs/cluster:Cluster", "platform").state["name"]
    )
    for app in ("name", "hello"):
        assert providers.urn in run.one(ECS_SERVICE, app).dependencies, app
