"""The catalogue of the Fargate program's permissions: what its CI roles may call.

Two roles (identity.py): **preview** (pull requests) reads, and **deploy** (pushes to
the deploy branches and jobs in the deploy environments) creates, updates and destroys
what the Fargate program declares, and nothing else: every write is scoped to the
names the stacks own (names.py: the IAM path, the ECS cluster, the ECR repositories,
the log groups) or to the ``Project``/``Stack`` tags every resource of a stack carries
(the permission table in docs/delivery.md gives each permission, the call that needs
it and its scope).

How to extend it when the program declares a new resource type:

* an action on something the catalogue already scopes: add it to the table of its
  service below (each table is a tuple of actions, or a mapping to a reason);
* a new kind of resource: add a statement builder (a function of a
  :class:`DeployScope` returning statements) to :data:`DEPLOY_STATEMENTS`, its Sids
  starting with a prefix that policy_split.DEPLOY_POLICY_PARTS assigns to a part
  (a Sid no part claims is an error), and give the new actions a row in the permission
  table of docs/delivery.md. An action with Resource "*" must be listed with its reason
  in :data:`ACCOUNT_WIDE_ACTIONS` (tests/delivery/test_github_oidc.py holds every "*"
  statement to it), and the size check (policy_split.py) tells whether the parts
  still fit IAM's limit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from deploy.github_oidc.names import (
    CI_POLICY_PATH,
    DEFAULT_STACKS,
    PROJECT,
    PROJECT_TAG,
    ROLE_PATH,
    STACK_TAG,
    STACK_TAGS,
    stack_prefix,
)
from deploy.github_oidc.validation import PublicDomain

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
    "servicediscovery:CreateHttpNamespace": "no resource types; conditioned on the stack's "
    "request tags (only with serviceConnect: the Service Connect namespace)",
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


# --- the deploy role's statements ----------------------------------------------
# Actions without resource types that may only create with the stack's tags in the
# request: ReadAndWritesWithoutResourceTypes leaves them out, CreateTaggedWithoutResourceTypes
# grants them under the tag condition.
TAGGED_CREATES_WITHOUT_RESOURCE_TYPES: tuple[str, ...] = (
    "ecs:RegisterTaskDefinition",
    "servicediscovery:CreatePrivateDnsNamespace",
    "servicediscovery:CreateHttpNamespace",
    "acm:RequestCertificate",
)

# With serviceConnect (docs/service-connect.md): the stack's HTTP namespace, the cluster's
# Service Connect default (ecs:UpdateCluster, already the stack's). ECS creates the Service
# Connect services in it and registers the tasks through its service-linked role.
SERVICE_CONNECT_NAMESPACE_WRITES: tuple[str, ...] = ("servicediscovery:UpdateHttpNamespace",)


@dataclass(frozen=True)
class DeployScope:
    """What the deploy role's statements are scoped to: the account, the stacks, the
    managed policies it may attach, the CI identity it may not touch, the public domains."""

    partition: str
    account_id: str
    attachable_policies: Sequence[str]
    protected_arns: Sequence[str]
    stacks: Sequence[str]
    public_domains: Sequence[PublicDomain]
    service_connect: bool = False

    @property
    def iam(self) -> str:
        return f"arn:{self.partition}:iam::{self.account_id}"

    @property
    def prefixes(self) -> list[str]:
        return [stack_prefix(s) for s in sorted(self.stacks)]

    @property
    def roles(self) -> str:
        return f"{self.iam}:role{ROLE_PATH}*"

    def arn(self, service: str, resource: str) -> str:
        """An ARN of the account in any region."""
        return f"arn:{self.partition}:{service}:*:{self.account_id}:{resource}"

    def tags(self, kind: str) -> dict[str, Any]:
        return _tags(kind, self.stacks)


def _without_resource_types(scope: DeployScope) -> list[dict[str, Any]]:
    """The only statements with Resource "*": ACCOUNT_WIDE_ACTIONS, the creates tag-conditioned."""
    return [
        {
            "Sid": "ReadAndWritesWithoutResourceTypes",
            "Effect": "Allow",
            "Action": [
                a for a in ACCOUNT_WIDE_ACTIONS if a not in TAGGED_CREATES_WITHOUT_RESOURCE_TYPES
            ],
            "Resource": "*",
        },
        {
            "Sid": "CreateTaggedWithoutResourceTypes",
            "Effect": "Allow",
            "Action": [
                "ecs:RegisterTaskDefinition",
                "servicediscovery:CreatePrivateDnsNamespace",
                *(["servicediscovery:CreateHttpNamespace"] if scope.service_connect else []),
                *(["acm:RequestCertificate"] if scope.public_domains else []),
            ],
            "Resource": "*",
            "Condition": {"StringEquals": scope.tags("Request")},
        },
    ]


def _ec2_tagged(scope: DeployScope) -> list[str]:
    return [scope.arn("ec2", f"{t}/*") for t in EC2_TAGGED_TYPES]


def _network(scope: DeployScope) -> list[dict[str, Any]]:
    """EC2: the VPC's parts and the security groups, by tag."""
    ec2_tagged = _ec2_tagged(scope)
    rules = scope.arn("ec2", "security-group-rule/*")
    return [
        {
            "Sid": "Ec2CreateTagged",
            "Effect": "Allow",
            "Action": list(EC2_CREATES),
            "Resource": ec2_tagged,
            "Condition": {"StringEquals": scope.tags("Request")},
        },
        {
            # An existing VPC (network.vpcId) carries no stack tags.
            "Sid": "Ec2CreateInAVpc",
            "Effect": "Allow",
            "Action": ["ec2:CreateSubnet", "ec2:CreateRouteTable", "ec2:CreateSecurityGroup"],
            "Resource": scope.arn("ec2", "vpc/*"),
        },
        {
            "Sid": "Ec2TagOnCreate",
            "Effect": "Allow",
            "Action": "ec2:CreateTags",
            "Resource": [*ec2_tagged, rules],
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
            "Condition": {"StringEquals": scope.tags("Resource")},
        },
        {
            # The rule resources of those calls: every such call also names its
            # security group, which the statement above limits to the stack's.
            "Sid": "Ec2RulesOfStackGroups",
            "Effect": "Allow",
            "Action": list(SECURITY_GROUP_RULE_WRITES),
            "Resource": rules,
        },
        {
            "Sid": "Ec2RetagStackResources",
            "Effect": "Allow",
            "Action": ["ec2:CreateTags", "ec2:DeleteTags"],
            "Resource": [*ec2_tagged, rules],
            "Condition": {"StringEquals": scope.tags("Resource"), **_keeps_stack_tags()},
        },
    ]


