"""The Pulumi engine's side of the policy pack protocol, for the tests.

The pack is started exactly as the Pulumi CLI starts it for `--policy-pack policy`: the project
virtualenv's `python -m pulumi.policy <engine> .` with policy/ as the working directory. The
tests then call its gRPC Analyzer service the way the engine does (pulumi's
sdk/go/common/resource/plugin/analyzer_plugin.go): `Analyze` with one resource's input
properties, `AnalyzeStack` with every resource's outputs, parent, dependencies and property
dependencies, all marshalled into protobuf Structs (so numbers arrive as floats, and unknown
values as the engine's sentinel strings). pulumi-policy itself then builds the
ResourceValidationArgs / StackValidationArgs, proxies unknowns and runs each policy, so the
policies meet exactly the objects they meet under the CLI.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime import proto
from pulumi.runtime.proto import analyzer_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
POLICY_DIR = ROOT / "policy"
PROJECT = "fargate-service-discovery"
START_TIMEOUT_SECONDS = 120

LEVELS = {proto.ADVISORY: "advisory", proto.MANDATORY: "mandatory"}


def urn(type_: str, name: str, stack: str = "test") -> str:
    return f"urn:pulumi:{stack}::{PROJECT}::{type_}::{name}"


def struct(props: Mapping[str, Any]) -> struct_pb2.Struct:
    return json_format.ParseDict(dict(props), struct_pb2.Struct())


@dataclass
class Verdict:
    """What the pack answered: violations by policy, and the policies that did not apply."""

    violations: dict[str, list[str]] = field(default_factory=dict)
    levels: dict[str, str] = field(default_factory=dict)
    not_applicable: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, response: Any) -> Verdict:
        verdict = cls(not_applicable={n.policy_name for n in response.not_applicable})
        for d in response.diagnostics:
            verdict.violations.setdefault(d.policyName, []).append(d.message)
            verdict.levels[d.policyName] = LEVELS.get(d.enforcementLevel, str(d.enforcementLevel))
        return verdict


@dataclass(frozen=True)
class StackResource:
    type: str
    name: str
    urn: str
    outputs: Mapping[str, Any]
    parent: str = ""
    dependencies: Sequence[str] = ()
    property_dependencies: Mapping[str, Sequence[str]] = field(default_factory=dict)


class Engine:
    """A running policy pack, and calls to it as the engine makes them."""

    def __init__(self) -> None:
        # The engine address is only used by pulumi's log calls; the pack never dials it here.
        self.process = subprocess.Popen(
            [sys.executable, "-u", "-m", "pulumi.policy", "127.0.0.1:1", "."],
            cwd=POLICY_DIR,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if not line.isdigit():
            self.close()
            assert self.process.stderr is not None
            raise AssertionError(f"the pack did not start: {line!r} {self.process.stderr.read()}")
        self.channel = grpc.insecure_channel(f"127.0.0.1:{line}")
        try:
            grpc.channel_ready_future(self.channel).result(timeout=START_TIMEOUT_SECONDS)
        except BaseException:
            self.close()
            raise
        self.stub = analyzer_pb2_grpc.AnalyzerStub(self.channel)

    def close(self) -> None:
        channel: grpc.Channel | None = getattr(self, "channel", None)
        if channel is not None:
            channel.close()
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()

    def info(self) -> Any:
        return self.stub.GetAnalyzerInfo(empty_pb2.Empty())

    def analyze(self, type_: str, props: Mapping[str, Any], name: str = "subject") -> Verdict:
        request = proto.AnalyzeRequest(
            type=type_, name=name, urn=urn(type_, name), properties=struct(props)
        )
        return Verdict.of(self.stub.Analyze(request))

    def analyze_stack(self, resources: Sequence[StackResource]) -> Verdict:
        request = proto.AnalyzeStackRequest(
            resources=[
                proto.AnalyzerResource(
                    type=r.type,
                    name=r.name,
                    urn=r.urn,
                    properties=struct(r.outputs),
                    parent=r.parent,
                    dependencies=list(r.dependencies),
                    propertyDependencies={
                        k: proto.AnalyzerPropertyDependencies(urns=list(v))
                        for k, v in r.property_dependencies.items()
                    },
                )
                for r in resources
            ]
        )
        return Verdict.of(self.stub.AnalyzeStack(request))
