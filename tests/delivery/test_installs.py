"""One lock for every install path: ./dev, CI, and Pulumi's own virtualenv install.

Pulumi (toolchain pip, ``virtualenv: .venv``) installs a project with
``<venv>/bin/python -m pip install -r requirements.txt`` run in the project's
directory. requirements.txt starts with ``-c constraints.txt``, so the lock holds
there too, provided pip reads a nested ``-c`` relative to the requirements file.
These tests show that it does, with the pip in the project's virtualenv, offline.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PROJECTS = [ROOT, ROOT / "deploy" / "github_oidc"]


def lines(path: Path) -> list[str]:
    return [
        line
        for line in (raw.split("#", 1)[0].strip() for raw in path.read_text().splitlines())
        if line
    ]


def lock() -> dict[str, str]:
    pins = {}
    for line in lines(ROOT / "constraints.txt"):
        req = Requirement(line)
        (spec,) = req.specifier
        pins[canonicalize_name(req.name)] = spec.version
    return pins


def pip_dry_run(requirements: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """What Pulumi's install would do here, without an index: nothing to fetch means
    everything it asks for is already installed at an allowed version."""
    return subprocess.run(
        [
            *(sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--quiet"),
            *("--disable-pip-version-check", "--report", "-", "-r", str(requirements)),
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_root_requirements_use_the_lock() -> None:
    assert lines(ROOT / "requirements.txt")[0] == "-c constraints.txt"


def test_the_oidc_project_installs_the_root_requirements() -> None:
    assert lines(ROOT / "deploy" / "github_oidc" / "requirements.txt") == [
        "-r ../../requirements.txt"
    ]


def test_every_requirement_is_locked() -> None:
    pins = lock()
    for path in (ROOT / "requirements.txt", ROOT / "apps" / "requirements.txt"):
        for line in lines(path):
            if line.startswith("-"):
                continue
            req = Requirement(line)
            name = canonicalize_name(req.name)
            assert name in pins, f"{path.name}: {req.name} is not in constraints.txt"
            assert req.specifier.contains(pins[name]), f"{req} excludes the lock's {pins[name]}"


def test_this_virtualenv_is_the_lock() -> None:
    drift = {}
    for name, version in lock().items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            drift[name] = (version, installed)
    assert not drift, f"(locked, installed) differ: {drift}; run ./dev setup"


@pytest.mark.parametrize("project", PROJECTS, ids=lambda p: p.relative_to(ROOT).as_posix() or ".")
def test_pulumis_install_command_is_satisfied_by_this_virtualenv(project: Path) -> None:
    result = pip_dry_run(project / "requirements.txt", cwd=project)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["install"] == []


def test_a_nested_constraint_is_read_relative_to_its_file(tmp_path: Path) -> None:
    """Move one pin off the installed version: pip must now want to install it,
    from a working directory that is not the one holding the files."""
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "requirements.txt", project)
    (project / "apps").mkdir()
    shutil.copy(ROOT / "apps" / "requirements.txt", project / "apps")
    locked = (ROOT / "constraints.txt").read_text()
    ruff = f"ruff=={metadata.version('ruff')}"
    assert ruff in locked
    (project / "constraints.txt").write_text(locked.replace(ruff, "ruff==0.15.0"))

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = pip_dry_run(project / "requirements.txt", cwd=elsewhere)
    # No index: the only way to satisfy ruff==0.15.0 would be a download.
    assert result.returncode != 0
    assert "ruff" in result.stderr
