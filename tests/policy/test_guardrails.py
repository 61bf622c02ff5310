"""The policy pack (policy/): the program passes every policy, each policy catches exactly its
own rule, and unknown values at preview are tolerated without hiding known violations.

Every check goes through the running pack over the engine's protocol (tests/policy/engine.py),
with the resources the real program registers under mocks (tests/infra's shared runs).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from pulumi_policy import EnforcementLevel, StackValidationPolicy
from pulumi_policy.proxy import (
    UNKNOWN_ARRAY_VALUE,
    UNKNOWN_BOOLEAN_VALUE,
    UNKNOWN_NUMBER_VALUE,
    UNKNOWN_OBJECT_VALUE,
    UNKNOWN_STRING_VALUE,
)

from policy import guardrails
from tests.infra.support import Resource, Run, Runs
from tests.policy.engine import LEVELS, ROOT, Engine, StackResource, Verdict

# The engine marshals every unknown input the SDK sent as the string sentinel (its element type
# is lost on the way), so this is the one most policies meet; the others are tried too.
UNKNOWN = UNKNOWN_STRING_VALUE
STACKS = ["dev", "prod", "alternatives", "components", "serviceConnect"]
POLICY_NAMES = {p.name for p in guardrails.POLICIES}
RESOURCE_POLICIES = {
    p.name for p in guardrails.POLICIES if not isinstance(p, StackValidationPolicy)
}
WORLD_80 = "entry-world-80"


def ok(run: Run) -> Run:
    assert run.error is None, run.error
    assert run.resources
    return run


def one(run: Run, type_: str, name: str) -> Resource:
    return run.one(type_, name)


def inputs(run: Run, type_: str, name: str) -> dict[str, Any]:
    return copy.deepcopy(one(run, type_, name).inputs)


def stack_resources(run: Run) -> list[StackResource]:
    """What AnalyzeStack gets after an update: outputs (a bridged resource's include its id),
    parents, dependencies."""
    return [
        StackResource(
            type=r.type,
            name=r.name,
            urn=r.urn,
            outputs={**r.state, "id": r.id} if r.type.startswith("aws:") else r.state,
            parent=r.parent,
            dependencies=r.dependencies,
        )
        for r in run.resources
    ]


def assert_clean(verdict: Verdict, what: str) -> None:
    assert verdict.violations == {}, f"{what}: {verdict.violations}"


# --- The pack as the CLI sees it ---------------------------------------------------------------


def test_pack_starts_from_its_folder_and_declares_every_policy_with_its_level(
    engine: Engine,
) -> None:
    info = engine.info()
    assert info.name == guardrails.PACK_NAME
    declared = {p.name: LEVELS[p.enforcementLevel] for p in info.policies}
    assert declared == {
        p.name: (p.enforcement_level or EnforcementLevel.ADVISORY).value
        for p in guardrails.POLICIES
    }
    # The choice is per rule: both levels are in use.
    assert set(declared.values()) == {"mandatory", "advisory"}


def test_policy_project_file_uses_the_project_virtualenv() -> None:
    """The CLI resolves `virtualenv` against policy/; it must be the .venv Pulumi.yaml names,
    the one `./dev setup` (and CI's composite action) installs pulumi-policy into."""
    pack = yaml.safe_load((ROOT / "policy" / "PulumiPolicy.yaml").read_text())
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    assert pack["runtime"]["name"] == "python"
    venv = (ROOT / "policy" / pack["runtime"]["options"]["virtualenv"]).resolve()
    project_venv = project["runtime"].get("options", {}).get("virtualenv", ".venv")
    assert venv == (ROOT / project_venv).resolve()
    # Declared with a range and locked exactly, wherever the project keeps those.
    declared = [ROOT / f for f in ("requirements.txt", "pyproject.toml") if (ROOT / f).is_file()]
    assert any(
        re.search(r'^\s*"?pulumi-policy\s*[<>=~]', p.read_text(), re.MULTILINE) for p in declared
    )
    locks = {"constraints.txt": r"^pulumi_policy==\S+$", "uv.lock": r'^name = "pulumi-policy"$'}
    assert any(
        re.search(pattern, (ROOT / f).read_text(), re.MULTILINE)
        for f, pattern in locks.items()
        if (ROOT / f).is_file()
    )


def test_readme_lists_every_policy_with_its_level() -> None:
    readme = (ROOT / "README.md").read_text()
    for policy in guardrails.POLICIES:
        level = (policy.enforcement_level or EnforcementLevel.ADVISORY).value
        assert re.search(rf"^\| `{re.escape(policy.name)}` \| {level} \|", readme, re.M), (
            f"README.md: no row for {policy.name} ({level})"
        )


# --- The program passes every policy ---------------------------------------------------------


@pytest.mark.parametrize("key", STACKS)
def test_program_passes_every_policy(engine: Engine, runs: Runs, key: str) -> None:
    run = ok(runs[key])
    for resource in run.resources:
        assert_clean(engine.analyze(resource.type, resource.inputs, resource.name), resource.urn)
    assert_clean(engine.analyze_stack(stack_resources(run)), f"{key} stack")


def test_every_resource_policy_judged_some_resource_of_the_program(
    engine: Engine, runs: Runs
) -> None:
    """'No violations' means something only if each policy applied to real resources."""
    applied: set[str] = set()
    for key in STACKS:
        for resource in ok(runs[key]).resources:
            verdict = engine.analyze(resource.type, resource.inputs, resource.name)
            applied |= RESOURCE_POLICIES - verdict.not_applicable
    assert applied == RESOURCE_POLICIES


# --- Each policy catches exactly its rule -----------------------------------------------------

SG = guardrails.SECURITY_GROUP
SG_RULE = guardrails.SECURITY_GROUP_RULE
INGRESS = guardrails.INGRESS_RULE
EGRESS = guardrails.EGRESS_RULE
TASK = guardrails.TASK_DEFINITION
SERVICE = guardrails.ECS_SERVICE
LOG_GROUP = guardrails.LOG_GROUP
ALB = "aws:lb/loadBalancer:LoadBalancer"
LISTENER = "aws:lb/listener:Listener"
REGISTRY = guardrails.CLOUD_MAP_SERVICE

Mutation = Callable[[dict[str, Any], Run], None]


def setting(**values: Any) -> Mutation:
    def mutate(props: dict[str, Any], _: Run) -> None:
        for key, value in values.items():
            if value is None:
                props.pop(key, None)
            else:
                props[key] = value

    return mutate


def container_setting(**values: Any) -> Mutation:
    def mutate(props: dict[str, Any], _: Run) -> None:
        definitions = json.loads(props["containerDefinitions"])
        for key, value in values.items():
            if value is None:
                definitions[0].pop(key, None)
            else:
                definitions[0][key] = value
        props["containerDefinitions"] = json.dumps(definitions)

    return mutate


def inline_ingress(block: dict[str, Any]) -> Mutation:
    def mutate(props: dict[str, Any], run: Run) -> None:
        peer = one(run, SG, "entry").id
        props["ingress"] = [{k: (peer if v == "<entry>" else v) for k, v in block.items()}]

    return mutate


def to_legacy_rule(props: dict[str, Any], _: Run) -> None:
    """An aws:vpc ingress rule's properties in the aws:ec2/securityGroupRule shape."""
    props.update(
        type="ingress",
        protocol=props.pop("ipProtocol"),
        sourceSecurityGroupId=props.pop("referencedSecurityGroupId"),
    )


def service_connect(*drop: str | int, **timeout: Any) -> Mutation:
    """name's service as a Service Connect client-server service, set on purpose in every
    respect (docs/service-connect.md), then with the part at ``drop`` removed or the timeout
    values given replaced."""

    def mutate(props: dict[str, Any], _: Run) -> None:
        config: dict[str, Any] = {
            "enabled": True,
            "namespace": "arn:aws:servicediscovery:us-east-1:123456789012:namespace/ns-x",
            "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": "n"}},
            "accessLogConfiguration": {"format": "JSON"},
            "services": [
                {
                    "portName": "name",
                    "discoveryName": "name",
                    "clientAlias": [{"port": 3000, "dnsName": "name"}],
                    "timeout": {
                        "perRequestTimeoutSeconds": 1,
                        "idleTimeoutSeconds": 300,
                        **timeout,
                    },
                }
            ],
        }
        if drop:
            node: Any = config
            for key in drop[:-1]:
                node = node[key]
            del node[drop[-1]]
        props["serviceConnectConfiguration"] = config

    return mutate


