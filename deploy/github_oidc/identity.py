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
  creates and updates what the Fargate program declares. Its IAM permissions are
  fenced so that it cannot grant itself or a task more power than the program
  needs (see :func:`deploy_policy`).

Forked repositories get no OIDC token on ``pull_request`` events, so previews of
pull requests from forks cannot assume either role.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

GITHUB_OIDC_HOST = "token.actions.githubusercontent.com"
GITHUB_OIDC_URL = f"https://{GITHUB_OIDC_HOST}"
# configure-aws-credentials asks GitHub for a token with this audience by default.
STS_AUDIENCE = "sts.amazonaws.com"

# Managed policies the deploy role may attach to the roles it creates: the task
# execution role of the Fargate program needs exactly this one. Named without the
# partition, which is taken from the account the stack runs in.
DEFAULT_ATTACHABLE_POLICIES: tuple[str, ...] = ("service-role/AmazonECSTaskExecutionRolePolicy",)

# What `pulumi preview` (and `pulumi refresh`) read for the Fargate program: every
# action is a read. ecr:GetAuthorizationToken plus the layer reads let the image
# build pull cached layers; a token confers nothing beyond the role's own rights.
PREVIEW_ACTIONS: tuple[str, ...] = (
    "ec2:Describe*",
    "ecs:Describe*",
    "ecs:List*",
    "elasticloadbalancing:Describe*",
    "servicediscovery:Get*",
    "servicediscovery:List*",
    "route53:GetHostedZone",
    "route53:ListHostedZonesByName",
    "route53:ListTagsForResource",
    "logs:DescribeLogGroups",
    "logs:ListTagsForResource",
    "logs:ListTagsLogGroup",
    "ecr:DescribeRepositories",
    "ecr:DescribeImages",
    "ecr:ListTagsForResource",
    "ecr:GetLifecyclePolicy",
    "ecr:GetRepositoryPolicy",
    "ecr:GetAuthorizationToken",
    "ecr:BatchCheckLayerAvailability",
    "ecr:BatchGetImage",
    "ecr:GetDownloadUrlForLayer",
    "iam:GetRole",
    "iam:ListRolePolicies",
    "iam:ListAttachedRolePolicies",
    "iam:GetPolicy",
    "iam:GetPolicyVersion",
)

# What `pulumi up` and `pulumi destroy` change, per service the program uses:
# the VPC (awsx), ECS, the ALB, Cloud Map (which manages a private Route 53 zone
# on the caller's behalf), CloudWatch Logs and ECR (repositories and pushes).
# Wildcards stay inside one resource family (ec2:*SecurityGroup* covers create,
# delete, authorize, revoke) so that, for example, ec2:RunInstances is not granted.
DEPLOY_ACTIONS: tuple[str, ...] = (
    "ec2:Describe*",
    "ec2:CreateTags",
    "ec2:DeleteTags",
    "ec2:CreateVpc",
    "ec2:DeleteVpc",
    "ec2:ModifyVpcAttribute",
    "ec2:*Subnet*",
    "ec2:*InternetGateway*",
    "ec2:*NatGateway*",
    "ec2:*Address*",
    "ec2:*RouteTable*",
    "ec2:CreateRoute",
    "ec2:DeleteRoute",
    "ec2:ReplaceRoute",
    "ec2:*SecurityGroup*",
    "ecs:*",
    "elasticloadbalancing:*",
    "servicediscovery:*",
    "route53:*HostedZone*",
    "route53:*VPC*",
    "route53:ChangeResourceRecordSets",
    "route53:ListResourceRecordSets",
    "route53:GetChange",
    "route53:ChangeTagsForResource",
    "route53:ListTagsForResource",
    "logs:CreateLogGroup",
    "logs:DeleteLogGroup",
    "logs:PutRetentionPolicy",
    "logs:DeleteRetentionPolicy",
    "logs:DescribeLogGroups",
    "logs:TagResource",
    "logs:UntagResource",
    "logs:TagLogGroup",
    "logs:UntagLogGroup",
    "logs:ListTagsForResource",
    "logs:ListTagsLogGroup",
    "ecr:*",
)

# Role management without inline policies: the roles the program creates get
# permissions only through the allow-listed managed policies.
DEPLOY_ROLE_ACTIONS: tuple[str, ...] = (
    "iam:CreateRole",
    "iam:DeleteRole",
    "iam:GetRole",
    "iam:UpdateRole",
    "iam:UpdateRoleDescription",
    "iam:UpdateAssumeRolePolicy",
    "iam:TagRole",
    "iam:UntagRole",
    "iam:ListRoleTags",
    "iam:ListRolePolicies",
    "iam:ListAttachedRolePolicies",
    "iam:ListInstanceProfilesForRole",
    "iam:GetPolicy",
    "iam:GetPolicyVersion",
)

# Service-linked roles that ECS and the load balancer create on first use in an account.
SERVICE_LINKED_ROLE_SERVICES: tuple[str, ...] = (
    "ecs.amazonaws.com",
    "elasticloadbalancing.amazonaws.com",
)

