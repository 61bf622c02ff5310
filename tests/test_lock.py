"""The image lock and the project lock must pin the services' packages identically."""

from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent


def pins(path: Path) -> dict[str, str]:
    out = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            req = Requirement(line)
            out[canonicalize_name(req.name)] = str(req.specifier)
    return out


def test_image_lock_matches_project_lock() -> None:
    project = pins(ROOT / "constraints.txt")
    image = pins(ROOT / "apps" / "constraints.txt")
    assert {"aiohttp", "aiodns", "uvloop"} <= image.keys()
    drift = {
        name: (spec, project.get(name)) for name, spec in image.items() if project.get(name) != spec
    }
    assert not drift, (
        f"apps/constraints.txt disagrees with constraints.txt: {drift} (run ./dev lock)"
    )


def test_every_pin_is_exact() -> None:
    for path in (ROOT / "constraints.txt", ROOT / "apps" / "constraints.txt"):
        loose = [n for n, spec in pins(path).items() if not spec.startswith("==")]
        assert not loose, f"{path.name}: not pinned exactly: {loose}"
