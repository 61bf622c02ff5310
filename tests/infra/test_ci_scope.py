"""The names and tags the Fargate program gives its resources are the ones the CI deploy role
(deploy/github_oidc/permissions.py) is scoped to: checked on the program's own runs under mocks.

A mismatch here is an AccessDenied on the first real `pulumi up` with the deploy role (or, in
the other direction, a grant wider than the stack needs).
"""

from __future__ import annotations

import fnmatch
import json
import re
from typing import Any

import pytest
import yaml

import stack as stack_settings
from deploy.github_oidc.names import DEFAULT_ATTACHABLE_POLICIES, PROJECT, ROLE_PATH, stack_prefix
from deploy.github_oidc.permissions import deploy_policy
from deploy.github_oidc.validation import PublicDomain
from tests.infra.conftest import SPECS
from tests.infra.harness import ACCOUNT, REGION
from tests.infra.support import ROOT, Run, Runs

# ECR's repository name pattern (CreateRepository API reference) and length limit.
ECR_NAME = re.compile(r"^(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*$")
ECR_NAME_MAX = 256
POLICY = deploy_policy(
    "aws",
    ACCOUNT,
    DEFAULT_ATTACHABLE_POLICIES,
    [f"arn:aws:iam::{ACCOUNT}:role/github-deploy"],
)


def allows(action: str, resource: str, policy: dict[str, Any] = POLICY) -> bool:
    """Whether an Allow statement names this action on this resource (conditions aside: the
    tag conditions are the defaultTags check's business) and no Deny does."""

    def matches(statement: dict[str, Any]) -> bool:
        actions = statement["Action"]
        resources = statement["Resource"]
        actions = [actions] if isinstance(actions, str) else actions
        resources = [resources] if isinstance(resources, str) else resources
        return any(fnmatch.fnmatchcase(action, a) for a in actions) and any(
            fnmatch.fnmatchcase(resource, r) for r in resources
        )

    statements = policy["Statement"]
    return any(s["Effect"] == "Allow" and matches(s) for s in statements) and not any(
        s["Effect"] == "Deny" and matches(s) for s in statements
    )


@pytest.fixture(params=["dev", "prod", "alternatives", "e2e"])
def scoped(request: pytest.FixtureRequest, runs: Runs) -> tuple[str, Run]:
    key = str(request.param)
    result = runs[key]
    assert result.error is None, result.error
    return SPECS[key][0], result


def test_roles_live_under_the_path_the_deploy_role_manages(scoped: tuple[str, Run]) -> None:
    """CreateRole and PassRole are granted under ROLE_PATH only; a role elsewhere could not be
    created or handed to a task by CI."""
    _, run = scoped
    roles = run.of_type("aws:iam/role:Role")
    assert roles
    for role in roles:
        assert role.inputs["path"] == ROLE_PATH
        for action in ("iam:CreateRole", "iam:DeleteRole", "iam:PassRole"):
            assert allows(action, role.state["arn"]), (action, role.state["arn"])
    for attachment in run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment"):
        policy = attachment.inputs["policyArn"].removeprefix("arn:aws:iam::aws:policy/")
        assert policy in DEFAULT_ATTACHABLE_POLICIES


def test_repositories_have_the_names_the_deploy_role_writes(scoped: tuple[str, Run]) -> None:
    """ECR writes (create, push, delete) are granted on fargate-service-discovery-<stack>/*
    only: the repositories must have exactly those names, valid for ECR."""
    stack, run = scoped
    repositories = run.of_type("aws:ecr/repository:Repository")
    assert {r.name for r in repositories} == {"name", "hello"}
    for repository in repositories:
        name = repository.inputs["name"]
        assert name == f"{stack_prefix(stack)}/{repository.name}".lower()
        assert ECR_NAME.match(name)
        assert len(name) <= ECR_NAME_MAX
        arn = f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/{name}"
        for action in ("ecr:CreateRepository", "ecr:PutImage", "ecr:DeleteRepository"):
            assert allows(action, arn), (action, arn)
        # Another stack's repository is out of reach.
        assert not allows("ecr:PutImage", arn.replace(f"-{stack}/", "-qa/"))


