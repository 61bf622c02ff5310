"""Input validation of the github-oidc stack: what each argument may be, and why.

Every check raises one ``ValueError`` (``TypeError`` for a string given where a list
is expected) whose message names the argument and what is allowed. The checks that
depend on the size of the deploy role's policies are in policy_split.py.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from deploy.github_oidc.names import GITHUB_OIDC_HOST

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


def check_repository(repository: str) -> None:
    if not _REPOSITORY.match(repository):
        raise ValueError(f"repository: {repository!r} is not 'owner/name' as GitHub spells it")


def check_claim_names(key: str, names: Sequence[str]) -> None:
    """Branch or environment names (``key`` is the argument's name)."""
    if isinstance(names, str):
        raise TypeError(f"{key}: give a list of names, not the string {names!r}")
    bad = [n for n in names if not _CLAIM_PART.match(n)]
    if bad:
        raise ValueError(
            f"{key}: {bad} must be exact names (letters, digits, '.', '_', '/', '-'); "
            "wildcards are not supported"
        )


def check_something_deploys(branches: Sequence[str], environments: Sequence[str]) -> None:
    if not branches and not environments:
        raise ValueError(
            "deploy_branches and deploy_environments are both empty: nothing could deploy"
        )


def check_provider_arn(provider_arn: str | None) -> None:
    if provider_arn is not None and not _PROVIDER_ARN.match(provider_arn):
        raise ValueError(
            f"provider_arn: {provider_arn!r} is not the ARN of a {GITHUB_OIDC_HOST} OIDC provider"
        )


def check_max_session_seconds(seconds: int) -> None:
    if not 3600 <= seconds <= 43200:
        raise ValueError(f"max_session_seconds: {seconds} is outside IAM's 3600-43200")


def check_stacks(stacks: Sequence[str]) -> None:
    """The stacks the deploy role is scoped to."""
    if isinstance(stacks, str):
        raise TypeError(f"stacks: give a list of stack names, not the string {stacks!r}")
    if not stacks:
        raise ValueError("stacks: empty; the deploy role would have nothing to deploy")
    bad = [s for s in stacks if len(s) > STACK_MAX_LEN or not _STACK.match(s)]
    if bad:
        raise ValueError(
            f"stacks: {bad} must be lowercase letters and digits with single '-' or '_' "
            f"between them, at most {STACK_MAX_LEN} characters (the names go into ARNs, "
            "ECR repository names and ECS cluster names; no wildcards)"
        )
    if len(set(stacks)) != len(stacks):
        raise ValueError(f"stacks: {list(stacks)} lists a stack twice")


def check_public_domains(public_domains: Sequence[PublicDomain]) -> None:
    domains = [d.domain for d in public_domains]
    if len(set(domains)) != len(domains):
        raise ValueError(f"publicDomains: {domains} lists a domain twice")
