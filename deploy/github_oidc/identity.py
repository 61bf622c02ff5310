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
  else: every write is scoped to the names the stacks own (the IAM path, the ECS
  cluster, the ECR repositories, the log groups) or to the ``Project``/``Stack``
  tags every resource of a stack carries (see :func:`deploy_policy` and the
  permission table in docs/delivery.md).

Forked repositories get no OIDC token on ``pull_request`` events, so previews of
pull requests from forks cannot assume either role.
"""

from __future__ import annotations

import functools
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

# --- the names the Fargate program's stacks own (COORDINATION contract) ---------
# The project of the Fargate program (Pulumi.yaml at the repository root).
PROJECT = "fargate-service-discovery"
# Every IAM role the Fargate program creates lives under this path
# (components/platform.py); role management and PassRole are limited to it.
ROLE_PATH = f"/{PROJECT}/"
# Tags every resource of a stack carries (aws:defaultTags, checked by config.py):
# Project=<PROJECT>, Stack=<stack>. Tag-scoped statements match both.
PROJECT_TAG = "Project"
STACK_TAG = "Stack"
STACK_TAGS = (PROJECT_TAG, STACK_TAG)


def stack_prefix(stack: str) -> str:
    """``fargate-service-discovery-<stack>``: the ECS cluster's name, the task
    definition families' and log groups' prefix, and (lowercase) the ECR
    repositories' namespace."""
    return f"{PROJECT}-{stack}"


# Managed policies the deploy role may attach to the roles it creates: the task
# execution role of the Fargate program needs exactly this one. Named without the
# partition, which is taken from the account the stack runs in.
DEFAULT_ATTACHABLE_POLICIES: tuple[str, ...] = ("service-role/AmazonECSTaskExecutionRolePolicy",)
# dev and prod (deploy.yml), and e2e: the stack the end-to-end test deploys (e2e.yml, which
# runs one at a time, so one fixed name does; tests/e2e/lifecycle.py defaults to it).
DEFAULT_STACKS: tuple[str, ...] = ("dev", "prod", "e2e")

# What `pulumi preview` (and `pulumi refresh`) read for the Fargate program: every
# action is a read of metadata. ecr:GetAuthorizationToken lets the image build log in
# to the registry (awsx asks for a token at preview too); a token confers nothing
# beyond the role's own rights.
PREVIEW_ACTIONS: tuple[str, ...] = (
    "ec2:Describe*",
    "ecs:Describe*",
    "ecs:List*",
    "elasticloadbalancing:Describe*",
    "servicediscovery:Get*",
    "servicediscovery:List*",
    "route53:GetHostedZone",
    "route53:ListHostedZonesByName",
    # aws.route53.get_zone by name (domain.zoneName) pages through every zone of the account.
    "route53:ListHostedZones",
    "route53:ListResourceRecordSets",
    "route53:ListTagsForResource",
    "acm:DescribeCertificate",
    "acm:ListTagsForCertificate",
    "logs:DescribeLogGroups",
    "logs:ListTagsForResource",
    "logs:ListTagsLogGroup",
    "ecr:DescribeRepositories",
    "ecr:DescribeImages",
    "ecr:ListTagsForResource",
    "ecr:GetLifecyclePolicy",
    "ecr:GetRepositoryPolicy",
    "ecr:GetAuthorizationToken",
    "iam:GetRole",
    "iam:GetRolePolicy",
    "iam:ListRolePolicies",
    "iam:ListAttachedRolePolicies",
    "iam:GetPolicy",
    "iam:GetPolicyVersion",
)

# Image content: the build's cache import (awsx's docker-build Image uses the
# repository as an inline cache) pulls layers, at preview too. Only from the
# stacks' repositories: code of any pull request runs with the preview role, and
# images of other repositories may hold what it should not read.
PREVIEW_IMAGE_READS: tuple[str, ...] = (
    "ecr:BatchCheckLayerAvailability",
    "ecr:BatchGetImage",
    "ecr:GetDownloadUrlForLayer",
)

# --- the deploy role: every action, with the API call that needs it -----------
# Statements with Resource "*" may hold only these actions. Each is a read, or a
# write for which the Service Authorization Reference lists no resource type (so a
# Resource other than "*" would never match), with the reason. A test holds every
# "*" statement to this list.
ACCOUNT_WIDE_ACTIONS: Mapping[str, str] = {
    "ec2:Describe*": "read; EC2 Describe actions support no resource-level permissions",
    "elasticloadbalancing:Describe*": "read; ELB Describe actions support no resource types",
    "servicediscovery:Get*": "read; GetOperation has no resource type, and namespace and "
    "service ids are assigned by Cloud Map",
    "servicediscovery:List*": "read; List actions support no resource-level permissions",
    "route53:GetHostedZone": "read; the namespace's private zone id is assigned by Cloud Map "
    "(CreatePrivateDnsNamespace needs it)",
    "route53:ListHostedZonesByName": "read; no resource types (CreatePrivateDnsNamespace)",
    "route53:ListHostedZones": "read; no resource types (aws.route53.get_zone by name, "
    "domain.zoneName, lists the account's zones: zone_data_source.go)",
    "logs:DescribeLogGroups": "read; no resource types (log group read by name prefix)",
    "ecr:GetAuthorizationToken": "no resource types; a registry token carries no rights "
    "beyond the role's own ECR permissions",
    "ecs:DescribeTaskDefinition": "read; no resource types",
    "ecs:RegisterTaskDefinition": "no resource types; conditioned on the stack's request "
    "tags, and the task's roles are limited by iam:PassRole",
    "ecs:DeregisterTaskDefinition": "no resource types (task definition delete); "
    "marks a revision INACTIVE, running tasks and services are unaffected",
    "servicediscovery:CreatePrivateDnsNamespace": "no resource types; conditioned on the "
    "stack's request tags",
    "route53:CreateHostedZone": "no resource types; Cloud Map's CreatePrivateDnsNamespace "
    "creates the namespace's private zone with the caller's permissions",
    "acm:RequestCertificate": "no resource types; conditioned on the stack's request tags",
    "application-autoscaling:DescribeScalableTargets": "read; no resource types (the target "
    "is looked up by its ECS resource id)",
    "application-autoscaling:DescribeScalingPolicies": "read; no resource types",
    "cloudwatch:DescribeAlarms": "read; alarms are read by name, which reveals nothing the "
    "role could change (writes are scoped by name below)",
    "sns:GetSubscriptionAttributes": "read; subscription actions have no resource type in "
    "SNS (only topic actions do)",
    "sns:Unsubscribe": "no resource types (a subscription is not a topic resource); the "
    "destroy of the alarm e-mail subscription; removes a delivery, never a topic or message",
}

