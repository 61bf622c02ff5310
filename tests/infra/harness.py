"""Runs a Pulumi program under mocks in a fresh process and prints what it registered, as JSON.

Pulumi's mock runtime is process-global state (settings, root stack, config) and drives its own
asyncio event loop; running each program in its own interpreter keeps every run independent and
leaves the pytest process, where the services' async tests run, untouched.

    echo '{"stack": "dev", "config": {...}, "program": "__main__.py"}' \
        | python -m tests.infra.harness

`program` is a path to a program file (the real `__main__.py`) or `module:function` for a
component-level scenario. Config is handed over the way the Pulumi language host does it: one
JSON object of full keys to text values in PULUMI_CONFIG.

Several runs at once (the shared runs of tests/infra/conftest.py):

    echo '{"dev": {"stack": ...}, "prod": {...}}' | python -m tests.infra.harness --many DIR

imports what every run imports once (Pulumi, the provider modules the program uses, the
components), then forks one child per run, all at once. Each child is a run as above, in a
process of its own that starts from that state and never from another run's: its JSON goes to
DIR/<key>.json, its stderr to DIR/<key>.err, and the parent prints "<key> <exit status>" as each
child ends. Forking is safe here: nothing in the parent has started a thread or run a program.

The mocks answer like AWS would, with plausible ids, ARNs and DNS names. For the two awsx
components, which are single opaque resources under mocks, they return the components' outputs
and never echo the inputs back (awsx's inputs are not its outputs).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import runpy
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import mocks
from pulumi.runtime import rpc as pulumi_rpc
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

ACCOUNT = "123456789012"
REGION = "us-east-1"
PROJECT = "fargate-service-discovery"


def _hex(seed: str, length: int) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()[:length]


def _physical_name(name: str, inputs: dict[str, Any]) -> str:
    """What Pulumi's auto-naming would produce: the logical name plus a random-looking suffix."""
    given = inputs.get("name")
    return given if isinstance(given, str) and given else f"{name}-{_hex(name, 7)}"


