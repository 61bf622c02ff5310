"""The github-oidc stack: who may assume which role, and what each role may do.

The policy builders are pure functions and are tested in this process. The whole
program (deploy/github_oidc) runs under Pulumi mocks in a subprocess, because
mocks are process-wide and the infrastructure tests use them too.
"""

from __future__ import annotations

import fnmatch
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deploy.github_oidc.identity import (
    GitHubOidcArgs,
    deploy_subjects,
    preview_subjects,
    trust_policy,
)
from deploy.github_oidc.names import DEFAULT_ATTACHABLE_POLICIES, DEFAULT_STACKS, ROLE_PATH
from deploy.github_oidc.permissions import (
    ACCOUNT_WIDE_ACTIONS,
    PREVIEW_ACTIONS,
    PREVIEW_IMAGE_READS,
    deploy_policy,
    preview_policy,
)
from deploy.github_oidc.policy_split import (
    DEPLOY_POLICY_PARTS,
    MANAGED_POLICY_MAX_CHARS,
    deploy_policies,
    policy_size,
)
from deploy.github_oidc.validation import PublicDomain

ROOT = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).with_name("run_under_mocks.py")
PROVIDER = "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"
OIDC_TYPE = "aws:iam/openIdConnectProvider:OpenIdConnectProvider"
READ_VERBS = ("Describe", "Get", "List", "BatchGet", "BatchCheck")
EXISTING_PROVIDER = (
    "arn:aws-us-gov:iam::210987654321:oidc-provider/token.actions.githubusercontent.com"
)


