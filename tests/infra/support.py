"""Helpers for the infrastructure tests: stack config, program runs, queries over the results."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "fargate-service-discovery"
# A loaded CI machine can be slow to start a Python process and import the AWS SDK;
# these runs normally take a few seconds together.
RUN_TIMEOUT_SECONDS = 600


def stack_config(stack: str) -> dict[str, str]:
    """Pulumi.<stack>.yaml's config as the language host hands it over: full key -> text."""
    values = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
    return {key: _text(value) for key, value in values.items()}


def _text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def with_values(config: Mapping[str, str], values: Mapping[str, object]) -> dict[str, str]:
    """A copy of `config` with project values set by path ("name.cpu"), as `--path` does.

    A value of None removes the key.
    """
    out = dict(config)
    for path, value in values.items():
        top, *rest = path.split(".")
        key = f"{PROJECT}:{top}"
        if not rest:
            if value is None:
                out.pop(key, None)
            else:
                out[key] = _text(value)
            continue
        section = json.loads(out.get(key, "{}"))
        if value is None:
            section.pop(rest[0], None)
        else:
            section[rest[0]] = value
        out[key] = json.dumps(section)
    return out


@dataclass(frozen=True)
class Resource:
    type: str
    name: str
    urn: str
    id: str
    parent: str
    dependencies: list[str]
    inputs: dict[str, Any]
    state: dict[str, Any]
    # ResourceOptions.delete_before_replace, as the engine receives it.
    delete_before_replace: bool = False
    # ResourceOptions.ignore_changes, as the engine receives it (engine property names).
    ignore_changes: list[str] = field(default_factory=list)


@dataclass
class Run:
    """What one program run registered and exported."""

    error: str | None
    exports: dict[str, Any]
    resources: list[Resource]
    outputs: dict[str, dict[str, Any]]
    invokes: list[str] = field(default_factory=list)
    # Each invoke's token and arguments, in call order.
    invoke_args: list[dict[str, Any]] = field(default_factory=list)

    def of_type(self, type_: str) -> list[Resource]:
        return [r for r in self.resources if r.type == type_]

    def one(self, type_: str, name: str) -> Resource:
        found = [r for r in self.of_type(type_) if r.name == name]
        assert len(found) == 1, f"expected one {type_} named {name}, found {len(found)}"
        return found[0]

    def by_urn(self, urn: str) -> Resource:
        return next(r for r in self.resources if r.urn == urn)

    def children(self, parent: Resource) -> list[Resource]:
        return [r for r in self.resources if r.parent == parent.urn]


def parse(out: str) -> Run:
    """A run's JSON, as the harness prints it."""
    data = json.loads(out)
    resources = [
        Resource(
            type=r["type"],
            name=r["name"],
            urn=r["urn"],
            id=r["id"],
            parent=r["parent"],
            dependencies=r["dependencies"],
            inputs=r["inputs"],
            state=r["state"],
            delete_before_replace=r["deleteBeforeReplace"],
            ignore_changes=r["ignoreChanges"],
        )
        for r in data["resources"]
    ]
    return Run(
        error=data["error"],
        exports=data["exports"] or {},
        resources=resources,
        outputs=data["outputs"],
        invokes=data["invokes"],
        invoke_args=data["invokeArgs"],
    )


class Runs:
    """Starts every program run at once and hands out results.

    One harness process (``--many``) imports Pulumi, the provider modules and the components
    once, then forks a process per run: each run still has a process of its own, and the
    imports (most of a run's time) are paid once instead of once per run.
    """

    def __init__(self, specs: Mapping[str, tuple[str, Mapping[str, str], str]]) -> None:
        self._folder = Path(tempfile.mkdtemp(prefix="program-runs-"))
        self._server = subprocess.Popen(
            [sys.executable, "-m", "tests.infra.harness", "--many", str(self._folder)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its forked runs too: close() stops the whole group
        )
        assert self._server.stdin is not None
        self._server.stdin.write(
            json.dumps(
                {
                    key: {"stack": stack, "config": dict(config), "program": program}
                    for key, (stack, config, program) in specs.items()
                }
            )
        )
        self._server.stdin.close()
        self._ended: dict[str, int] = {}
        self._done: dict[str, Run] = {}

    def __getitem__(self, key: str) -> Run:
        if key not in self._done:
            assert self._server.stdout is not None
            while key not in self._ended:
                line = self._server.stdout.readline()
                if not line:
                    assert self._server.stderr is not None
                    code = self._server.wait(timeout=RUN_TIMEOUT_SECONDS)
                    err = self._server.stderr.read()
                    raise AssertionError(f"program runs stopped (exit {code}):\n{err[-4000:]}")
                ended, status = line.split()
                self._ended[ended] = int(status)
            err = (self._folder / f"{key}.err").read_text()
            code = self._ended[key]
            assert code == 0, f"program run {key} failed (exit {code}):\n{err[-4000:]}"
            self._done[key] = parse((self._folder / f"{key}.json").read_text())
        return self._done[key]

    def close(self) -> None:
        if self._server.poll() is None:
            os.killpg(self._server.pid, signal.SIGKILL)
            self._server.wait()
        shutil.rmtree(self._folder, ignore_errors=True)


def flows(run: Run) -> set[tuple[str, str, str, int, int, str]]:
    """Every security group rule as (direction, group, protocol, from, to, peer).

    Groups and peers are named by the logical name of their security group (or by CIDR), so
    the whole network policy of a stack reads as one set.
    """
    groups = {r.id: r.name for r in run.of_type("aws:ec2/securityGroup:SecurityGroup")}
    out = set()
    for direction, type_ in (
        ("in", "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"),
        ("out", "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"),
    ):
        for rule in run.of_type(type_):
            i = rule.inputs
            peer = (
                groups.get(
                    i.get("referencedSecurityGroupId", ""), i.get("referencedSecurityGroupId")
                )
                or i.get("cidrIpv4")
                or i.get("cidrIpv6")
                or i.get("prefixListId")
            )
            out.add(
                (
                    direction,
                    groups.get(i["securityGroupId"], i["securityGroupId"]),
                    str(i["ipProtocol"]),
                    int(i.get("fromPort", -1)),
                    int(i.get("toPort", -1)),
                    str(peer),
                )
            )
    return out


def container(task_definition: Resource) -> dict[str, Any]:
    definitions = json.loads(task_definition.inputs["containerDefinitions"])
    assert len(definitions) == 1
    return dict(definitions[0])


def environment(task_definition: Resource) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container(task_definition)["environment"]}


def names(resources: Iterable[Resource]) -> set[str]:
    return {r.name for r in resources}