def _ecs(scope: DeployScope) -> list[dict[str, Any]]:
    """ECS: the stack's cluster, its services and task definitions."""
    ecs_owned = [
        resource
        for p in scope.prefixes
        for resource in (
            scope.arn("ecs", f"cluster/{p}"),
            scope.arn("ecs", f"service/{p}/*"),
            scope.arn("ecs", f"service-deployment/{p}/*"),
            scope.arn("ecs", f"task-definition/{p}-*:*"),
        )
    ]
    return [
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
    ]


def _load_balancing(scope: DeployScope) -> list[dict[str, Any]]:
    """Elastic Load Balancing, by tag."""

    def elb_arns(*resources: str) -> list[str]:
        return [scope.arn("elasticloadbalancing", r) for r in resources]

    elb = elb_arns("loadbalancer/app/*", "targetgroup/*", "listener/app/*", "listener-rule/app/*")
    # CreateListener authorizes the new listener and its load balancer; CreateRule the new
    # rule and its listener (Service Authorization Reference, Elastic Load Balancing V2).
    elb_parents = elb_arns("loadbalancer/app/*", "listener/app/*")
    elb_children = elb_arns("listener/app/*", "listener-rule/app/*")
    return [
        {
            "Sid": "ElbCreateTagged",
            "Effect": "Allow",
            "Action": list(ELB_CREATES),
            "Resource": elb,
            "Condition": {"StringEquals": scope.tags("Request")},
        },
        {
            # The parent a listener or rule is created in (a load balancer, a listener)
            # must be the stack's. Not the new listener or rule: it has no tags yet.
            "Sid": "ElbCreateInStackResources",
            "Effect": "Allow",
            "Action": list(ELB_CHILD_CREATES),
            "Resource": elb_parents,
            "Condition": {"StringEquals": scope.tags("Resource")},
        },
        {
            # The listener or rule being created: only with the stack's tags in the request.
            "Sid": "ElbCreateChildrenTagged",
            "Effect": "Allow",
            "Action": list(ELB_CHILD_CREATES),
            "Resource": elb_children,
            "Condition": {"StringEquals": scope.tags("Request")},
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
            "Condition": {"StringEquals": scope.tags("Resource")},
        },
        {
            "Sid": "ElbRetagStackResources",
            "Effect": "Allow",
            "Action": ["elasticloadbalancing:AddTags", "elasticloadbalancing:RemoveTags"],
            "Resource": elb,
            "Condition": {"StringEquals": scope.tags("Resource"), **_keeps_stack_tags()},
        },
    ]


def _cloud_map(scope: DeployScope) -> list[dict[str, Any]]:
    """Cloud Map, by tag."""
    cloud_map = [scope.arn("servicediscovery", r) for r in ("namespace/*", "service/*")]
    return [
        {
            "Sid": "CloudMapWriteStackResources",
            "Effect": "Allow",
            "Action": [
                *CLOUD_MAP_STACK_WRITES,
                *(SERVICE_CONNECT_NAMESPACE_WRITES if scope.service_connect else ()),
            ],
            "Resource": cloud_map,
            "Condition": {"StringEquals": scope.tags("Resource")},
        },
        {
            # CreateService authorizes the namespace (above: the stack's) and the new service,
            # which has no tags yet: only with the stack's tags in the request.
            "Sid": "CloudMapCreateServiceTagged",
            "Effect": "Allow",
            "Action": "servicediscovery:CreateService",
            "Resource": scope.arn("servicediscovery", "service/*"),
            "Condition": {"StringEquals": scope.tags("Request")},
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
                "StringEquals": scope.tags("Request"),
                "Null": {f"aws:ResourceTag/{PROJECT_TAG}": "true"},
            },
        },
        {
            "Sid": "CloudMapRetagStackResources",
            "Effect": "Allow",
            "Action": ["servicediscovery:TagResource", "servicediscovery:UntagResource"],
            "Resource": cloud_map,
            "Condition": {"StringEquals": scope.tags("Resource"), **_keeps_stack_tags()},
        },
    ]