# Registered as one type, judged as another of the same meaning: reshape first.
RESHAPE: dict[tuple[str, str], Mutation] = {(INGRESS, SG_RULE): to_legacy_rule}


# (policy, stack, type as registered, name, type to analyze as, mutation)
BROKEN: dict[str, tuple[str, str, str, str, str, Mutation]] = {
    "protocol -1": (
        "security-group-rules-tcp-one-port",
        "dev",
        EGRESS,
        "hello-https-out",
        EGRESS,
        setting(ipProtocol="-1", fromPort=None, toPort=None),
    ),
    "a port range": (
        "security-group-rules-tcp-one-port",
        "dev",
        INGRESS,
        "name-from-hello",
        INGRESS,
        setting(fromPort=0, toPort=65535),
    ),
    "udp": (
        "security-group-rules-tcp-one-port",
        "prod",
        EGRESS,
        "hello-to-name",
        EGRESS,
        setting(ipProtocol="udp"),
    ),
    "inline rule, every protocol": (
        "security-group-rules-tcp-one-port",
        "dev",
        SG,
        "hello",
        SG,
        inline_ingress(
            {"protocol": "-1", "fromPort": 0, "toPort": 0, "securityGroups": ["<entry>"]}
        ),
    ),
    "legacy rule, every protocol": (
        "security-group-rules-tcp-one-port",
        "dev",
        INGRESS,
        "name-from-hello",
        SG_RULE,
        setting(protocol="-1", fromPort=0, toPort=0),
    ),
    "ingress from the VPC's range": (
        "ingress-from-one-security-group",
        "dev",
        INGRESS,
        "name-from-hello",
        INGRESS,
        setting(referencedSecurityGroupId=None, cidrIpv4="10.0.0.0/16"),
    ),
    "the world on the task's port": (
        "ingress-from-one-security-group",
        "prod",
        INGRESS,
        "hello-from-entry",
        INGRESS,
        setting(referencedSecurityGroupId=None, cidrIpv4="0.0.0.0/0"),
    ),
    "inline rule from two groups": (
        "ingress-from-one-security-group",
        "dev",
        SG,
        "name",
        SG,
        inline_ingress(
            {
                "protocol": "tcp",
                "fromPort": 3000,
                "toPort": 3000,
                "securityGroups": ["<entry>", "sg-0abc"],
            }
        ),
    ),
    "legacy rule from a range": (
        "ingress-from-one-security-group",
        "dev",
        INGRESS,
        "name-from-hello",
        SG_RULE,
        setting(sourceSecurityGroupId=None, cidrBlocks=["10.0.0.0/8"]),
    ),
    "a public IP": (
        "tasks-get-no-public-ip",
        "dev",
        SERVICE,
        "name",
        SERVICE,
        lambda props, _: props["networkConfiguration"].update(assignPublicIp=True),
    ),
    "root by uid": (
        "containers-run-as-non-root",
        "dev",
        TASK,
        "hello",
        TASK,
        container_setting(user="0:0"),
    ),
    "root by name": (
        "containers-run-as-non-root",
        "prod",
        TASK,
        "name",
        TASK,
        container_setting(user="root"),
    ),
    "no user": (
        "containers-run-as-non-root",
        "dev",
        TASK,
        "name",
        TASK,
        container_setting(user=None),
    ),
    "writable root filesystem": (
        "containers-read-only-root-filesystem",
        "dev",
        TASK,
        "hello",
        TASK,
        container_setting(readonlyRootFilesystem=False),
    ),
    "root filesystem left at its default": (
        "containers-read-only-root-filesystem",
        "dev",
        TASK,
        "name",
        TASK,
        container_setting(readonlyRootFilesystem=None),
    ),
    "logs kept forever": (
        "log-groups-expire",
        "dev",
        LOG_GROUP,
        "name",
        LOG_GROUP,
        setting(retentionInDays=None),
    ),
    "retention 0": (
        "log-groups-expire",
        "prod",
        LOG_GROUP,
        "hello",
        LOG_GROUP,
        setting(retentionInDays=0),
    ),
    "invalid headers forwarded": (
        "load-balancers-drop-invalid-headers",
        "dev",
        ALB,
        "entry",
        ALB,
        setting(dropInvalidHeaderFields=False),
    ),
    "invalid headers left at the default": (
        "load-balancers-drop-invalid-headers",
        "prod",
        ALB,
        "entry",
        "aws:alb/loadBalancer:LoadBalancer",
        setting(dropInvalidHeaderFields=None, loadBalancerType=None),
    ),
    "TLS 1.0 allowed": (
        "tls-listeners-use-a-modern-policy",
        "alternatives",
        LISTENER,
        "entry-https",
        LISTENER,
        setting(sslPolicy="ELBSecurityPolicy-2016-08"),
    ),
    "legacy ciphers": (
        "tls-listeners-use-a-modern-policy",
        "alternatives",
        LISTENER,
        "entry-https",
        "aws:alb/listener:Listener",
        setting(sslPolicy="ELBSecurityPolicy-TLS13-1-2-Ext2-2021-06"),
    ),
    "TLS policy left to AWS": (
        "tls-listeners-use-a-modern-policy",
        "alternatives",
        LISTENER,
        "entry-https",
        LISTENER,
        setting(sslPolicy=None),
    ),
    "empty custom health block (dropped by the provider)": (
        "cloud-map-services-take-ecs-health",
        "dev",
        REGISTRY,
        "name",
        REGISTRY,
        setting(healthCheckCustomConfig={}),
    ),
    "no ECS health": (
        "cloud-map-services-take-ecs-health",
        "prod",
        REGISTRY,
        "hello",
        REGISTRY,
        setting(healthCheckCustomConfig=None),
    ),
    "Service Connect: no per-request timeout": (
        "service-connect-timeouts-set",
        "dev",
        SERVICE,
        "name",
        SERVICE,
        service_connect("services", 0, "timeout", "perRequestTimeoutSeconds"),
    ),
    "Service Connect: per-request timeout disabled": (
        "service-connect-timeouts-set",
        "prod",
        SERVICE,
        "name",
        SERVICE,
        service_connect(perRequestTimeoutSeconds=0),
    ),
    "Service Connect: no access logs": (
        "service-connect-proxy-logs",
        "dev",
        SERVICE,
        "name",
        SERVICE,
        service_connect("accessLogConfiguration"),
    ),
    "Service Connect: no discovery name": (
        "service-connect-names-spelled-out",
        "dev",
        SERVICE,
        "name",
        SERVICE,
        service_connect("services", 0, "discoveryName"),
    ),
    "Service Connect: an alias without its DNS name": (
        "service-connect-names-spelled-out",
        "prod",
        SERVICE,
        "name",
        SERVICE,
        service_connect("services", 0, "clientAlias", 0, "dnsName"),
    ),
    "image by tag": (
        "images-pinned-by-digest",
        "dev",
        TASK,
        "hello",
        TASK,
        container_setting(image="123456789012.dkr.ecr.us-east-1.amazonaws.com/hello:latest"),
    ),
}


