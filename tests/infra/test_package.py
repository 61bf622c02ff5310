"""The component package (components/package.py, docs/package.md): the schema Pulumi's analyzer
infers from the components' annotations is the committed components/schema.json, so a change to
a component's args or outputs shows in review; and the host serves it over gRPC as the engine
asks for it.

After a deliberate change to a component's args or outputs, regenerate the committed schema:

    .venv/bin/python -m tests.infra.test_package
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import pkgutil
import re
import select
import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pulumi
import pytest
import yaml
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.provider.experimental.component import ComponentProvider
from pulumi.runtime.proto import (
    engine_pb2,
    engine_pb2_grpc,
    provider_pb2,
    provider_pb2_grpc,
    resource_pb2,
    resource_pb2_grpc,
)

import components
from components import package

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "components" / "schema.json"
DOCS = ROOT / "docs" / "package.md"
REGENERATE = ".venv/bin/python -m tests.infra.test_package"
# Seconds for the host to start (imports pulumi_aws, infers the schema: about 2 s) or answer.
START_TIMEOUT = 60


def inferred_schema() -> dict[str, Any]:
    provider = ComponentProvider(package.COMPONENTS, package.NAME, version=package.VERSION)
    schema: dict[str, Any] = json.loads(provider.schema or "{}")
    return schema


def schema_text(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def differences(inferred: dict[str, Any], committed: dict[str, Any]) -> list[str]:
    """The resources and types whose schema changed, e.g. `types: ...:index:HealthCheck`."""
    changed = []
    for section in ("resources", "types"):
        ours, theirs = inferred.get(section) or {}, committed.get(section) or {}
        changed += [
            f"{section}: {key}"
            for key in sorted(set(ours) | set(theirs))
            if ours.get(key) != theirs.get(key)
        ]
    return changed or ["the package's own fields"]


def test_the_package_serves_every_component_defined_in_components() -> None:
    defined = set()
    for module in pkgutil.iter_modules(components.__path__):
        if module.name in ("__main__", "package"):
            continue
        loaded = importlib.import_module(f"components.{module.name}")
        defined |= {
            value.__name__
            for value in vars(loaded).values()
            if isinstance(value, type)
            and issubclass(value, pulumi.ComponentResource)
            and value.__module__ == loaded.__name__
        }
    assert {c.__name__ for c in package.COMPONENTS} == defined


def test_the_committed_schema_is_the_inferred_one() -> None:
    inferred = inferred_schema()
    committed = json.loads(SCHEMA.read_text()) if SCHEMA.exists() else {}
    if inferred != committed:
        pytest.fail(
            "components/schema.json is not the schema the analyzer infers from the components"
            f" (changed: {', '.join(differences(inferred, committed))}). A deliberate change to"
            " a component's args or outputs: regenerate it with `" + REGENERATE + "` and let"
            " the review see the diff (a removed or renamed input breaks every consumer)."
        )
    # Written as the regenerating command writes it, so the diff in review is the change only.
    assert SCHEMA.read_text() == schema_text(inferred)


def test_every_component_is_a_package_type_with_typed_args() -> None:
    """Every served component is in the schema under the package's index module, with the args
    and outputs the consumers see; nothing fell back to an untyped `Any`."""
    schema = inferred_schema()
    resources = schema["resources"]
    assert isinstance(resources, dict)
    assert set(resources) == {f"{package.NAME}:index:{c.__name__}" for c in package.COMPONENTS}
    text = json.dumps(schema)
    assert "pulumi.json#/Any" not in text
    # Resource references would write pulumi-aws's version into the schema (and change it on
    # every provider upgrade): the components hand out IDs and ARNs instead.
    assert "/aws/v" not in text
    for token, resource in resources.items():
        assert resource["isComponent"] is True, token
        assert resource["inputProperties"], token
        assert resource["properties"], token


def test_the_version_is_the_schemas_and_the_docs() -> None:
    """One version: components/package.py's. The committed schema carries it, and the docs'
    `pulumi package add` lines ask for its tag."""
    assert re.fullmatch(r"\d+\.\d+\.\d+", package.VERSION)
    assert json.loads(SCHEMA.read_text())["version"] == package.VERSION
    asked = set(re.findall(r"pulumi package add \S+@v([\w.-]+)", DOCS.read_text()))
    assert asked == {package.VERSION}


def docs_program_inputs() -> dict[str, list[set[str]]]:
    """The properties docs/package.md's YAML and TypeScript programs give each component."""
    text = DOCS.read_text()
    given: dict[str, list[set[str]]] = {}
    (yaml_program,) = re.findall(r"```yaml\n(name: .*?)```", text, re.DOTALL)
    for resource in yaml.safe_load(yaml_program)["resources"].values():
        kind = resource["type"].removeprefix(f"{package.NAME}:index:")
        if kind != resource["type"]:
            given.setdefault(kind, []).append(set(resource["properties"]))
    (typescript,) = re.findall(r"```typescript\n(.*?)```", text, re.DOTALL)
    for kind, body in re.findall(
        r"new fsd\.(\w+)\(\"\w+\", \{\n(.*?)\n\}\);", typescript, re.DOTALL
    ):
        given.setdefault(kind, []).append(set(re.findall(r"^    (\w+):", body, re.MULTILINE)))
    return given