def _images_and_logs(scope: DeployScope) -> list[dict[str, Any]]:
    """ECR repositories and log groups, by name."""
    return [
        {
            "Sid": "EcrStackRepositories",
            "Effect": "Allow",
            "Action": list(ECR_REPOSITORY_ACTIONS),
            "Resource": [scope.arn("ecr", f"repository/{p.lower()}/*") for p in scope.prefixes],
        },
        {
            "Sid": "LogsStackLogGroups",
            "Effect": "Allow",
            "Action": list(LOG_GROUP_ACTIONS),
            "Resource": [scope.arn("logs", f"log-group:/ecs/{p}/*") for p in scope.prefixes],
        },
    ]


def _roles(scope: DeployScope) -> list[dict[str, Any]]:
    """IAM: the program's roles, under its path."""
    return [
        {
            "Sid": "ManageStackRoles",
            "Effect": "Allow",
            "Action": list(DEPLOY_ROLE_ACTIONS),
            "Resource": scope.roles,
        },
        {
            "Sid": "AttachAllowListedPoliciesOnly",
            "Effect": "Allow",
            "Action": ["iam:AttachRolePolicy", "iam:DetachRolePolicy"],
            "Resource": scope.roles,
            "Condition": {
                "ArnEquals": {
                    "iam:PolicyARN": [
                        f"arn:{scope.partition}:iam::aws:policy/{p}"
                        for p in scope.attachable_policies
                    ]
                }
            },
        },
        {
            "Sid": "PassStackRolesToEcsTasksOnly",
            "Effect": "Allow",
            "Action": "iam:PassRole",
            "Resource": scope.roles,
            "Condition": {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
        },
        {
            "Sid": "CreateServiceLinkedRoles",
            "Effect": "Allow",
            "Action": "iam:CreateServiceLinkedRole",
            "Resource": [
                f"{scope.iam}:role/aws-service-role/{service}/*"
                for service in SERVICE_LINKED_ROLE_SERVICES
            ],
            "Condition": {
                "StringEquals": {"iam:AWSServiceName": list(SERVICE_LINKED_ROLE_SERVICES)}
            },
        },
    ]


def _operations(scope: DeployScope) -> list[dict[str, Any]]:
    """Autoscaling, alarms, the dashboard and the alarm topic of each stack (issue 10)."""
    partition, account_id, stacks = scope.partition, scope.account_id, scope.stacks
    prefixes = scope.prefixes
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


def _public_domains(scope: DeployScope) -> list[dict[str, Any]]:
    """ACM certificates and the two kinds of record each public domain needs (none
    without public domains)."""
    partition, account_id, stacks = scope.partition, scope.account_id, scope.stacks
    public_domains = scope.public_domains
    if not public_domains:
        return []
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


def _never_change_the_ci_identity(scope: DeployScope) -> list[dict[str, Any]]:
    """The OIDC provider, the CI roles and their policies are off limits, so a change
    merged to main cannot widen the deploy role's own trust or permissions."""
    return [
        {
            "Sid": "NeverChangeTheCiIdentity",
            "Effect": "Deny",
            "Action": "iam:*",
            "Resource": sorted([*scope.protected_arns, f"{scope.iam}:policy{CI_POLICY_PATH}*"]),
        }
    ]


# The deploy role's statements, in order; each builder covers one concern.
DEPLOY_STATEMENTS: tuple[Callable[[DeployScope], list[dict[str, Any]]], ...] = (
    _without_resource_types,
    _network,
    _ecs,
    _load_balancing,
    _cloud_map,
    _images_and_logs,
    _roles,
    _operations,
    _public_domains,
    _never_change_the_ci_identity,
)


def deploy_policy(
    partition: str,
    account_id: str,
    attachable_policies: Sequence[str],
    protected_arns: Sequence[str],
    *,
    stacks: Sequence[str] = DEFAULT_STACKS,
    public_domains: Sequence[PublicDomain] = (),
    service_connect: bool = False,
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
    scope = DeployScope(
        partition=partition,
        account_id=account_id,
        attachable_policies=attachable_policies,
        protected_arns=protected_arns,
        stacks=stacks,
        public_domains=public_domains,
        service_connect=service_connect,
    )
    statements = [statement for build in DEPLOY_STATEMENTS for statement in build(scope)]
    return {"Version": "2012-10-17", "Statement": statements}
