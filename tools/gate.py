"""The quality gate: every check a change must pass, in one command (``./dev test``).

Runs each step even when an earlier one fails, so one run shows every problem,
then exits non-zero if any failed. Extra arguments go to pytest
(``./dev test -k discovery``).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

# What the type checker covers: the shipped code.
TYPED = [
    "__main__.py",
    "stack",
    "components",
    "apps",
    "local",
    "bench",
    "deploy",
    "tools",
    "policy",
]


def tool(name: str) -> str:
    found = BIN / name
    return str(found) if found.exists() else (shutil.which(name) or name)


def steps(root: Path, pytest_args: Sequence[str]) -> list[tuple[str, list[str]]]:
    """The gate's checks for the tree at ``root``, each as (name, command run in ``root``)."""

    def found(pattern: str) -> list[str]:
        return sorted(str(p.relative_to(root)) for p in root.glob(pattern))

    dockerfiles = found("apps/*/Dockerfile")
    workflows = found(".github/workflows/*.y*ml")
    actions = found(".github/actions/*/action.y*ml")
    typed = [p for p in TYPED if (root / p).is_file() or any((root / p).rglob("*.py"))]
    out: list[tuple[str, list[str]]] = [
        ("ruff check", [tool("ruff"), "check", "."]),
        ("ruff format", [tool("ruff"), "format", "--check", "."]),
    ]
    if typed:
        out.append(("mypy", [tool("mypy"), *typed]))
    if dockerfiles:
        out.append(("hadolint", [tool("hadolint"), *dockerfiles]))
    # The workflow and action schemas ship inside check-jsonschema: no network.
    if workflows:
        schema = ["--builtin-schema", "vendor.github-workflows"]
        out.append(("workflows", [tool("check-jsonschema"), *schema, *workflows]))
    if actions:
        schema = ["--builtin-schema", "vendor.github-actions"]
        out.append(("actions", [tool("check-jsonschema"), *schema, *actions]))
    if workflows or actions:
        # What a schema cannot see: unpinned actions, template injection, leaked
        # credentials, excessive permissions. --offline: audits that need the
        # GitHub API are skipped, so the gate runs anywhere.
        out.append(
            (
                "workflow security",
                [tool("zizmor"), "--offline", "--strict-collection", "--quiet", ".github"],
            )
        )
    # Every stack's config, checked as `pulumi up` will check it (tools/check.py), so a stack
    # file that cannot deploy fails here, not at the deploy.
    stacks = [p for p in found("Pulumi.*.y*ml") if (root / "tools" / "check.py").is_file()]
    if stacks:
        out.append(("stack files", [sys.executable, "-m", "tools.check", "--quiet", *stacks]))
    out.append(("pytest", [sys.executable, "-m", "pytest", *pytest_args]))
    return out


def main(argv: Sequence[str], root: Path = ROOT) -> int:
    failed: list[str] = []
    for name, cmd in steps(root, argv):
        print(f"==> {name}", flush=True)
        started = time.monotonic()
        code = subprocess.call(cmd, cwd=root)
        took = time.monotonic() - started
        status = "ok" if code == 0 else f"FAILED (exit {code})"
        print(f"<== {name}: {status} in {took:.1f}s", flush=True)
        if code != 0:
            failed.append(name)
    if failed:
        print(f"gate: failed: {', '.join(failed)}", flush=True)
        return 1
    print("gate: all checks passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
