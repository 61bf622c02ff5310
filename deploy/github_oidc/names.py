"""The names the github-oidc stack and the Fargate program's stacks agree on.

GitHub's token issuer (what the OIDC provider and the trust policies name), and the
names the Fargate program's stacks own (the COORDINATION contract): the deploy role's
permissions are scoped to these, so the program must keep using them
(tests/infra/test_ci_scope.py checks the program's own runs against them).
"""

from __future__ import annotations

GITHUB_OIDC_HOST = "token.actions.githubusercontent.com"
GITHUB_OIDC_URL = f"https://{GITHUB_OIDC_HOST}"
# configure-aws-credentials asks GitHub for a token with this audience by default.
STS_AUDIENCE = "sts.amazonaws.com"

# --- the names the Fargate program's stacks own ---------------------------------
# The project of the Fargate program (Pulumi.yaml at the repository root).
PROJECT = "fargate-service-discovery"
# Every IAM role the Fargate program creates lives under this path
# (components/platform.py); role management and PassRole are limited to it.
ROLE_PATH = f"/{PROJECT}/"
# Tags every resource of a stack carries (aws:defaultTags, checked by stack/rules.py):
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
# The path of the deploy role's customer managed policies (policy_split.py): the deploy
# role is denied every IAM action on them, so it cannot widen its own permissions.
CI_POLICY_PATH = "/github-oidc/"