def test_every_policy_has_a_breaking_case() -> None:
    assert {case[0] for case in BROKEN.values()} | {
        "only-the-load-balancer-is-open-to-the-world"
    } == POLICY_NAMES


@pytest.mark.parametrize("case", BROKEN)
def test_a_resource_breaking_one_rule_is_caught_by_that_policy_alone(
    engine: Engine, runs: Runs, case: str
) -> None:
    policy, key, type_, name, analyzed_as, mutate = BROKEN[case]
    run = ok(runs[key])
    props = inputs(run, type_, name)
    if (type_, analyzed_as) in RESHAPE:
        RESHAPE[type_, analyzed_as](props, run)
    # The unbroken resource passes, so the violation below is the mutation's alone.
    assert_clean(engine.analyze(analyzed_as, props, name), f"{case}, unbroken")
    mutate(props, run)
    verdict = engine.analyze(analyzed_as, props, name)
    assert set(verdict.violations) == {policy}, verdict.violations
    expected = next(p for p in guardrails.POLICIES if p.name == policy).enforcement_level
    assert expected is not None
    assert verdict.levels[policy] == expected.value


def moved_world_rule(run: Run) -> list[StackResource]:
    """The stack with the load balancer's world-80 rule put on hello's group instead."""
    hello_group = one(run, SG, "hello").id
    out = []
    for r in stack_resources(run):
        if r.name == WORLD_80:
            r = StackResource(r.type, r.name, r.urn, {**r.outputs, "securityGroupId": hello_group})
        out.append(r)
    return out