def test_the_docs_programs_give_only_inputs_the_schema_has() -> None:
    """docs/package.md's programs against the committed schema: every property a name the
    component takes, every required input given."""
    given = docs_program_inputs()
    assert set(given) == {"Platform", "DiscoverableService"}
    assert all(len(programs) == 2 for programs in given.values()), given
    resources = json.loads(SCHEMA.read_text())["resources"]
    for kind, programs in given.items():
        resource = resources[f"{package.NAME}:index:{kind}"]
        for properties in programs:
            assert properties <= set(resource["inputProperties"]), (kind, properties)
            assert set(resource["requiredInputs"]) <= properties, kind


# The host, as the engine runs it ------------------------------------------------------------


# What the provider computes for the resource types a test constructs, beside the arn, name and id
# every custom resource gets here (the mocks' answer elsewhere: tests/infra/harness.py).
COMPUTED: dict[str, dict[str, str]] = {
    "aws:lb/loadBalancer:LoadBalancer": {
        "dnsName": "entry-1234567890.eu-west-1.elb.amazonaws.com",
        "zoneId": "Z32O12XQLNTSW2",
        "arnSuffix": "app/entry/0123456789abcdef",
    },
    "aws:lb/targetGroup:TargetGroup": {"arnSuffix": "targetgroup/entry/0123456789abcdef"},
}


# What the AWS provider's functions answer for the stack (account, region, partition).
INVOKES: dict[str, dict[str, str]] = {
    "aws:index/getPartition:getPartition": {"partition": "aws", "dnsSuffix": "amazonaws.com"},
    "aws:index/getCallerIdentity:getCallerIdentity": {"accountId": "123456789012"},
    "aws:index/getRegion:getRegion": {"region": "eu-west-1", "name": "eu-west-1"},
}


class Monitor(resource_pb2_grpc.ResourceMonitorServicer):
    """The engine's resource monitor, as far as a Construct needs it: every registration is
    recorded and answered the way Pulumi's mocks answer (the inputs back, plus an id, an arn,
    a name and what COMPUTED lists for a custom resource); functions answer from INVOKES. It
    supports no optional feature, like an older engine."""

    def __init__(self) -> None:
        self.registered: list[resource_pb2.RegisterResourceRequest] = []

    def GetDeploymentInfo(
        self, request: empty_pb2.Empty, context: object
    ) -> resource_pb2.DeploymentInfo:
        return resource_pb2.DeploymentInfo(supportedFeatures=[])

    def RegisterResource(
        self, request: resource_pb2.RegisterResourceRequest, context: object
    ) -> resource_pb2.RegisterResourceResponse:
        self.registered.append(request)
        state = json_format.MessageToDict(request.object)
        if request.custom:
            state = {
                "arn": f"arn:aws:{request.type}:{request.name}",
                "name": request.name,
                **COMPUTED.get(request.type, {}),
                **state,
            }
        answer = struct_pb2.Struct()
        answer.update(state)
        return resource_pb2.RegisterResourceResponse(
            urn=f"urn:pulumi:dev::consumer::{request.type}::{request.name}",
            id=f"{request.name}-id" if request.custom else "",
            object=answer,
        )

    def Invoke(
        self, request: resource_pb2.ResourceInvokeRequest, context: object
    ) -> resource_pb2.ResourceInvokeResponse:
        answer = struct_pb2.Struct()
        answer.update(INVOKES[request.tok])
        return resource_pb2.ResourceInvokeResponse(**{"return": answer})

    def RegisterResourceOutputs(
        self, request: resource_pb2.RegisterResourceOutputsRequest, context: object
    ) -> empty_pb2.Empty:
        return empty_pb2.Empty()


class Engine(engine_pb2_grpc.EngineServicer):
    """The engine's log: the provider logs every registration there."""

    def Log(self, request: engine_pb2.LogRequest, context: object) -> empty_pb2.Empty:
        return empty_pb2.Empty()


@dataclasses.dataclass
class Host:
    stub: provider_pb2_grpc.ResourceProviderStub
    monitor: Monitor
    monitor_address: str


