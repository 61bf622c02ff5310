"""The github-oidc stack: GitHub's OIDC provider and the CI roles of this repository.

Config (``pulumi config set <key> <value>``; lists with ``--path`` or JSON):

* ``repository`` (required): ``owner/name`` of the repository the roles trust.
* ``deployBranches``: branches whose pushes may deploy (default ``["main"]``).
* ``deployEnvironments``: GitHub environments whose jobs may deploy
  (default ``["production"]``).
* ``pullRequestPreviews``: create the read-only preview role (default ``true``).
* ``existingProviderArn``: reuse the account's GitHub OIDC provider instead of
  creating one (IAM allows one per account).
* ``attachablePolicies``: AWS managed policies (path after ``policy/``) the deploy
  role may attach to the roles it creates.
* ``extraPreviewPolicyArns`` / ``extraDeployPolicyArns``: more managed policies for
  the roles, e.g. access to a self-managed state bucket or a KMS secrets key.
* ``stacks``: the Fargate program's stacks the deploy role may change (default
  ``["dev", "prod", "e2e"]``, ``e2e`` being the end-to-end workflow's): its writes are
  scoped to their names and tags.
* ``publicDomains``: the public domains those stacks serve, each
  ``{"domain": "app.example.com", "hostedZoneId": "Z..."}`` (default ``[]``): the
  deploy role may then request ACM certificates and write, in that zone only, the
  domain's alias ``A`` record and ACM's ``_<hash>.<domain>`` validation records.
* ``serviceConnect``: ``true`` when any of those stacks uses ``discoveryMode:
  serviceConnect`` (default ``false``): the deploy role may then create and update the
  stack's Cloud Map HTTP namespace (docs/service-connect.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

# Pulumi runs this file with deploy/github_oidc as the working directory; the
# component (identity.py and its modules, beside this file) is imported by its package path from
# the repository root, as the type checker and the tests import it.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import pulumi

from deploy.github_oidc.identity import GitHubOidc, GitHubOidcArgs
from deploy.github_oidc.names import DEFAULT_ATTACHABLE_POLICIES, DEFAULT_STACKS
from deploy.github_oidc.validation import PublicDomain


def names(config: pulumi.Config, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
    value = config.get_object(key)
    if value is None:
        return default
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise pulumi.RunError(f"github-oidc:{key} must be a list of strings, got {value!r}")
    return tuple(value)


def public_domains(config: pulumi.Config) -> tuple[PublicDomain, ...]:
    value = config.get_object("publicDomains")
    if value is None:
        return ()
    keys = {"domain", "hostedZoneId"}
    if not isinstance(value, list) or not all(
        isinstance(v, dict) and set(v) == keys and all(isinstance(x, str) for x in v.values())
        for v in value
    ):
        raise pulumi.RunError(
            "github-oidc:publicDomains must be a list of "
            f'{{"domain": "...", "hostedZoneId": "..."}} objects, got {value!r}'
        )
    return tuple(PublicDomain(v["domain"], v["hostedZoneId"]) for v in value)


config = pulumi.Config()
try:
    args = GitHubOidcArgs(
        repository=config.require("repository"),
        deploy_branches=names(config, "deployBranches", ("main",)),
        deploy_environments=names(config, "deployEnvironments", ("production",)),
        pull_request_previews=config.get_bool("pullRequestPreviews") is not False,
        provider_arn=config.get("existingProviderArn"),
        attachable_policies=names(config, "attachablePolicies", DEFAULT_ATTACHABLE_POLICIES),
        extra_preview_policy_arns=names(config, "extraPreviewPolicyArns", ()),
        extra_deploy_policy_arns=names(config, "extraDeployPolicyArns", ()),
        stacks=names(config, "stacks", DEFAULT_STACKS),
        public_domains=public_domains(config),
        service_connect=config.get_bool("serviceConnect") is True,
    )
except (TypeError, ValueError) as err:
    raise pulumi.RunError(f"github-oidc: {err}") from None

oidc = GitHubOidc("github", args)
pulumi.export("providerArn", oidc.provider_arn)
pulumi.export("previewRoleArn", oidc.preview_role_arn)
pulumi.export("deployRoleArn", oidc.deploy_role_arn)
