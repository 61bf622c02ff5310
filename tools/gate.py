"""The quality gate: every check a change must pass, in one command (``./dev test``).

Runs each step even when an earlier one fails, so one run shows every problem,
then exits non-zero if any failed. Extra arguments go to pytest
(``./dev test -k discovery``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

# What the type checker covers: the shipped code.
TYPED = ["__main__.py", "config.py", "components", "apps", "local", "deploy", "tools"]


def tool(name: str) -> str:
    found = BIN / name
    return str(found) if found.exists() else (shutil.which(name) or name)


def steps(pytest_args: Sequence[str]) -> list[tuple[str, list[str]]]:
    dockerfiles = sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("apps/*/Dockerfile"))
    workflows = sorted(
        str(p.relative_to(ROOT)) for p in (ROOT / ".github" / "workflows").glob("*.y*ml")
    )
    typed = [p for p in TYPED if (ROOT / p).is_file() or any((ROOT / p).rglob("*.py"))]
    out: list[tuple[str, list[str]]] = [
        ("ruff check", [tool("ruff"), "check", "."]),
        ("ruff format", [tool("ruff"), "format", "--check", "."]),
        ("mypy", [tool("mypy"), *typed]),
    ]
    if dockerfiles:
        out.append(("hadolint", [tool("hadolint"), *dockerfiles]))
    if workflows:
        out.append(
            (
                "workflows",
                [
                    tool("check-jsonschema"),
                    "--builtin-schema",
                    "vendor.github-workflows",
                    *workflows,
                ],
            )
        )
    out.append(("pytest", [sys.executable, "-m", "pytest", *pytest_args]))
    return out


def main(argv: Sequence[str]) -> int:
    os.chdir(ROOT)
    failed: list[str] = []
    for name, cmd in steps(argv):
        print(f"==> {name}", flush=True)
        started = time.monotonic()
        code = subprocess.call(cmd)
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