# EC2 actions that create what awsx.ec2.Vpc and aws.ec2.SecurityGroup declare, and
# the resource type each creates. All carry the stack's tags in TagSpecifications.
EC2_CREATES: Mapping[str, str] = {
    "ec2:CreateVpc": "vpc",
    "ec2:CreateSubnet": "subnet",
    "ec2:CreateRouteTable": "route-table",
    "ec2:CreateInternetGateway": "internet-gateway",
    "ec2:AllocateAddress": "elastic-ip",
    "ec2:CreateNatGateway": "natgateway",
    "ec2:CreateSecurityGroup": "security-group",
}
EC2_TAGGED_TYPES: tuple[str, ...] = tuple(EC2_CREATES.values())
# The calls that write security group rules (aws.vpc.SecurityGroup{Ingress,Egress}Rule,
# and the default egress rule the provider revokes from a new group).
SECURITY_GROUP_RULE_WRITES: tuple[str, ...] = (
    "ec2:AuthorizeSecurityGroupIngress",
    "ec2:AuthorizeSecurityGroupEgress",
    "ec2:RevokeSecurityGroupIngress",
    "ec2:RevokeSecurityGroupEgress",
    "ec2:ModifySecurityGroupRules",
    "ec2:UpdateSecurityGroupRuleDescriptionsIngress",
    "ec2:UpdateSecurityGroupRuleDescriptionsEgress",
)
# Writes on resources that exist: delete, modify, attach, routes, rules. Each needs
# the stack's tags on every resource of the request (the route table and the
# subnet of an association, the gateway and the VPC of an attachment).
EC2_STACK_WRITES: tuple[str, ...] = (
    "ec2:DeleteVpc",
    "ec2:ModifyVpcAttribute",
    "ec2:DeleteSubnet",
    "ec2:ModifySubnetAttribute",
    "ec2:DeleteRouteTable",
    "ec2:CreateRoute",
    "ec2:ReplaceRoute",
    "ec2:DeleteRoute",
    "ec2:AssociateRouteTable",
    "ec2:ReplaceRouteTableAssociation",
    "ec2:DisassociateRouteTable",
    "ec2:AttachInternetGateway",
    "ec2:DetachInternetGateway",
    "ec2:DeleteInternetGateway",
    "ec2:DeleteNatGateway",
    "ec2:ReleaseAddress",
    "ec2:DisassociateAddress",
    "ec2:DeleteSecurityGroup",
    *SECURITY_GROUP_RULE_WRITES,
)

ECS_STACK_ACTIONS: tuple[str, ...] = (
    "ecs:CreateCluster",
    "ecs:DescribeClusters",
    "ecs:UpdateCluster",
    "ecs:UpdateClusterSettings",
    "ecs:PutClusterCapacityProviders",
    "ecs:DeleteCluster",
    "ecs:UpdateService",
    "ecs:DeleteService",
    "ecs:DescribeServices",
    # Newer provider releases follow a deployment through these while they wait for a
    # steady state (wait_for_steady_state); reads, on the stack's services only.
    "ecs:ListServiceDeployments",
    "ecs:DescribeServiceDeployments",
    "ecs:DeleteTaskDefinitions",
    "ecs:TagResource",
    "ecs:UntagResource",
    "ecs:ListTagsForResource",
)

ELB_CREATES: tuple[str, ...] = (
    "elasticloadbalancing:CreateLoadBalancer",
    "elasticloadbalancing:CreateTargetGroup",
)
# Created inside a resource of the stack: the parent (load balancer, listener)
# must carry the stack's tags, and so must the request.
ELB_CHILD_CREATES: tuple[str, ...] = (
    "elasticloadbalancing:CreateListener",
    "elasticloadbalancing:CreateRule",
)
ELB_STACK_WRITES: tuple[str, ...] = (
    "elasticloadbalancing:ModifyLoadBalancerAttributes",
    "elasticloadbalancing:SetSecurityGroups",
    "elasticloadbalancing:SetSubnets",
    "elasticloadbalancing:SetIpAddressType",
    "elasticloadbalancing:DeleteLoadBalancer",
    "elasticloadbalancing:ModifyTargetGroup",
    "elasticloadbalancing:ModifyTargetGroupAttributes",
    "elasticloadbalancing:DeleteTargetGroup",
    "elasticloadbalancing:ModifyListener",
    "elasticloadbalancing:ModifyListenerAttributes",
    "elasticloadbalancing:AddListenerCertificates",
    "elasticloadbalancing:RemoveListenerCertificates",
    "elasticloadbalancing:DeleteListener",
    "elasticloadbalancing:ModifyRule",
    "elasticloadbalancing:SetRulePriorities",
    "elasticloadbalancing:DeleteRule",
)