@pytest.mark.parametrize("key", ["dev", "alternatives"])
def test_world_ingress_behind_the_load_balancer_is_caught_by_the_stack_policy(
    engine: Engine, runs: Runs, key: str
) -> None:
    run = ok(runs[key])
    resources = moved_world_rule(run)
    moved = next(r for r in resources if r.name == WORLD_80)
    # On its own the rule is fine (the world on port 80): only its place is wrong.
    assert_clean(engine.analyze(moved.type, moved.outputs, moved.name), "the moved rule")
    verdict = engine.analyze_stack(resources)
    assert set(verdict.violations) == {"only-the-load-balancer-is-open-to-the-world"}
    assert verdict.levels["only-the-load-balancer-is-open-to-the-world"] == "mandatory"
    assert any(
        WORLD_80 in m for m in verdict.violations["only-the-load-balancer-is-open-to-the-world"]
    )


# --- Unknown values at preview ------------------------------------------------------------------


def unknown_at(*path: str | int) -> Mutation:
    def mutate(props: dict[str, Any], _: Run) -> None:
        node: Any = props
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = UNKNOWN

    return mutate


# (stack, type, name, what the engine does not know yet)
UNKNOWNS: dict[str, tuple[str, str, str, list[Mutation]]] = {
    "rule: protocol, ports and peer": (
        "dev",
        EGRESS,
        "hello-https-out",
        [
            unknown_at(k)
            for k in ("ipProtocol", "fromPort", "toPort", "cidrIpv4", "securityGroupId")
        ],
    ),
    "rule: source group": (
        "dev",
        INGRESS,
        "name-from-hello",
        [unknown_at("referencedSecurityGroupId")],
    ),
    "rule: the world's range": ("dev", INGRESS, WORLD_80, [unknown_at("cidrIpv4")]),
    "inline rules": ("dev", SG, "hello", [unknown_at("ingress"), unknown_at("egress")]),
    "service: network configuration": (
        "dev",
        SERVICE,
        "name",
        [unknown_at("networkConfiguration")],
    ),
    "service: public IP flag": (
        "dev",
        SERVICE,
        "hello",
        [unknown_at("networkConfiguration", "assignPublicIp")],
    ),
    "task: container definitions (the image digest)": (
        "dev",
        TASK,
        "hello",
        [unknown_at("containerDefinitions")],
    ),
    "log group: retention": ("dev", LOG_GROUP, "name", [unknown_at("retentionInDays")]),
    "service: Service Connect entries and logs": (
        "dev",
        SERVICE,
        "name",
        [
            service_connect(),
            unknown_at("serviceConnectConfiguration", "services"),
            unknown_at("serviceConnectConfiguration", "logConfiguration"),
        ],
    ),
    "service: Service Connect timeout and alias": (
        "dev",
        SERVICE,
        "name",
        [
            service_connect(),
            unknown_at("serviceConnectConfiguration", "services", 0, "timeout"),
            unknown_at("serviceConnectConfiguration", "services", 0, "clientAlias"),
        ],
    ),
    "load balancer: header setting and type": (
        "dev",
        ALB,
        "entry",
        [unknown_at("dropInvalidHeaderFields"), unknown_at("loadBalancerType")],
    ),
    "listener: TLS policy": ("alternatives", LISTENER, "entry-https", [unknown_at("sslPolicy")]),
    "listener: protocol": ("alternatives", LISTENER, "entry-https", [unknown_at("protocol")]),
    "Cloud Map: health block": ("dev", REGISTRY, "name", [unknown_at("healthCheckCustomConfig")]),
    "Cloud Map: threshold": (
        "dev",
        REGISTRY,
        "hello",
        [unknown_at("healthCheckCustomConfig", "failureThreshold")],
    ),
}