def awsx_vpc(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    zones = int(inputs.get("numberOfAvailabilityZones") or 3)
    return {
        "vpcId": f"vpc-{_hex(name, 17)}",
        "publicSubnetIds": [f"subnet-{_hex(f'{name}-public-{i}', 17)}" for i in range(zones)],
        "privateSubnetIds": [f"subnet-{_hex(f'{name}-private-{i}', 17)}" for i in range(zones)],
        "isolatedSubnetIds": [],
    }


def awsx_image(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    # What awsx.ecr.Image returns after the push: the repository pinned by the image's digest.
    digest = _hex(json.dumps(inputs, sort_keys=True, default=str), 64)
    return {"imageUri": f"{inputs['repositoryUrl']}@sha256:{digest}"}


def aws_state(typ: str, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(id, state) for an AWS resource: its inputs plus the attributes AWS computes."""
    physical = _physical_name(name, inputs)
    service = typ.split(":")[1].split("/", maxsplit=1)[0]
    arn = f"arn:aws:{service}:{REGION}:{ACCOUNT}:{physical}"
    extra: dict[str, Any] = {"arn": arn}
    rid = f"{physical}-id"
    match typ:
        case "aws:ec2/securityGroup:SecurityGroup":
            rid = f"sg-{_hex(name, 17)}"
            extra["name"] = physical
        case "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule" | (
            "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
        ):
            rid = f"sgr-{_hex(name, 17)}"
        case "aws:ecr/repository:Repository":
            rid = physical
            extra["name"] = physical
            extra["repositoryUrl"] = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{physical}"
        case "aws:ecs/cluster:Cluster":
            extra["name"] = physical
            extra["arn"] = rid = f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{physical}"
        case "aws:ecs/taskDefinition:TaskDefinition":
            family = inputs["family"]
            extra["arn"] = rid = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{family}:1"
            extra["revision"] = 1
        case "aws:ecs/service:Service":
            extra["name"] = physical
            rid = f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/cluster/{physical}"
        case "aws:servicediscovery/privateDnsNamespace:PrivateDnsNamespace":
            rid = f"ns-{_hex(name, 16)}"
            extra["arn"] = f"arn:aws:servicediscovery:{REGION}:{ACCOUNT}:namespace/{rid}"
            extra["hostedZone"] = f"Z{_hex(name, 20).upper()}"
        case "aws:servicediscovery/service:Service":
            rid = f"srv-{_hex(name, 16)}"
            extra["arn"] = f"arn:aws:servicediscovery:{REGION}:{ACCOUNT}:service/{rid}"
        case "aws:iam/role:Role":
            rid = physical
            extra["name"] = physical
            extra["arn"] = f"arn:aws:iam::{ACCOUNT}:role{inputs.get('path', '/')}{physical}"
        case "aws:cloudwatch/logGroup:LogGroup":
            rid = physical
            extra["name"] = physical
        case "aws:lb/loadBalancer:LoadBalancer":
            extra["arn"] = rid = (
                f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:loadbalancer/app/"
                f"{physical[:32]}/{_hex(name, 16)}"
            )
            extra["dnsName"] = (
                f"{physical[:32]}-{int(_hex(name, 8), 16)}.{REGION}.elb.amazonaws.com"
            )
            # The canonical hosted zone of ALBs in us-east-1, for alias records.
            extra["zoneId"] = "Z35SXDOTRQ7X7K"
            # What the provider computes from the ARN: CloudWatch's LoadBalancer dimension.
            extra["arnSuffix"] = extra["arn"].split(":loadbalancer/", 1)[1]
        case "aws:lb/targetGroup:TargetGroup":
            extra["arn"] = rid = (
                f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:targetgroup/"
                f"{physical[:32]}/{_hex(name, 16)}"
            )
            extra["arnSuffix"] = extra["arn"].split(":", 5)[5]
        case "aws:lb/listenerRule:ListenerRule":
            extra["arn"] = rid = (
                f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:listener-rule/app/"
                f"{_hex(name, 8)}/{_hex(name + 'lb', 16)}/{_hex(name + 'l', 16)}/{_hex(name, 16)}"
            )
        case "aws:acm/certificate:Certificate":
            extra["arn"] = rid = (
                f"arn:aws:acm:{REGION}:{ACCOUNT}:certificate/{_hex(name, 8)}-{_hex(name, 4)}-"
                f"{_hex(name, 4)}-{_hex(name, 4)}-{_hex(name, 12)}"
            )
            # What ACM answers: one CNAME per name, with trailing dots.
            extra["domainValidationOptions"] = [
                {
                    "domainName": inputs["domainName"],
                    "resourceRecordName": f"_{_hex(name, 32)}.{inputs['domainName']}.",
                    "resourceRecordType": "CNAME",
                    "resourceRecordValue": f"_{_hex(name + 'v', 32)}.acm-validations.aws.",
                }
            ]
            extra["status"] = "PENDING_VALIDATION"
        case "aws:acm/certificateValidation:CertificateValidation":
            rid = "2026-11-29 00:00:00 +0000 UTC"
            extra = {}
        case "aws:route53/record:Record":
            rid = f"{inputs['zoneId']}_{inputs['name']}_{inputs['type']}"
            # The provider stores names lower-case, without a trailing dot.
            extra = {"fqdn": inputs["name"].rstrip(".").lower()}
        case "aws:appautoscaling/target:Target":
            # The id is the resource id; the role is the service-linked role AWS fills in.
            rid = inputs["resourceId"]
            extra["arn"] = (
                f"arn:aws:application-autoscaling:{REGION}:{ACCOUNT}:scalable-target/"
                f"0ec{_hex(name, 29)}"
            )
            extra["roleArn"] = (
                f"arn:aws:iam::{ACCOUNT}:role/aws-service-role/"
                "ecs.application-autoscaling.amazonaws.com/"
                "AWSServiceRoleForApplicationAutoScaling_ECSService"
            )
        case "aws:appautoscaling/policy:Policy":
            rid = physical
            extra["arn"] = (
                f"arn:aws:autoscaling:{REGION}:{ACCOUNT}:scalingPolicy:{_hex(name, 36)}:"
                f"resource/ecs/{inputs['resourceId']}:policyName/{physical}"
            )
        case "aws:cloudwatch/metricAlarm:MetricAlarm":
            rid = inputs["name"]
            extra["arn"] = f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{rid}"
        case "aws:cloudwatch/dashboard:Dashboard":
            rid = inputs["dashboardName"]
            extra = {"dashboardArn": f"arn:aws:cloudwatch::{ACCOUNT}:dashboard/{rid}"}
        case "aws:sns/topic:Topic":
            extra["arn"] = rid = f"arn:aws:sns:{REGION}:{ACCOUNT}:{physical}"
        case "aws:sns/topicSubscription:TopicSubscription":
            extra["arn"] = rid = f"{inputs['topic']}:{_hex(name, 8)}-{_hex(name + 's', 4)}"
        case "aws:ecs/clusterCapacityProviders:ClusterCapacityProviders":
            rid = inputs["clusterName"]
            extra = {}
        case "aws:lb/listener:Listener":
            extra["arn"] = rid = (
                f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:listener/app/"
                f"{_hex(name, 8)}/{_hex(name + 'lb', 16)}/{_hex(name + 'l', 16)}"
            )
    return rid, {**inputs, **extra}


def _to_json(value: Any) -> Any:
    """Mock inputs as plain JSON (resource references and other objects become text)."""
    return json.loads(json.dumps(value, default=repr))


def run(spec: dict[str, Any]) -> dict[str, Any]:
    # Where the runtime reads config from under `pulumi up`.
    os.environ["PULUMI_CONFIG"] = json.dumps(spec.get("config", {}))

    records: list[dict[str, Any]] = []
    outputs: dict[str, Any] = {}
    invokes: list[str] = []
    invoke_args: list[dict[str, Any]] = []
    lock = threading.Lock()

    class Mocks(pulumi.runtime.Mocks):
        def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
            if args.typ == "awsx:ec2:Vpc":
                return f"{args.name}-vpc", awsx_vpc(args.name, args.inputs)
            if args.typ == "awsx:ecr:Image":
                return f"{args.name}-image", awsx_image(args.name, args.inputs)
            if args.typ.startswith("aws:"):
                return aws_state(args.typ, args.name, args.inputs)
            return f"{args.name}-id", {}

        def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:  # type: ignore[override]
            with lock:
                invokes.append(args.token)
                invoke_args.append({"token": args.token, "args": _to_json(dict(args.args))})
            match args.token:
                case "aws:index/getRegion:getRegion":
                    return {"region": REGION, "name": REGION, "id": REGION}
                case "aws:index/getCallerIdentity:getCallerIdentity":
                    return {
                        "accountId": ACCOUNT,
                        "arn": f"arn:aws:iam::{ACCOUNT}:user/ci",
                        "userId": "AIDAEXAMPLE",
                        "id": ACCOUNT,
                    }
                case "aws:route53/getZone:getZone":
                    return {
                        "zoneId": f"Z{_hex(str(args.args.get('name')), 20).upper()}",
                        "name": args.args.get("name"),
                        "privateZone": args.args.get("privateZone"),
                        "id": "zone",
                    }
                case "aws:ec2/getSubnet:getSubnet":
                    # A subnet's zone and block, derived from its id: one /20 of 10.0.0.0/16
                    # per subnet, zones a, b, c in turn.
                    number = int(_hex(str(args.args.get("id")), 8), 16)
                    return {
                        "id": args.args.get("id"),
                        "availabilityZone": f"{REGION}{'abc'[number % 3]}",
                        "cidrBlock": f"10.0.{(number % 16) * 16}.0/20",
                    }
                case "aws:index/getPartition:getPartition":
                    return {
                        "partition": "aws",
                        "dnsSuffix": "amazonaws.com",
                        "reverseDnsPrefix": "com.amazonaws",
                        "id": "aws",
                    }
            raise NotImplementedError(f"no mock for invoke {args.token}")

    class RecordingMonitor(mocks.MockMonitor):
        """Also records what MockResourceArgs leaves out: parent, dependencies, options, outputs."""

        def RegisterResource(self, request: Any) -> Any:
            response = super().RegisterResource(request)
            if request.type != "pulumi:pulumi:Stack":
                with lock:
                    records.append(
                        {
                            "type": request.type,
                            "name": request.name,
                            "urn": response.urn,
                            "id": response.id,
                            "parent": request.parent,
                            "custom": request.custom,
                            "dependencies": list(request.dependencies),
                            "deleteBeforeReplace": bool(request.deleteBeforeReplace),
                            "ignoreChanges": list(request.ignoreChanges),
                            "inputs": _to_json(pulumi_rpc.deserialize_properties(request.object)),
                            # What the mocks answered: the resource's outputs.
                            "state": _to_json(pulumi_rpc.deserialize_properties(response.object)),
                        }
                    )
            return response

        def RegisterResourceOutputs(self, request: Any) -> Any:
            with lock:
                outputs[request.urn] = _to_json(pulumi_rpc.deserialize_properties(request.outputs))
            return super().RegisterResourceOutputs(request)

    mock = Mocks()
    pulumi.runtime.set_mocks(
        mock,
        project=spec.get("project", PROJECT),
        stack=spec["stack"],
        preview=False,
        monitor=RecordingMonitor(mock),
    )

    program = spec["program"]

    def body() -> Any:
        if ":" in program:
            module, function = program.split(":")
            getattr(importlib.import_module(module), function)()
        else:
            runpy.run_path(program, run_name="__main__")
        root = pulumi.runtime.get_root_resource()
        exported = getattr(root, "outputs", {})
        return _sync_await(pulumi.Output.from_input(exported).future())

    result: dict[str, Any] = {"error": None, "exports": None}
    try:
        _sync_await(run_pulumi_func(lambda: result.update(exports=body())))
    except pulumi.RunError as e:
        result["error"] = str(e)
    return {
        **result,
        "exports": _to_json(result["exports"]),
        "resources": records,
        "outputs": outputs,
        "invokes": invokes,
        "invokeArgs": invoke_args,
    }


ROOT = Path(__file__).resolve().parents[2]
# What the programs use of the providers: `aws.<module>.<name>` / `awsx.<module>.<name>`.
USED_NAME = re.compile(r"\b(awsx?)\.([a-z][a-z0-9]*)\.([A-Za-z_][A-Za-z0-9_]*)")


def warm_up(specs: dict[str, dict[str, Any]]) -> None:
    """Import, once, what the runs would each import: their modules and the provider modules
    their source names (pulumi_aws imports a module when a name in it is first used). Only a
    warm-up: a module missed here is imported in each run, as without it."""
    import pulumi_aws  # noqa: PLC0415
    import pulumi_awsx  # noqa: PLC0415

    packages = {"aws": pulumi_aws, "awsx": pulumi_awsx}
    sources = [*ROOT.glob("components/*.py"), *ROOT.glob("stack/*.py")]
    for spec in specs.values():
        program = spec["program"]
        if ":" in program:
            module = importlib.import_module(program.split(":")[0])
            sources.append(Path(str(module.__file__)))
        else:
            sources.append(ROOT / program)
    for source in sources:
        for package, module, name in USED_NAME.findall(source.read_text()):
            getattr(getattr(packages[package], module, None), name, None)
    for source in ROOT.glob("components/*.py"):
        importlib.import_module(f"components.{source.stem}")
    assert threading.active_count() == 1, "no thread may run in a process that forks"


def run_child(spec: dict[str, Any], out: Path, err: Path) -> int:
    """In a forked child: one run, its JSON to `out`, anything it prints to `err` (stdout
    too: the parent's stdout, which the child shares, carries only the parent's lines)."""
    with err.open("w") as errors:
        os.dup2(errors.fileno(), 1)
        os.dup2(errors.fileno(), 2)
    sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115 - fds 1 and 2 outlive this call
    sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
    try:
        result = json.dumps(run(spec))
    except BaseException:
        traceback.print_exc()
        return 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    out.write_text(result)
    return 0


def many(folder: Path, specs: dict[str, dict[str, Any]]) -> int:
    warm_up(specs)
    children: dict[int, str] = {}
    for key, spec in specs.items():
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = run_child(spec, folder / f"{key}.json", folder / f"{key}.err")
            finally:
                os._exit(code)
        children[pid] = key
    while children:
        pid, status = os.wait()
        print(children.pop(pid), os.waitstatus_to_exitcode(status), flush=True)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--many"]:
        sys.exit(many(Path(sys.argv[2]), json.load(sys.stdin)))
    print(json.dumps(run(json.load(sys.stdin))))