_PROVIDER_ARN = re.compile(
    r"^arn:aws[a-z-]*:iam::[0-9]{12}:oidc-provider/" + re.escape(GITHUB_OIDC_HOST) + "$"
)
_REPOSITORY = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$")
# Branch and environment names go into the sub claim verbatim. Wildcards would
# need StringLike and widen the trust; a colon or quote would break the claim.
_CLAIM_PART = re.compile(r"^[A-Za-z0-9._/-]+$")


@dataclass(frozen=True)
class GitHubOidcArgs:
    """What the roles trust and what they may do.

    ``repository`` is ``owner/name`` as GitHub spells it (the claim is
    case-sensitive). ``provider_arn`` reuses an account's existing GitHub OIDC
    provider: IAM allows one provider per URL and account.
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
    tags: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _REPOSITORY.match(self.repository):
            raise ValueError(
                f"repository: {self.repository!r} is not 'owner/name' as GitHub spells it"
            )
        for key, names in (
            ("deploy_branches", self.deploy_branches),
            ("deploy_environments", self.deploy_environments),
        ):
            if isinstance(names, str):
                raise TypeError(f"{key}: give a list of names, not the string {names!r}")
            bad = [n for n in names if not _CLAIM_PART.match(n)]
            if bad:
                raise ValueError(
                    f"{key}: {bad} must be exact names (letters, digits, '.', '_', '/', '-'); "
                    "wildcards are not supported"
                )
        if not self.deploy_branches and not self.deploy_environments:
            raise ValueError(
                "deploy_branches and deploy_environments are both empty: nothing could deploy"
            )
        if self.provider_arn is not None and not _PROVIDER_ARN.match(self.provider_arn):
            raise ValueError(
                f"provider_arn: {self.provider_arn!r} is not the ARN of a "
                f"{GITHUB_OIDC_HOST} OIDC provider"
            )
        if not 3600 <= self.max_session_seconds <= 43200:
            raise ValueError(
                f"max_session_seconds: {self.max_session_seconds} is outside IAM's 3600-43200"
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


def preview_policy() -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ReadStackResources",
                "Effect": "Allow",
                "Action": list(PREVIEW_ACTIONS),
                "Resource": "*",
            }
        ],
    }


def deploy_policy(
    partition: str,
    account_id: str,
    attachable_policies: Sequence[str],
    protected_arns: Sequence[str],
) -> dict[str, Any]:
    """The deploy role's permissions.

    The IAM statements close the usual escalation paths of a CI role that manages
    roles: it cannot write inline policies, attaches only the allow-listed managed
    policies, passes roles only to ECS tasks, and may not touch the OIDC provider
    or the CI roles themselves (so a change merged to main cannot widen its own
    trust or permissions).
    """
    iam = f"arn:{partition}:iam::{account_id}"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ManageStackResources",
                "Effect": "Allow",
                "Action": list(DEPLOY_ACTIONS),
                "Resource": "*",
            },
            {
                "Sid": "ManageStackRoles",
                "Effect": "Allow",
                "Action": list(DEPLOY_ROLE_ACTIONS),
                "Resource": [f"{iam}:role/*", f"arn:{partition}:iam::aws:policy/*"],
            },
            {
                "Sid": "AttachAllowListedPoliciesOnly",
                "Effect": "Allow",
                "Action": ["iam:AttachRolePolicy", "iam:DetachRolePolicy"],
                "Resource": f"{iam}:role/*",
                "Condition": {
                    "ArnEquals": {
                        "iam:PolicyARN": [
                            f"arn:{partition}:iam::aws:policy/{p}" for p in attachable_policies
                        ]
                    }
                },
            },
            {
                "Sid": "PassRolesToEcsTasksOnly",
                "Effect": "Allow",
                "Action": "iam:PassRole",
                "Resource": f"{iam}:role/*",
                "Condition": {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
            },
            {
                "Sid": "CreateServiceLinkedRoles",
                "Effect": "Allow",
                "Action": "iam:CreateServiceLinkedRole",
                "Resource": f"{iam}:role/aws-service-role/*",
                "Condition": {
                    "StringEquals": {"iam:AWSServiceName": list(SERVICE_LINKED_ROLE_SERVICES)}
                },
            },
            {
                "Sid": "NeverChangeTheCiIdentity",
                "Effect": "Deny",
                "Action": "iam:*",
                "Resource": sorted(protected_arns),
            },
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
                policy=json.dumps(preview_policy()),
                opts=child,
            )
            attach(preview, "preview", args.extra_preview_policy_arns)
            protected.append(preview.arn)
            self.preview_role_arn = preview.arn

        def manage(arns: list[str]) -> str:
            return json.dumps(
                deploy_policy(
                    partition=_arn_part(arns[0], 1),
                    account_id=_arn_part(arns[0], 4),
                    attachable_policies=args.attachable_policies,
                    protected_arns=arns,
                )
            )

        aws.iam.RolePolicy(
            f"{name}-deploy-manage",
            role=deploy.id,
            policy=pulumi.Output.all(*protected).apply(manage),
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
