"""The Dockerfiles, checked without a Docker engine.

Static rules (pinned base, non-root numeric user, exec-form CMD...) and a smoke
test of the image's file layout: the files each Dockerfile copies, laid out as
in the image, must be enough to start the service.
"""

from __future__ import annotations

import re
import shlex
import shutil
import signal
import socket
import tomllib
from pathlib import Path

import pytest

from tests.apps.support import ROOT, Service, run, services

APPS = ROOT / "apps"
SERVICES = ["name", "hello"]


def instructions(service: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = (APPS / service / "Dockerfile").read_text()
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def final_stage(service: str) -> list[tuple[str, str]]:
    steps = instructions(service)
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


@pytest.mark.parametrize("service", SERVICES)
def test_base_image_is_a_fully_versioned_slim_python(service: str) -> None:
    bases = [args.split()[0] for keyword, args in instructions(service) if keyword == "FROM"]
    assert len(bases) == 2, "multi-stage: a build stage and a runtime stage"
    for base in bases:
        assert re.fullmatch(r"python:3\.\d+\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?", base), base


@pytest.mark.parametrize("service", SERVICES)
def test_runtime_stage_is_non_root_exec_form_and_read_only_friendly(service: str) -> None:
    final = final_stage(service)
    users = [args for keyword, args in final if keyword == "USER"]
    assert users, "the runtime stage sets a user"
    uid = users[-1].split(":")[0]
    assert uid.isdigit()
    assert int(uid) != 0
    cmds = [args for keyword, args in final if keyword == "CMD"]
    assert cmds == [f'["python", "-m", "apps.{service}"]']
    assert ("EXPOSE", "3000") in final
    env = " ".join(args for keyword, args in final if keyword == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "PYTHONUNBUFFERED=1" in env
    assert all(keyword != "HEALTHCHECK" for keyword, _ in instructions(service))
    # nothing compiled or installed in the runtime stage: no build tools there
    runs = " ".join(args for keyword, args in final if keyword == "RUN")
    assert "apt-get" not in runs
    assert "pip install" not in runs


@pytest.mark.parametrize("service", SERVICES)
def test_dependencies_come_from_the_lock_pinned_hashed_and_as_wheels(service: str) -> None:
    """apps/requirements.lock is uv.lock's runtime part, every entry pinned and hashed
    (tests/test_lock.py); these flags make pip install that and nothing else."""
    steps = instructions(service)
    runs = " ".join(args for keyword, args in steps if keyword == "RUN")
    assert runs.count("pip install") == 2  # the lock, then the discovery client
    install = runs[runs.index("pip install") :].split("&&")[0]
    words = shlex.split(install)
    assert "--require-hashes" in words  # a package without a matching hash is refused
    assert "--no-deps" in words  # no dependency resolved beyond the file's list
    assert "--only-binary=:all:" in words  # nothing compiled
    assert "--no-cache-dir" in words
    assert "-c" not in words
    assert "--constraint" not in words
    sources = ("--index-url", "--extra-index-url", "--find-links")
    assert not any(w.startswith(sources) for w in words)
    (source,) = [w for i, w in enumerate(words) if i and words[i - 1] == "-r"]
    # The one file -r reads is the lock, copied in from the build context as it is.
    assert ("COPY", f"requirements.lock {source}") in steps


@pytest.mark.parametrize("service", SERVICES)
def test_the_discovery_client_is_installed_from_its_distribution_not_copied(service: str) -> None:
    """The images install aiohttp-discovery like any dependency: its source tree is built
    in the build stage with the backend the lock pinned (no index, no dependency resolved
    beyond the lock), and the runtime stage carries no copy of it beside the services."""
    steps = instructions(service)
    assert ("COPY", "aiohttp-discovery/ /tmp/aiohttp-discovery/") in steps
    runs = " ".join(args for keyword, args in steps if keyword == "RUN")
    installs = [part for part in runs.split("&&") if "pip install" in part]
    (library,) = [shlex.split(i) for i in installs if "/tmp/aiohttp-discovery" in i]
    for flag in ("--no-index", "--no-deps", "--no-build-isolation", "--no-cache-dir"):
        assert flag in library
    lock = (APPS / "requirements.lock").read_text()
    backend = tomllib.loads((APPS / "aiohttp-discovery" / "pyproject.toml").read_text())
    assert backend["build-system"]["requires"][0].startswith("flit_core")
    assert "\nflit-core==" in lock, "the build backend is pinned and hashed in the lock"
    removed = runs.split("/opt/venv/bin/pip uninstall")[1].split("&&")[0]
    assert "flit-core" in removed, "the backend leaves the image"
    copies = " ".join(args for keyword, args in final_stage(service) if keyword == "COPY")
    assert "discovery" not in copies


def test_dockerignore_keeps_caches_and_tests_out() -> None:
    patterns = (APPS / ".dockerignore").read_text().split()
    assert "**/__pycache__" in patterns
    assert "**/tests" in patterns


def image_layout(service: str, root: Path) -> Path:
    """Lay out the files the runtime stage COPYs from the apps/ context, as in the image."""
    for keyword, args in final_stage(service):
        if keyword != "COPY" or args.startswith("--from"):
            continue
        *sources, destination = args.split()
        target = root / destination.lstrip("/")
        for source in sources:
            path = APPS / source
            assert path.exists(), f"{service}/Dockerfile copies {source}, which is missing"
            if path.is_dir():
                shutil.copytree(path, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target / path.name)
    return root / "app"


@pytest.mark.parametrize("service", SERVICES)
def test_the_image_layout_is_enough_to_run_the_service(tmp_path: Path, service: str) -> None:
    app_dir = image_layout(service, tmp_path / "image")
    assert (app_dir / "apps" / service / "__main__.py").is_file()
    other = "hello" if service == "name" else "name"
    assert not (app_dir / "apps" / other).exists()  # each image carries its own service only

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # The image's own ENV (an empty value means unset for Python), then the test's.
    image_env = dict(
        pair.split("=", 1)
        for keyword, args in final_stage(service)
        if keyword == "ENV"
        for pair in shlex.split(args)
    )
    env = {
        "PYTHONDONTWRITEBYTECODE": image_env.get("PYTHONDONTWRITEBYTECODE", ""),
        "PYTHONUNBUFFERED": image_env.get("PYTHONUNBUFFERED", ""),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "DRAIN_SECONDS": "0",
        "PYTHONPATH": str(app_dir),
    }
    if service == "hello":
        env["NAME_SERVER"] = "http://127.0.0.1:9/"

    async def scenario() -> None:
        with services() as started:
            # Run from the image's working directory (WORKDIR /app), not the repository.
            svc = Service(service, tmp_path, cwd=app_dir, **env)
            started.append(svc)
            await svc.wait_healthy()
            svc.signal(signal.SIGTERM)
            assert await svc.wait_exit() == 0

    run(scenario())
    # With the image's environment it writes no bytecode (ECS: read-only root filesystem).
    assert not list(app_dir.rglob("*.pyc"))
