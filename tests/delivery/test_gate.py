"""The quality gate fails on what it exists to catch.

Each test builds a small project tree in a temporary directory (the repository's
tool configuration and workflows, a tiny typed module, a Dockerfile, one test),
breaks one thing, and runs the gate's own command for that check there, as
``tools.gate.steps`` defines it. The real tree is never touched.
"""

from __future__ import annotations

import contextlib
import io
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tools import gate

ROOT = Path(__file__).resolve().parents[2]

CLEAN_MODULE = '''"""A typed module, clean under the project's ruff and mypy settings."""


def double(value: int) -> int:
    return value * 2
'''

CLEAN_TEST = """from stack.settings import double


def test_double() -> None:
    assert double(2) == 4
"""

CLEAN_DOCKERFILE = """FROM python:3.12.12-slim-bookworm
USER 10001
CMD ["python", "-c", "print('ok')"]
"""


def make_tree(path: Path) -> Path:
    shutil.copy(ROOT / "pyproject.toml", path)
    shutil.copytree(ROOT / ".github", path / ".github")
    (path / "stack").mkdir()
    (path / "stack" / "settings.py").write_text(CLEAN_MODULE)
    (path / "tests").mkdir()
    (path / "tests" / "test_double.py").write_text(CLEAN_TEST)
    (path / "apps" / "svc").mkdir(parents=True)
    (path / "apps" / "svc" / "Dockerfile").write_text(CLEAN_DOCKERFILE)
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return make_tree(tmp_path)


@pytest.fixture(scope="module", autouse=True)
def shared_mypy_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One mypy cache for every tree of this module: typeshed is checked once, not in each
    tree (about a second each). mypy's incremental mode re-checks every module whose source
    differs from what the cache holds, so a broken stack/settings.py is still checked."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MYPY_CACHE_DIR", str(tmp_path_factory.mktemp("mypy-cache")))
        yield


