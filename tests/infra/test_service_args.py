"""DiscoverableService's and Network's argument checks: pure, no Pulumi runtime (each refusal is
raised before the component registers anything)."""

from __future__ import annotations

import json
import re
from typing import cast

import pytest
from pulumi.provider.experimental.component import ComponentProvider

from components.network import NatGateways, Network, NetworkArgs, NetworkArgsError, NewVpc
from components.service import (
    CLOUD_MAP_PROPAGATION_SECONDS,
    ROLE_POLICY_SIZE_MAX,
    ContainerHealthCheck,
    DiscoverableService,
    DiscoverableServiceArgs,
    ServiceArgsError,
    container_definition,
    problems,
    secret_resource,
    secrets_policy,
    with_ints,
)
from tests.infra import scenarios


def refusal(args: DiscoverableServiceArgs) -> str:
    with pytest.raises(ServiceArgsError) as caught:
        DiscoverableService("svc", args)
    return str(caught.value)


def base() -> DiscoverableServiceArgs:
    return scenarios.service_args("test")


def test_the_drain_rule_names_the_arguments_and_shows_the_arithmetic() -> None:
    """A service found through DNS keeps serving after SIGTERM for as long as a caller may still
    pick its address: Cloud Map's propagation, the resolver's cache (dns_ttl) and the caller's
    own (caller_dns_refresh_seconds)."""
    args = base() | {"drain_seconds": 30, "dns_ttl": 3, "caller_dns_refresh_seconds": 5}
    assert refusal(args) == (
        "DiscoverableService 'svc': drain_seconds 30 is too short: callers may still send to a "
        "stopping task for Cloud Map propagation (60 s) + dns_ttl (3 s) + "
        "caller_dns_refresh_seconds (5 s) = 68 s, and it must keep serving that long; allowed: "
        "drain_seconds 68 or more, with stop_timeout_seconds at most 120"
    )


def test_a_drain_exactly_covering_the_timeline_is_accepted() -> None:
    needed = CLOUD_MAP_PROPAGATION_SECONDS + 3 + 5
    args = base() | {"drain_seconds": needed, "dns_ttl": 3, "caller_dns_refresh_seconds": 5}
    assert problems("svc", args) == []


def test_no_drain_rule_without_dns_callers() -> None:
    """A service only behind a load balancer (hello) drains through the target group instead."""
    assert problems("svc", base() | {"drain_seconds": 0}) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"cpu": 300}, "cpu 300 is not a Fargate size"),
        ({"cpu": 256, "memory": 4096}, "memory 4096 is not a Fargate size for cpu 256"),
        ({"port": 80, "user": "10001:10001"}, "port 80 is privileged, which user '10001:10001'"),
        ({"stop_timeout_seconds": 121}, "stop_timeout_seconds 121 must cover drain_seconds"),
        ({"drain_seconds": 40, "stop_timeout_seconds": 30}, "must cover drain_seconds (40)"),
        (
            {"health_check": ContainerHealthCheck(command=["curl", "-f", "localhost"])},
            "health_check.command ['curl', '-f', 'localhost'] is not ECS's form",
        ),
        (
            {"health_check": ContainerHealthCheck(command=["CMD", "true"], timeout_seconds=61)},
            "health_check.timeout_seconds 61 is out of range; allowed: 2 to 60",
        ),
        (
            {"secrets": {"TOKEN": scenarios.SECRETS["API_TOKEN"]}},
            "secrets with execution_role_arn: the role that reads this service's secrets",
        ),
    ],
)
def test_arguments_aws_would_refuse_are_refused_naming_them(
    change: dict[str, object], message: str
) -> None:
    assert message in refusal(cast(DiscoverableServiceArgs, {**base(), **change}))


def test_a_privileged_port_is_fine_for_an_image_running_as_root() -> None:
    """nginx listens on 80 as root: nothing stops it on Fargate."""
    for user in ("0", "root:root"):
        assert problems("svc", base() | {"port": 80, "user": user}) == []


@pytest.mark.parametrize(
    ("value_from", "grant"),
    [
        (
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-AbCdEf",
            (
                "secretsmanager:GetSecretValue",
                "arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-AbCdEf",
            ),
        ),
        (
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-AbCdEf:user:AWSCURRENT:",
            (
                "secretsmanager:GetSecretValue",
                "arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-AbCdEf",
            ),
        ),
        (
            "arn:aws-cn:ssm:cn-north-1:123456789012:parameter/app/key",
            ("ssm:GetParameters", "arn:aws-cn:ssm:cn-north-1:123456789012:parameter/app/key"),
        ),
    ],
)
def test_each_secret_is_granted_on_what_ecs_reads(value_from: str, grant: tuple[str, str]) -> None:
    assert secret_resource(value_from) == grant


@pytest.mark.parametrize(
    "value_from",
    [
        "app/key",  # a bare parameter name: ECS takes it, but the policy could not name it
        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:",
        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-AbCdEf:user",
        "arn:aws:ssm:eu-west-1:123456789012:parameter/",
        "arn:aws:s3:::bucket/key",
    ],
)
def test_anything_but_a_full_secret_or_parameter_arn_is_refused(value_from: str) -> None:
    with pytest.raises(ServiceArgsError, match="is not the full ARN"):
        secret_resource(value_from)
    args = base() | {"secrets": {"X": value_from}}
    del args["execution_role_arn"]
    assert f"secrets['X']: {value_from!r} is not the full ARN" in refusal(args)


