"""Running it in production (issue 10), on the program runs under mocks: autoscaling that
`pulumi up` never undoes, Fargate Spot per stack, alarms with their thresholds and dimensions,
deployment alarms beside the circuit breaker, the SNS topic and its optional e-mail, the
dashboard. The provider findings behind each are in docs/infrastructure.md ("Autoscaling,
alarms, dashboard and Spot")."""

from __future__ import annotations

import json
from typing import Any

import pytest

from components import alarms as alarm_spec
from components import autoscaling
from components.platform import CAPACITY_PROVIDERS
from tests.infra.conftest import ALARM_EMAIL, SPECS, settings_for
from tests.infra.support import PROJECT, ROOT, Resource, Run, Runs

ECS_SERVICE = "aws:ecs/service:Service"
TARGET = "aws:appautoscaling/target:Target"
POLICY = "aws:appautoscaling/policy:Policy"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
TOPIC = "aws:sns/topic:Topic"
SUBSCRIPTION = "aws:sns/topicSubscription:TopicSubscription"
DASHBOARD = "aws:cloudwatch/dashboard:Dashboard"
CAPACITY = "aws:ecs/clusterCapacityProviders:ClusterCapacityProviders"
KEYS = ["dev", "prod", "alternatives"]


@pytest.fixture(params=KEYS)
def key(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def run(runs: Runs, key: str) -> Run:
    result = runs[key]
    assert result.error is None, result.error
    return result


def prefix_of(key: str) -> str:
    return f"{PROJECT}-{SPECS[key][0]}"


def alarm(run: Run, name: str) -> dict[str, Any]:
    return run.one(ALARM, name).inputs


def queries(alarm_inputs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {q["id"]: q for q in alarm_inputs["metricQueries"]}


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


# --- Alarms ---------------------------------------------------------------------------------


def test_every_alarm_notifies_the_topic_and_carries_the_stack_prefix(run: Run, key: str) -> None:
    topic = run.one(TOPIC, "alarms")
    assert topic.inputs["name"] == f"{prefix_of(key)}-alarms"
    # alias/aws/sns would silently drop every CloudWatch notification (its key policy cannot
    # grant CloudWatch kms:GenerateDataKey*): see the note in components/alarms.py.
    assert topic.inputs.get("kmsMasterKeyId") != "alias/aws/sns"
    found = run.of_type(ALARM)
    assert {a.name for a in found} == {
        "alb-5xx",
        "hello-target-5xx",
        "hello-unhealthy-targets",
        "hello-upstream-503",
        "hello-upstream-retries",
        "name-running-tasks",
    }
    for a in found:
        assert a.inputs["name"] == f"{prefix_of(key)}-{a.name}"
        assert a.inputs["alarmActions"] == [topic.state["arn"]]
        assert a.inputs["okActions"] == [topic.state["arn"]]
        assert a.inputs["alarmDescription"]
        # ...ending in its runbook entry, which exists (docs/runbook.md, a heading per alarm).
        assert a.inputs["alarmDescription"].endswith(f" Runbook: docs/runbook.md#{a.name}")
        # terraform-provider-aws (cloudwatch/metric_alarm.go) validates alarm_description with
        # StringLenBetween(0, 1024), PutMetricAlarm's limit: a longer one fails the plan.
        assert len(a.inputs["alarmDescription"]) <= 1024
        assert f"\n### {a.name}\n" in (ROOT / "docs" / "runbook.md").read_text()


def test_load_balancer_alarms_watch_this_load_balancer(run: Run) -> None:
    lb = run.one("aws:lb/loadBalancer:LoadBalancer", "entry").state["arnSuffix"]
    tg = run.one("aws:lb/targetGroup:TargetGroup", "entry").state["arnSuffix"]
    elb = queries(alarm(run, "alb-5xx"))
    assert elb["errors"]["metric"]["metricName"] == "HTTPCode_ELB_5XX_Count"
    assert elb["errors"]["metric"]["dimensions"] == {"LoadBalancer": lb}
    assert elb["requests"]["metric"]["dimensions"] == {"LoadBalancer": lb}
    # The load balancer's own 5xx are not in RequestCount: the rate divides by both.
    assert elb["rate"]["expression"] == (
        "100 * FILL(errors, 0) / (FILL(requests, 0) + FILL(errors, 0))"
    )
    target = queries(alarm(run, "hello-target-5xx"))
    assert target["errors"]["metric"]["metricName"] == "HTTPCode_Target_5XX_Count"
    assert target["errors"]["metric"]["dimensions"] == {"LoadBalancer": lb, "TargetGroup": tg}
    for name in ("alb-5xx", "hello-target-5xx"):
        a = alarm(run, name)
        assert a["threshold"] == alarm_spec.ERROR_RATE_PERCENT == 1.0
        assert (a["comparisonOperator"], a["evaluationPeriods"], a["datapointsToAlarm"]) == (
            "GreaterThanThreshold",
            5,
            3,
        )
        # No requests is no data, not an error.
        assert a["treatMissingData"] == "notBreaching"
        assert [q["id"] for q in a["metricQueries"] if q["returnData"]] == ["rate"]
        for q in a["metricQueries"]:
            if "metric" in q:
                assert (q["metric"]["period"], q["metric"]["stat"]) == (60, "Sum")
    unhealthy = alarm(run, "hello-unhealthy-targets")
    assert unhealthy["metricName"] == "UnHealthyHostCount"
    assert unhealthy["dimensions"] == {"LoadBalancer": lb, "TargetGroup": tg}
    assert (unhealthy["statistic"], unhealthy["threshold"]) == ("Maximum", 1)
    assert unhealthy["comparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert (unhealthy["evaluationPeriods"], unhealthy["datapointsToAlarm"]) == (3, 3)


def test_name_running_below_its_minimum_alarms(run: Run, key: str) -> None:
    """Container Insights' RunningTaskCount for name's ECS service, below name.minCount for
    three minutes; no data at all (no task, no Container Insights) breaches too."""
    a = alarm(run, "name-running-tasks")
    cluster = run.one("aws:ecs/cluster:Cluster", "platform").state["name"]
    assert a["namespace"] == "ECS/ContainerInsights"
    assert a["metricName"] == "RunningTaskCount"
    assert a["dimensions"] == {
        "ClusterName": cluster,
        "ServiceName": run.one(ECS_SERVICE, "name").state["name"],
    }
    assert (a["statistic"], a["comparisonOperator"]) == ("Minimum", "LessThanThreshold")
    assert a["threshold"] == settings_for(key).name.min_count
    assert a["treatMissingData"] == "breaching"


def test_discovery_client_alarms_read_hellos_emf_metrics(run: Run, key: str) -> None:
    """The 503 rate and the retry rate come from hello's EMF lines: namespace = the stack
    prefix (the tasks' METRICS_NAMESPACE), dimensions Service=hello and upstream=name.<ns>
    (the host hello calls), one metric per outcome."""
    s = settings_for(key)
    base = {"Service": "hello", "upstream": f"name.{s.namespace}"}
    for name, expression, threshold, datapoints in (
        (
            "hello-upstream-503",
            "100 * FILL(unavailable, 0) / "
            "(FILL(ok, 0) + FILL(bad_gateway, 0) + FILL(unavailable, 0))",
            alarm_spec.UPSTREAM_503_PERCENT,
            3,
        ),
        (
            "hello-upstream-retries",
            "100 * FILL(retries, 0) / (FILL(ok, 0) + FILL(bad_gateway, 0) + FILL(unavailable, 0))",
            alarm_spec.RETRY_RATE_PERCENT,
            5,
        ),
    ):
        a = alarm(run, name)
        q = queries(a)
        assert q["rate"]["expression"] == expression
        assert (a["threshold"], a["evaluationPeriods"], a["datapointsToAlarm"]) == (
            threshold,
            5,
            datapoints,
        )
        for outcome in ("ok", "bad_gateway", "unavailable"):
            metric = q[outcome]["metric"]
            assert metric["namespace"] == prefix_of(key)
            assert metric["metricName"] == "hello_upstream_requests_total"
            assert metric["dimensions"] == {**base, "outcome": outcome}
        assert q["retries"]["metric"]["metricName"] == "hello_upstream_retries_total"
        assert q["retries"]["metric"]["dimensions"] == base
    assert alarm_spec.RETRY_RATE_PERCENT == 10.0
    assert alarm_spec.UPSTREAM_503_PERCENT == 1.0


def test_deployments_roll_back_on_alarm_beside_the_circuit_breaker(run: Run, key: str) -> None:
    """hello's deployment watches its 5xx and unhealthy targets; name's (whose callers are
    hello's tasks, not the load balancer) watches hello's 503s and retries. Each service depends
    on its alarms, so they exist when ECS is told to watch them."""
    prefix = prefix_of(key)
    for app, names in (
        ("hello", ["hello-target-5xx", "hello-unhealthy-targets"]),
        ("name", ["hello-upstream-503", "hello-upstream-retries"]),
    ):
        service = run.one(ECS_SERVICE, app)
        assert service.inputs["alarms"] == {
            "alarmNames": [f"{prefix}-{n}" for n in names],
            "enable": True,
            "rollback": True,
        }
        assert service.inputs["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
        for n in names:
            assert run.one(ALARM, n).urn in service.dependencies, (app, n)


def test_email_subscription_only_when_configured(runs: Runs) -> None:
    for stack in ("dev", "prod"):
        assert not runs[stack].of_type(SUBSCRIPTION), stack
    run = runs["alternatives"]
    (subscription,) = run.of_type(SUBSCRIPTION)
    assert subscription.inputs == {
        "topic": run.one(TOPIC, "alarms").state["arn"],
        "protocol": "email",
        "endpoint": ALARM_EMAIL,
    }


# --- Dashboard ------------------------------------------------------------------------------


def test_dashboard_shows_the_pattern(run: Run, key: str) -> None:
    """Requests and latency at the load balancer, hello's outcomes and retries, the spread
    of calls over name's tasks (Logs Insights on hello's access log), task counts."""
    dashboard = run.one(DASHBOARD, "dashboard")
    assert dashboard.inputs["dashboardName"] == prefix_of(key)
    body = json.loads(dashboard.inputs["dashboardBody"])
    text = json.dumps(body)
    lb = run.one("aws:lb/loadBalancer:LoadBalancer", "entry").state["arnSuffix"]
    assert '"TargetResponseTime", "LoadBalancer", "' + lb in text
    titles = [w["properties"]["title"] for w in body["widgets"]]
    assert len(titles) == 5
    for widget in body["widgets"]:
        assert widget["properties"]["region"] == "us-east-1"
    outcomes = body["widgets"][2]["properties"]["metrics"]
    assert [m[-1] for m in outcomes[:3]] == ["ok", "bad_gateway", "unavailable"]
    assert outcomes[0][:6] == [
        prefix_of(key),
        "hello_upstream_requests_total",
        "Service",
        "hello",
        "upstream",
        f"name.{settings_for(key).namespace}",
    ]
    spread = body["widgets"][3]
    assert spread["type"] == "log"
    hello_logs = run.one("aws:cloudwatch/logGroup:LogGroup", "hello").state["name"]
    assert spread["properties"]["query"].startswith(f"SOURCE '{hello_logs}' |")
    assert "stats count(*) as calls by upstream" in spread["properties"]["query"]
    services = {run.one(ECS_SERVICE, app).state["name"] for app in ("name", "hello")}
    tasks = body["widgets"][4]["properties"]["metrics"]
    assert {m[5] for m in tasks} == services
    assert run.exports["dashboard"] == prefix_of(key)


def test_the_ci_deploy_role_may_manage_what_the_program_names(run: Run, key: str) -> None:
    """Alarms, the alarm topic and the dashboard are scoped by name in the deploy role
    (deploy/github_oidc/identity.py): the program's names must be the ones it grants."""
    from tests.infra.harness import ACCOUNT, REGION  # noqa: PLC0415
    from tests.infra.test_ci_scope import allows  # noqa: PLC0415

    for a in run.of_type(ALARM):
        arn = f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{a.inputs['name']}"
        for action in ("cloudwatch:PutMetricAlarm", "cloudwatch:DeleteAlarms"):
            assert allows(action, arn), (action, arn)
    topic = run.one(TOPIC, "alarms").state["arn"]
    for action in ("sns:CreateTopic", "sns:DeleteTopic", "sns:Subscribe"):
        assert allows(action, topic), (action, topic)
    dashboard = f"arn:aws:cloudwatch::{ACCOUNT}:dashboard/{prefix_of(key)}"
    assert allows("cloudwatch:PutDashboard", dashboard)
    assert not allows("cloudwatch:PutDashboard", f"arn:aws:cloudwatch::{ACCOUNT}:dashboard/other")
