"""Program runs shared by the infrastructure tests: each stack's config, the alternatives, a
broken config, and the component scenarios. All start together, each in its own process
(forked from one that has imported what they all need: tests/infra/harness.py)."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator

import pytest

from stack import Settings, parse_settings
from tests.e2e import lifecycle
from tests.infra.harness import REGION
from tests.infra.support import PROJECT, Run, Runs, stack_config, with_values

EXISTING_VPC = {
    "vpcId": "vpc-0a1b2c3d4e5f60718",
    "publicSubnetIds": ["subnet-0aaaaaaaaaaaaaaa1", "subnet-0aaaaaaaaaaaaaaa2"],
    "privateSubnetIds": ["subnet-0bbbbbbbbbbbbbbb1", "subnet-0bbbbbbbbbbbbbbb2"],
}
CERTIFICATE_ARN = (
    "arn:aws:acm:us-east-1:123456789012:certificate/0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"
)
# A public name in a zone looked up by name: ACM issues the certificate (DNS validation).
DOMAIN = {"name": "hello.example.com", "zoneName": "example.com"}

ALARM_EMAIL = "ops@example.com"
DEV = stack_config("dev")
# key -> (stack, config as the language host passes it, program)
SPECS: dict[str, tuple[str, dict[str, str], str]] = {
    "dev": ("dev", DEV, "__main__.py"),
    "prod": ("prod", stack_config("prod"), "__main__.py"),
    # Every non-default branch in one run: an existing VPC, a domain with HTTPS (the certificate
    # requested from ACM), Graviton, a namespace and port of its own (so nothing can pass by
    # hard-coding name.internal:3000), and an e-mail address for the alarms. A given
    # certificateArn: tests/infra/scenarios.py.
    "alternatives": (
        "dev",
        with_values(
            DEV,
            {
                "network": EXISTING_VPC,
                "domain": DOMAIN,
                "architecture": "ARM64",
                "namespace": "svc.corp",
                "name.port": 8080,
                "hello.zoneAware": False,
                # The alarm topic's e-mail subscription (none in the stack files).
                "alarms.email": ALARM_EMAIL,
            },
        ),
        "__main__.py",
    ),
    # The other discovery mode (docs/service-connect.md): ECS Service Connect.
    "serviceConnect": ("dev", with_values(DEV, {"discoveryMode": "serviceConnect"}), "__main__.py"),
    # The stack the end-to-end test deploys (tests/e2e/lifecycle.py): its own name and tags.
    "e2e": (
        lifecycle.DEFAULT_STACK,
        {
            key: value if isinstance(value, str) else json.dumps(value)
            for key, value in lifecycle.e2e_config(
                lifecycle.dev_config(), lifecycle.DEFAULT_STACK, REGION
            ).items()
        },
        "__main__.py",
    ),
    # Two bad values and a typo'd key: the run must stop before any resource.
    "invalid": (
        "dev",
        {
            **with_values(DEV, {"name.cpu": 300, "hello.port": 70000, "dnsTTL": 5}),
            # Tagged as another stack: the CI deploy role scopes its writes by these tags.
            "aws:defaultTags": json.dumps({"tags": {"Project": PROJECT, "Stack": "prod"}}),
            # A typo in a provider key, which the provider itself would ignore.
            "aws:regoin": "eu-west-1",
        },
        "__main__.py",
    ),
    "components": ("test", {}, "tests.infra.scenarios:components"),
    # A stack file that is valid but for its tags: only the settings are loaded
    # (tests/infra/test_ci_scope.py).
    "untagged": (
        "dev",
        {**DEV, "aws:defaultTags": json.dumps({"tags": {"Project": PROJECT}})},
        "tests.infra.test_ci_scope:load_settings",
    ),
}


def settings_for(key: str) -> Settings:
    """The settings a program run was given, parsed the way the program parses them."""
    prefix = f"{PROJECT}:"
    config = SPECS[key][1]
    return parse_settings({k[len(prefix) :]: v for k, v in config.items() if k.startswith(prefix)})


@functools.cache
def shared_runs() -> Runs:
    """One set of program runs per test session, shared with tests/policy (no second runs)."""
    return Runs(SPECS)


@pytest.fixture(scope="session")
def runs() -> Iterator[Runs]:
    started = shared_runs()
    yield started
    started.close()


# The stacks whose graphs the operations and alarm tests read, one test per stack.
KEYS = ["dev", "prod", "alternatives"]


@pytest.fixture(params=KEYS)
def key(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def run(runs: Runs, key: str) -> Run:
    result = runs[key]
    assert result.error is None, result.error
    return result


def prefix_of(key: str) -> str:
    """The resource-name prefix of the stack run as ``key``."""
    return f"{PROJECT}-{SPECS[key][0]}"
