"""Write the services' image lock (apps/constraints.txt) from the project lock.

The images are built with ``apps/`` as the Docker context, so they cannot read
the root ``constraints.txt``. This keeps a pinned subset beside the apps: the
transitive closure of ``apps/requirements.txt``, at exactly the versions of the
project lock, so the image and the local virtualenv run the same code.

Run inside a virtualenv that has the project installed: ``./dev lock`` does.
"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


def read_pins(path: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        req = Requirement(line)
        pins[canonicalize_name(req.name)] = line
    return pins


def closure(roots: list[Requirement]) -> set[str]:
    env = {key: str(value) for key, value in default_environment().items()} | {"extra": ""}
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in seen:
            continue
        seen.add(name)
        for dep in metadata.requires(req.name) or []:
            child = Requirement(dep)
            # Follow only dependencies that apply without extras on Linux images.
            if child.marker is None or child.marker.evaluate(env):
                todo.append(child)
    return seen


def main(project_lock: str, apps_lock: str) -> None:
    pins = read_pins(Path(project_lock))
    roots = [
        Requirement(line)
        for line in (
            raw.split("#", 1)[0].strip()
            for raw in Path("apps/requirements.txt").read_text().splitlines()
        )
        if line and not line.startswith("-")
    ]
    names = sorted(closure(roots))
    missing = [n for n in names if n not in pins]
    if missing:
        sys.exit(f"lock_apps: {', '.join(missing)} not pinned in {project_lock}")
    body = "\n".join(pins[n] for n in names)
    Path(apps_lock).write_text(
        "# The services' image lock: made by ./dev lock from ../constraints.txt; do not edit.\n"
        + body
        + "\n"
    )


if __name__ == "__main__":
    main(*sys.argv[1:3])