CLOUD_MAP_STACK_WRITES: tuple[str, ...] = (
    "servicediscovery:UpdatePrivateDnsNamespace",
    "servicediscovery:DeleteNamespace",
    "servicediscovery:CreateService",
    "servicediscovery:UpdateService",
    "servicediscovery:DeleteService",
    "servicediscovery:DeregisterInstance",
)

ECR_REPOSITORY_ACTIONS: tuple[str, ...] = (
    "ecr:CreateRepository",
    "ecr:DescribeRepositories",
    "ecr:DeleteRepository",
    "ecr:PutImageScanningConfiguration",
    "ecr:PutImageTagMutability",
    "ecr:PutLifecyclePolicy",
    "ecr:GetLifecyclePolicy",
    "ecr:DeleteLifecyclePolicy",
    "ecr:TagResource",
    "ecr:UntagResource",
    "ecr:ListTagsForResource",
    # The image push of awsx.ecr.Image at `pulumi up` (and its layer cache reads).
    "ecr:BatchCheckLayerAvailability",
    "ecr:InitiateLayerUpload",
    "ecr:UploadLayerPart",
    "ecr:CompleteLayerUpload",
    "ecr:PutImage",
    "ecr:BatchGetImage",
    "ecr:GetDownloadUrlForLayer",
    "ecr:DescribeImages",
)

LOG_GROUP_ACTIONS: tuple[str, ...] = (
    "logs:CreateLogGroup",
    "logs:DeleteLogGroup",
    "logs:PutRetentionPolicy",
    "logs:DeleteRetentionPolicy",
    "logs:TagResource",
    "logs:UntagResource",
    "logs:ListTagsForResource",
    "logs:TagLogGroup",
    "logs:UntagLogGroup",
    "logs:ListTagsLogGroup",
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
    "iam:GetRolePolicy",
    "iam:ListAttachedRolePolicies",
    "iam:ListInstanceProfilesForRole",
)

# Service-linked roles that ECS, the load balancer and Application Auto Scaling (for ECS
# services: AWSServiceRoleForApplicationAutoScaling_ECSService, on the first
# RegisterScalableTarget) create on first use in an account.
SERVICE_LINKED_ROLE_SERVICES: tuple[str, ...] = (
    "ecs.amazonaws.com",
    "elasticloadbalancing.amazonaws.com",
    "ecs.application-autoscaling.amazonaws.com",
)

# Application Auto Scaling (aws.appautoscaling.Target/Policy): the scalable target is the
# only resource type (scalable-target/<id>, an id AWS assigns), so these are tag-scoped:
# aws:RequestTag on RegisterScalableTarget's create, aws:ResourceTag afterwards. Registering
# also needs ecs:DescribeServices/UpdateService on the service, which ECS_STACK_ACTIONS limit
# to the stack's cluster.
AUTOSCALING_STACK_WRITES: tuple[str, ...] = (
    "application-autoscaling:RegisterScalableTarget",
    "application-autoscaling:DeregisterScalableTarget",
    "application-autoscaling:PutScalingPolicy",
    "application-autoscaling:DeleteScalingPolicy",
    "application-autoscaling:ListTagsForResource",
)
# CloudWatch alarms and the dashboard, by name (`<prefix>-*`, `<prefix>`).
ALARM_ACTIONS: tuple[str, ...] = (
    "cloudwatch:DeleteAlarms",
    "cloudwatch:TagResource",
    "cloudwatch:UntagResource",
    "cloudwatch:ListTagsForResource",
)
DASHBOARD_ACTIONS: tuple[str, ...] = (
    "cloudwatch:PutDashboard",
    "cloudwatch:GetDashboard",
    "cloudwatch:DeleteDashboards",
)
# The alarm topic, by name (`<prefix>-alarms`); CreateTopic with tags also needs TagResource.
TOPIC_ACTIONS: tuple[str, ...] = (
    "sns:CreateTopic",
    "sns:GetTopicAttributes",
    "sns:SetTopicAttributes",
    "sns:DeleteTopic",
    "sns:TagResource",
    "sns:UntagResource",
    "sns:ListTagsForResource",
)

# The deploy role's permissions do not fit IAM's 10,240 characters of inline policy
# per role, so they are customer managed policies (6,144 characters each, whitespace
# not counted), one per part, under their own path so the deploy role can be denied
# every IAM action on them. Each statement goes to the part named by its Sid prefix.
MANAGED_POLICY_MAX_CHARS = 6_144
CI_POLICY_PATH = "/github-oidc/"
DEPLOY_POLICY_PARTS: Mapping[str, tuple[str, ...]] = {
    "network": ("Ec2",),
    "entry-and-discovery": ("Elb", "CloudMap"),
    "containers": ("ReadAnd", "CreateTagged", "Ecs", "Ecr", "Logs"),
    "identity-and-domains": (
        "Manage",
        "Attach",
        "Pass",
        "CreateService",
        "Route53",
        "Acm",
        "Never",
    ),
    "operations": ("Autoscaling", "Alarms", "Dashboard", "Sns"),
}
# IAM's default quota of managed policies attached to one role.
ATTACHED_POLICIES_MAX = 10

