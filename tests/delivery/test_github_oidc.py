"""The github-oidc stack: who may assume which role, and what each role may do.

The policy builders are pure functions and are tested in this process. The whole
program (deploy/github_oidc) runs under Pulumi mocks in a subprocess, because
mocks are process-wide and the infrastructure tests use them too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from deploy.github_oidc.identity import (
    DEPLOY_ACTIONS,
    PREVIEW_ACTIONS,
    GitHubOidcArgs,
    deploy_policy,
    deploy_subjects,
    preview_policy,
    preview_subjects,
    trust_policy,
)

ROOT = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).with_name("run_under_mocks.py")
PROVIDER = "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"
OIDC_TYPE = "aws:iam/openIdConnectProvider:OpenIdConnectProvider"
READ_VERBS = ("Describe", "Get", "List", "BatchGet", "BatchCheck")


def run_program(config: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PULUMI_CONFIG": json.dumps({f"github-oidc:{k}": v for k, v in config.items()}),
    }
    return subprocess.run(
        [sys.executable, str(RUNNER), str(ROOT / "deploy" / "github_oidc"), "github-oidc"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def deployed(config: dict[str, Any]) -> dict[str, Any]:
    result = run_program(config)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def by_name(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in run["resources"]}


def condition(role_state: dict[str, Any]) -> dict[str, Any]:
    (statement,) = json.loads(role_state["assumeRolePolicy"])["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert statement["Principal"] == {"Federated": PROVIDER}
    assert set(statement["Condition"]) == {"StringEquals"}, "no wildcard matching"
    return statement["Condition"]["StringEquals"]


@pytest.fixture(scope="module")
def default_stack() -> dict[str, Any]:
    return deployed({"repository": "acme/shop"})


# --- the whole program under mocks ---------------------------------------------


def test_the_provider_is_githubs_for_sts(default_stack: dict[str, Any]) -> None:
    (provider,) = [r for r in default_stack["resources"] if r["type"] == OIDC_TYPE]
    assert provider["state"]["url"] == "https://token.actions.githubusercontent.com"
    assert provider["state"]["clientIdLists"] == ["sts.amazonaws.com"]


def test_pull_requests_may_assume_the_preview_role_only(default_stack: dict[str, Any]) -> None:
    cond = condition(by_name(default_stack)["github-preview"]["state"])
    assert cond == {
        "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
        "token.actions.githubusercontent.com:sub": ["repo:acme/shop:pull_request"],
    }


def test_main_and_production_may_assume_the_deploy_role(default_stack: dict[str, Any]) -> None:
    cond = condition(by_name(default_stack)["github-deploy"]["state"])
    assert cond == {
        "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
        "token.actions.githubusercontent.com:sub": [
            "repo:acme/shop:environment:production",
            "repo:acme/shop:ref:refs/heads/main",
        ],
    }


def test_each_role_gets_its_own_policy(default_stack: dict[str, Any]) -> None:
    resources = by_name(default_stack)
    preview = json.loads(resources["github-preview-read"]["state"]["policy"])
    deploy = json.loads(resources["github-deploy-manage"]["state"]["policy"])
    assert resources["github-preview-read"]["state"]["role"] == "github-preview-0a1b2c3"
    assert resources["github-deploy-manage"]["state"]["role"] == "github-deploy-0a1b2c3"
    assert preview == preview_policy()
    # The deploy role may not touch the provider or either CI role.
    (deny,) = [s for s in deploy["Statement"] if s["Effect"] == "Deny"]
    assert deny["Resource"] == [
        PROVIDER,
        "arn:aws:iam::123456789012:role/github-deploy-0a1b2c3",
        "arn:aws:iam::123456789012:role/github-preview-0a1b2c3",
    ]


def test_everything_is_a_child_of_the_component(default_stack: dict[str, Any]) -> None:
    component = "fargate-service-discovery:delivery:GitHubOidc"
    children = [r for r in default_stack["resources"] if r["type"] != component]
    assert len(children) == 5  # provider, two roles, two policies
    assert all(f"::{component}$" in r["urn"] for r in children)


def test_the_stack_exports_what_the_workflow_variables_need(default_stack: dict[str, Any]) -> None:
    assert default_stack["outputs"] == {
        "providerArn": PROVIDER,
        "previewRoleArn": "arn:aws:iam::123456789012:role/github-preview-0a1b2c3",
        "deployRoleArn": "arn:aws:iam::123456789012:role/github-deploy-0a1b2c3",
    }


def test_config_narrows_and_reuses() -> None:
    existing = "arn:aws-us-gov:iam::210987654321:oidc-provider/token.actions.githubusercontent.com"
    run = deployed(
        {
            "repository": "acme/shop",
            "deployBranches": "[]",
            "deployEnvironments": '["production", "staging"]',
            "pullRequestPreviews": "false",
            "existingProviderArn": existing,
            "extraDeployPolicyArns": '["arn:aws:iam::210987654321:policy/pulumi-state"]',
        }
    )
    resources = by_name(run)
    assert not [r for r in run["resources"] if r["type"] == OIDC_TYPE]
    assert "github-preview" not in resources
    assert run["outputs"]["previewRoleArn"] is None
    cond = condition_with(existing, resources["github-deploy"]["state"])
    assert cond["token.actions.githubusercontent.com:sub"] == [
        "repo:acme/shop:environment:production",
        "repo:acme/shop:environment:staging",
    ]
    policy = json.loads(resources["github-deploy-manage"]["state"]["policy"])
    # Partition and account come from the provider the roles trust.
    assert any(
        "arn:aws-us-gov:iam::210987654321:role/*" in json.dumps(s) for s in policy["Statement"]
    )
    attachment = resources["github-deploy-pulumi-state"]["state"]
    assert attachment["policyArn"] == "arn:aws:iam::210987654321:policy/pulumi-state"


def condition_with(existing: str, state: dict[str, Any]) -> dict[str, Any]:
    (statement,) = json.loads(state["assumeRolePolicy"])["Statement"]
    assert statement["Principal"] == {"Federated": existing}
    return statement["Condition"]["StringEquals"]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "Missing required configuration variable 'github-oidc:repository'"),
        ({"repository": "acme"}, "repository: 'acme' is not 'owner/name'"),
        ({"repository": "acme/shop", "deployBranches": '["release/*"]'}, "wildcards"),
        ({"repository": "acme/shop", "deployBranches": '"main"'}, "must be a list of strings"),
        (
            {"repository": "acme/shop", "deployBranches": "[]", "deployEnvironments": "[]"},
            "nothing could deploy",
        ),
        (
            {"repository": "acme/shop", "existingProviderArn": "arn:aws:iam::1:oidc-provider/x"},
            "is not the ARN of a token.actions.githubusercontent.com OIDC provider",
        ),
    ],
    ids=["missing", "not-owner-name", "wildcard", "not-a-list", "no-subjects", "bad-provider"],
)
def test_bad_config_stops_before_anything_is_registered(
    config: dict[str, Any], message: str
) -> None:
    result = run_program(config)
    assert result.returncode != 0
    assert message in result.stderr
    assert result.stdout == ""


# --- the policy builders --------------------------------------------------------


def test_subjects_follow_githubs_claim_format() -> None:
    args = GitHubOidcArgs(
        repository="Acme/Shop.api", deploy_branches=("main", "release/v2"), deploy_environments=()
    )
    assert preview_subjects(args) == ["repo:Acme/Shop.api:pull_request"]
    assert deploy_subjects(args) == [
        "repo:Acme/Shop.api:ref:refs/heads/main",
        "repo:Acme/Shop.api:ref:refs/heads/release/v2",
    ]


def test_trust_is_exact_on_audience_and_subject() -> None:
    policy = trust_policy(PROVIDER, ["b", "a"])
    (statement,) = policy["Statement"]
    assert statement["Condition"] == {
        "StringEquals": {
            "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
            "token.actions.githubusercontent.com:sub": ["a", "b"],
        }
    }


def test_the_preview_role_can_only_read() -> None:
    (statement,) = preview_policy()["Statement"]
    assert statement["Effect"] == "Allow"
    writes = [a for a in statement["Action"] if not a.split(":")[1].startswith(READ_VERBS)]
    assert not writes
    assert statement["Action"] == list(PREVIEW_ACTIONS)
    # Not even the pushes an image build would need at `up`.
    assert not {"ecr:PutImage", "ecr:InitiateLayerUpload"} & set(statement["Action"])


def test_the_deploy_role_cannot_escalate_through_iam() -> None:
    policy = deploy_policy(
        "aws",
        "123456789012",
        ["service-role/AmazonECSTaskExecutionRolePolicy"],
        [PROVIDER, "arn:aws:iam::123456789012:role/ci"],
    )
    statements = {s["Sid"]: s for s in policy["Statement"]}
    allowed = [a for s in policy["Statement"] if s["Effect"] == "Allow" for a in _list(s["Action"])]
    assert "*" not in allowed
    assert not [a for a in allowed if a.startswith("iam:") and "*" in a]
    # No inline policies: permissions come only from allow-listed managed policies.
    assert not {"iam:PutRolePolicy", "iam:CreatePolicy", "iam:CreatePolicyVersion"} & set(allowed)
    attach = statements["AttachAllowListedPoliciesOnly"]
    assert attach["Condition"] == {
        "ArnEquals": {
            "iam:PolicyARN": [
                "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
            ]
        }
    }
    assert statements["PassRolesToEcsTasksOnly"]["Condition"] == {
        "StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}
    }
    assert statements["NeverChangeTheCiIdentity"]["Action"] == "iam:*"
    # Compute the program never launches: no instances, no Lambda.
    assert not [
        a for a in DEPLOY_ACTIONS if a in ("ec2:*", "ec2:RunInstances") or a.startswith("lambda:")
    ]


def _list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value