def start_host(command: list[str], engine_address: str) -> subprocess.Popen[str]:
    """The engine starts a provider with its own address as the argument and reads the port
    the provider listens on from the provider's first line of output."""
    return subprocess.Popen(
        [*command, engine_address],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def first_line(process: subprocess.Popen[str]) -> str:
    """The host's first line of output (its port), or "" if it exits or stays silent."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], START_TIMEOUT)
    return process.stdout.readline().strip() if ready else ""


def stop(process: subprocess.Popen[str]) -> str:
    """Stop the host, whatever state it is in; its standard error."""
    if process.poll() is None:
        process.terminate()
    try:
        return process.communicate(timeout=START_TIMEOUT)[1]
    except subprocess.TimeoutExpired:
        process.kill()
        return process.communicate()[1]


@pytest.fixture(scope="module")
def host() -> Iterator[Host]:
    """The host, with an engine and a resource monitor on loopback."""
    command = [sys.executable, "components"]
    engine = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    monitor = Monitor()
    resource_pb2_grpc.add_ResourceMonitorServicer_to_server(monitor, engine)
    engine_pb2_grpc.add_EngineServicer_to_server(Engine(), engine)
    address = f"127.0.0.1:{engine.add_insecure_port('127.0.0.1:0')}"
    engine.start()
    process = start_host(command, address)
    try:
        port = first_line(process)
        if not port.isdigit():
            pytest.fail(f"the host did not start: {stop(process)}")
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield Host(provider_pb2_grpc.ResourceProviderStub(channel), monitor, address)
    finally:
        stop(process)
        engine.stop(None)


def test_the_host_answers_the_engine_with_the_committed_schema(host: Host) -> None:
    info = host.stub.GetPluginInfo(empty_pb2.Empty(), timeout=START_TIMEOUT)
    response = host.stub.GetSchema(provider_pb2.GetSchemaRequest(version=0), timeout=START_TIMEOUT)
    assert info.version == package.VERSION
    assert json.loads(response.schema) == json.loads(SCHEMA.read_text())


def construct(host: Host, component: str, name: str, inputs: dict[str, Any]) -> Any:
    wire = struct_pb2.Struct()
    wire.update(inputs)  # every number a double, as on the engine's wire
    return host.stub.Construct(
        provider_pb2.ConstructRequest(
            project="consumer",
            stack="dev",
            monitorEndpoint=host.monitor_address,
            type=f"{package.NAME}:index:{component}",
            name=name,
            inputs=wire,
        ),
        timeout=START_TIMEOUT,
    )


CAPACITY_PROVIDERS = "aws:ecs/clusterCapacityProviders:ClusterCapacityProviders"
POLICY_ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"


def urn_of(
    registered: dict[tuple[str, str], resource_pb2.RegisterResourceRequest], kind: str, name: str
) -> str:
    assert (kind, name) in registered, sorted(registered)
    return f"urn:pulumi:dev::consumer::{kind}::{name}"


def depends(response: Any, output: str) -> set[str]:
    """The resources a component's output depends on, as the engine hands them on."""
    return set(response.stateDependencies[output].urns)


def test_a_consumer_constructs_a_component_through_the_host(host: Host) -> None:
    """What a TypeScript or YAML program's `new Platform(...)` becomes: the engine's Construct
    with camelCase inputs; the component registers itself (under its own type token, the one
    this program's URNs carry) and its children, and answers its outputs in camelCase."""
    inputs = {
        "vpcId": "vpc-0123",
        "namespace": "internal",
        "clusterName": "orders",
        "aws": {"region": "eu-west-1", "accountId": "123456789012", "partition": "aws"},
    }
    response = construct(host, "Platform", "platform", inputs)

    component = "fargate-service-discovery:platform:Platform"
    assert response.urn == f"urn:pulumi:dev::consumer::{component}::platform"
    registered = {(r.type, r.name): r for r in host.monitor.registered}
    assert registered[(component, "platform")].parent == ""
    children = [r for r in host.monitor.registered if r.custom]
    assert {r.type for r in children} >= {
        "aws:ecs/cluster:Cluster",
        "aws:ecs/clusterCapacityProviders:ClusterCapacityProviders",
        "aws:servicediscovery/privateDnsNamespace:PrivateDnsNamespace",
    }
    assert {r.parent for r in children} == {response.urn}
    namespace = registered[
        ("aws:servicediscovery/privateDnsNamespace:PrivateDnsNamespace", "platform")
    ]
    assert json_format.MessageToDict(namespace.object)["vpc"] == "vpc-0123"
    state = json_format.MessageToDict(response.state)
    assert state["clusterArn"] == "arn:aws:aws:ecs/cluster:Cluster:platform"
    assert state["namespaceId"] == "platform-id"
    # A consumer can pass no resource for depends_on: the outputs carry the order. A service
    # on this cluster waits for its capacity providers, a task for its role's policy.
    assert urn_of(registered, CAPACITY_PROVIDERS, "platform") in depends(response, "clusterArn")
    attachment = urn_of(registered, POLICY_ATTACHMENT, "platform-task-execution")
    assert attachment in depends(response, "executionRoleArn")


def test_the_target_group_arn_waits_for_the_rule_that_uses_it(host: Host) -> None:
    """ECS refuses a service whose target group no load balancer uses yet: a consumer that
    hands the ARN to its service gets the forwarding rule's order with it."""
    inputs = {
        "vpcId": "vpc-0123",
        "subnetIds": ["subnet-1", "subnet-2"],
        "targetPort": 8080,
        "healthCheckPath": "/health",
    }
    response = construct(host, "PublicEntry", "entry", inputs)
    registered = {(r.type, r.name): r for r in host.monitor.registered}
    target_group = registered[("aws:lb/targetGroup:TargetGroup", "entry")]
    assert json_format.MessageToDict(target_group.object)["port"] == 8080
    rule = urn_of(registered, "aws:lb/listenerRule:ListenerRule", "entry-public")
    assert rule in depends(response, "targetGroupArn")


def test_a_consumer_sees_the_components_own_refusal(host: Host) -> None:
    """A component's check of its args reaches the consumer as the Construct's error, with
    the field names and the values (here read from the wire's doubles as integers)."""
    inputs = {
        "clusterName": "orders",
        "serviceName": "web",
        "minCount": 3,
        "maxCount": 2,
        "cpu": {"percent": 60},
    }
    with pytest.raises(grpc.RpcError) as refused:
        construct(host, "ServiceAutoscaling", "web", inputs)
    assert "need 0 <= min_count <= max_count, got 3 and 2" in str(refused.value.details())


# What the docs' YAML program's `${...}` references resolve to, as literals.
REFERENCES = {
    "${platform.clusterArn}": "arn:aws:ecs:eu-west-1:123456789012:cluster/orders",
    "${platform.namespaceId}": "ns-0123456789abcdef",
    "${platform.namespaceName}": "internal",
    "${apiToken.arn}": (
        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:orders/api-token-AbCdEf"
    ),
}


def resolved(value: Any) -> Any:
    """A YAML program's property value with its references and `fn::toJSON` evaluated."""
    if isinstance(value, str):
        return REFERENCES.get(value, value)
    if isinstance(value, list):
        return [resolved(v) for v in value]
    if isinstance(value, dict) and set(value) == {"fn::toJSON"}:
        return json.dumps(value["fn::toJSON"])
    if isinstance(value, dict):
        return {k: resolved(v) for k, v in value.items()}
    return value


def test_the_docs_service_runs_through_the_package(host: Host) -> None:
    """docs/package.md's YAML `orders` service, constructed as the engine would: a public nginx
    image on its own port with its own health check, a secret and a task role. Every number
    crossed the wire as a double; the container definition ECS reads has integers."""
    (program,) = re.findall(r"```yaml\n(name: .*?)```", DOCS.read_text(), re.DOTALL)
    properties = resolved(yaml.safe_load(program)["resources"]["orders"]["properties"])
    response = construct(host, "DiscoverableService", "orders", properties)

    registered = {(r.type, r.name): r for r in host.monitor.registered}
    assert urn_of(registered, "aws:ecs/service:Service", "orders")
    task = json_format.MessageToDict(
        registered[("aws:ecs/taskDefinition:TaskDefinition", "orders")].object
    )
    (container,) = json.loads(task["containerDefinitions"])
    assert container["image"] == "public.ecr.aws/nginx/nginx:1.27"
    assert container["portMappings"][0]["containerPort"] == 80
    assert type(container["portMappings"][0]["containerPort"]) is int
    assert container["healthCheck"]["command"] == properties["healthCheck"]["command"]
    assert all(type(v) is int for k, v in container["healthCheck"].items() if k != "command")
    assert container["secrets"] == [
        {"name": "API_TOKEN", "valueFrom": REFERENCES["${apiToken.arn}"]}
    ]
    state = json_format.MessageToDict(response.state)
    assert state["endpoint"] == "http://orders.internal:80/"
    assert state["taskRoleArn"]


def test_pulumi_runs_the_entry_file_with_its_folder_first_on_sys_path() -> None:
    """Pulumi's Python language host runs `python components/ <engine>`: the folder comes first
    on sys.path, where platform.py would shadow the standard library's (uuid, imported by
    pulumi, calls platform.system()) unless components/__main__.py swaps it for the root."""
    process = start_host([sys.executable, "components"], "127.0.0.1:1")
    try:
        port = first_line(process)  # empty if the host exits instead
    finally:
        stderr = stop(process)
    assert port.isdigit(), stderr


if __name__ == "__main__":
    SCHEMA.write_text(schema_text(inferred_schema()))
    print(f"wrote {SCHEMA.relative_to(ROOT)}")
