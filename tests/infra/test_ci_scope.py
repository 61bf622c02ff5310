"""The names and tags the Fargate program gives its resources are the ones the CI deploy role
(deploy/github_oidc/identity.py) is scoped to: checked on the program's own runs under mocks.

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

import config
from deploy.github_oidc.identity import (
    DEFAULT_ATTACHABLE_POLICIES,
    PROJECT,
    ROLE_PATH,
    deploy_policy,
    stack_prefix,
)
from tests.infra.conftest import SPECS
from tests.infra.harness import ACCOUNT, REGION
from tests.infra.support import ROOT, Run, Runs, collect, run_program, stack_config

# ECR's repository name pattern (CreateRepository API reference) and length limit.
ECR_NAME = re.compile(r"^(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*$")
ECR_NAME_MAX = 256
POLICY = deploy_policy(
    "aws",
    ACCOUNT,
    DEFAULT_ATTACHABLE_POLICIES,
    [f"arn:aws:iam::{ACCOUNT}:role/github-deploy"],
    stacks=("dev", "prod"),
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


@pytest.fixture(params=["dev", "prod", "alternatives"])
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
    every taggable resource, so config.py refuses a stack file without them."""
    values = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
    tags = values["aws:defaultTags"]
    assert tags == {"tags": {"Project": PROJECT, "Stack": stack}}
    assert config.default_tag_problems(json.dumps(tags), PROJECT, stack) == []
    assert config.default_tag_problems(json.dumps(tags), PROJECT, "qa") != []


@pytest.mark.parametrize(
    "value",
    [None, "", "not json", "[]", '{"tags": {"Project": "fargate-service-discovery"}}'],
    ids=["unset", "empty", "not-json", "not-object", "no-stack"],
)
def test_default_tags_without_project_and_stack_are_refused(value: str | None) -> None:
    (problem,) = config.default_tag_problems(value, PROJECT, "dev")
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
    config.load()


def test_wrong_default_tags_alone_stop_the_program() -> None:
    """A stack file that is valid but for its tags is refused too, with that one problem."""
    untagged = {
        **stack_config("dev"),
        "aws:defaultTags": json.dumps({"tags": {"Project": PROJECT}}),
    }
    run = collect(run_program("dev", untagged, "tests.infra.test_ci_scope:load_settings"))
    assert run.error is not None
    assert "(1 problem(s))" in run.error
    assert "aws:defaultTags: must be {tags: {Project: fargate-service-discovery, Stack: dev}}" in (
        run.error
    )
