"""The copy test: `components/` copied alone into a program of another team, running an image that
is not this project's, under Pulumi mocks, in a Python that cannot see this repository.

The program below is what a team writes after copying the folder: a DiscoverableService for
public.ecr.aws/nginx/nginx (port 80, root, its own health check command, a writable root
filesystem), with a secret from each store and a task role. It runs in `python -I` (no PYTHONPATH,
no user site, no script folder on the path) from a temporary folder outside this layout, strips
anything under the repository from sys.path, fails if a module of the repository was imported,
and prints what it registered as JSON.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from typing import Any

import pytest

from tests.infra.support import ROOT

PROGRAM = r"""
import json
import os
import sys
from pathlib import Path

REPOSITORY = Path(sys.argv[1]).resolve()
LIBRARY = Path(sys.argv[2]).resolve()
# The installed packages (pulumi, pulumi_aws) stay: the interpreter's environment happens to
# live in the repository's .venv. Anything else of the repository goes.
INSTALLED = Path(sys.prefix).resolve()


def of_repository(path):
    path = Path(path or ".").resolve()
    return path.is_relative_to(REPOSITORY) and not path.is_relative_to(INSTALLED)


sys.path[:] = [p for p in sys.path if not of_repository(p)]
sys.path.insert(0, str(LIBRARY))

import pulumi
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

ACCOUNT = "210987654321"
REGION = "eu-central-1"
registered = []


class Mocks(pulumi.runtime.Mocks):
    def new_resource(self, args):
        state = dict(args.inputs)
        physical = state.get("name") or f"{args.name}-1a2b3c4"
        rid = f"{args.name}-id"
        if args.typ == "aws:iam/role:Role":
            rid = physical
            arn = f"arn:aws:iam::{ACCOUNT}:role{state['path']}{physical}"
            state |= {"name": physical, "arn": arn}
        elif args.typ == "aws:ec2/securityGroup:SecurityGroup":
            rid = f"sg-{args.name}"
        elif args.typ == "aws:cloudwatch/logGroup:LogGroup":
            rid = physical
        elif args.typ == "aws:ecs/taskDefinition:TaskDefinition":
            state["arn"] = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{state['family']}:1"
        elif args.typ == "aws:servicediscovery/service:Service":
            state["arn"] = f"arn:aws:servicediscovery:{REGION}:{ACCOUNT}:service/srv-{args.name}"
        elif args.typ == "aws:ecs/service:Service":
            state["name"] = physical
        registered.append({"type": args.typ, "name": args.name, "state": state})
        return rid, state

    def call(self, args):
        if args.token == "aws:index/getRegion:getRegion":
            return {"region": REGION, "name": REGION, "id": REGION}
        if args.token == "aws:index/getPartition:getPartition":
            return {"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws"}
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": ACCOUNT, "arn": "arn", "userId": "u", "id": ACCOUNT}
        raise NotImplementedError(args.token)


pulumi.runtime.set_mocks(Mocks(), project="another-team", stack="test", preview=False)

from components.service import ContainerHealthCheck, DiscoverableService, DiscoverableServiceArgs

SECRETS = {
    "DB_PASSWORD": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:web/db-Q1w2E3:password::",
    "API_KEY": f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/web/api-key",
}
POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "arn:aws:sqs:*:*:orders"}
        ],
    }
)


def program():
    args = DiscoverableServiceArgs(
        image="public.ecr.aws/nginx/nginx:stable",
        port=80,
        cluster_arn=f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/apps",
        namespace_id="ns-abcdef0123456789",
        namespace_name="apps.internal",
        vpc_id="vpc-0a1b2c3d4e5f60718",
        subnet_ids=["subnet-0aaaaaaaaaaaaaaa1", "subnet-0aaaaaaaaaaaaaaa2"],
        prefix="team",
        health_check=ContainerHealthCheck(
            command=["CMD-SHELL", "curl -fsS http://localhost/ || exit 1"]
        ),
        secrets=SECRETS,
        task_role_policy=POLICY,
    )
    web = DiscoverableService("web", args)
    DiscoverableService("quiet", args)
    web.allow_from("gateway", "sg-0123456789abcdef0")


