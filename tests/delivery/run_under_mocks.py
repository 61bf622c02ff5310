"""Run a Pulumi program under mocks in this process and print what it registered.

Pulumi's mocks are process-wide state, and the infrastructure tests use them too,
so the delivery tests run programs through this script in a subprocess:

    PULUMI_CONFIG='{"github-oidc:repository": "acme/shop"}' \\
        python tests/delivery/run_under_mocks.py deploy/github_oidc github-oidc

It prints one JSON document: ``resources`` (URN, type, name and the state the mock
returned: the inputs plus the ARN/name outputs) and ``outputs`` (the stack exports).
A program error exits non-zero with the error on stderr.

Many configs at once, each run in a process of its own forked from one that has imported
Pulumi and the program's modules (so that is paid once, not per run):

    echo '{"a": {"github-oidc:repository": "acme/shop"}, "b": {}}' \\
        | python tests/delivery/run_under_mocks.py deploy/github_oidc github-oidc --many DIR

writes each run's stdout to DIR/<key>.out and stderr to DIR/<key>.err, and prints
"<key> <exit status>" per run.
"""

from __future__ import annotations

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


# What the program uses of the provider: `aws.<module>.<name>` (imported on first use).
USED_NAME = re.compile(r"\baws\.([a-z][a-z0-9]*)\.([A-Za-z_][A-Za-z0-9_]*)")


def warm_up(program_dir: str) -> None:
    """Import what every run imports: the program's modules and the provider modules they
    name. Only a warm-up: whatever is missed is imported in each run, as without it."""
    import pulumi_aws  # noqa: PLC0415

    root = Path(__file__).resolve().parents[2]
    sys.path.insert(0, str(root))
    folder = Path(program_dir).resolve()
    for source in folder.glob("*.py"):
        if not source.name.startswith("__"):
            __import__(".".join(source.relative_to(root).with_suffix("").parts))
        for module, name in USED_NAME.findall(source.read_text()):
            getattr(getattr(pulumi_aws, module, None), name, None)
    sys.path.remove(str(root))
    assert threading.active_count() == 1, "no thread may run in a process that forks"


def run_child(program_dir: str, project: str, config: dict[str, str], key: Path) -> int:
    """In a forked child: one run with this config, stdout and stderr to files."""
    os.environ["PULUMI_CONFIG"] = json.dumps(config)
    for fd, suffix in ((1, ".out"), (2, ".err")):
        with key.with_suffix(suffix).open("w") as file:
            os.dup2(file.fileno(), fd)
    sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115 - fds 1 and 2 outlive this call
    sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
    try:
        main(program_dir, project)
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else 1
    except BaseException:
        traceback.print_exc()
        return 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    return 0


def many(program_dir: str, project: str, folder: Path) -> None:
    configs: dict[str, dict[str, str]] = json.load(sys.stdin)
    warm_up(program_dir)
    children: dict[int, str] = {}
    for key, config in configs.items():
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = run_child(program_dir, project, config, folder / key)
            finally:
                os._exit(code)
        children[pid] = key
    while children:
        pid, status = os.wait()
        print(children.pop(pid), os.waitstatus_to_exitcode(status), flush=True)


if __name__ == "__main__":
    if sys.argv[3:4] == ["--many"]:
        many(sys.argv[1], sys.argv[2], Path(sys.argv[4]))
    else:
        main(*sys.argv[1:3])
