"""Splitting the deploy role's permissions to fit IAM's size limits.

The deploy role's permissions (permissions.deploy_policy) do not fit IAM's 10,240
characters of inline policy per role, so they are customer managed policies (6,144
characters each, whitespace not counted), one per part, under names.CI_POLICY_PATH so
the deploy role can be denied every IAM action on them. Each statement goes to the
part named by its Sid prefix; the parts are checked against the limit before anything
is created (:func:`check_fits`), for the longest partition, account and role names IAM
allows, so a stack that passes here cannot fail at IAM.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from deploy.github_oidc.names import DEFAULT_STACKS, GITHUB_OIDC_HOST
from deploy.github_oidc.permissions import deploy_policy
from deploy.github_oidc.validation import PublicDomain

MANAGED_POLICY_MAX_CHARS = 6_144
# The parts, each a managed policy attached to the deploy role, and the Sid prefixes of
# the statements each holds (a statement goes to the first part whose prefix its Sid
# starts with; a Sid no part claims is an error, so a new statement must be placed).
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
    service_connect: bool = False,
) -> dict[str, dict[str, Any]]:
    """:func:`deploy_policy` cut into the managed policies of DEPLOY_POLICY_PARTS."""
    whole = deploy_policy(
        partition,
        account_id,
        attachable_policies,
        protected_arns,
        stacks=stacks,
        public_domains=public_domains,
        service_connect=service_connect,
    )
    parts: dict[str, dict[str, Any]] = {
        part: {"Version": whole["Version"], "Statement": []} for part in DEPLOY_POLICY_PARTS
    }
    for statement in whole["Statement"]:
        parts[part_of(statement["Sid"])]["Statement"].append(statement)
    return parts


def largest_parts(
    attachable_policies: Sequence[str],
    stacks: Sequence[str],
    public_domains: Sequence[PublicDomain],
) -> dict[str, int]:
    """Each part's size for the longest partition, account and CI role names IAM allows,
    with every optional grant (serviceConnect's) included: the largest the role can be."""
    account = "0" * 12
    iam = f"arn:aws-iso-b:iam::{account}"
    protected = [f"{iam}:oidc-provider/{GITHUB_OIDC_HOST}"] + [f"{iam}:role/{'r' * 64}"] * 2
    parts = deploy_policies(
        "aws-iso-b",
        account,
        attachable_policies,
        protected,
        stacks=stacks,
        public_domains=public_domains,
        service_connect=True,
    )
    return {part: policy_size(doc) for part, doc in parts.items()}


def check_fits(
    attachable_policies: Sequence[str],
    extra_deploy_policy_arns: Sequence[str],
    stacks: Sequence[str],
    public_domains: Sequence[PublicDomain],
) -> None:
    """The deploy role's policies fit IAM's quotas: the number of managed policies per
    role, and each part's size (an error names the argument to change)."""
    attached = len(DEPLOY_POLICY_PARTS) + len(extra_deploy_policy_arns)
    if attached > ATTACHED_POLICIES_MAX:
        raise ValueError(
            f"extra_deploy_policy_arns: {len(extra_deploy_policy_arns)} plus the "
            f"{len(DEPLOY_POLICY_PARTS)} deploy policies exceed IAM's default quota of "
            f"{ATTACHED_POLICIES_MAX} managed policies per role"
        )
    for part, size in largest_parts(attachable_policies, stacks, public_domains).items():
        if size > MANAGED_POLICY_MAX_CHARS:
            raise ValueError(
                f"stacks/publicDomains: the deploy role's {part!r} policy would be {size} "
                f"characters, over IAM's {MANAGED_POLICY_MAX_CHARS} for a managed policy; "
                "give this github-oidc stack fewer stacks or domains (or deploy a second one)"
            )