@pytest.fixture(scope="module")
def clean_gate(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, str]:
    """The whole gate, once, on an untouched tree: its exit code and what it printed. Each
    breakage below starts from this same tree, so its check is known to pass before."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = gate.main([], root=make_tree(tmp_path_factory.mktemp("clean")))
    return code, printed.getvalue()


def run_step(root: Path, name: str) -> subprocess.CompletedProcess[str]:
    commands = dict(gate.steps(root, []))
    assert name in commands, f"the gate has no {name!r} step for this tree: {sorted(commands)}"
    return subprocess.run(
        commands[name], cwd=root, capture_output=True, text=True, timeout=600, check=False
    )


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path.name}: the fixture no longer matches the file"
    path.write_text(text.replace(old, new, 1))


def test_the_clean_tree_passes_the_whole_gate(clean_gate: tuple[int, str]) -> None:
    code, out = clean_gate
    assert code == 0, out
    assert "gate: all checks passed" in out
    ran = re.findall(r"^==> (.+)$", out, flags=re.MULTILINE)
    assert ran == [
        "ruff check",
        "ruff format",
        "mypy",
        "hadolint",
        "workflows",
        "actions",
        "workflow security",
        "pytest",
    ]


def test_a_broken_workflow_fails_the_whole_gate(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(tree / ".github/workflows/deploy.yml", "    runs-on:", "    run-on:")
    assert gate.main([], root=tree) == 1
    out = capsys.readouterr().out
    # The schema check and the security lint (which validates what it reads)
    # both refuse it; every other check still ran and passed.
    assert "gate: failed: workflows, workflow security\n" in out
    assert out.count(": ok in ") == 6


BROKEN_WORKFLOWS: dict[str, Callable[[Path], None]] = {
    "misspelt key": lambda wf: edit(wf, "    runs-on:", "    runs_on:"),
    "unknown event": lambda wf: edit(wf, "  pull_request:", "  pull-request:"),
    "not YAML": lambda wf: edit(wf, "jobs:\n", "jobs:\n\t"),
    "step without run or uses": lambda wf: edit(wf, "      - run: ./dev test", "      - name: x"),
    "bad permission level": lambda wf: edit(wf, "contents: read", "contents: all"),
}


@pytest.mark.parametrize("breakage", BROKEN_WORKFLOWS)
def test_schema_check_rejects_a_broken_workflow(
    tree: Path, breakage: str, clean_gate: tuple[int, str]
) -> None:
    workflow = tree / ".github/workflows/pull-request.yml"
    assert clean_gate[0] == 0, "the untouched tree passes every check"
    BROKEN_WORKFLOWS[breakage](workflow)
    result = run_step(tree, "workflows")
    assert result.returncode != 0, result.stdout
    assert "pull-request.yml" in result.stdout + result.stderr


def test_schema_check_rejects_a_broken_composite_action(tree: Path) -> None:
    edit(tree / ".github/actions/python/action.yml", "using: composite", "using: compost")
    result = run_step(tree, "actions")
    assert result.returncode != 0, result.stdout


SECURITY_BREAKAGES: dict[str, tuple[str, str, str, str]] = {
    # (workflow, old text, new text, the zizmor audit that must fire)
    "action pinned to a tag": (
        "deploy.yml",
        "pulumi/actions@8e5e406f4007fca908480587cb9893c07090f58d # v7.0.0",
        "pulumi/actions@v7",
        "unpinned-uses",
    ),
    "pull request title in a shell": (
        "pull-request.yml",
        "      - run: ./dev test",
        '      - run: echo "${{ github.event.pull_request.title }}"',
        "template-injection",
    ),
    "pull_request_target": (
        "pull-request.yml",
        "  pull_request:\n",
        "  pull_request_target:\n",
        "dangerous-triggers",
    ),
}


@pytest.mark.parametrize("breakage", SECURITY_BREAKAGES)
def test_security_lint_rejects_unsafe_workflows(
    tree: Path, breakage: str, clean_gate: tuple[int, str]
) -> None:
    name, old, new, audit = SECURITY_BREAKAGES[breakage]
    assert clean_gate[0] == 0, "the untouched tree passes every check"
    edit(tree / ".github/workflows" / name, old, new)
    result = run_step(tree, "workflow security")
    assert result.returncode != 0, result.stdout
    assert f"[{audit}]" in result.stdout


def test_security_lint_validates_the_dependabot_config(tree: Path) -> None:
    edit(tree / ".github/dependabot.yml", "interval: weekly", "interval: sometimes")
    result = run_step(tree, "workflow security")
    assert result.returncode != 0
    assert "dependabot.yml" in result.stderr


def test_ruff_rejects_a_lint_error(tree: Path) -> None:
    assert run_step(tree, "ruff check").returncode == 0
    edit(tree / "stack" / "settings.py", '"""\n', '"""\n\nimport os\n')
    result = run_step(tree, "ruff check")
    assert result.returncode != 0
    assert "F401" in result.stdout


def test_ruff_format_rejects_unformatted_code(tree: Path) -> None:
    edit(tree / "stack" / "settings.py", "return value * 2", "return value*2")
    result = run_step(tree, "ruff format")
    assert result.returncode != 0
    assert "settings.py" in result.stdout + result.stderr


def test_mypy_rejects_a_type_error(tree: Path) -> None:
    edit(tree / "stack" / "settings.py", "return value * 2", 'return f"{value}"')
    result = run_step(tree, "mypy")
    assert result.returncode != 0
    assert "Incompatible return value type" in result.stdout


def test_hadolint_rejects_an_unpinned_base_image(tree: Path) -> None:
    edit(tree / "apps/svc/Dockerfile", "python:3.12.12-slim-bookworm", "python:latest")
    result = run_step(tree, "hadolint")
    assert result.returncode != 0
    assert "DL3007" in result.stdout


def test_a_failing_test_fails_the_gate(tree: Path) -> None:
    edit(tree / "tests/test_double.py", "== 4", "== 5")
    result = run_step(tree, "pytest")
    assert result.returncode != 0


def network_namespace_available() -> bool:
    unshare = shutil.which("unshare")
    if unshare is None:
        return False
    probe = subprocess.run([unshare, "-rn", "true"], capture_output=True, timeout=30, check=False)
    return probe.returncode == 0


@pytest.mark.skipif(
    not network_namespace_available(), reason="needs `unshare -rn` (a network namespace)"
)
@pytest.mark.parametrize("name", ["workflows", "actions", "workflow security"])
def test_workflow_checks_need_no_network(tree: Path, name: str) -> None:
    """Run the check in a new network namespace: no interface but a downed loopback."""
    commands = dict(gate.steps(tree, []))
    result = subprocess.run(
        ["unshare", "-rn", *commands[name]],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
