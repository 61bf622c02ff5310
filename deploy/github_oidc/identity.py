"""GitHub Actions to AWS without long-lived keys: the OIDC provider and two CI roles.

GitHub issues each workflow job a short-lived OIDC token whose ``sub`` claim says
where the job runs: ``repo:<owner>/<repo>:pull_request`` for a pull request,
``repo:<owner>/<repo>:ref:refs/heads/<branch>`` for a push, and
``repo:<owner>/<repo>:environment:<name>`` for a job that names a GitHub
environment (the environment replaces the ref in the claim). IAM trusts the token
through an OpenID Connect provider and hands out role credentials when the
claims match the role's trust policy exactly.

Two roles, because the two kinds of job deserve different power:

* **preview** (pull requests): read-only. ``pulumi preview`` reads the stack's
  resources and builds the images locally, but never pushes them, so it needs no
  write permission. Code from any branch that opens a pull request runs with this
  role, so it must not be able to change anything.
* **deploy** (pushes to the deploy branches and jobs in the deploy environments):
  creates, updates and destroys what the Fargate program declares, and nothing
  else (permissions.py: the catalogue of what each role may call, scoped to what the
  stacks own).

Forked repositories get no OIDC token on ``pull_request`` events, so previews of
pull requests from forks cannot assume either role.

This module is the component and what it trusts; the package's other modules are the
names both sides agree on (names.py), input validation (validation.py), the catalogue
of permissions (permissions.py) and their split into managed policies that fit IAM's
size limit (policy_split.py).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from deploy.github_oidc import validation
from deploy.github_oidc.names import (
    CI_POLICY_PATH,
    DEFAULT_ATTACHABLE_POLICIES,
    DEFAULT_STACKS,
    GITHUB_OIDC_HOST,
    GITHUB_OIDC_URL,
    PROJECT,
    STS_AUDIENCE,
)
from deploy.github_oidc.permissions import preview_policy
from deploy.github_oidc.policy_split import DEPLOY_POLICY_PARTS, check_fits, deploy_policies
from deploy.github_oidc.validation import PublicDomain


@dataclass(frozen=True)
class GitHubOidcArgs:
    """What the roles trust and what they may do.

    ``repository`` is ``owner/name`` as GitHub spells it (the claim is
    case-sensitive). ``provider_arn`` reuses an account's existing GitHub OIDC
    provider: IAM allows one provider per URL and account. ``stacks`` are the
    Fargate program's stacks the deploy role may change; ``public_domains`` the
    public names (and their hosted zones) those stacks serve, if any;
    ``service_connect`` whether any of them runs in the ``serviceConnect`` discovery
    mode (the role may then create and update the stack's HTTP namespace).
    """

    repository: str
    deploy_branches: Sequence[str] = ("main",)
    deploy_environments: Sequence[str] = ("production",)
    pull_request_previews: bool = True
    provider_arn: str | None = None
    attachable_policies: Sequence[str] = DEFAULT_ATTACHABLE_POLICIES
    extra_preview_policy_arns: Sequence[str] = ()
    extra_deploy_policy_arns: Sequence[str] = ()
    max_session_seconds: int = 3600
    stacks: Sequence[str] = DEFAULT_STACKS
    public_domains: Sequence[PublicDomain] = ()
    service_connect: bool = False
    tags: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        validation.check_repository(self.repository)
        validation.check_claim_names("deploy_branches", self.deploy_branches)
        validation.check_claim_names("deploy_environments", self.deploy_environments)
        validation.check_something_deploys(self.deploy_branches, self.deploy_environments)
        validation.check_provider_arn(self.provider_arn)
        validation.check_max_session_seconds(self.max_session_seconds)
        # The stacks and domains the deploy role is scoped to, and that its policies fit.
        validation.check_stacks(self.stacks)
        validation.check_public_domains(self.public_domains)
        if not isinstance(self.service_connect, bool):
            raise TypeError(
                f"service_connect: expected true or false, not {self.service_connect!r}"
            )
        check_fits(
            self.attachable_policies,
            self.extra_deploy_policy_arns,
            self.stacks,
            self.public_domains,
        )


def preview_subjects(args: GitHubOidcArgs) -> list[str]:
    """The ``sub`` claims the preview role accepts: pull requests of this repository."""
    return [f"repo:{args.repository}:pull_request"] if args.pull_request_previews else []


def deploy_subjects(args: GitHubOidcArgs) -> list[str]:
    """The ``sub`` claims the deploy role accepts: pushes to the deploy branches, and
    jobs that run in a deploy environment (where GitHub enforces required reviewers)."""
    return [f"repo:{args.repository}:ref:refs/heads/{b}" for b in args.deploy_branches] + [
        f"repo:{args.repository}:environment:{e}" for e in args.deploy_environments
    ]


def trust_policy(provider_arn: str, subjects: Sequence[str]) -> dict[str, Any]:
    """A web-identity trust policy that matches the token's audience and subject exactly."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": provider_arn},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {
                        f"{GITHUB_OIDC_HOST}:aud": STS_AUDIENCE,
                        f"{GITHUB_OIDC_HOST}:sub": sorted(subjects),
                    }
                },
            }
        ],
    }