def test_the_secrets_policy_has_no_wildcard_and_no_kms_without_keys() -> None:
    document = json.loads(secrets_policy([scenarios.SECRETS["LICENSE"]], []))
    assert document["Statement"] == [
        {
            "Effect": "Allow",
            "Action": "ssm:GetParameters",
            "Resource": [scenarios.SECRETS["LICENSE"]],
        }
    ]
    assert "*" not in json.dumps(document)


def test_a_secrets_policy_past_iams_inline_limit_is_refused() -> None:
    """iam/role_policy.go validates the document with ValidIAMPolicyJSON(10240): IAM's limit on
    a role's inline policies together."""
    many = [f"arn:aws:ssm:eu-west-1:123456789012:parameter/{'p' * 80}-{i}" for i in range(200)]
    with pytest.raises(ServiceArgsError, match=f"IAM allows {ROLE_POLICY_SIZE_MAX}"):
        secrets_policy(many, [])


def test_integers_that_arrive_as_floats_are_made_integers() -> None:
    """Through a component package Pulumi hands integer inputs over as floats (8080.0); ECS
    would refuse "cpu": "256.0" and portMappings of floats."""
    wire = {"port": 8080.0, "cpu": 512.0, "health_check": {"command": ["CMD", "x"], "retries": 2.0}}
    args = with_ints(cast(DiscoverableServiceArgs, {**base(), **wire}))
    assert (args["port"], args["cpu"]) == (8080, 512)
    assert isinstance(args["port"], int)
    assert args["health_check"].get("retries") == 2
    assert isinstance(args["health_check"].get("retries"), int)


def test_a_container_leaves_out_what_it_was_not_given() -> None:
    """ECS returns no user, no readonlyRootFilesystem: false, no empty environment or secrets,
    no healthCheck that was not set; sending any of them would differ from what the provider
    reads back (ecs/container_definitions.go only fills in a health check's defaults and turns
    empty lists to nil), so a second `pulumi up` would replace the task definition."""
    args = DiscoverableServiceArgs(
        image="public.ecr.aws/nginx/nginx:1.27",
        port=80,
        cluster_arn="c",
        namespace_id="n",
        namespace_name="internal",
        vpc_id="v",
        subnet_ids=[],
        prefix="p",
    )
    definition = container_definition("web", args, log_group="g", region="eu-west-1")
    assert not {"user", "readonlyRootFilesystem", "environment", "secrets", "healthCheck"} & set(
        definition
    )
    assert definition["stopTimeout"] == 10  # no drain: 10 s to finish what it serves


def test_a_network_takes_exactly_one_vpc() -> None:
    new = NewVpc(cidr_block="10.0.0.0/16", availability_zones=2, nat_gateways=NatGateways.SINGLE)
    neither, both = NetworkArgs(), cast(NetworkArgs, {"new_vpc": new, "existing_vpc": {}})
    for args in (neither, both):
        with pytest.raises(NetworkArgsError, match=re.escape("set exactly one of new_vpc and")):
            Network("net", args)


def test_through_a_component_package_the_arguments_arrive_usable() -> None:
    """Pulumi's analyzer infers the schema from the args' annotations (TypedDicts, Input where
    a value may be an output, an Enum for the architecture); the provider then hands the component
    a dict with snake_case keys, integers as floats and enum members. That dict must pass the same
    checks and give ECS integers."""
    provider = ComponentProvider([DiscoverableService, Network], "fsd", version="0.0.0")
    schema = json.loads(provider.schema)
    service = schema["resources"]["fsd:index:DiscoverableService"]
    assert service["requiredInputs"] == [
        "clusterArn",
        "image",
        "namespaceId",
        "namespaceName",
        "port",
        "prefix",
        "subnetIds",
        "vpcId",
    ]
    assert set(schema["resources"]["fsd:index:Network"]["inputProperties"]) == {
        "newVpc",
        "existingVpc",
    }
    wire = {
        "image": "public.ecr.aws/nginx/nginx:stable",
        "port": 80.0,
        "cpu": 512.0,
        "memory": 1024.0,
        "clusterArn": "c",
        "namespaceId": "n",
        "namespaceName": "internal",
        "vpcId": "v",
        "subnetIds": ["s"],
        "prefix": "p",
        "architecture": "ARM64",
        "healthCheck": {"command": ["CMD", "true"], "retries": 2.0},
    }
    args = with_ints(
        cast(
            DiscoverableServiceArgs,
            provider.map_inputs(wire, provider._component_defs["DiscoverableService"]),
        )
    )
    assert problems("web", args) == []
    definition = container_definition("web", args, log_group="g", region="r")
    assert definition["portMappings"][0]["containerPort"] == 80
    assert isinstance(definition["healthCheck"]["retries"], int)
    assert isinstance(definition["portMappings"][0]["containerPort"], int)