def test_ecs_names_are_the_stacks_cluster_services_and_families(scoped: tuple[str, Run]) -> None:
    """ECS writes are granted on cluster/<prefix>, service/<prefix>/* and
    task-definition/<prefix>-*; never on another cluster."""
    stack, run = scoped
    (cluster,) = run.of_type("aws:ecs/cluster:Cluster")
    name = cluster.inputs["name"]
    assert name == stack_prefix(stack)
    cluster_arn = f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{name}"
    assert allows("ecs:CreateCluster", cluster_arn)
    assert allows("ecs:DeleteCluster", cluster_arn)
    assert not allows("ecs:DeleteCluster", f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/other")
    for service in run.of_type("aws:ecs/service:Service"):
        arn = f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/{name}/{service.state['name']}"
        for action in ("ecs:CreateService", "ecs:UpdateService", "ecs:DeleteService"):
            assert allows(action, arn), (action, arn)
    for task in run.of_type("aws:ecs/taskDefinition:TaskDefinition"):
        assert task.inputs["family"].startswith(f"{name}-")
        assert allows("ecs:TagResource", task.state["arn"])


def test_log_groups_are_under_the_stacks_prefix(scoped: tuple[str, Run]) -> None:
    stack, run = scoped
    groups = run.of_type("aws:cloudwatch/logGroup:LogGroup")
    assert groups
    for group in groups:
        name = group.inputs["name"]
        for arn in (
            f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{name}",
            f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{name}:*",
        ):
            assert allows("logs:CreateLogGroup", arn), arn
            assert allows("logs:DeleteLogGroup", arn), arn
        assert name.startswith(f"/ecs/{stack_prefix(stack)}/")


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_each_stack_file_tags_every_resource_with_project_and_stack(stack: str) -> None:
    """EC2, load balancer, Cloud Map and ACM writes are granted only on resources tagged
    Project=fargate-service-discovery and Stack=<stack>; aws:defaultTags puts those tags on
    every taggable resource, so stack/rules.py refuses a stack file without them."""
    values = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
    tags = values["aws:defaultTags"]
    assert tags == {"tags": {"Project": PROJECT, "Stack": stack}}
    assert stack_settings.default_tag_problems(json.dumps(tags), PROJECT, stack) == []
    assert stack_settings.default_tag_problems(json.dumps(tags), PROJECT, "qa") != []


@pytest.mark.parametrize(
    "value",
    [None, "", "not json", "[]", '{"tags": {"Project": "fargate-service-discovery"}}'],
    ids=["unset", "empty", "not-json", "not-object", "no-stack"],
)
def test_default_tags_without_project_and_stack_are_refused(value: str | None) -> None:
    (problem,) = stack_settings.default_tag_problems(value, PROJECT, "dev")
    assert problem.startswith("aws:defaultTags: must be {tags: {Project: ")


def test_a_stack_tagged_as_another_stops_before_any_resource(runs: Runs) -> None:
    """The `invalid` run is tagged Stack=prod on stack dev: refused with the other problems,
    before any resource or lookup."""
    run = runs["invalid"]
    assert run.error is not None
    assert "aws:defaultTags: must be {tags: {Project: fargate-service-discovery, Stack: dev}}" in (
        run.error
    )
    assert run.resources == []


def test_lifecycle_policy_is_deleted_before_it_is_replaced(scoped: tuple[str, Run]) -> None:
    """aws.ecr.LifecyclePolicy has no update: every change (a new UNTAGGED_IMAGES_KEPT, a
    renamed repository) replaces it, and its id is the repository's name. Created before the
    old one is deleted, the new policy is PutLifecyclePolicy'd over the old, then the old's
    DeleteLifecyclePolicy removes it: the repository would be left with none
    (internal/service/ecr/lifecycle_policy.go)."""
    _, run = scoped
    policies = run.of_type("aws:ecr/lifecyclePolicy:LifecyclePolicy")
    assert len(policies) == 2
    assert all(p.delete_before_replace for p in policies)
    # The repositories themselves keep Pulumi's create-before-delete: their names differ per
    # stack and app and never change within a stack, so no replacement reuses a name.
    assert not any(r.delete_before_replace for r in run.of_type("aws:ecr/repository:Repository"))


def load_settings() -> None:
    """A program that only loads the settings (run by the harness in its own process)."""
    stack_settings.load()


def test_wrong_default_tags_alone_stop_the_program(runs: Runs) -> None:
    """A stack file that is valid but for its tags is refused too, with that one problem."""
    run = runs["untagged"]
    assert run.error is not None
    assert "(1 problem(s))" in run.error
    assert "aws:defaultTags: must be {tags: {Project: fargate-service-discovery, Stack: dev}}" in (
        run.error
    )


# --- every call the program's resources need, against the deploy role's policy ---------------
#
# For each resource type the program declares: the calls terraform-provider-aws (or awsx's
# image build) makes to create, read, update and delete it, each with the resources the
# Service Authorization Reference says the action authorizes, and whether that resource is
# being created (no tags yet: only aws:RequestTag can scope it) or already the stack's (its
# tags are aws:ResourceTag). A resource type the table does not know fails the test: the
# policy must be reviewed for it (docs/delivery.md, the permission table).

NEW, OWNED, FOREIGN = "new", "owned", "foreign"  # foreign: an existing VPC, no stack tags
# (action, resource or "*", state, carries the stack's tags in the request, extra context)
Call = tuple[str, str, str, bool, dict[str, Any]]


def _calls(stack: str) -> dict[str, list[Call]]:
    prefix = stack_prefix(stack)

    def a(service: str, resource: str) -> str:
        return f"arn:aws:{service}:{REGION}:{ACCOUNT}:{resource}"

    lb = a("elasticloadbalancing", "loadbalancer/app/entry-0a1b2c3/50dc6c495c0c9188")
    tg = a("elasticloadbalancing", "targetgroup/hello-0a1b2c3/73e2d6bc24d8a067")
    listener = a("elasticloadbalancing", "listener/app/entry-0a1b2c3/50dc6c495c0c9188/f2f7d")
    rule = a("elasticloadbalancing", "listener-rule/app/entry-0a1b2c3/50dc6c495c0c9188/f2/9a")
    vpc, subnet, rt = (
        a("ec2", "vpc/vpc-1"),
        a("ec2", "subnet/subnet-1"),
        a("ec2", "route-table/rtb-1"),
    )
    igw, eip, nat = (
        a("ec2", "internet-gateway/igw-1"),
        a("ec2", "elastic-ip/eipalloc-1"),
        a("ec2", "natgateway/nat-1"),
    )
    sg, sgr = a("ec2", "security-group/sg-1"), a("ec2", "security-group-rule/sgr-1")
    cluster = a("ecs", f"cluster/{prefix}")
    ecs_service = a("ecs", f"service/{prefix}/name-0a1b2c3")
    ecs_deployment = a("ecs", f"service-deployment/{prefix}/name-0a1b2c3/Qf2a9d")
    task = a("ecs", f"task-definition/{prefix}-name:3")
    namespace, cm_service = (
        a("servicediscovery", "namespace/ns-1"),
        a("servicediscovery", "service/srv-1"),
    )
    log_group = a("logs", f"log-group:/ecs/{prefix}/name")
    repository = a("ecr", f"repository/{prefix}/name")
    role = f"arn:aws:iam::{ACCOUNT}:role{ROLE_PATH}platform-task-execution-0a1b2c3"
    certificate = a("acm", "certificate/0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b")
    # Issue 10: scalable targets (ids AWS assigns), alarms, the dashboard (global) and the topic.
    target = a("application-autoscaling", "scalable-target/0ec1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7")
    alarm = a("cloudwatch", f"alarm:{prefix}-hello-target-5xx")
    tracking_alarm = a(
        "cloudwatch", f"alarm:TargetTracking-service/{prefix}/name-0a1b2c3-AlarmHigh-4f6e"
    )
    dashboard = f"arn:aws:cloudwatch::{ACCOUNT}:dashboard/{prefix}"
    topic = a("sns", f"{prefix}-alarms")
    autoscaling_role = (
        f"arn:aws:iam::{ACCOUNT}:role/aws-service-role/ecs.application-autoscaling.amazonaws.com/"
        "AWSServiceRoleForApplicationAutoScaling_ECSService"
    )

    def tag_on_create(service: str, key: str, arn: str, create: str) -> Call:
        return (
            f"{service}:{'AddTags' if service == 'elasticloadbalancing' else 'CreateTags'}",
            arn,
            NEW,
            True,
            {key: create},
        )

    ec2_create = lambda action, arn, *parents: [  # noqa: E731
        (f"ec2:{action}", arn, NEW, True, {}),
        *((f"ec2:{action}", p, OWNED, True, {}) for p in parents),
        tag_on_create("ec2", "ec2:CreateAction", arn, action),
    ]
    elb_create = lambda action, arn, *parents: [  # noqa: E731
        (f"elasticloadbalancing:{action}", arn, NEW, True, {}),
        *((f"elasticloadbalancing:{action}", p, OWNED, True, {}) for p in parents),
        tag_on_create("elasticloadbalancing", "elasticloadbalancing:CreateAction", arn, action),
    ]
    owned = lambda actions, *arns: [  # noqa: E731
        (action, arn, OWNED, False, {}) for action in actions.split() for arn in arns
    ]
    anywhere = lambda actions: [(action, "*", NEW, False, {}) for action in actions.split()]  # noqa: E731
    rule_calls = lambda verb: [  # noqa: E731
        (f"ec2:{verb}", sg, OWNED, verb.startswith("Authorize"), {}),
        (
            f"ec2:{verb}",
            sgr,
            NEW if verb.startswith("Authorize") else OWNED,
            verb.startswith("Authorize"),
            {},
        ),
    ]
    return {
        "awsx:ec2:Vpc": [
            *ec2_create("CreateVpc", vpc),
            *ec2_create("CreateSubnet", subnet, vpc),
            *ec2_create("CreateRouteTable", rt, vpc),
            *ec2_create("CreateInternetGateway", igw),
            *ec2_create("AllocateAddress", eip),
            *ec2_create("CreateNatGateway", nat, subnet, eip),
            *owned("ec2:ModifyVpcAttribute ec2:DeleteVpc", vpc),
            *owned("ec2:ModifySubnetAttribute ec2:DeleteSubnet", subnet),
            *owned("ec2:AssociateRouteTable", rt, subnet),
            *owned("ec2:CreateRoute ec2:DeleteRoute ec2:DisassociateRouteTable", rt),
            *owned("ec2:DeleteRouteTable", rt),
            *owned("ec2:AttachInternetGateway ec2:DetachInternetGateway", igw, vpc),
            *owned("ec2:DeleteInternetGateway", igw),
            *owned("ec2:DeleteNatGateway", nat),
            *owned("ec2:ReleaseAddress ec2:DisassociateAddress", eip),
            *anywhere("ec2:DescribeVpcs ec2:DescribeSubnets ec2:DescribeNatGateways"),
        ],
        "aws:ec2/securityGroup:SecurityGroup": [
            *ec2_create("CreateSecurityGroup", sg),
            ("ec2:CreateSecurityGroup", vpc, FOREIGN, True, {}),
            # The provider revokes AWS's default allow-all egress rule (untagged) at create.
            ("ec2:RevokeSecurityGroupEgress", sg, OWNED, False, {}),
            ("ec2:RevokeSecurityGroupEgress", sgr, FOREIGN, False, {}),
            *owned("ec2:DeleteSecurityGroup", sg),
            *anywhere("ec2:DescribeSecurityGroups ec2:DescribeSecurityGroupRules"),
        ],
        "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": [
            *rule_calls("AuthorizeSecurityGroupIngress"),
            tag_on_create("ec2", "ec2:CreateAction", sgr, "AuthorizeSecurityGroupIngress"),
            *rule_calls("ModifySecurityGroupRules"),
            *rule_calls("RevokeSecurityGroupIngress"),
        ],
        "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule": [
            *rule_calls("AuthorizeSecurityGroupEgress"),
            tag_on_create("ec2", "ec2:CreateAction", sgr, "AuthorizeSecurityGroupEgress"),
            *rule_calls("RevokeSecurityGroupEgress"),
        ],
        "aws:lb/loadBalancer:LoadBalancer": [
            *elb_create("CreateLoadBalancer", lb),
            *owned(
                "elasticloadbalancing:ModifyLoadBalancerAttributes "
                "elasticloadbalancing:SetSecurityGroups elasticloadbalancing:DeleteLoadBalancer",
                lb,
            ),
            *anywhere(
                "elasticloadbalancing:DescribeLoadBalancers elasticloadbalancing:DescribeTags"
            ),
        ],
        "aws:lb/targetGroup:TargetGroup": [
            *elb_create("CreateTargetGroup", tg),
            *owned(
                "elasticloadbalancing:ModifyTargetGroupAttributes "
                "elasticloadbalancing:ModifyTargetGroup elasticloadbalancing:DeleteTargetGroup",
                tg,
            ),
        ],
        # A listener is created in the stack's load balancer, a rule in its listener.
        "aws:lb/listener:Listener": [
            *elb_create("CreateListener", listener, lb),
            *owned(
                "elasticloadbalancing:ModifyListener elasticloadbalancing:DeleteListener", listener
            ),
        ],
        "aws:lb/listenerRule:ListenerRule": [
            *elb_create("CreateRule", rule, listener),
            *owned(
                "elasticloadbalancing:ModifyRule elasticloadbalancing:SetRulePriorities "
                "elasticloadbalancing:DeleteRule",
                rule,
            ),
        ],
        "aws:ecs/cluster:Cluster": [
            ("ecs:CreateCluster", cluster, NEW, True, {}),
            ("ecs:TagResource", cluster, NEW, True, {"ecs:CreateAction": "CreateCluster"}),
            *owned("ecs:DescribeClusters ecs:UpdateCluster ecs:DeleteCluster", cluster),
        ],
        "aws:ecs/taskDefinition:TaskDefinition": [
            ("ecs:RegisterTaskDefinition", "*", NEW, True, {}),
            ("ecs:TagResource", task, NEW, True, {"ecs:CreateAction": "RegisterTaskDefinition"}),
            (
                "iam:PassRole",
                role,
                OWNED,
                False,
                {"iam:PassedToService": "ecs-tasks.amazonaws.com"},
            ),
            *anywhere("ecs:DescribeTaskDefinition ecs:DeregisterTaskDefinition"),
        ],
        "aws:ecs/clusterCapacityProviders:ClusterCapacityProviders": owned(
            "ecs:PutClusterCapacityProviders ecs:DescribeClusters", cluster
        ),
        "aws:appautoscaling/target:Target": [
            ("application-autoscaling:RegisterScalableTarget", target, NEW, True, {}),
            *anywhere("application-autoscaling:DescribeScalableTargets"),
            *owned(
                "application-autoscaling:RegisterScalableTarget "
                "application-autoscaling:ListTagsForResource "
                "application-autoscaling:DeregisterScalableTarget",
                target,
            ),
            # Registering an ECS service reads it and sets its desired count into the range.
            *owned("ecs:DescribeServices ecs:UpdateService", ecs_service),
            (
                "iam:CreateServiceLinkedRole",
                autoscaling_role,
                NEW,
                False,
                {"iam:AWSServiceName": "ecs.application-autoscaling.amazonaws.com"},
            ),
        ],
        "aws:appautoscaling/policy:Policy": [
            *owned(
                "application-autoscaling:PutScalingPolicy "
                "application-autoscaling:DeleteScalingPolicy",
                target,
            ),
            *anywhere("application-autoscaling:DescribeScalingPolicies"),
            ("cloudwatch:PutMetricAlarm", tracking_alarm, NEW, False, {}),
            ("cloudwatch:DeleteAlarms", tracking_alarm, OWNED, False, {}),
        ],
        "aws:cloudwatch/metricAlarm:MetricAlarm": [
            # Alarm and OK actions: the stack's topic only (cloudwatch:AlarmActions).
            ("cloudwatch:PutMetricAlarm", alarm, NEW, True, {"cloudwatch:AlarmActions": [topic]}),
            *anywhere("cloudwatch:DescribeAlarms"),
            *owned(
                "cloudwatch:ListTagsForResource cloudwatch:TagResource cloudwatch:DeleteAlarms",
                alarm,
            ),
        ],
        "aws:cloudwatch/dashboard:Dashboard": [
            ("cloudwatch:PutDashboard", dashboard, NEW, False, {}),
            *owned("cloudwatch:GetDashboard cloudwatch:DeleteDashboards", dashboard),
        ],
        "aws:sns/topic:Topic": [
            ("sns:CreateTopic", topic, NEW, True, {}),
            ("sns:TagResource", topic, NEW, True, {}),
            *owned(
                "sns:GetTopicAttributes sns:SetTopicAttributes sns:ListTagsForResource "
                "sns:DeleteTopic",
                topic,
            ),
        ],
        "aws:sns/topicSubscription:TopicSubscription": [
            ("sns:Subscribe", topic, OWNED, False, {"sns:Protocol": "email"}),
            *anywhere("sns:GetSubscriptionAttributes sns:Unsubscribe"),
        ],
        "aws:ecs/service:Service": [
            ("ecs:CreateService", ecs_service, NEW, True, {"ecs:cluster": cluster}),
            ("ecs:TagResource", ecs_service, NEW, True, {"ecs:CreateAction": "CreateService"}),
            *owned("ecs:UpdateService ecs:DescribeServices ecs:DeleteService", ecs_service),
            # wait_for_steady_state in newer provider releases follows the deployment.
            *owned("ecs:ListServiceDeployments", ecs_service),
            *owned("ecs:DescribeServiceDeployments", ecs_deployment),
        ],
        "aws:servicediscovery/privateDnsNamespace:PrivateDnsNamespace": [
            ("servicediscovery:CreatePrivateDnsNamespace", "*", NEW, True, {}),
            # Cloud Map authorizes the tags of a create as TagResource.
            ("servicediscovery:TagResource", namespace, NEW, True, {}),
            *anywhere(
                "route53:CreateHostedZone route53:GetHostedZone route53:ListHostedZonesByName "
                "ec2:DescribeVpcs ec2:DescribeRegions servicediscovery:GetOperation "
                "servicediscovery:GetNamespace"
            ),
            *owned("servicediscovery:DeleteNamespace", namespace),
        ],
        "aws:servicediscovery/service:Service": [
            ("servicediscovery:CreateService", namespace, OWNED, True, {}),
            ("servicediscovery:CreateService", cm_service, NEW, True, {}),
            ("servicediscovery:TagResource", cm_service, NEW, True, {}),
            # force_destroy, and delete_before_replace on a replacement: instances first.
            *anywhere("servicediscovery:GetService servicediscovery:ListInstances"),
            *owned(
                "servicediscovery:UpdateService servicediscovery:DeregisterInstance "
                "servicediscovery:DeleteService",
                cm_service,
            ),
        ],
        "aws:cloudwatch/logGroup:LogGroup": [
            ("logs:CreateLogGroup", log_group, NEW, True, {}),
            ("logs:TagResource", log_group, NEW, True, {}),
            *owned(
                "logs:PutRetentionPolicy logs:ListTagsForResource logs:DeleteLogGroup", log_group
            ),
            *anywhere("logs:DescribeLogGroups"),
        ],
        "aws:ecr/repository:Repository": [
            ("ecr:CreateRepository", repository, NEW, True, {}),
            ("ecr:TagResource", repository, NEW, True, {}),
            *owned(
                "ecr:DescribeRepositories ecr:ListTagsForResource "
                "ecr:PutImageScanningConfiguration ecr:DeleteRepository",
                repository,
            ),
        ],
        "aws:ecr/lifecyclePolicy:LifecyclePolicy": owned(
            "ecr:PutLifecyclePolicy ecr:GetLifecyclePolicy ecr:DeleteLifecyclePolicy", repository
        ),
        "awsx:ecr:Image": [
            *anywhere("ecr:GetAuthorizationToken"),
            *owned(
                "ecr:BatchCheckLayerAvailability ecr:InitiateLayerUpload ecr:UploadLayerPart "
                "ecr:CompleteLayerUpload ecr:PutImage ecr:BatchGetImage "
                "ecr:GetDownloadUrlForLayer ecr:DescribeImages",
                repository,
            ),
        ],
        "aws:iam/role:Role": [
            ("iam:CreateRole", role, NEW, True, {}),
            ("iam:TagRole", role, NEW, True, {}),
            *owned(
                "iam:GetRole iam:ListRolePolicies iam:ListAttachedRolePolicies "
                "iam:ListInstanceProfilesForRole iam:UpdateAssumeRolePolicy iam:DeleteRole",
                role,
            ),
        ],
        "aws:iam/rolePolicyAttachment:RolePolicyAttachment": [
            (action, role, OWNED, False, {"iam:PolicyARN": f"arn:aws:iam::aws:policy/{p}"})
            for action in ("iam:AttachRolePolicy", "iam:DetachRolePolicy")
            for p in DEFAULT_ATTACHABLE_POLICIES
        ],
        "aws:acm/certificate:Certificate": [
            ("acm:RequestCertificate", "*", NEW, True, {}),
            ("acm:AddTagsToCertificate", certificate, NEW, True, {}),
            *owned(
                "acm:DescribeCertificate acm:ListTagsForCertificate acm:DeleteCertificate",
                certificate,
            ),
        ],
        "aws:acm/certificateValidation:CertificateValidation": owned(
            "acm:DescribeCertificate", certificate
        ),
        # Record changes: per record, from the run (record_calls below).
        "aws:route53/record:Record": [
            *anywhere("route53:GetHostedZone"),
            ("route53:GetChange", "arn:aws:route53:::change/C0123", OWNED, False, {}),
        ],
    }


def record_calls(run: Run) -> list[Call]:
    """ChangeResourceRecordSets for each record of the run: create, then delete."""
    calls: list[Call] = []
    for record in run.of_type("aws:route53/record:Record"):
        zone = f"arn:aws:route53:::hostedzone/{record.inputs['zoneId']}"
        calls.append(("route53:ListResourceRecordSets", zone, OWNED, False, {}))
        for change in ("UPSERT" if record.inputs.get("allowOverwrite") else "CREATE", "DELETE"):
            keys = {
                "route53:ChangeResourceRecordSetsNormalizedRecordNames": [record.inputs["name"]],
                "route53:ChangeResourceRecordSetsRecordTypes": [record.inputs["type"]],
                "route53:ChangeResourceRecordSetsActions": [change],
            }
            calls.append(("route53:ChangeResourceRecordSets", zone, OWNED, False, keys))
    return calls


def _values(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _holds(operator: str, key: str, expected: Any, context: dict[str, Any]) -> bool:
    """One condition key of one operator, as IAM evaluates it (the operators the policy uses)."""
    qualifier, _, op = operator.rpartition(":")
    wanted = _values(expected)
    if op == "Null":
        return (wanted == ["true"]) != (key in context)
    if key not in context:
        return qualifier == "ForAllValues"
    compare = {
        "StringEquals": str.__eq__,
        "StringLike": fnmatch.fnmatchcase,
        "ArnEquals": str.__eq__,
        "ArnLike": fnmatch.fnmatchcase,
        "StringNotEquals": lambda value, pattern: value != pattern,
    }[op]

    def ok(value: str) -> bool:
        if op == "StringNotEquals":
            return all(compare(value, w) for w in wanted)
        return any(compare(value, w) for w in wanted)

    values = _values(context[key])
    return all(map(ok, values)) if qualifier == "ForAllValues" else any(map(ok, values))


def permitted(policy: dict[str, Any], action: str, resource: str, context: dict[str, Any]) -> bool:
    """Whether an Allow statement grants action on resource with these condition values, and
    no Deny covers it."""

    def covers(statement: dict[str, Any]) -> bool:
        return any(
            fnmatch.fnmatchcase(action.lower(), a.lower()) for a in _values(statement["Action"])
        ) and any(fnmatch.fnmatchcase(resource, r) for r in _values(statement["Resource"]))

    def conditions_hold(statement: dict[str, Any]) -> bool:
        return all(
            _holds(operator, key, expected, context)
            for operator, keys in statement.get("Condition", {}).items()
            for key, expected in keys.items()
        )

    statements = policy["Statement"]
    return any(
        s["Effect"] == "Allow" and covers(s) and conditions_hold(s) for s in statements
    ) and not any(s["Effect"] == "Deny" and covers(s) for s in statements)


def context_of(stack: str, call: Call) -> dict[str, Any]:
    _, _, state, tagged, extra = call
    context: dict[str, Any] = dict(extra)
    tags = {"Project": PROJECT, "Stack": stack}
    if tagged:
        context.update({f"aws:RequestTag/{k}": v for k, v in tags.items()})
        context["aws:TagKeys"] = list(tags)
    if state == OWNED:
        context.update({f"aws:ResourceTag/{k}": v for k, v in tags.items()})
    return context


def test_every_resource_type_of_the_program_has_its_calls_checked(scoped: tuple[str, Run]) -> None:
    """A resource type added to the program without its calls in this table fails here: the
    deploy role's policy has to be reviewed for it (or the first real `pulumi up` with the
    role ends in AccessDenied)."""
    stack, run = scoped
    declared = {r.type for r in run.resources if not r.type.startswith(f"{PROJECT}:")}
    assert declared <= set(_calls(stack)), sorted(declared - set(_calls(stack)))


def test_the_deploy_role_may_make_every_call_the_programs_resources_need(
    scoped: tuple[str, Run],
) -> None:
    """Each call, with the resources it authorizes and the condition values it carries: a new
    resource has no tags yet (so the stack's tags can only be asked of the request), an
    existing one of the stack carries them. E.g. CreateListener authorizes the new listener
    (request tags) and its load balancer (resource tags); Cloud Map checks the tags of a
    create as servicediscovery:TagResource; the zone lookup by name lists every zone."""
    stack, run = scoped
    domains = [
        PublicDomain(r.inputs["name"], r.inputs["zoneId"])
        for r in run.of_type("aws:route53/record:Record")
        if r.inputs["type"] == "A"
    ]
    policy = deploy_policy(
        "aws",
        ACCOUNT,
        DEFAULT_ATTACHABLE_POLICIES,
        [f"arn:aws:iam::{ACCOUNT}:role/github-deploy"],
        public_domains=domains,
    )
    table = _calls(stack)
    calls = [c for r in {r.type for r in run.resources} for c in table.get(r, [])]
    calls += record_calls(run)
    if "aws:route53/getZone:getZone" in run.invokes:
        zones = [f"arn:aws:route53:::hostedzone/{d.hosted_zone_id}" for d in domains]
        calls += [
            (a, "*", NEW, False, {}) for a in ("route53:ListHostedZones", "route53:GetHostedZone")
        ]
        calls += [("route53:ListTagsForResource", z, OWNED, False, {}) for z in zones]
    denied = [c[:3] for c in calls if not permitted(policy, c[0], c[1], context_of(stack, c))]
    assert not denied
    # The evaluation is not vacuous: another stack's tags, or none, are refused.
    assert not permitted(policy, "ec2:DeleteVpc", "arn:aws:ec2:us-east-1:1:vpc/v", {})
    other = context_of("qa", ("elasticloadbalancing:CreateListener", "", NEW, True, {}))
    assert not permitted(
        policy,
        "elasticloadbalancing:CreateListener",
        table["aws:lb/listener:Listener"][0][1],
        other,
    )