_PROVIDER_ARN = re.compile(
    r"^arn:aws[a-z-]*:iam::[0-9]{12}:oidc-provider/" + re.escape(GITHUB_OIDC_HOST) + "$"
)
_REPOSITORY = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$")
# Branch and environment names go into the sub claim verbatim. Wildcards would
# need StringLike and widen the trust; a colon or quote would break the claim.
_CLAIM_PART = re.compile(r"^[A-Za-z0-9._/-]+$")
# Stack names go into ARNs and tag conditions: no IAM wildcard (* ?) may slip in,
# and the derived names must be valid everywhere they are used (ECR repository
# namespaces: lowercase, single separators; ECS cluster names: no dots).
_STACK = re.compile(r"^[a-z0-9]+(?:[_-][a-z0-9]+)*$")
STACK_MAX_LEN = 64
_DOMAIN_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
# Route 53 hosted zone ids: "Z" and upper-case letters and digits.
_HOSTED_ZONE_ID = re.compile(r"^Z[A-Z0-9]{1,31}$")


@dataclass(frozen=True)
class PublicDomain:
    """A stack's public name and the Route 53 public hosted zone that serves it.

    The deploy role may write exactly two kinds of record in that zone: the alias
    ``A`` record of ``domain`` (the load balancer) and ACM's DNS validation
    ``CNAME`` records ``_<hash>.<domain>``.
    """

    domain: str
    hosted_zone_id: str

    def __post_init__(self) -> None:
        labels = self.domain.split(".")
        if (
            len(self.domain) > 253
            or len(labels) < 2
            or not all(_DOMAIN_LABEL.match(label) for label in labels)
        ):
            raise ValueError(
                f"publicDomains: domain {self.domain!r} is not a lowercase DNS name of at "
                "least two labels (letters, digits, inner hyphens; no wildcard, no trailing dot)"
            )
        if not _HOSTED_ZONE_ID.match(self.hosted_zone_id):
            raise ValueError(
                f"publicDomains: hostedZoneId {self.hosted_zone_id!r} is not a Route 53 "
                "hosted zone id (Z followed by upper-case letters and digits)"
            )


