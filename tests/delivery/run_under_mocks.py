"""Run a Pulumi program under mocks in this process and print what it registered.

Pulumi's mocks are process-wide state, and the infrastructure tests use them too,
so the delivery tests run programs through this script in a subprocess:

    PULUMI_CONFIG='{"github-oidc:repository": "acme/shop"}' \\
        python tests/delivery/run_under_mocks.py deploy/github_oidc github-oidc

It prints one JSON document: ``resources`` (URN, type, name and the state the mock
returned: the inputs plus the ARN/name outputs) and ``outputs`` (the stack exports).
A program error exits non-zero with the error on stderr.
"""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import MockCallArgs, MockResourceArgs, Mocks, set_mocks
from pulumi.runtime.mocks import MockMonitor
from pulumi.runtime.settings import get_root_resource

ACCOUNT = "123456789012"


class IamMocks(Mocks):
    """Gives resources the IDs and ARNs AWS would: the programs derive policies from them."""

    def new_resource(self, args: MockResourceArgs) -> tuple[str, dict[str, Any]]:
        state = dict(args.inputs)
        if args.typ == "aws:iam/openIdConnectProvider:OpenIdConnectProvider":
            host = state["url"].removeprefix("https://")
            state["arn"] = f"arn:aws:iam::{ACCOUNT}:oidc-provider/{host}"
        elif args.typ == "aws:iam/policy:Policy":
            path = state.get("path", "/")
            state["arn"] = f"arn:aws:iam::{ACCOUNT}:policy{path}{args.name}-0a1b2c3"
        elif args.typ == "aws:iam/role:Role":
            state["name"] = f"{args.name}-0a1b2c3"
            state["arn"] = f"arn:aws:iam::{ACCOUNT}:role/{state['name']}"
            return state["name"], state
        return f"{args.name}-id", state

    def call(self, args: MockCallArgs) -> tuple[dict[str, Any], None]:
        raise AssertionError(f"unexpected invoke {args.token}: the program should need none")


def main(program_dir: str, project: str) -> None:
    mocks = IamMocks()
    monitor = MockMonitor(mocks)
    set_mocks(mocks, project=project, stack="ci", preview=False, monitor=monitor)
    exported: dict[str, Any] = {}

    def program() -> pulumi.Output[None]:
        runpy.run_path(str(Path(program_dir)), run_name="__main__")
        root = get_root_resource()
        assert root is not None
        return pulumi.Output.from_input(root.outputs).apply(exported.update)

    pulumi.runtime.test(program)()
    resources = []
    for urn, reg in monitor.get_registered_resources().items():
        qualified_type, name = urn.split("::")[2:4]
        resources.append(
            {"urn": urn, "type": qualified_type.split("$")[-1], "name": name, "state": reg.state}
        )
    json.dump({"resources": resources, "outputs": exported}, sys.stdout, indent=1, default=str)


if __name__ == "__main__":
    main(*sys.argv[1:3])
