"""One lock for every install path: ./dev, CI, and Pulumi's own install (its uv toolchain).

``./dev`` installs uv (the version it pins) into ``.uv/`` and runs
``uv sync --locked``; CI runs ``./dev setup`` and puts ``.uv/bin`` on PATH; Pulumi
(``toolchain: uv`` in both projects' Pulumi.yaml) runs ``uv sync`` in the project's
directory with ``UV_PROJECT_ENVIRONMENT`` set to its ``virtualenv`` option (pulumi
sdk/python/toolchain/uv.go). These tests run those commands, offline, with
``--check``: uv reports what it would change without changing anything.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.specifiers import SpecifierSet

from tests.uvtool import ROOT, UV_PIN, pinned_version, run_uv

PROJECTS = [ROOT, ROOT / "deploy" / "github_oidc"]
VENV = ROOT / ".venv"
# Pulumi's uv toolchain refuses older uv (minUvVersion in pulumi's uv.go).
PULUMI_MIN_UV = "0.4.26"
PIP_ERA = re.compile(r"(requirements|constraints).*\.txt|Pipfile(\.lock)?|poetry\.lock")


def pyproject() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)


def uv_settings() -> dict[str, object]:
    tool = pyproject()["tool"]
    assert isinstance(tool, dict)
    settings = tool["uv"]
    assert isinstance(settings, dict)
    return settings


def test_this_virtualenv_is_the_project_virtualenv() -> None:
    assert Path(sys.prefix).resolve() == VENV.resolve(), "run the tests from .venv (./dev test)"


def test_this_virtualenv_is_exactly_the_lock() -> None:
    """Every locked package of every group at its locked version, and nothing else."""
    result = run_uv("sync", "--check", "--locked", cwd=ROOT, environment=VENV)
    assert result.returncode == 0, f"run ./dev setup\n{result.stderr}"
    assert "Would make no changes" in result.stderr


def test_an_environment_that_differs_from_the_lock_is_caught() -> None:
    """The check above can fail: ask for the lock without the gate's group, and the
    gate's tools in this virtualenv become differences (nothing is changed: --check)."""
    result = run_uv("sync", "--check", "--locked", "--no-group", "gate", cwd=ROOT, environment=VENV)
    assert result.returncode != 0
    assert "ruff==" in result.stderr
    assert (VENV / "bin" / "ruff").exists()


def test_the_virtualenv_is_byte_compiled_for_processes_that_write_no_bytecode() -> None:
    """compile-bytecode: the services run with PYTHONDONTWRITEBYTECODE=1 (as in their
    images), and so may the shell; without .pyc files in .venv, every process the tests
    start (program runs under mocks, replicas, gate tools) compiles its imports again."""
    assert uv_settings()["compile-bytecode"] is True
    for module in ("pulumi_aws", "pulumi", "aiohttp"):
        spec = importlib.util.find_spec(module)
        assert spec is not None
        assert spec.origin is not None
        cached = Path(importlib.util.cache_from_source(spec.origin))
        assert cached.is_file(), f"{cached} missing: run ./dev setup"


@pytest.mark.parametrize("project", PROJECTS, ids=lambda p: p.relative_to(ROOT).as_posix() or ".")
def test_pulumi_uses_uv_with_the_repository_virtualenv(project: Path) -> None:
    runtime = yaml.safe_load((project / "Pulumi.yaml").read_text())["runtime"]
    assert runtime["name"] == "python"
    options = runtime["options"]
    assert options["toolchain"] == "uv"
    # Relative to the project's directory, as Pulumi joins it.
    assert (project / options["virtualenv"]).resolve() == VENV.resolve()


@pytest.mark.parametrize("project", PROJECTS, ids=lambda p: p.relative_to(ROOT).as_posix() or ".")
def test_pulumi_finds_the_repository_lock_from_each_project(project: Path) -> None:
    """Pulumi and uv both search up from the project's directory for uv.lock and
    pyproject.toml: nothing nearer may shadow the repository's, or the github-oidc
    project would get a lock (and a virtualenv) of its own."""
    for name in ("uv.lock", "pyproject.toml", "requirements.txt"):
        for folder in (project, *project.parents):
            if folder == ROOT:
                break
            assert not (folder / name).exists(), f"{folder / name} would shadow the root's"
    tree = run_uv("tree", "--frozen", "--depth", "0", cwd=project, environment=VENV)
    assert tree.returncode == 0, tree.stderr
    assert tree.stdout.split()[0] == pyproject()["project"]["name"]  # type: ignore[index]


