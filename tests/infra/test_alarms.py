"""Alarms and the dashboard (components/alarms.py, running_tasks.py, dashboard.py): on the
program runs under mocks (hello and name, two uses of the components) and on a run of their own
with a set of services this project does not have. The provider findings behind each are in
docs/infrastructure.md ("Autoscaling, alarms, dashboard and Spot"); the timing of the
deployment alarms is in docs/runbook.md ("Deployment alarm timing")."""

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from apps.common import emf
from apps.hello.tuning import Tuning
from components import alarms as spec
from components import running_tasks
from components.alarms import (
    Alarms,
    AlarmsArgs,
    DiscoveryCaller,
    TargetGroupDimensions,
    WatchedService,
)
from components.dashboard import (
    Dashboard,
    DashboardArgs,
    DashboardCaller,
    DashboardService,
    dashboard_body,
)
from components.running_tasks import RunningTasksAlarm, RunningTasksAlarmArgs
from tests.infra.conftest import ALARM_EMAIL, prefix_of, settings_for
from tests.infra.support import PROJECT, ROOT, Run, Runs

ECS_SERVICE = "aws:ecs/service:Service"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
TOPIC = "aws:sns/topic:Topic"
SUBSCRIPTION = "aws:sns/topicSubscription:TopicSubscription"
DASHBOARD = "aws:cloudwatch/dashboard:Dashboard"
RUNBOOK = (ROOT / "docs" / "runbook.md").read_text()
# hello's and name's alarms, by short name: what each deployment watches.
DEPLOYMENT_ALARMS = {
    "hello": ["hello-target-5xx", "hello-unhealthy-targets"],
    "name": ["hello-name-5xx", "hello-name-503", "hello-name-retries"],
}
ALL_ALARMS = {"alb-5xx", "name-task-count", *DEPLOYMENT_ALARMS["hello"], *DEPLOYMENT_ALARMS["name"]}


def alarm(run: Run, name: str) -> dict[str, Any]:
    return run.one(ALARM, name).inputs