@pytest.mark.parametrize("case", UNKNOWNS)
def test_unknown_values_at_preview_are_tolerated(engine: Engine, runs: Runs, case: str) -> None:
    """No violation, and no "can't run policy during preview" note either: each policy checks
    what is known and leaves the rest to `pulumi up`, which sees every value."""
    key, type_, name, mutations = UNKNOWNS[case]
    run = ok(runs[key])
    props = inputs(run, type_, name)
    for mutate in mutations:
        mutate(props, run)
    verdict = engine.analyze(type_, props, name)
    assert verdict.violations == {}


@pytest.mark.parametrize(
    "sentinel",
    [
        UNKNOWN_STRING_VALUE,
        UNKNOWN_BOOLEAN_VALUE,
        UNKNOWN_NUMBER_VALUE,
        UNKNOWN_ARRAY_VALUE,
        UNKNOWN_OBJECT_VALUE,
    ],
    ids=["string", "boolean", "number", "array", "object"],
)
def test_every_kind_of_unknown_is_tolerated(engine: Engine, runs: Runs, sentinel: str) -> None:
    run = ok(runs["dev"])
    for type_, name, key in (
        (SERVICE, "name", "networkConfiguration"),
        (TASK, "name", "containerDefinitions"),
        (LOG_GROUP, "hello", "retentionInDays"),
        (ALB, "entry", "dropInvalidHeaderFields"),
        (REGISTRY, "name", "healthCheckCustomConfig"),
        (INGRESS, "name-from-hello", "ipProtocol"),
    ):
        props = {**inputs(run, type_, name), key: sentinel}
        assert engine.analyze(type_, props, name).violations == {}, (type_, key)