@dataclass(frozen=True)
class GitHubOidcArgs:
    """What the roles trust and what they may do.

    ``repository`` is ``owner/name`` as GitHub spells it (the claim is
    case-sensitive). ``provider_arn`` reuses an account's existing GitHub OIDC
    provider: IAM allows one provider per URL and account. ``stacks`` are the
    Fargate program's stacks the deploy role may change; ``public_domains`` the
    public names (and their hosted zones) those stacks serve, if any.
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
        self._check_deploy_scope()

    def _check_deploy_scope(self) -> None:
        """The stacks and domains the deploy role is scoped to, and that its policies fit."""
        if isinstance(self.stacks, str):
            raise TypeError(f"stacks: give a list of stack names, not the string {self.stacks!r}")
        if not self.stacks:
            raise ValueError("stacks: empty; the deploy role would have nothing to deploy")
        bad = [s for s in self.stacks if len(s) > STACK_MAX_LEN or not _STACK.match(s)]
        if bad:
            raise ValueError(
                f"stacks: {bad} must be lowercase letters and digits with single '-' or '_' "
                f"between them, at most {STACK_MAX_LEN} characters (the names go into ARNs, "
                "ECR repository names and ECS cluster names; no wildcards)"
            )
        if len(set(self.stacks)) != len(self.stacks):
            raise ValueError(f"stacks: {list(self.stacks)} lists a stack twice")
        domains = [d.domain for d in self.public_domains]
        if len(set(domains)) != len(domains):
            raise ValueError(f"publicDomains: {domains} lists a domain twice")
        attached = len(DEPLOY_POLICY_PARTS) + len(self.extra_deploy_policy_arns)
        if attached > ATTACHED_POLICIES_MAX:
            raise ValueError(
                f"extra_deploy_policy_arns: {len(self.extra_deploy_policy_arns)} plus the "
                f"{len(DEPLOY_POLICY_PARTS)} deploy policies exceed IAM's default quota of "
                f"{ATTACHED_POLICIES_MAX} managed policies per role"
            )
        for part, size in _largest_parts(self).items():
            if size > MANAGED_POLICY_MAX_CHARS:
                raise ValueError(
                    f"stacks/publicDomains: the deploy role's {part!r} policy would be {size} "
                    f"characters, over IAM's {MANAGED_POLICY_MAX_CHARS} for a managed policy; "
                    "give this github-oidc stack fewer stacks or domains (or deploy a second one)"
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


def preview_policy(
    partition: str, account_id: str, stacks: Sequence[str] = DEFAULT_STACKS
) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ReadStackResources",
                "Effect": "Allow",
                "Action": list(PREVIEW_ACTIONS),
                "Resource": "*",
            },
            {
                "Sid": "PullFromStackRepositories",
                "Effect": "Allow",
                "Action": list(PREVIEW_IMAGE_READS),
                "Resource": [
                    f"arn:{partition}:ecr:*:{account_id}:repository/{stack_prefix(s).lower()}/*"
                    for s in sorted(stacks)
                ],
            },
        ],
    }


def _tags(kind: str, stacks: Sequence[str]) -> dict[str, Any]:
    """``aws:RequestTag`` (kind "Request") or ``aws:ResourceTag`` ("Resource") equal to
    Project=<PROJECT> and Stack=<one of the stacks>."""
    return {
        f"aws:{kind}Tag/{PROJECT_TAG}": PROJECT,
        f"aws:{kind}Tag/{STACK_TAG}": sorted(stacks),
    }


def _keeps_stack_tags() -> dict[str, Any]:
    """A tag write on an existing resource may not change Project or Stack, so no
    resource can be moved into (or between) the stacks by re-tagging it."""
    return {"ForAllValues:StringNotEquals": {"aws:TagKeys": list(STACK_TAGS)}}


def deploy_policy(
    partition: str,
    account_id: str,
    attachable_policies: Sequence[str],
    protected_arns: Sequence[str],
    *,
    stacks: Sequence[str] = DEFAULT_STACKS,
    public_domains: Sequence[PublicDomain] = (),
) -> dict[str, Any]:
    """The deploy role's permissions: what `pulumi up`, `refresh` and `destroy` of the
    Fargate program's ``stacks`` call, on what those stacks own.

    Scoping, by what each service supports: IAM roles by the path
    :data:`ROLE_PATH`; ECS by the cluster's name; ECR repositories and log groups by
    name; EC2, load balancers, Cloud Map and ACM certificates by the stack's tags
    (``aws:RequestTag`` on create, ``aws:ResourceTag`` after; tag writes on existing
    resources may not touch Project/Stack); Route 53 records by zone, name, type
    and action. What no resource can scope is in :data:`ACCOUNT_WIDE_ACTIONS`.

    The IAM statements close the usual escalation paths of a CI role that manages
    roles: it cannot write inline policies, attaches only the allow-listed managed
    policies, passes only the program's roles and only to ECS tasks, and may not
    touch the OIDC provider or the CI roles themselves (so a change merged to main
    cannot widen its own trust or permissions).
    """
    iam = f"arn:{partition}:iam::{account_id}"
    prefixes = [stack_prefix(s) for s in sorted(stacks)]

    def arn(service: str, resource: str) -> str:
        return f"arn:{partition}:{service}:*:{account_id}:{resource}"

    ec2_tagged = [arn("ec2", f"{t}/*") for t in EC2_TAGGED_TYPES]
    ecs_owned = [
        resource
        for p in prefixes
        for resource in (
            arn("ecs", f"cluster/{p}"),
            arn("ecs", f"service/{p}/*"),
            arn("ecs", f"service-deployment/{p}/*"),
            arn("ecs", f"task-definition/{p}-*:*"),
        )
    ]
    elb = [
        arn("elasticloadbalancing", r)
        for r in ("loadbalancer/app/*", "targetgroup/*", "listener/app/*", "listener-rule/app/*")
    ]
    # CreateListener authorizes the new listener and its load balancer; CreateRule the new
    # rule and its listener (Service Authorization Reference, Elastic Load Balancing V2).
    elb_parents = [arn("elasticloadbalancing", r) for r in ("loadbalancer/app/*", "listener/app/*")]
    elb_children = [
        arn("elasticloadbalancing", r) for r in ("listener/app/*", "listener-rule/app/*")
    ]
    cloud_map = [arn("servicediscovery", r) for r in ("namespace/*", "service/*")]
    roles = f"{iam}:role{ROLE_PATH}*"

    statements: list[dict[str, Any]] = [
        {
            "Sid": "ReadAndWritesWithoutResourceTypes",
            "Effect": "Allow",
            "Action": [
                a
                for a in ACCOUNT_WIDE_ACTIONS
                if a
                not in (
                    "ecs:RegisterTaskDefinition",
                    "servicediscovery:CreatePrivateDnsNamespace",
                    "acm:RequestCertificate",
                )
            ],
            "Resource": "*",
        },
        {
            "Sid": "CreateTaggedWithoutResourceTypes",
            "Effect": "Allow",
            "Action": [
                "ecs:RegisterTaskDefinition",
                "servicediscovery:CreatePrivateDnsNamespace",
                *(["acm:RequestCertificate"] if public_domains else []),
            ],
            "Resource": "*",
            "Condition": {"StringEquals": _tags("Request", stacks)},
        },
        # --- EC2: the VPC's parts and the security groups, by tag -------------
        {
            "Sid": "Ec2CreateTagged",
            "Effect": "Allow",
            "Action": list(EC2_CREATES),
            "Resource": ec2_tagged,
            "Condition": {"StringEquals": _tags("Request", stacks)},
        },
        {
            # An existing VPC (network.vpcId) carries no stack tags.
            "Sid": "Ec2CreateInAVpc",
            "Effect": "Allow",
            "Action": ["ec2:CreateSubnet", "ec2:CreateRouteTable", "ec2:CreateSecurityGroup"],
            "Resource": arn("ec2", "vpc/*"),
        },
        {
            "Sid": "Ec2TagOnCreate",
            "Effect": "Allow",
            "Action": "ec2:CreateTags",
            "Resource": [*ec2_tagged, arn("ec2", "security-group-rule/*")],
            "Condition": {
                "StringEquals": {
                    "ec2:CreateAction": sorted(
                        [
                            *(a.split(":")[1] for a in EC2_CREATES),
                            "AuthorizeSecurityGroupIngress",
                            "AuthorizeSecurityGroupEgress",
                        ]
                    )
                }
            },
        },
        {
            "Sid": "Ec2WriteStackResources",
            "Effect": "Allow",
            "Action": list(EC2_STACK_WRITES),
            "Resource": ec2_tagged,
            "Condition": {"StringEquals": _tags("Resource", stacks)},
        },
        {
            # The rule resources of those calls: every such call also names its
            # security group, which the statement above limits to the stack's.
            "Sid": "Ec2RulesOfStackGroups",
            "Effect": "Allow",
            "Action": list(SECURITY_GROUP_RULE_WRITES),
            "Resource": arn("ec2", "security-group-rule/*"),
        },
        {
            "Sid": "Ec2RetagStackResources",
            "Effect": "Allow",
            "Action": ["ec2:CreateTags", "ec2:DeleteTags"],
            "Resource": [*ec2_tagged, arn("ec2", "security-group-rule/*")],
            "Condition": {"StringEquals": _tags("Resource", stacks), **_keeps_stack_tags()},
        },
        # --- ECS: the stack's cluster, its services and task definitions ------
        {
            "Sid": "EcsStackCluster",
            "Effect": "Allow",
            "Action": list(ECS_STACK_ACTIONS),
            "Resource": ecs_owned,
        },
        {
            "Sid": "EcsServicesInTheStackCluster",
            "Effect": "Allow",
            "Action": "ecs:CreateService",
            "Resource": [r for r in ecs_owned if ":service/" in r],
            "Condition": {
                # ArnLike: the region part of the cluster ARN is a wildcard.
                "ArnLike": {
                    "ecs:cluster": [r for r in ecs_owned if ":cluster/" in r],
                }
            },
        },
        # --- Elastic Load Balancing, by tag ----------------------------------
        {
            "Sid": "ElbCreateTagged",
            "Effect": "Allow",
            "Action": list(ELB_CREATES),
            "Resource": elb,
            "Condition": {"StringEquals": _tags("Request", stacks)},
        },
        {
            # The parent a listener or rule is created in (a load balancer, a listener)
            # must be the stack's. Not the new listener or rule: it has no tags yet.
            "Sid": "ElbCreateInStackResources",
            "Effect": "Allow",
            "Action": list(ELB_CHILD_CREATES),
            "Resource": elb_parents,
            "Condition": {"StringEquals": _tags("Resource", stacks)},
        },
        {
            # The listener or rule being created: only with the stack's tags in the request.
            "Sid": "ElbCreateChildrenTagged",
            "Effect": "Allow",
            "Action": list(ELB_CHILD_CREATES),
            "Resource": elb_children,
            "Condition": {"StringEquals": _tags("Request", stacks)},
        },
        {
            "Sid": "ElbTagOnCreate",
            "Effect": "Allow",
            "Action": "elasticloadbalancing:AddTags",
            "Resource": elb,
            "Condition": {
                "StringEquals": {
                    "elasticloadbalancing:CreateAction": sorted(
                        a.split(":")[1] for a in (*ELB_CREATES, *ELB_CHILD_CREATES)
                    )
                }
            },
        },
        {
            "Sid": "ElbWriteStackResources",
            "Effect": "Allow",
            "Action": list(ELB_STACK_WRITES),
            "Resource": elb,
            "Condition": {"StringEquals": _tags("Resource", stacks)},
        },
        {
            "Sid": "ElbRetagStackResources",
            "Effect": "Allow",
            "Action": ["elasticloadbalancing:AddTags", "elasticloadbalancing:RemoveTags"],
            "Resource": elb,
            "Condition": {"StringEquals": _tags("Resource", stacks), **_keeps_stack_tags()},
        },
        # --- Cloud Map, by tag -----------------------------------------------
        {
            "Sid": "CloudMapWriteStackResources",
            "Effect": "Allow",
            "Action": list(CLOUD_MAP_STACK_WRITES),
            "Resource": cloud_map,
            "Condition": {"StringEquals": _tags("Resource", stacks)},
        },
        {
            # CreateService authorizes the namespace (above: the stack's) and the new service,
            # which has no tags yet: only with the stack's tags in the request.
            "Sid": "CloudMapCreateServiceTagged",
            "Effect": "Allow",
            "Action": "servicediscovery:CreateService",
            "Resource": arn("servicediscovery", "service/*"),
            "Condition": {"StringEquals": _tags("Request", stacks)},
        },
        {
            # Cloud Map authorizes the tags of CreatePrivateDnsNamespace and CreateService as
            # servicediscovery:TagResource (Service Authorization Reference: both list it),
            # and has no CreateAction key. So: the stack's tags in the request, on a resource
            # that carries no Project tag yet (the one being created; never another
            # project's or stack's).
            "Sid": "CloudMapTagOnCreate",
            "Effect": "Allow",
            "Action": "servicediscovery:TagResource",
            "Resource": cloud_map,
            "Condition": {
                "StringEquals": _tags("Request", stacks),
                "Null": {f"aws:ResourceTag/{PROJECT_TAG}": "true"},
            },
        },
        {
            "Sid": "CloudMapRetagStackResources",
            "Effect": "Allow",
            "Action": ["servicediscovery:TagResource", "servicediscovery:UntagResource"],
            "Resource": cloud_map,
            "Condition": {"StringEquals": _tags("Resource", stacks), **_keeps_stack_tags()},
        },
        # --- ECR repositories and log groups, by name ------------------------
        {
            "Sid": "EcrStackRepositories",
            "Effect": "Allow",
            "Action": list(ECR_REPOSITORY_ACTIONS),
            "Resource": [arn("ecr", f"repository/{p.lower()}/*") for p in prefixes],
        },
        {
            "Sid": "LogsStackLogGroups",
            "Effect": "Allow",
            "Action": list(LOG_GROUP_ACTIONS),
            "Resource": [arn("logs", f"log-group:/ecs/{p}/*") for p in prefixes],
        },
        # --- IAM: the program's roles, under its path -------------------------
        {
            "Sid": "ManageStackRoles",
            "Effect": "Allow",
            "Action": list(DEPLOY_ROLE_ACTIONS),
            "Resource": roles,
        },
        {
            "Sid": "AttachAllowListedPoliciesOnly",
            "Effect": "Allow",
            "Action": ["iam:AttachRolePolicy", "iam:DetachRolePolicy"],
            "Resource": roles,
            "Condition": {
                "ArnEquals": {
                    "iam:PolicyARN": [
                        f"arn:{partition}:iam::aws:policy/{p}" for p in attachable_policies
                    ]
                }
            },
        },
        {
            "Sid": "PassStackRolesToEcsTasksOnly",
            "Effect": "Allow",
            "Action": "iam:PassRole",
            "Resource": roles,
            "Condition": {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
        },
        {
            "Sid": "CreateServiceLinkedRoles",
            "Effect": "Allow",
            "Action": "iam:CreateServiceLinkedRole",
            "Resource": [
                f"{iam}:role/aws-service-role/{service}/*"
                for service in SERVICE_LINKED_ROLE_SERVICES
            ],
            "Condition": {
                "StringEquals": {"iam:AWSServiceName": list(SERVICE_LINKED_ROLE_SERVICES)}
            },
        },
    ]
    statements += _operations_statements(partition, account_id, stacks)
    if public_domains:
        statements += _public_domain_statements(partition, account_id, stacks, public_domains)
    statements.append(
        {
            "Sid": "NeverChangeTheCiIdentity",
            "Effect": "Deny",
            "Action": "iam:*",
            "Resource": sorted([*protected_arns, f"{iam}:policy{CI_POLICY_PATH}*"]),
        }
    )
    return {"Version": "2012-10-17", "Statement": statements}


def _operations_statements(
    partition: str, account_id: str, stacks: Sequence[str]
) -> list[dict[str, Any]]:
    """Autoscaling, alarms, the dashboard and the alarm topic of each stack (issue 10)."""
    prefixes = [stack_prefix(s) for s in sorted(stacks)]
    targets = f"arn:{partition}:application-autoscaling:*:{account_id}:scalable-target/*"
    topics = [f"arn:{partition}:sns:*:{account_id}:{p}-alarms" for p in prefixes]
    alarms = [f"arn:{partition}:cloudwatch:*:{account_id}:alarm:{p}-*" for p in prefixes]
    return [
        {
            "Sid": "AutoscalingRegisterTagged",
            "Effect": "Allow",
            "Action": [
                "application-autoscaling:RegisterScalableTarget",
                "application-autoscaling:TagResource",
            ],
            "Resource": targets,
            "Condition": {"StringEquals": _tags("Request", stacks)},
        },
        {
            "Sid": "AutoscalingStackTargets",
            "Effect": "Allow",
            "Action": list(AUTOSCALING_STACK_WRITES),
            "Resource": targets,
            "Condition": {"StringEquals": _tags("Resource", stacks)},
        },
        {
            "Sid": "AutoscalingRetagStackTargets",
            "Effect": "Allow",
            "Action": [
                "application-autoscaling:TagResource",
                "application-autoscaling:UntagResource",
            ],
            "Resource": targets,
            "Condition": {"StringEquals": _tags("Resource", stacks), **_keeps_stack_tags()},
        },
        {
            # The stack's alarms may notify only the stack's topic.
            "Sid": "AlarmsPutStackAlarms",
            "Effect": "Allow",
            "Action": "cloudwatch:PutMetricAlarm",
            "Resource": alarms,
            "Condition": {"ForAllValues:StringLike": {"cloudwatch:AlarmActions": topics}},
        },
        {
            "Sid": "AlarmsManageStackAlarms",
            "Effect": "Allow",
            "Action": list(ALARM_ACTIONS),
            "Resource": alarms,
        },
        {
            # The ECS guide lists these for whoever creates a target tracking policy; the two
            # alarms it makes are named TargetTracking-<resource id>-AlarmHigh/Low-<uuid>.
            "Sid": "AlarmsOfTargetTracking",
            "Effect": "Allow",
            "Action": ["cloudwatch:PutMetricAlarm", "cloudwatch:DeleteAlarms"],
            "Resource": [
                f"arn:{partition}:cloudwatch:*:{account_id}:alarm:TargetTracking-service/{p}/*"
                for p in prefixes
            ],
        },
        {
            "Sid": "DashboardOfTheStack",
            "Effect": "Allow",
            "Action": list(DASHBOARD_ACTIONS),
            "Resource": [
                f"arn:{partition}:cloudwatch::{account_id}:dashboard/{p}" for p in prefixes
            ],
        },
        {
            "Sid": "SnsStackTopic",
            "Effect": "Allow",
            "Action": list(TOPIC_ACTIONS),
            "Resource": topics,
        },
        {
            "Sid": "SnsEmailSubscriptions",
            "Effect": "Allow",
            "Action": "sns:Subscribe",
            "Resource": topics,
            "Condition": {"StringEquals": {"sns:Protocol": "email"}},
        },
    ]


def _public_domain_statements(
    partition: str,
    account_id: str,
    stacks: Sequence[str],
    public_domains: Sequence[PublicDomain],
) -> list[dict[str, Any]]:
    """ACM certificates and the two kinds of record each public domain needs."""
    zones = sorted(
        {f"arn:{partition}:route53:::hostedzone/{d.hosted_zone_id}" for d in public_domains}
    )
    names = sorted(d.domain for d in public_domains)
    actions = ["CREATE", "UPSERT", "DELETE"]

    def records(match: str, record_names: list[str], record_type: str) -> dict[str, Any]:
        keys = {
            "route53:ChangeResourceRecordSetsNormalizedRecordNames": record_names,
            "route53:ChangeResourceRecordSetsRecordTypes": [record_type],
            "route53:ChangeResourceRecordSetsActions": actions,
        }
        # ForAllValues is true for a missing key: require each key to be present.
        return {
            f"ForAllValues:{match}": keys,
            "Null": dict.fromkeys(keys, "false"),
        }

    certificates = f"arn:{partition}:acm:*:{account_id}:certificate/*"
    return [
        {
            "Sid": "Route53AliasOfEachDomain",
            "Effect": "Allow",
            "Action": "route53:ChangeResourceRecordSets",
            "Resource": zones,
            "Condition": records("StringEquals", names, "A"),
        },
        {
            "Sid": "Route53AcmValidationRecords",
            "Effect": "Allow",
            "Action": "route53:ChangeResourceRecordSets",
            "Resource": zones,
            "Condition": records("StringLike", [f"_*.{n}" for n in names], "CNAME"),
        },
        {
            "Sid": "Route53ReadDomainZones",
            "Effect": "Allow",
            "Action": ["route53:ListResourceRecordSets", "route53:ListTagsForResource"],
            "Resource": zones,
        },
        {
            "Sid": "Route53WaitForChanges",
            "Effect": "Allow",
            "Action": "route53:GetChange",
            "Resource": f"arn:{partition}:route53:::change/*",
        },
        {
            # No CreateAction key in ACM: the stack's tags in the request, and only on a
            # certificate that has no Project tag yet (the one being requested, or an
            # untagged one; never another project's or stack's).
            "Sid": "AcmTagOnRequest",
            "Effect": "Allow",
            "Action": "acm:AddTagsToCertificate",
            "Resource": certificates,
            "Condition": {
                "StringEquals": _tags("Request", stacks),
                "Null": {f"aws:ResourceTag/{PROJECT_TAG}": "true"},
            },
        },
        {
            "Sid": "AcmReadCertificates",
            "Effect": "Allow",
            "Action": ["acm:DescribeCertificate", "acm:ListTagsForCertificate"],
            "Resource": certificates,
        },
        {
            "Sid": "AcmWriteStackCertificates",
            "Effect": "Allow",
            "Action": ["acm:DeleteCertificate", "acm:RemoveTagsFromCertificate"],
            "Resource": certificates,
            "Condition": {"StringEquals": _tags("Resource", stacks), **_keeps_stack_tags()},
        },
    ]


def policy_size(policy: Mapping[str, Any]) -> int:
    """Characters IAM counts against a policy's size quota (whitespace excluded)."""
    return len(re.sub(r"\s", "", json.dumps(policy)))