def _arn_part(arn: str, index: int) -> str:
    # arn:<partition>:<service>:<region>:<account>:<resource>
    return arn.split(":")[index]


class GitHubOidc(pulumi.ComponentResource):
    """GitHub's OIDC provider (or an existing one) and the preview and deploy roles."""

    provider_arn: pulumi.Output[str]
    # None when pull_request_previews is off.
    preview_role_arn: pulumi.Output[str | None]
    deploy_role_arn: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        args: GitHubOidcArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("fargate-service-discovery:delivery:GitHubOidc", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = {"ManagedBy": "pulumi", "Repository": args.repository, **args.tags}

        if args.provider_arn is None:
            # No thumbprints: IAM validates GitHub's certificate against its own
            # trusted root CAs for this well-known provider.
            provider = aws.iam.OpenIdConnectProvider(
                f"{name}-provider",
                url=GITHUB_OIDC_URL,
                client_id_lists=[STS_AUDIENCE],
                tags=tags,
                opts=child,
            )
            self.provider_arn = provider.arn
        else:
            self.provider_arn = pulumi.Output.from_input(args.provider_arn)

        def ci_role(kind: str, subjects: list[str], description: str) -> aws.iam.Role:
            def trust(arn: str) -> str:
                return json.dumps(trust_policy(arn, subjects))

            return aws.iam.Role(
                f"{name}-{kind}",
                description=description,
                assume_role_policy=self.provider_arn.apply(trust),
                max_session_duration=args.max_session_seconds,
                tags=tags,
                opts=child,
            )

        def attach(role: aws.iam.Role, kind: str, policy_arns: Sequence[str]) -> None:
            for arn in policy_arns:
                # Named after the policy, so reordering the list replaces nothing.
                aws.iam.RolePolicyAttachment(
                    f"{name}-{kind}-{arn.rsplit('/', 1)[-1]}",
                    role=role.name,
                    policy_arn=arn,
                    opts=child,
                )

        deploy = ci_role(
            "deploy",
            deploy_subjects(args),
            f"pulumi up from {args.repository} (deploy branches and environments)",
        )
        protected = [self.provider_arn, deploy.arn]
        self.preview_role_arn = pulumi.Output.from_input(None)
        if args.pull_request_previews:
            preview = ci_role(
                "preview",
                preview_subjects(args),
                f"Read-only: pulumi preview for pull requests of {args.repository}",
            )
            aws.iam.RolePolicy(
                f"{name}-preview-read",
                role=preview.id,
                policy=self.provider_arn.apply(
                    lambda arn: json.dumps(
                        preview_policy(_arn_part(arn, 1), _arn_part(arn, 4), args.stacks)
                    )
                ),
                opts=child,
            )
            attach(preview, "preview", args.extra_preview_policy_arns)
            protected.append(preview.arn)
            self.preview_role_arn = preview.arn

        def part(arns: list[str], name_of_part: str) -> str:
            return json.dumps(
                deploy_policies(
                    partition=_arn_part(arns[0], 1),
                    account_id=_arn_part(arns[0], 4),
                    attachable_policies=args.attachable_policies,
                    protected_arns=arns,
                    stacks=args.stacks,
                    public_domains=args.public_domains,
                    service_connect=args.service_connect,
                )[name_of_part]
            )

        # One managed policy per part (they do not fit one inline policy), under the
        # CI path that the deploy role's own Deny statement covers.
        for name_of_part in DEPLOY_POLICY_PARTS:
            policy = aws.iam.Policy(
                f"{name}-deploy-{name_of_part}",
                path=CI_POLICY_PATH,
                description=f"pulumi up of {PROJECT} stacks {', '.join(args.stacks)}: "
                f"{name_of_part}",
                policy=pulumi.Output.all(*protected).apply(
                    functools.partial(part, name_of_part=name_of_part)
                ),
                tags=tags,
                opts=child,
            )
            aws.iam.RolePolicyAttachment(
                f"{name}-deploy-policy-{name_of_part}",
                role=deploy.name,
                policy_arn=policy.arn,
                opts=child,
            )
        attach(deploy, "deploy", args.extra_deploy_policy_arns)
        self.deploy_role_arn = deploy.arn

        self.register_outputs(
            {
                "provider_arn": self.provider_arn,
                "preview_role_arn": self.preview_role_arn,
                "deploy_role_arn": self.deploy_role_arn,
            }
        )
