"""The project's uv, for tests: the one ``./dev`` installs into ``.uv/``, at the version it pins."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


UV_PIN = ROOT / "tools" / "uv" / "requirements.txt"


def pinned_version() -> str:
    """``uv==`` in tools/uv/requirements.txt: the one place the project pins uv."""
    (version,) = re.findall(r"^uv==(\S+) \\$", UV_PIN.read_text(), flags=re.M)
    return version


def uv() -> str:
    """The uv binary ./dev installed (or, failing that, one on PATH at the pinned version)."""
    for candidate in (ROOT / ".uv" / "bin" / "uv", shutil.which("uv")):
        if candidate is None or not Path(candidate).exists():
            continue
        out = subprocess.run(
            [str(candidate), "--version"], capture_output=True, text=True, check=False
        ).stdout
        if out.split()[1:2] == [pinned_version()]:
            return str(candidate)
    pytest.fail(f"no uv {pinned_version()} in .uv/bin or on PATH: run ./dev setup")


def run_uv(
    *args: str, cwd: Path, environment: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the project's uv, offline, in ``cwd``; ``environment`` is its project virtualenv."""
    env = {k: v for k, v in os.environ.items() if k != "UV_PROJECT_ENVIRONMENT"}
    env["UV_OFFLINE"] = "1"  # (not --offline: uv export would write it into its header)
    if environment is not None:
        env["UV_PROJECT_ENVIRONMENT"] = str(environment)
    return subprocess.run(
        [uv(), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