# Known violations beside unknown values: nothing passes because something else is unknown.
BESIDE_UNKNOWNS: dict[str, tuple[str, str, str, str, list[Mutation]]] = {
    "protocol -1, peer unknown": (
        "security-group-rules-tcp-one-port",
        "dev",
        EGRESS,
        "hello-https-out",
        [setting(ipProtocol="-1"), unknown_at("cidrIpv4"), unknown_at("securityGroupId")],
    ),
    "a range into a task, group unknown": (
        "ingress-from-one-security-group",
        "dev",
        INGRESS,
        "name-from-hello",
        [
            setting(referencedSecurityGroupId=None, cidrIpv4="10.0.0.0/16"),
            unknown_at("securityGroupId"),
        ],
    ),
    "a public IP, subnets and groups unknown": (
        "tasks-get-no-public-ip",
        "dev",
        SERVICE,
        "name",
        [
            lambda props, _: props["networkConfiguration"].update(assignPublicIp=True),
            unknown_at("networkConfiguration", "subnets"),
            unknown_at("networkConfiguration", "securityGroups"),
            unknown_at("cluster"),
        ],
    ),
    "no retention, name unknown": (
        "log-groups-expire",
        "dev",
        LOG_GROUP,
        "name",
        [setting(retentionInDays=None), unknown_at("name")],
    ),
    "headers forwarded, subnets unknown": (
        "load-balancers-drop-invalid-headers",
        "dev",
        ALB,
        "entry",
        [
            setting(dropInvalidHeaderFields=False),
            unknown_at("subnets"),
            unknown_at("securityGroups"),
        ],
    ),
    "old TLS, certificate and balancer unknown": (
        "tls-listeners-use-a-modern-policy",
        "alternatives",
        LISTENER,
        "entry-https",
        [
            setting(sslPolicy="ELBSecurityPolicy-2016-08"),
            unknown_at("certificateArn"),
            unknown_at("loadBalancerArn"),
            unknown_at("defaultActions"),
        ],
    ),
    "empty health block, namespace unknown": (
        "cloud-map-services-take-ecs-health",
        "dev",
        REGISTRY,
        "name",
        [setting(healthCheckCustomConfig={}), unknown_at("dnsConfig", "namespaceId")],
    ),
}


@pytest.mark.parametrize("case", BESIDE_UNKNOWNS)
def test_known_violations_are_caught_beside_unknown_values(
    engine: Engine, runs: Runs, case: str
) -> None:
    policy, key, type_, name, mutations = BESIDE_UNKNOWNS[case]
    run = ok(runs[key])
    props = inputs(run, type_, name)
    for mutate in mutations:
        mutate(props, run)
    assert set(engine.analyze(type_, props, name).violations) == {policy}