def part_of(sid: str) -> str:
    """The managed policy (a key of DEPLOY_POLICY_PARTS) a deploy statement belongs to."""
    for part, prefixes in DEPLOY_POLICY_PARTS.items():
        if sid.startswith(prefixes):
            return part
    raise ValueError(f"statement {sid!r} belongs to no part of DEPLOY_POLICY_PARTS")


def deploy_policies(
    partition: str,
    account_id: str,
    attachable_policies: Sequence[str],
    protected_arns: Sequence[str],
    *,
    stacks: Sequence[str] = DEFAULT_STACKS,
    public_domains: Sequence[PublicDomain] = (),
) -> dict[str, dict[str, Any]]:
    """:func:`deploy_policy` cut into the managed policies of DEPLOY_POLICY_PARTS."""
    whole = deploy_policy(
        partition,
        account_id,
        attachable_policies,
        protected_arns,
        stacks=stacks,
        public_domains=public_domains,
    )
    parts: dict[str, dict[str, Any]] = {
        part: {"Version": whole["Version"], "Statement": []} for part in DEPLOY_POLICY_PARTS
    }
    for statement in whole["Statement"]:
        parts[part_of(statement["Sid"])]["Statement"].append(statement)
    return parts


def _largest_parts(args: GitHubOidcArgs) -> dict[str, int]:
    """Each part's size for the longest partition, account and CI role names IAM allows."""
    account = "0" * 12
    iam = f"arn:aws-iso-b:iam::{account}"
    protected = [f"{iam}:oidc-provider/{GITHUB_OIDC_HOST}"] + [f"{iam}:role/{'r' * 64}"] * 2
    parts = deploy_policies(
        "aws-iso-b",
        account,
        args.attachable_policies,
        protected,
        stacks=args.stacks,
        public_domains=args.public_domains,
    )
    return {part: policy_size(doc) for part, doc in parts.items()}


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