@pytest.mark.parametrize("project", PROJECTS, ids=lambda p: p.relative_to(ROOT).as_posix() or ".")
def test_pulumis_install_would_change_nothing(project: Path) -> None:
    """Pulumi's install command (`uv sync`, with UV_PROJECT_ENVIRONMENT from the
    virtualenv option, in the project's directory), checked: ./dev's .venv already
    is what Pulumi would make, so Pulumi and the gate run the same packages."""
    result = run_uv("sync", "--check", "--locked", cwd=project, environment=VENV)
    assert result.returncode == 0, result.stderr
    assert "Would make no changes" in result.stderr


def test_a_plain_uv_sync_installs_every_group() -> None:
    """Pulumi runs `uv sync` with no group flags: were default-groups narrower than
    all, Pulumi's exact sync would remove the gate's tools from the shared .venv."""
    assert uv_settings()["default-groups"] == "all"
    groups = pyproject()["dependency-groups"]
    assert isinstance(groups, dict)
    assert set(groups) == {"infra", "local", "test", "gate", "image-build", "bench"}


def test_uv_is_pinned_once_and_fits_every_user() -> None:
    version = pinned_version()
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)
    floor = uv_settings()["required-version"]
    assert isinstance(floor, str)
    # A floor, never exact: Dependabot's updater runs its own uv and stops on a mismatch.
    assert not floor.startswith("=="), floor
    assert version in SpecifierSet(floor)
    assert version in SpecifierSet(f">={PULUMI_MIN_UV}")
    # Nowhere else: CI and Pulumi use the uv that ./dev installed.
    for path in [*(ROOT / ".github").rglob("*.y*ml"), ROOT / ".ci" / "run"]:
        text = path.read_text()
        assert "uv==" not in text, path
        assert "setup-uv" not in text, path


def test_ci_puts_the_projects_uv_on_path_for_pulumi() -> None:
    action = yaml.safe_load((ROOT / ".github" / "actions" / "python" / "action.yml").read_text())
    runs = [step.get("run", "").strip() for step in action["runs"]["steps"]]
    setup = runs.index("./dev setup")
    assert runs[setup + 1] == 'echo "$PWD/.uv/bin" >> "$GITHUB_PATH"'


def test_dependabot_watches_the_lock() -> None:
    config = yaml.safe_load((ROOT / ".github" / "dependabot.yml").read_text())
    (update,) = [u for u in config["updates"] if u["package-ecosystem"] == "uv"]
    assert update["directory"] == "/"
    assert (ROOT / "uv.lock").is_file()
    # uv's own pin, with its hashes, in a pip requirements file Dependabot can update.
    (pin,) = [u for u in config["updates"] if u["package-ecosystem"] == "pip"]
    assert pin["directory"] == "/" + UV_PIN.parent.relative_to(ROOT).as_posix()


def test_no_pip_era_dependency_files_are_left() -> None:
    """uv is the one way dependencies are declared: a stray requirements file would be
    a second, unlocked truth (and Pulumi's uv toolchain merges one it finds). The one
    exception is uv's own pin, tools/uv/requirements.txt: pip installs uv before uv
    exists, from that hashed file (checked below), away from the project's root."""
    skip = {".git", ".venv", ".uv", ".local", "__pycache__", ".mypy_cache", ".ruff_cache"}
    stray = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in skip]
        stray += [
            (Path(folder) / name).relative_to(ROOT).as_posix()
            for name in files
            if PIP_ERA.fullmatch(name)
        ]
    assert stray == [UV_PIN.relative_to(ROOT).as_posix()]


def test_the_uv_bootstrap_is_hash_checked() -> None:
    """The one download outside uv.lock is checked too: ./dev installs uv with pip
    --require-hashes from tools/uv/requirements.txt, which holds a sha256 for every wheel
    of the pinned release (a tampered or substituted wheel is refused, never run), and
    --only-binary (no build of uv from a source archive)."""
    text = UV_PIN.read_text()
    requirement = re.search(
        r"^uv==\S+ \\\n((?:    --hash=sha256:[0-9a-f]{64}(?: \\)?\n)+)", text, re.M
    )
    assert requirement is not None, text
    hashes = re.findall(r"sha256:([0-9a-f]{64})", requirement.group(1))
    assert len(hashes) == len(set(hashes)) >= 10  # every platform's wheel, not one machine's
    assert re.findall(r"^[^#\s]", text, re.M) == ["u"], "uv and nothing else"
    dev = (ROOT / "dev").read_text()
    assert "UV_PIN=tools/uv/requirements.txt" in dev
    assert "--require-hashes" in dev
    assert '--only-binary :all: -r "$UV_PIN"' in dev
    assert '"uv==$UV_VERSION"' not in dev, "an unhashed install of uv"