def at_first_preview(run: Run) -> list[StackResource]:
    """What AnalyzeStack gets at a stack's first preview: every id, ARN and name AWS assigns is
    unknown, and property dependencies say which resource each input comes from."""
    made_by: dict[str, str] = {}
    for r in run.resources:
        made_by[r.id] = r.urn
        for k, v in r.state.items():
            if k not in r.inputs and isinstance(v, str):
                made_by[v] = r.urn

    def blank(value: Any, found: set[str]) -> Any:
        if isinstance(value, str) and value in made_by:
            found.add(made_by[value])
            return UNKNOWN
        if isinstance(value, dict):
            return {k: blank(v, found) for k, v in value.items()}
        if isinstance(value, list):
            return [blank(v, found) for v in value]
        return value

    out = []
    for r in run.resources:
        outputs: dict[str, Any] = {}
        deps: dict[str, list[str]] = {}
        for k, v in r.state.items():
            found: set[str] = set()
            outputs[k] = blank(v, found) if k in r.inputs else UNKNOWN
            if found - {r.urn}:
                deps[k] = sorted(found - {r.urn})
        out.append(StackResource(r.type, r.name, r.urn, outputs, r.parent, r.dependencies, deps))
    return out


@pytest.mark.parametrize("key", ["dev", "prod", "alternatives"])
def test_stack_policy_decides_at_first_preview_by_property_dependencies(
    engine: Engine, runs: Runs, key: str
) -> None:
    """At a first preview no security group id is known; the rule and the load balancer still
    name their groups through property dependencies, so the policy decides, both ways."""
    run = ok(runs[key])
    preview = at_first_preview(run)
    world = next(r for r in preview if r.name == WORLD_80)
    assert world.outputs["securityGroupId"] == UNKNOWN
    assert world.property_dependencies["securityGroupId"] == [one(run, SG, "entry").urn]
    assert_clean(engine.analyze_stack(preview), f"{key} at first preview")

    moved = [
        StackResource(
            r.type,
            r.name,
            r.urn,
            r.outputs,
            r.parent,
            r.dependencies,
            {**r.property_dependencies, "securityGroupId": [one(run, SG, "hello").urn]},
        )
        if r.name == WORLD_80
        else r
        for r in preview
    ]
    verdict = engine.analyze_stack(moved)
    assert set(verdict.violations) == {"only-the-load-balancer-is-open-to-the-world"}


def test_stack_policy_tolerates_groups_it_cannot_place(engine: Engine, runs: Runs) -> None:
    """Neither an id nor a dependency: nothing to decide on, so no verdict (up decides)."""
    resources = moved_world_rule(ok(runs["dev"]))
    blind = [
        StackResource(r.type, r.name, r.urn, {**r.outputs, "securityGroupId": UNKNOWN})
        if r.name == WORLD_80
        else r
        for r in resources
    ]
    assert engine.analyze_stack(blind).violations == {}


def test_a_stack_without_a_load_balancer_open_to_the_world_is_caught(
    engine: Engine, runs: Runs
) -> None:
    """An internal load balancer's group is no excuse for world ingress."""
    run = ok(runs["dev"])
    internal = [
        StackResource(r.type, r.name, r.urn, {**r.outputs, "internal": True})
        if r.type == ALB
        else r
        for r in stack_resources(run)
    ]
    verdict = engine.analyze_stack(internal)
    assert set(verdict.violations) == {"only-the-load-balancer-is-open-to-the-world"}


@pytest.mark.parametrize(("group", "caught"), [("entry", False), ("hello", True)])
def test_stack_policy_reads_inline_rules_of_security_groups(
    engine: Engine, runs: Runs, group: str, caught: bool
) -> None:
    """A group's own ingress list (and after a refresh, every rule AWS holds for it) counts
    too: the world on 443 is fine on the load balancer's group, and caught on hello's."""
    run = ok(runs["dev"])
    world_443 = {"protocol": "tcp", "fromPort": 443, "toPort": 443, "cidrBlocks": ["0.0.0.0/0"]}
    resources = [
        StackResource(r.type, r.name, r.urn, {**r.outputs, "ingress": [world_443]})
        if r.type == SG and r.name == group
        else r
        for r in stack_resources(run)
    ]
    verdict = engine.analyze_stack(resources)
    expected = {"only-the-load-balancer-is-open-to-the-world"} if caught else set()
    assert set(verdict.violations) == expected