def queries(alarm_inputs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {q["id"]: q for q in alarm_inputs["metricQueries"]}


# --- Where alarms go, and when ------------------------------------------------------------


def test_every_alarm_pages_the_topic_on_alarm_and_never_on_ok(run: Run, key: str) -> None:
    """Only ALARM notifies: an OK action would fire on every new alarm's first evaluation
    (INSUFFICIENT_DATA -> OK), messaging the topic's subscribers for each fresh stack and each
    new service (issue 18.4). No insufficient-data action either."""
    topic = run.one(TOPIC, "alarms")
    assert topic.inputs["name"] == f"{prefix_of(key)}-alarms"
    # alias/aws/sns would silently drop every CloudWatch notification (its key policy cannot
    # grant CloudWatch kms:GenerateDataKey*): see the note in components/alarms.py.
    assert topic.inputs.get("kmsMasterKeyId") != "alias/aws/sns"
    found = run.of_type(ALARM)
    assert {a.name for a in found} == ALL_ALARMS
    for a in found:
        assert a.inputs["name"] == f"{prefix_of(key)}-{a.name}"
        assert a.inputs["alarmActions"] == [topic.state["arn"]]
        assert "okActions" not in a.inputs, a.name
        assert "insufficientDataActions" not in a.inputs, a.name
        # Each description ends in its runbook entry, which exists (a heading per alarm).
        assert a.inputs["alarmDescription"].endswith(f" Runbook: docs/runbook.md#{a.name}")
        # terraform-provider-aws (cloudwatch/metric_alarm.go) validates alarm_description with
        # StringLenBetween(0, 1024), PutMetricAlarm's limit: a longer one fails the plan.
        assert len(a.inputs["alarmDescription"]) <= 1024
        assert f"\n### {a.name}\n" in RUNBOOK


def test_running_tasks_alarm_waits_for_container_insights(run: Run, key: str) -> None:
    """Container Insights' RunningTaskCount for name's ECS service below name.minCount for
    three minutes. Missing data keeps the state (`ignore`): a new or replaced service has no
    datapoint until Container Insights publishes, and `breaching` put every fresh stack's
    alarm in ALARM (issue 18.4)."""
    a = alarm(run, "name-task-count")
    cluster = run.one("aws:ecs/cluster:Cluster", "platform").state["name"]
    assert a["namespace"] == "ECS/ContainerInsights"
    assert a["metricName"] == "RunningTaskCount"
    assert a["dimensions"] == {
        "ClusterName": cluster,
        "ServiceName": run.one(ECS_SERVICE, "name").state["name"],
    }
    assert (a["statistic"], a["comparisonOperator"]) == ("Minimum", "LessThanThreshold")
    assert a["threshold"] == settings_for(key).name.min_count
    assert (a["evaluationPeriods"], a["datapointsToAlarm"], a["period"]) == (3, 3, 60)
    assert a["treatMissingData"] == running_tasks.MISSING_DATA == "ignore"
    # Declared once the service exists: its name is a dimension.
    assert run.one(ECS_SERVICE, "name").urn in run.one(ALARM, "name-task-count").dependencies


def test_no_alarm_treats_missing_data_as_breaching(run: Run) -> None:
    """Rates are metric math over counts: a quiet minute is no data, not an error, and no
    alarm can fire before its metric first arrives."""
    for a in run.of_type(ALARM):
        assert a.inputs["treatMissingData"] in ("notBreaching", "ignore"), a.name


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


# --- What each alarm reads ----------------------------------------------------------------


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
        assert a["threshold"] == spec.ERROR_RATE_PERCENT == 1.0
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


def test_caller_alarms_read_hellos_emf_metrics(run: Run, key: str) -> None:
    """What hello sees of name, from hello's EMF lines: namespace = the stack prefix (the
    tasks' METRICS_NAMESPACE), dimensions Service=hello and upstream=name.<ns> (the host hello
    calls), a metric per outcome (503s, retries) and per attempt result (5xx answers)."""
    base = {"Service": "hello", "upstream": f"name.{settings_for(key).namespace}"}
    calls = "(FILL(ok, 0) + FILL(bad_gateway, 0) + FILL(unavailable, 0))"
    for name, expression, threshold, evaluation in (
        (
            "hello-name-503",
            f"100 * FILL(unavailable, 0) / {calls}",
            spec.UPSTREAM_503_PERCENT,
            (5, 3),
        ),
        (
            "hello-name-retries",
            f"100 * FILL(retries, 0) / {calls}",
            spec.RETRY_RATE_PERCENT,
            (5, 5),
        ),
    ):
        a = alarm(run, name)
        q = queries(a)
        assert q["rate"]["expression"] == expression
        assert (a["threshold"], a["evaluationPeriods"], a["datapointsToAlarm"]) == (
            threshold,
            *evaluation,
        )
        for outcome in ("ok", "bad_gateway", "unavailable"):
            metric = q[outcome]["metric"]
            assert metric["namespace"] == prefix_of(key)
            assert metric["metricName"] == "hello_upstream_requests_total"
            assert metric["dimensions"] == {**base, "outcome": outcome}
        assert q["retries"]["metric"]["metricName"] == "hello_upstream_retries_total"
        assert q["retries"]["metric"]["dimensions"] == base
    answers = alarm(run, "hello-name-5xx")
    q = queries(answers)
    # Any 5xx name answers (apps/hello/tuning.py retries every 5xx: the attempt's result is
    # status_5xx), over the attempts that got an answer.
    assert q["rate"]["expression"] == (
        "100 * FILL(status_5xx, 0) / (FILL(ok, 0) + FILL(status_5xx, 0))"
    )
    for result in ("ok", "status_5xx"):
        metric = q[result]["metric"]
        assert (metric["namespace"], metric["metricName"]) == (
            prefix_of(key),
            "hello_upstream_attempts_total",
        )
        assert metric["dimensions"] == {**base, "result": result}
        assert (metric["period"], metric["stat"]) == (60, "Sum")
    assert (answers["threshold"], answers["evaluationPeriods"], answers["datapointsToAlarm"]) == (
        spec.ANSWER_5XX_PERCENT,
        10,
        2,
    )
    assert answers["treatMissingData"] == "notBreaching"


def test_the_alarms_read_what_the_apps_write() -> None:
    """The counters' names and labels the caller alarms query are the ones the discovery client
    and the EMF writer produce (a renamed label would leave an alarm reading nothing)."""
    from aiohttp_discovery.attempt import Failure  # noqa: PLC0415

    assert spec.EMF_SERVICE_DIMENSION == emf.SERVICE_DIMENSION
    assert spec.EMF_INTERVAL_SECONDS == emf.DEFAULT_INTERVAL_SECONDS
    source = (ROOT / "apps/aiohttp-discovery/src/aiohttp_discovery/client.py").read_text()
    for counter in (spec.REQUESTS_COUNTER, spec.RETRIES_COUNTER, spec.ATTEMPTS_COUNTER):
        assert f'f"{{p}}_{counter}"' in source, counter
    assert '("upstream", "result")' in source
    assert '("upstream", "outcome")' in source
    for outcome in spec.OUTCOMES:
        assert f'"{outcome}"' in source, outcome
    attempt = (ROOT / "apps/aiohttp-discovery/src/aiohttp_discovery/attempt.py").read_text()
    assert '"status_5xx" if answer.status >= 500' in attempt
    assert "result" in Failure.__dataclass_fields__
    assert 'metrics_prefix="hello_upstream"' in (ROOT / "apps/hello/app.py").read_text()
    # An attempt is a status_5xx only for a status hello retries: by default every 5xx
    # (RETRY_STATUSES narrows it, and the 5xx alarm with it: docs/runbook.md).
    assert Tuning().retry_statuses == frozenset(range(500, 600))


# --- Deployments ----------------------------------------------------------------------------


def test_deployments_roll_back_on_alarm_beside_the_circuit_breaker(run: Run, key: str) -> None:
    """hello's deployment watches its 5xx and unhealthy targets; name's (whose callers are
    hello's tasks, not the load balancer) watches what hello sees of it: 5xx answers, 503s,
    retries. Each service depends on its alarms, so they exist when ECS is told to watch
    them."""
    prefix = prefix_of(key)
    for app, names in DEPLOYMENT_ALARMS.items():
        service = run.one(ECS_SERVICE, app)
        assert service.inputs["alarms"] == {
            "alarmNames": [f"{prefix}-{n}" for n in names],
            "enable": True,
            "rollback": True,
        }
        assert service.inputs["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
        for n in names:
            assert run.one(ALARM, n).urn in service.dependencies, (app, n)
    outputs = run.outputs[run.one("fargate-service-discovery:alarms:Alarms", "alarms").urn]
    assert outputs["deploymentAlarmNames"] == {
        app: [f"{prefix}-{n}" for n in names] for app, names in DEPLOYMENT_ALARMS.items()
    }


def bake_seconds(run: Run, names: list[str]) -> int:
    """ECS watches a deployment's alarms after the new tasks serve alone for a bake time it
    computes from the alarms' evaluation time, the longest of them (docs/runbook.md)."""
    return max(int(alarm(run, n)["evaluationPeriods"]) * spec.PERIOD_SECONDS for n in names)


def test_a_release_answering_5xx_trips_a_deployment_alarm_within_the_bake_time(run: Run) -> None:
    """Issue 18.1: once name's new tasks serve alone and answer every call with a 5xx, every
    one of hello's attempts is a status_5xx (100% > 5%). The worst case from then to ALARM:
    60 s until an EMF line covers only failed calls, up to 60 s to the next minute, 60 s of
    that minute, 5 s of log batching, 240 s left for CloudWatch Logs to make datapoints, a
    second bad minute (60 s), a minute to the next evaluation = 545 s; the bake time of
    name's deployment alarms is 10 x 60 = 600 s."""
    names = DEPLOYMENT_ALARMS["name"]
    answers = alarm(run, "hello-name-5xx")
    evaluation = (answers["evaluationPeriods"], answers["datapointsToAlarm"])
    bound = spec.detection_seconds(evaluation)
    assert bound == 60 + 60 + 60 + 5 + 240 + 60 + 60 == 545
    assert bound < bake_seconds(run, names) == 600
    # hello's own deployment alarms are faster than the bake time they set, too.
    assert (
        spec.detection_seconds(spec.RATE_EVALUATION)
        < bake_seconds(run, DEPLOYMENT_ALARMS["hello"]) + 10 * spec.PERIOD_SECONDS
    )


def test_the_timing_figures_are_the_documented_ones() -> None:
    """The runbook states the same figures the arithmetic uses."""
    section = RUNBOOK.split("## Deployment alarm timing", 1)[1].split("\n## ", 1)[0]
    for figure in (
        f"{spec.EMF_INTERVAL_SECONDS} s",
        f"{spec.LOG_BATCH_SECONDS} s",
        f"{spec.EXTRACTION_ALLOWANCE_SECONDS} s",
        f"{spec.detection_seconds(spec.ANSWER_5XX_EVALUATION)} s",
        f"{spec.evaluation_seconds(spec.ANSWER_5XX_EVALUATION)} s",
    ):
        assert figure in section, figure


# --- Dashboard -------------------------------------------------------------------------------


def test_dashboard_shows_the_pattern(run: Run, key: str) -> None:
    """hello behind the load balancer (requests, 5xx, response time), hello's calls to name by
    outcome and their spread over name's tasks (Logs Insights on hello's access log), tasks."""
    dashboard = run.one(DASHBOARD, "dashboard")
    assert dashboard.inputs["dashboardName"] == prefix_of(key)
    body = json.loads(dashboard.inputs["dashboardBody"])
    lb = run.one("aws:lb/loadBalancer:LoadBalancer", "entry").state["arnSuffix"]
    tg = run.one("aws:lb/targetGroup:TargetGroup", "entry").state["arnSuffix"]
    titles = [w["properties"]["title"] for w in body["widgets"]]
    assert titles == [
        "Load balancer -> hello: requests and 5xx per minute",
        "Load balancer -> hello: response time (s)",
        "hello -> name: calls by outcome, and retries, per minute",
        "hello -> name: calls per name task (hello's access log)",
        "Tasks: running and desired",
    ]
    for title in titles:  # the runbook refers to the widgets by title
        assert f"**{title}**" in RUNBOOK, title
    assert [(w["x"], w["y"]) for w in body["widgets"]] == [
        (0, 0),
        (12, 0),
        (0, 6),
        (12, 6),
        (0, 12),
    ]
    for widget in body["widgets"]:
        assert widget["properties"]["region"] == "us-east-1"
    latency = body["widgets"][1]["properties"]["metrics"]
    assert latency[0][:6] == [
        "AWS/ApplicationELB",
        "TargetResponseTime",
        "LoadBalancer",
        lb,
        "TargetGroup",
        tg,
    ]
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
    (deploy/github_oidc/): the program's names must be the ones it grants. PutMetricAlarm is
    allowed only with the stack's topic as action (cloudwatch:AlarmActions)."""
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


# --- Any set of services (a run of its own) --------------------------------------------------

TOPIC_ARN = "arn:aws:sns:eu-west-1:123456789012:shop-alarms"


def any_services() -> None:
    """Three services this project does not have: `web` behind a load balancer calls `cart`
    and `stock`; `cart` calls `stock` too. The components know nothing of hello or name."""
    web_tg = TargetGroupDimensions(
        load_balancer_arn_suffix="app/shop/0123456789abcdef",
        target_group_arn_suffix="targetgroup/web/0123456789abcdef",
    )

    def caller(who: str, upstream: str) -> DiscoveryCaller:
        return DiscoveryCaller(service=who, metrics_prefix=f"{who}_calls", upstream=upstream)

    shop = Alarms(
        "shop",
        AlarmsArgs(
            prefix="shop",
            metrics_namespace="shop-metrics",
            services=[
                WatchedService(service="web", load_balancer=web_tg),
                WatchedService(service="cart", callers=[caller("web", "cart.shop.local")]),
                WatchedService(
                    service="stock",
                    callers=[caller("web", "stock.shop.local"), caller("cart", "stock.shop.local")],
                ),
                WatchedService(service="batch"),
            ],
        ),
    )
    RunningTasksAlarm(
        "stock-running",
        RunningTasksAlarmArgs(
            prefix="shop",
            service="stock",
            topic_arn=shop.topic_arn,
            cluster_name="shop",
            service_name="stock-1234567",
            minimum=2,
        ),
    )
    Dashboard(
        "shop-dashboard",
        DashboardArgs(
            name="shop",
            region="eu-west-1",
            cluster_name="shop",
            metrics_namespace="shop-metrics",
            services=[
                DashboardService(service="web", service_name="web-1", load_balancer=web_tg),
                DashboardService(
                    service="stock",
                    service_name="stock-1",
                    callers=[
                        DashboardCaller(**caller("web", "stock.shop.local")),  # type: ignore[typeddict-item]
                        DashboardCaller(
                            **caller("cart", "stock.shop.local"), access_log_group="/ecs/cart"
                        ),
                    ],
                ),
            ],
        ),
    )


@pytest.fixture(scope="module")
def shop() -> Iterator[Run]:
    started = Runs({"shop": ("test", {}, "tests.infra.test_alarms:any_services")})
    try:
        result = started["shop"]
        assert result.error is None, result.error
        yield result
    finally:
        started.close()


def test_alarms_for_any_set_of_services(shop: Run) -> None:
    """Each service gets the alarms of what it has: a load balancer, callers (one set per
    caller, named by both), nothing (no alarm: `batch`); no alb-5xx without its argument."""
    names = {a.name for a in shop.of_type(ALARM)}
    assert names == {
        "web-target-5xx",
        "web-unhealthy-targets",
        *(
            f"{e}-{k}"
            for e in ("web-cart", "web-stock", "cart-stock")
            for k in ("5xx", "503", "retries")
        ),
        "stock-task-count",
    }
    outputs = shop.outputs[shop.one("fargate-service-discovery:alarms:Alarms", "shop").urn]
    assert outputs["deploymentAlarmNames"] == {
        "web": ["shop-web-target-5xx", "shop-web-unhealthy-targets"],
        "cart": ["shop-web-cart-5xx", "shop-web-cart-503", "shop-web-cart-retries"],
        "stock": [
            *(f"shop-web-stock-{k}" for k in ("5xx", "503", "retries")),
            *(f"shop-cart-stock-{k}" for k in ("5xx", "503", "retries")),
        ],
        "batch": [],
    }
    cart_view = queries(shop.one(ALARM, "cart-stock-5xx").inputs)
    assert cart_view["status_5xx"]["metric"] == {
        "namespace": "shop-metrics",
        "metricName": "cart_calls_attempts_total",
        "dimensions": {"Service": "cart", "upstream": "stock.shop.local", "result": "status_5xx"},
        "period": 60,
        "stat": "Sum",
    }
    count = shop.one(ALARM, "stock-task-count").inputs
    assert (count["name"], count["threshold"], count["alarmActions"]) == (
        "shop-stock-task-count",
        2,
        [shop.one(TOPIC, "shop").state["arn"]],
    )
    for a in shop.of_type(ALARM):
        assert a.parent in {r.urn for r in shop.resources if r.type.startswith(PROJECT)}


def test_dashboard_for_any_set_of_services(shop: Run) -> None:
    body = json.loads(shop.one(DASHBOARD, "shop-dashboard").inputs["dashboardBody"])
    placed = [(w["properties"]["title"], w["x"], w["y"]) for w in body["widgets"]]
    assert placed == [
        ("Load balancer -> web: requests and 5xx per minute", 0, 0),
        ("Load balancer -> web: response time (s)", 12, 0),
        ("web -> stock: calls by outcome, and retries, per minute", 0, 6),
        # web's access log is not given: no spread widget; cart's row starts a new row.
        ("cart -> stock: calls by outcome, and retries, per minute", 0, 12),
        ("cart -> stock: calls per stock task (cart's access log)", 12, 12),
        ("Tasks: running and desired", 0, 18),
    ]
    tasks = body["widgets"][-1]["properties"]["metrics"]
    assert [m[-1]["label"] for m in tasks] == [
        "web running",
        "web desired",
        "stock running",
        "stock desired",
    ]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"prefix": "bad prefix"}, "AlarmsArgs.prefix='bad prefix'"),
        (
            {"services": [WatchedService(service="Web")]},
            "AlarmsArgs.services[0].service='Web': expected lowercase",
        ),
        (
            {"services": [WatchedService(service="a"), WatchedService(service="a")]},
            "AlarmsArgs.services[1].service='a': each service may be listed once",
        ),
        (
            {
                "metrics_namespace": "",
                "services": [
                    WatchedService(
                        service="a",
                        callers=[DiscoveryCaller(service="b", metrics_prefix="b", upstream="a.x")],
                    )
                ],
            },
            "AlarmsArgs.metrics_namespace",
        ),
        (
            {
                "services": [
                    WatchedService(
                        service="a",
                        callers=[
                            DiscoveryCaller(service="b", metrics_prefix="b", upstream="a.x"),
                            DiscoveryCaller(service="b", metrics_prefix="c", upstream="a.x"),
                        ],
                    )
                ]
            },
            "callers[].service='b'",
        ),
        ({"prefix": "p" * 250}, "exceed CloudWatch's 255 characters"),
    ],
)
def test_alarms_args_are_checked_with_one_clear_error(change: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {
        "prefix": "shop",
        "metrics_namespace": "shop",
        "services": [
            WatchedService(
                service="web",
                load_balancer=TargetGroupDimensions(
                    load_balancer_arn_suffix="app/x/1", target_group_arn_suffix="targetgroup/x/1"
                ),
            )
        ],
        **change,
    }
    with pytest.raises(
        ValueError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")
    ):
        spec.validate(AlarmsArgs(**args))  # type: ignore[typeddict-item]


def test_dashboard_args_are_checked() -> None:
    with pytest.raises(ValueError, match=re.escape("DashboardArgs.name='a b'")):
        dashboard_body_checked(DashboardArgs(name="a b", region="r", cluster_name="c", services=[]))
    with pytest.raises(ValueError, match=re.escape("DashboardArgs.metrics_namespace")):
        dashboard_body_checked(
            DashboardArgs(
                name="ok",
                region="r",
                cluster_name="c",
                services=[
                    DashboardService(
                        service="s",
                        service_name="s-1",
                        callers=[DashboardCaller(service="t", metrics_prefix="t", upstream="s.x")],
                    )
                ],
            )
        )


def dashboard_body_checked(args: DashboardArgs) -> dict[str, Any]:
    from components.dashboard import validate  # noqa: PLC0415

    validate(args)
    return dashboard_body(args)


def test_components_need_only_literal_args_through_the_package() -> None:
    """Through the component package, args arrive as dicts with numbers as floats (Pulumi's
    ComponentProvider): the analyzer infers a schema for each, and RunningTasksAlarm's minimum
    is read with int()."""
    from pulumi.provider.experimental.component import ComponentProvider  # noqa: PLC0415

    provider = ComponentProvider([Alarms, Dashboard, RunningTasksAlarm], PROJECT, version="0.0.0")
    schema = json.loads(provider.schema or "{}")
    alarms = schema["resources"][f"{PROJECT}:index:Alarms"]
    assert alarms["requiredInputs"] == ["prefix", "services"]
    assert set(alarms["properties"]) == {"topicArn", "alarmNames", "deploymentAlarmNames"}
    mapped = provider.map_inputs(
        {
            "prefix": "p",
            "service": "s",
            "topicArn": TOPIC_ARN,
            "clusterName": "c",
            "serviceName": "s-1",
            "minimum": 2.0,
        },
        provider._component_defs["RunningTasksAlarm"],
    )
    assert mapped["minimum"] == 2.0
    assert mapped["topic_arn"] == TOPIC_ARN