_sync_await(run_pulumi_func(program))
leaked = sorted(
    name
    for name, module in sys.modules.items()
    if getattr(module, "__file__", None) and of_repository(module.__file__)
)
print(json.dumps({"resources": registered, "leaked": leaked}))
"""


@pytest.fixture(scope="module")
def copied(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run the other team's program once; its registrations and any leaked module."""
    folder = tmp_path_factory.mktemp("another-team")
    assert not folder.resolve().is_relative_to(ROOT)
    shutil.copytree(ROOT / "components", folder / "lib" / "components")
    (folder / "app").mkdir()
    program = folder / "app" / "main.py"
    program.write_text(PROGRAM)
    done = subprocess.run(
        [sys.executable, "-I", str(program), str(ROOT), str(folder / "lib")],
        cwd=folder / "app",
        env={"PATH": "/usr/bin:/bin", "HOME": str(folder)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def one(copied: dict[str, Any], type_: str, name: str) -> dict[str, Any]:
    (found,) = [r for r in copied["resources"] if r["type"] == type_ and r["name"] == name]
    state: dict[str, Any] = found["state"]
    return state


def test_nothing_of_the_repository_is_imported(copied: dict[str, Any]) -> None:
    assert copied["leaked"] == []


def test_the_image_runs_as_given_with_its_own_health_check(copied: dict[str, Any]) -> None:
    task = one(copied, "aws:ecs/taskDefinition:TaskDefinition", "web")
    (container,) = json.loads(task["containerDefinitions"])
    assert container["image"] == "public.ecr.aws/nginx/nginx:stable"
    assert container["portMappings"] == [{"containerPort": 80, "hostPort": 80, "protocol": "tcp"}]
    assert container["healthCheck"]["command"] == [
        "CMD-SHELL",
        "curl -fsS http://localhost/ || exit 1",
    ]
    # Nothing of this project's images: the image's own user, a writable root filesystem, no
    # environment it did not ask for.
    assert not {"user", "readonlyRootFilesystem", "environment"} & set(container)
    assert container["logConfiguration"]["options"]["awslogs-region"] == "eu-central-1"


def test_no_ingress_until_allow_from(copied: dict[str, Any]) -> None:
    ingress = [
        r["state"]
        for r in copied["resources"]
        if r["type"] == "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
    ]
    assert [(r["securityGroupId"], r["referencedSecurityGroupId"]) for r in ingress] == [
        ("sg-web", "sg-0123456789abcdef0")
    ]
    assert (ingress[0]["ipProtocol"], ingress[0]["fromPort"], ingress[0]["toPort"]) == (
        "tcp",
        80,
        80,
    )
    for name in ("web", "quiet"):
        group = one(copied, "aws:ec2/securityGroup:SecurityGroup", name)
        assert "ingress" not in group


def test_cloud_map_gets_the_health_block_the_provider_sends(copied: dict[str, Any]) -> None:
    """An empty health_check_custom_config is dropped by the provider (servicediscovery/
    service.go): the copied component still sends failure_threshold 1."""
    registry = one(copied, "aws:servicediscovery/service:Service", "web")
    assert registry["healthCheckCustomConfig"] == {"failureThreshold": 1}
    assert registry["dnsConfig"]["namespaceId"] == "ns-abcdef0123456789"


def test_the_task_role_and_the_secrets(copied: dict[str, Any]) -> None:
    task = one(copied, "aws:ecs/taskDefinition:TaskDefinition", "web")
    (container,) = json.loads(task["containerDefinitions"])
    assert container["secrets"] == [
        {
            "name": "API_KEY",
            "valueFrom": "arn:aws:ssm:eu-central-1:210987654321:parameter/web/api-key",
        },
        {
            "name": "DB_PASSWORD",
            "valueFrom": (
                "arn:aws:secretsmanager:eu-central-1:210987654321:secret:web/db-Q1w2E3:password::"
            ),
        },
    ]
    execution = one(copied, "aws:iam/role:Role", "web-execution")
    assert task["executionRoleArn"] == execution["arn"]
    assert execution["path"] == "/"
    condition = json.loads(execution["assumeRolePolicy"])["Statement"][0]["Condition"]
    assert condition == {
        "ArnLike": {"aws:SourceArn": "arn:aws:ecs:eu-central-1:210987654321:*"},
        "StringEquals": {"aws:SourceAccount": "210987654321"},
    }
    grants = json.loads(one(copied, "aws:iam/rolePolicy:RolePolicy", "web-secrets")["policy"])
    assert {s["Action"]: s["Resource"] for s in grants["Statement"]} == {
        "secretsmanager:GetSecretValue": [
            "arn:aws:secretsmanager:eu-central-1:210987654321:secret:web/db-Q1w2E3"
        ],
        "ssm:GetParameters": ["arn:aws:ssm:eu-central-1:210987654321:parameter/web/api-key"],
    }
    role = one(copied, "aws:iam/role:Role", "web-task")
    assert task["taskRoleArn"] == role["arn"]
    policy = one(copied, "aws:iam/rolePolicy:RolePolicy", "web-task")
    assert json.loads(policy["policy"])["Statement"][0]["Action"] == "sqs:SendMessage"