def run_programs(
    configs: dict[str, dict[str, Any]], folder: Path
) -> dict[str, subprocess.CompletedProcess[str]]:
    """The program under mocks once per config, all at once (each run in a process of its
    own, forked from one that imported Pulumi once: run_under_mocks.py --many)."""
    given = {
        key: {f"github-oidc:{k}": v for k, v in config.items()} for key, config in configs.items()
    }
    done = subprocess.run(
        [
            sys.executable,
            str(RUNNER),
            str(ROOT / "deploy" / "github_oidc"),
            "github-oidc",
            "--many",
            str(folder),
        ],
        cwd=ROOT,
        input=json.dumps(given),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    codes = dict(line.split() for line in done.stdout.splitlines())
    assert set(codes) == set(configs), done.stdout
    return {
        key: subprocess.CompletedProcess(
            args=key,
            returncode=int(codes[key]),
            stdout=(folder / f"{key}.out").read_text(),
            stderr=(folder / f"{key}.err").read_text(),
        )
        for key in configs
    }


def deployed(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


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
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, subprocess.CompletedProcess[str]]:
    """Every program run of this module, started together."""
    return run_programs(
        {
            "default": {"repository": "acme/shop"},
            "narrowed": NARROWED,
            **{key: config for key, (config, _) in BAD_CONFIGS.items()},
        },
        tmp_path_factory.mktemp("github-oidc-runs"),
    )


@pytest.fixture(scope="module")
def default_stack(runs: dict[str, subprocess.CompletedProcess[str]]) -> dict[str, Any]:
    return deployed(runs["default"])


# --- the whole program under mocks ---------------------------------------------


def test_the_provider_is_githubs_for_sts(default_stack: dict[str, Any]) -> None:
    """No thumbprints: IAM fills thumbprint_list itself (optional and computed in
    openid_connect_provider.go, so no diff), and a thumbprint set here could never be
    cleared again (the API refuses an empty list on update)."""
    (provider,) = [r for r in default_stack["resources"] if r["type"] == OIDC_TYPE]
    assert provider["state"]["url"] == "https://token.actions.githubusercontent.com"
    assert provider["state"]["clientIdLists"] == ["sts.amazonaws.com"]
    assert "thumbprintLists" not in provider["state"]


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
    assert resources["github-preview-read"]["state"]["role"] == "github-preview-0a1b2c3"
    # By default the stacks of deploy.yml and e2e.yml: dev, prod and e2e.
    assert preview == preview_policy("aws", "123456789012", ("dev", "prod", "e2e"))
    # The deploy role's permissions are five managed policies (they exceed IAM's
    # 10,240 characters of inline policy per role), all attached to it, together
    # exactly deploy_policy() for the account of the provider.
    statements = []
    for part in DEPLOY_POLICY_PARTS:
        policy = resources[f"github-deploy-{part}"]["state"]
        assert policy["path"] == "/github-oidc/"
        attachment = resources[f"github-deploy-policy-{part}"]["state"]
        assert attachment["role"] == "github-deploy-0a1b2c3"
        assert attachment["policyArn"] == policy["arn"]
        statements += json.loads(policy["policy"])["Statement"]
    protected = [
        PROVIDER,
        "arn:aws:iam::123456789012:role/github-deploy-0a1b2c3",
        "arn:aws:iam::123456789012:role/github-preview-0a1b2c3",
    ]
    expected = deploy_policy("aws", "123456789012", DEFAULT_ATTACHABLE_POLICIES, protected)
    assert sorted(statements, key=_sid) == sorted(expected["Statement"], key=_sid)
    # The deploy role may not touch the provider, either CI role or its own policies.
    (deny,) = [s for s in statements if s["Effect"] == "Deny"]
    assert deny["Resource"] == sorted(
        [*protected, "arn:aws:iam::123456789012:policy/github-oidc/*"]
    )
    assert "github-deploy-manage" not in resources, "no inline policy left on the deploy role"


def _sid(statement: dict[str, Any]) -> str:
    return str(statement["Sid"])


def test_everything_is_a_child_of_the_component(default_stack: dict[str, Any]) -> None:
    component = "fargate-service-discovery:delivery:GitHubOidc"
    children = [r for r in default_stack["resources"] if r["type"] != component]
    # provider, two roles, the preview role's inline policy, five deploy policies and
    # their five attachments
    assert len(children) == 4 + 2 * len(DEPLOY_POLICY_PARTS) == 14
    assert all(f"::{component}$" in r["urn"] for r in children)


def test_the_stack_exports_what_the_workflow_variables_need(default_stack: dict[str, Any]) -> None:
    assert default_stack["outputs"] == {
        "providerArn": PROVIDER,
        "previewRoleArn": "arn:aws:iam::123456789012:role/github-preview-0a1b2c3",
        "deployRoleArn": "arn:aws:iam::123456789012:role/github-deploy-0a1b2c3",
    }


NARROWED = {
    "repository": "acme/shop",
    "deployBranches": "[]",
    "deployEnvironments": '["production", "staging"]',
    "pullRequestPreviews": "false",
    "existingProviderArn": EXISTING_PROVIDER,
    "extraDeployPolicyArns": '["arn:aws:iam::210987654321:policy/pulumi-state"]',
    "stacks": '["staging"]',
    "publicDomains": '[{"domain": "shop.example.com", "hostedZoneId": "Z0ABC"}]',
}


def test_config_narrows_and_reuses(runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    existing = EXISTING_PROVIDER
    run = deployed(runs["narrowed"])
    resources = by_name(run)
    assert not [r for r in run["resources"] if r["type"] == OIDC_TYPE]
    assert "github-preview" not in resources
    assert run["outputs"]["previewRoleArn"] is None
    cond = condition_with(existing, resources["github-deploy"]["state"])
    assert cond["token.actions.githubusercontent.com:sub"] == [
        "repo:acme/shop:environment:production",
        "repo:acme/shop:environment:staging",
    ]
    policy = json.loads(resources["github-deploy-identity-and-domains"]["state"]["policy"])
    # Partition and account come from the provider the roles trust.
    assert any(
        "arn:aws-us-gov:iam::210987654321:role/fargate-service-discovery/*" in json.dumps(s)
        for s in policy["Statement"]
    )
    attachment = resources["github-deploy-pulumi-state"]["state"]
    assert attachment["policyArn"] == "arn:aws:iam::210987654321:policy/pulumi-state"
    # The stacks and domains of the config, not the defaults.
    text = "".join(
        resources[f"github-deploy-{part}"]["state"]["policy"] for part in DEPLOY_POLICY_PARTS
    )
    assert "cluster/fargate-service-discovery-staging" in text
    assert "fargate-service-discovery-dev" not in text
    assert "hostedzone/Z0ABC" in text


def condition_with(existing: str, state: dict[str, Any]) -> dict[str, Any]:
    (statement,) = json.loads(state["assumeRolePolicy"])["Statement"]
    assert statement["Principal"] == {"Federated": existing}
    return statement["Condition"]["StringEquals"]


# id -> (config, what the error says)
BAD_CONFIGS: dict[str, tuple[dict[str, Any], str]] = {
    "missing": ({}, "Missing required configuration variable 'github-oidc:repository'"),
    "not-owner-name": ({"repository": "acme"}, "repository: 'acme' is not 'owner/name'"),
    "wildcard": ({"repository": "acme/shop", "deployBranches": '["release/*"]'}, "wildcards"),
    "not-a-list": (
        {"repository": "acme/shop", "deployBranches": '"main"'},
        "must be a list of strings",
    ),
    "no-subjects": (
        {"repository": "acme/shop", "deployBranches": "[]", "deployEnvironments": "[]"},
        "nothing could deploy",
    ),
    "bad-provider": (
        {"repository": "acme/shop", "existingProviderArn": "arn:aws:iam::1:oidc-provider/x"},
        "is not the ARN of a token.actions.githubusercontent.com OIDC provider",
    ),
    # A stack name goes into ARNs: "*" would turn every name-scoped grant account-wide.
    "wildcard-stack": (
        {"repository": "acme/shop", "stacks": '["dev", "*"]'},
        "stacks: ['*'] must be",
    ),
    "uppercase-stack": (
        {"repository": "acme/shop", "stacks": '["Prod"]'},
        "stacks: ['Prod'] must be",
    ),
    "no-stacks": ({"repository": "acme/shop", "stacks": "[]"}, "stacks: empty"),
    "wildcard-domain": (
        {
            "repository": "acme/shop",
            "publicDomains": '[{"domain": "*.example.com", "hostedZoneId": "Z0ABC"}]',
        },
        "publicDomains: domain '*.example.com' is not a lowercase DNS name",
    ),
    "zone-path": (
        {
            "repository": "acme/shop",
            "publicDomains": '[{"domain": "example.com", "hostedZoneId": "/hostedzone/Z0ABC"}]',
        },
        "hostedZoneId '/hostedzone/Z0ABC' is not a Route 53 hosted zone id",
    ),
    "domain-not-object": (
        {"repository": "acme/shop", "publicDomains": '["example.com"]'},
        "github-oidc:publicDomains must be a list of",
    ),
    "policy-too-large": (
        {"repository": "acme/shop", "stacks": json.dumps([f"s{i}" for i in range(30)])},
        "over IAM's 6144 for a managed policy",
    ),
}


@pytest.mark.parametrize("case", BAD_CONFIGS)
def test_bad_config_stops_before_anything_is_registered(
    case: str, runs: dict[str, subprocess.CompletedProcess[str]]
) -> None:
    message = BAD_CONFIGS[case][1]
    result = runs[case]
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
    """Code of any pull request runs with the preview role: it reads metadata, and image
    content only of the stacks' repositories (the build's layer cache), and writes nothing."""
    metadata, images = preview_policy("aws", "123456789012", ("dev",))["Statement"]
    for statement in (metadata, images):
        assert statement["Effect"] == "Allow"
        writes = [a for a in statement["Action"] if not a.split(":")[1].startswith(READ_VERBS)]
        assert not writes
    assert metadata["Action"] == list(PREVIEW_ACTIONS)
    assert metadata["Resource"] == "*"
    assert not [a for a in metadata["Action"] if a in PREVIEW_IMAGE_READS]
    assert images["Action"] == list(PREVIEW_IMAGE_READS)
    assert images["Resource"] == [
        "arn:aws:ecr:*:123456789012:repository/fargate-service-discovery-dev/*"
    ]
    # Not even the pushes an image build would need at `up`.
    actions = metadata["Action"] + images["Action"]
    assert not {"ecr:PutImage", "ecr:InitiateLayerUpload"} & set(actions)


def test_the_preview_role_can_run_the_zone_lookup_a_preview_makes() -> None:
    """A preview of a stack with domain.zoneName runs aws.route53.get_zone, which pages
    through ListHostedZones, then reads the zone and its tags (zone_data_source.go):
    without those the pull request's preview fails with AccessDenied."""
    (metadata, _) = preview_policy("aws", "123456789012", ("dev",))["Statement"]
    for action in (
        "route53:ListHostedZones",
        "route53:GetHostedZone",
        "route53:ListTagsForResource",
    ):
        assert action in metadata["Action"], action


# --- the deploy role's properties -------------------------------------------------

ACCOUNT = "123456789012"
CI_ROLES = [PROVIDER, f"arn:aws:iam::{ACCOUNT}:role/ci-deploy", f"arn:aws:iam::{ACCOUNT}:role/ci"]
DOMAINS = (PublicDomain("shop.example.com", "Z0123456789ABCDEFGHIJ"),)


def _list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def _policy(
    domains: tuple[PublicDomain, ...] = DOMAINS, *, service_connect: bool = False
) -> dict[str, Any]:
    return deploy_policy(
        "aws",
        ACCOUNT,
        DEFAULT_ATTACHABLE_POLICIES,
        CI_ROLES,
        stacks=("dev", "prod", "e2e"),
        public_domains=domains,
        service_connect=service_connect,
    )


def _allows() -> Iterator[tuple[dict[str, Any], str]]:
    """(statement, action pattern) for every Allow of the deploy role, with and
    without public domains."""
    for policy in (_policy(), _policy(())):
        for statement in policy["Statement"]:
            if statement["Effect"] == "Allow":
                for action in _list(statement["Action"]):
                    yield statement, action


def _grants(pattern: str, action: str) -> bool:
    """Whether an action pattern of a policy (IAM wildcards, case-insensitive) covers action."""
    return fnmatch.fnmatchcase(action.lower(), pattern.lower())


def test_no_iam_action_on_roles_outside_the_programs_path() -> None:
    """A role outside the path may be an admin's: rewriting its trust (UpdateAssumeRolePolicy)
    and passing it to a task would hand the deploy role the admin's power (issue 8, item 2)."""
    for statement, action in _allows():
        if not action.startswith("iam:"):
            continue
        assert "*" not in action, f"{statement['Sid']}: no wildcard IAM actions ({action})"
        for resource in _list(statement["Resource"]):
            if action == "iam:CreateServiceLinkedRole":
                assert "/aws-service-role/" in resource
                continue
            assert resource == f"arn:aws:iam::{ACCOUNT}:role{ROLE_PATH}*", (
                statement["Sid"],
                resource,
            )


def test_passrole_only_on_the_path_and_only_to_ecs_tasks() -> None:
    """PassRole is what turns a role into compute: only the program's roles, only to ECS tasks."""
    passes = [s for s, a in _allows() if _grants(a, "iam:PassRole")]
    assert passes
    for statement in passes:
        assert statement["Resource"] == f"arn:aws:iam::{ACCOUNT}:role{ROLE_PATH}*"
        assert statement["Condition"] == {
            "StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}
        }


@pytest.mark.parametrize("forbidden", ["ecs:RunTask", "ecs:StartTask", "ecs:ExecuteCommand"])
def test_no_task_launching_or_exec_anywhere(forbidden: str) -> None:
    """`pulumi up` never starts a task or a shell in one (ECS services do): with RunTask the
    deploy role could run any task definition, with ExecuteCommand reach into running tasks."""
    assert not [(s["Sid"], a) for s, a in _allows() if _grants(a, forbidden)]
    assert not [a for _, a in _allows() if a.startswith("ecs:") and "*" in a], "no ecs:* pattern"


def test_no_ecr_wildcard_and_ecr_writes_only_on_the_stacks_repositories() -> None:
    """ecr:* would let a merge overwrite or delete the images of every repository."""
    for statement, action in _allows():
        if not action.startswith("ecr:"):
            continue
        assert "*" not in action
        if action == "ecr:GetAuthorizationToken":
            continue
        assert statement["Resource"] == [
            f"arn:aws:ecr:*:{ACCOUNT}:repository/fargate-service-discovery-dev/*",
            f"arn:aws:ecr:*:{ACCOUNT}:repository/fargate-service-discovery-e2e/*",
            f"arn:aws:ecr:*:{ACCOUNT}:repository/fargate-service-discovery-prod/*",
        ]


SECURITY_GROUP_WRITES = [
    "ec2:CreateSecurityGroup",
    "ec2:DeleteSecurityGroup",
    "ec2:AuthorizeSecurityGroupIngress",
    "ec2:AuthorizeSecurityGroupEgress",
    "ec2:RevokeSecurityGroupIngress",
    "ec2:RevokeSecurityGroupEgress",
    "ec2:ModifySecurityGroupRules",
    "ec2:UpdateSecurityGroupRuleDescriptionsIngress",
    "ec2:CreateTags",
    "ec2:DeleteTags",
]


def _covers_security_groups(resources: list[str]) -> bool:
    probe = f"arn:aws:ec2:us-east-1:{ACCOUNT}:security-group/sg-0123456789abcdef0"
    return any(_grants(r, probe) for r in resources)


def test_every_security_group_write_is_conditioned_on_the_stacks_tags() -> None:
    """Opening a port on someone else's security group is a network breach: every write on a
    security-group resource needs the stack's tags (request tags on create, resource tags
    after) or is tag-on-create. Rule resources (security-group-rule/*) need no condition of
    their own: each such call also names its group, which must pass this test."""
    checked = 0
    for statement, action in _allows():
        writes = [w for w in SECURITY_GROUP_WRITES if _grants(action, w)]
        if not writes or not _covers_security_groups(_list(statement["Resource"])):
            continue
        checked += 1
        condition = json.dumps(statement.get("Condition", {}))
        assert (
            '"aws:ResourceTag/Project": "fargate-service-discovery"' in condition
            or '"aws:RequestTag/Project": "fargate-service-discovery"' in condition
            or '"ec2:CreateAction"' in condition
        ), (statement["Sid"], action)
    assert checked >= 4


def test_record_changes_only_for_the_configured_names_types_and_zones() -> None:
    """ChangeResourceRecordSets on any zone could repoint a public domain. The Cloud Map
    namespace needs none (Cloud Map writes its private zone itself); a public domain needs
    its alias A record and ACM's _<hash>.<domain> CNAMEs, in its own zone only."""
    without = [a for s in _policy(())["Statement"] for a in _list(s["Action"])]
    assert not [a for a in without if _grants(a, "route53:ChangeResourceRecordSets")]
    changes = [s for s, a in _allows() if _grants(a, "route53:ChangeResourceRecordSets")]
    assert len(changes) == 2
    for statement in changes:
        assert statement["Resource"] == ["arn:aws:route53:::hostedzone/Z0123456789ABCDEFGHIJ"]
        condition = statement["Condition"]
        (match,) = [k for k in condition if k.startswith("ForAllValues:")]
        keys = condition[match]
        assert set(keys) == {
            "route53:ChangeResourceRecordSetsNormalizedRecordNames",
            "route53:ChangeResourceRecordSetsRecordTypes",
            "route53:ChangeResourceRecordSetsActions",
        }
        # ForAllValues holds for a missing key; Null makes each key required.
        assert condition["Null"] == dict.fromkeys(keys, "false")
    names = {
        (s["Condition"][m]["route53:ChangeResourceRecordSetsRecordTypes"][0], m): s["Condition"][m][
            "route53:ChangeResourceRecordSetsNormalizedRecordNames"
        ]
        for s in changes
        for m in s["Condition"]
        if m.startswith("ForAllValues:")
    }
    assert names == {
        ("A", "ForAllValues:StringEquals"): ["shop.example.com"],
        ("CNAME", "ForAllValues:StringLike"): ["_*.shop.example.com"],
    }


def test_account_wide_statements_hold_only_allow_listed_actions() -> None:
    """Resource "*" is only for reads and for writes AWS gives no resource type; each such
    action is listed with its reason in ACCOUNT_WIDE_ACTIONS."""
    assert all(len(reason) > 20 for reason in ACCOUNT_WIDE_ACTIONS.values())
    for statement, action in _allows():
        if "*" in _list(statement["Resource"]):
            assert action in ACCOUNT_WIDE_ACTIONS, (statement["Sid"], action)
    account_wide_writes = {
        a
        for a in ACCOUNT_WIDE_ACTIONS
        if not a.split(":")[1].startswith(("Describe", "Get", "List"))
    }
    assert account_wide_writes == {
        "ecs:RegisterTaskDefinition",
        "ecs:DeregisterTaskDefinition",
        "servicediscovery:CreatePrivateDnsNamespace",
        "servicediscovery:CreateHttpNamespace",
        "route53:CreateHostedZone",
        "acm:RequestCertificate",
        "sns:Unsubscribe",
    }


def test_service_connect_adds_only_the_stacks_http_namespace() -> None:
    """serviceConnect: the deploy role may create an HTTP namespace only with the stack's tags
    in the request, and update only namespaces carrying them; nothing else changes, and a
    role for stacks without Service Connect cannot touch an HTTP namespace at all."""

    def actions(policy: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        found: dict[str, list[dict[str, Any]]] = {}
        for statement in policy["Statement"]:
            if statement["Effect"] == "Allow":
                for action in _list(statement["Action"]):
                    found.setdefault(action, []).append(statement)
        return found

    without, with_ = actions(_policy()), actions(_policy(service_connect=True))
    added = set(with_) - set(without)
    assert added == {"servicediscovery:CreateHttpNamespace", "servicediscovery:UpdateHttpNamespace"}
    assert not any(_grants(a, "servicediscovery:CreateHttpNamespace") for a in without)
    (create,) = with_["servicediscovery:CreateHttpNamespace"]
    assert create["Resource"] == "*"
    assert create["Condition"]["StringEquals"]["aws:RequestTag/Stack"] == ["dev", "e2e", "prod"]
    (update,) = with_["servicediscovery:UpdateHttpNamespace"]
    assert update["Condition"]["StringEquals"]["aws:ResourceTag/Stack"] == ["dev", "e2e", "prod"]
    assert all(":servicediscovery:" in r for r in _list(update["Resource"]))
    # Resource "*" still holds only the allow-listed actions.
    for action, statements in with_.items():
        if any("*" in _list(st["Resource"]) for st in statements):
            assert action in ACCOUNT_WIDE_ACTIONS, action


def test_tag_writes_cannot_move_a_resource_into_a_stack() -> None:
    """Tag-scoped grants are only as strong as the tags: re-tagging someone else's resource
    Project/Stack would hand it to the deploy role. Tag writes on tag-scoped services happen
    only at creation (CreateAction) or on resources already the stack's without touching
    Project/Stack. Cloud Map and ACM have no CreateAction key, and Cloud Map authorizes the
    tags of its creates as TagResource: there, tags on create are allowed only with the
    stack's tags in the request on a resource that has no Project tag yet, so nothing of
    another project or stack can be taken over (the residual, adopting an untagged one, is in
    docs/delivery.md)."""
    tag_verbs = ("CreateTags", "DeleteTags", "AddTags", "RemoveTags", "TagResource", "Untag")
    for statement, action in _allows():
        service, name = action.split(":")
        if service not in (
            "ec2",
            "elasticloadbalancing",
            "servicediscovery",
            "acm",
        ) or not name.startswith((*tag_verbs, "AddTagsTo", "RemoveTagsFrom")):
            continue
        condition = statement["Condition"]
        creates = {"ec2:CreateAction", "elasticloadbalancing:CreateAction"} & set(
            condition.get("StringEquals", {})
        )
        keeps = condition.get("ForAllValues:StringNotEquals") == {
            "aws:TagKeys": ["Project", "Stack"]
        }
        stack_tags = {
            "aws:RequestTag/Project": "fargate-service-discovery",
            "aws:RequestTag/Stack": ["dev", "e2e", "prod"],
        }
        only_untagged = (
            condition.get("StringEquals") == stack_tags
            and condition.get("Null") == {"aws:ResourceTag/Project": "true"}
            and service in ("servicediscovery", "acm")
        )
        assert creates or keeps or only_untagged, (statement["Sid"], action)


def test_every_resource_is_in_the_deploy_account() -> None:
    """Name patterns must not match resources of other accounts (an ECR repository policy
    elsewhere could otherwise grant this role writes there)."""
    for statement, _ in _allows():
        for resource in _list(statement["Resource"]):
            if resource == "*" or resource.startswith("arn:aws:route53:::"):
                continue
            assert resource.split(":")[4] == ACCOUNT, (statement["Sid"], resource)


def test_the_policies_fit_iams_managed_policy_quota() -> None:
    """IAM refuses a managed policy over 6,144 characters (whitespace not counted), and a
    role's inline policies over 10,240 in total: the deploy role's statements are cut into
    DEPLOY_POLICY_PARTS, each checked at validation for the largest names IAM allows."""
    whole = _policy()
    assert policy_size(whole) > 10_240, "one inline policy would not do"
    parts = deploy_policies(
        "aws", ACCOUNT, DEFAULT_ATTACHABLE_POLICIES, CI_ROLES, public_domains=DOMAINS
    )
    cut = [s for p in parts.values() for s in p["Statement"]]
    assert sorted(cut, key=_sid) == sorted(whole["Statement"], key=_sid)
    assert all(policy_size(p) <= MANAGED_POLICY_MAX_CHARS for p in parts.values())
    # Four stacks of 20 characters and three domains still fit.
    GitHubOidcArgs(
        repository="acme/shop",
        stacks=[c * 20 for c in "abcd"],
        public_domains=[PublicDomain(f"{c * 40}.example.com", "Z0123456789ABC") for c in "xyz"],
    )


def test_the_deploy_role_cannot_escalate_through_iam() -> None:
    policy = _policy()
    statements = {s["Sid"]: s for s in policy["Statement"]}
    allowed = [a for s in policy["Statement"] if s["Effect"] == "Allow" for a in _list(s["Action"])]
    assert "*" not in allowed
    # No inline policies: permissions come only from allow-listed managed policies.
    assert not {"iam:PutRolePolicy", "iam:CreatePolicy", "iam:CreatePolicyVersion"} & set(allowed)
    assert statements["AttachAllowListedPoliciesOnly"]["Condition"] == {
        "ArnEquals": {
            "iam:PolicyARN": [
                "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
            ]
        }
    }
    deny = statements["NeverChangeTheCiIdentity"]
    assert deny["Action"] == "iam:*"
    assert f"arn:aws:iam::{ACCOUNT}:policy/github-oidc/*" in deny["Resource"]
    # Compute the program never launches: no instances, no Lambda.
    assert not [a for a in allowed if _grants(a, "ec2:RunInstances") or a.startswith("lambda:")]


def test_the_ci_roles_are_outside_the_programs_path(default_stack: dict[str, Any]) -> None:
    """The deploy role manages roles under ROLE_PATH: the CI roles must not be there, or it
    could rewrite their own trust (its Deny statement is the second line of defence)."""
    resources = by_name(default_stack)
    for role in ("github-deploy", "github-preview"):
        assert resources[role]["state"].get("path", "/") == "/"
    assert ROLE_PATH == "/fargate-service-discovery/"


def test_operations_writes_stay_on_the_stacks_targets_alarms_and_topic() -> None:
    """Issue 10's resource types: scalable targets (AWS-assigned ids) by the stack tags,
    alarms and the dashboard by the stack prefix, alarms notifying only the stack's topic,
    subscriptions by e-mail only, and the service-linked role Application Auto Scaling makes."""
    topics = [
        f"arn:aws:sns:*:{ACCOUNT}:fargate-service-discovery-{stack}-alarms"
        for stack in sorted(DEFAULT_STACKS)
    ]
    for statement, action in _allows():
        if action.startswith("application-autoscaling:") and "*" not in _list(
            statement["Resource"]
        ):
            condition = json.dumps(statement["Condition"])
            assert '"aws:RequestTag/Project"' in condition or '"aws:ResourceTag/Project"' in (
                condition
            ), (statement["Sid"], action)
        if action == "cloudwatch:PutMetricAlarm" and statement["Sid"] == "AlarmsPutStackAlarms":
            assert statement["Condition"] == {
                "ForAllValues:StringLike": {"cloudwatch:AlarmActions": topics}
            }
        if action.startswith(("cloudwatch:", "sns:")) and "*" not in _list(statement["Resource"]):
            for resource in _list(statement["Resource"]):
                assert "fargate-service-discovery-" in resource, (statement["Sid"], resource)
        if action == "sns:Subscribe":
            assert statement["Condition"] == {"StringEquals": {"sns:Protocol": "email"}}
    linked = [s for s, a in _allows() if a == "iam:CreateServiceLinkedRole"]
    assert any(
        "ecs.application-autoscaling.amazonaws.com" in r
        for s in linked
        for r in _list(s["Resource"])
    )
