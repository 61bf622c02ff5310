"""The workflows do what docs/delivery.md says, and hang together where no schema looks.

The gate validates each file against GitHub's schema and lints it for security.
These tests cover the rest: the flow itself (gate, previews, dev, approved prod, and
the end-to-end test on a real account), least privilege, pinning, and the
cross-references an actionlint would check (step outputs and outcomes, needs, matrix
keys, inputs of our composite actions), plus the
agreement between the jobs' OIDC subjects and what the github-oidc roles trust.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy.github_oidc.identity import GitHubOidcArgs, deploy_subjects, preview_subjects
from deploy.github_oidc.names import DEFAULT_STACKS
from tests.e2e import lifecycle

ROOT = Path(__file__).resolve().parents[2]
GITHUB = ROOT / ".github"
WORKFLOWS = sorted((GITHUB / "workflows").glob("*.y*ml"))
ACTIONS = sorted((GITHUB / "actions").glob("*/action.y*ml"))
EXPRESSION = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)
PULUMI_ACTION = "pulumi/actions@"
STACKS = {"dev", "prod"}


def load(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the bare key `on` as the boolean true.
    if True in doc:
        doc["on"] = doc.pop(True)
    return doc


def workflow(name: str) -> dict[str, Any]:
    return load(GITHUB / "workflows" / name)


def strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)


def expressions(node: Any) -> list[str]:
    return [m.group(1) for s in strings(node) for m in EXPRESSION.finditer(s)]


def pulumi_steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in job["steps"] if s.get("uses", "").startswith(PULUMI_ACTION)]


def readme_test_command() -> str:
    """The second command of the first code block under README's Quick start."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1]
    block = re.search(r"```[a-z]*\n(.*?)```", section, re.DOTALL)
    assert block, "README.md: no code block under Quick start"
    commands = [line.strip() for line in block.group(1).splitlines() if line.strip()]
    assert len(commands) == 2, f"Quick start should hold exactly two commands: {commands}"
    return commands[1]


def test_there_are_the_three_workflows() -> None:
    assert [p.name for p in WORKFLOWS] == ["deploy.yml", "e2e.yml", "pull-request.yml"]


# --- the flow ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["pull-request.yml", "deploy.yml"])
def test_the_gate_job_runs_the_readme_test_command(name: str) -> None:
    gate = workflow(name)["jobs"]["gate"]
    runs = [s["run"].strip() for s in gate["steps"] if "run" in s]
    assert runs == [readme_test_command()]
    assert readme_test_command() == "./dev test"


def test_ci_entry_runs_exactly_the_readme_test_command() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    # Shell setup aside (strict mode, move to the repository root), one command.
    commands = [line for line in lines if not line.startswith(("set ", "cd ")) and line != "cd .."]
    assert commands == [readme_test_command()]


def test_pull_requests_get_the_gate_then_a_preview_per_stack() -> None:
    wf = workflow("pull-request.yml")
    assert set(wf["on"]) == {"pull_request"}
    preview = wf["jobs"]["preview"]
    assert preview["needs"] == "gate"
    assert set(preview["strategy"]["matrix"]["stack"]) == STACKS
    # One failing stack must not hide the other stack's diff.
    assert preview["strategy"]["fail-fast"] is False
    (step,) = pulumi_steps(preview)
    w = step["with"]
    assert w["command"] == "preview"
    assert w["comment-on-pr"] is True
    assert w["work-dir"] == "."
    assert w["stack-name"] == "${{ vars.PULUMI_ORG }}/${{ matrix.stack }}"
    assert preview["permissions"] == {
        "contents": "read",
        "id-token": "write",
        "pull-requests": "write",
    }


def test_pushes_to_main_deploy_dev_then_prod_after_approval() -> None:
    wf = workflow("deploy.yml")
    assert wf["on"] == {"push": {"branches": ["main"]}}
    jobs = wf["jobs"]
    assert jobs["up-dev"]["needs"] == "gate"
    assert jobs["up-prod"]["needs"] == "up-dev"
    assert "environment" not in jobs["up-dev"]
    assert jobs["up-prod"]["environment"]["name"] == "production"
    for job, stack in (("up-dev", "dev"), ("up-prod", "prod")):
        (step,) = pulumi_steps(jobs[job])
        assert step["with"]["command"] == "up"
        assert step["with"]["stack-name"] == f"${{{{ vars.PULUMI_ORG }}}}/{stack}"
        assert step["with"]["work-dir"] == "."
        # Refreshed first: after a rolled-back deployment only a read of the service shows
        # that the failed revision does not run (tests/e2e/rollback.py), and the retry must
        # deploy it again rather than succeed without a call to ECS.
        assert step["with"]["refresh"] is True


POLICY_PACK = "policy"


def test_every_preview_and_update_runs_the_policy_pack() -> None:
    """pulumi/actions passes each `policyPacks` entry as `--policy-pack` (relative to work-dir):
    the previews and both updates are judged by the project's guardrails (policy/). A step
    without a command only installs the CLI."""
    commands = []
    for path in WORKFLOWS:
        for name, job in load(path)["jobs"].items():
            for step in pulumi_steps(job):
                w = step["with"]
                if "command" not in w:
                    continue
                assert w.get("policyPacks") == POLICY_PACK, f"{path.name}:{name}"
                pack = ROOT / w["work-dir"] / POLICY_PACK
                assert (pack / "PulumiPolicy.yaml").is_file()
                assert (pack / "__main__.py").is_file()
                commands.append(w["command"])
    assert sorted(commands) == ["preview", "up", "up"]


def test_the_policy_pack_dependencies_come_with_the_project_virtualenv() -> None:
    """The pack runs in .venv (PulumiPolicy.yaml), which every Pulumi job gets from ./dev setup
    through the composite actions; so pulumi-policy must be one of the project's requirements."""
    pulumi_action = load(GITHUB / "actions" / "pulumi" / "action.yml")
    assert {"uses": "./.github/actions/python"} in pulumi_action["runs"]["steps"]
    pack = yaml.safe_load((ROOT / POLICY_PACK / "PulumiPolicy.yaml").read_text())
    assert pack["runtime"]["options"]["virtualenv"] == "../.venv"
    declared = [ROOT / f for f in ("requirements.txt", "pyproject.toml") if (ROOT / f).is_file()]
    assert any(
        re.search(r'^\s*"?pulumi-policy\s*[<>=~]', p.read_text(), re.MULTILINE) for p in declared
    )


def test_each_stack_is_updated_by_one_run_at_a_time_and_never_cancelled() -> None:
    jobs = workflow("deploy.yml")["jobs"]
    groups = {}
    for job in ("up-dev", "up-prod"):
        concurrency = jobs[job]["concurrency"]
        assert concurrency["cancel-in-progress"] is False
        groups[job] = concurrency["group"]
    assert groups["up-dev"] != groups["up-prod"]
    # Static names: a group must not vary with the run, or runs would not queue.
    assert not any("${{" in g for g in groups.values())
    assert "concurrency" not in workflow("deploy.yml")


def test_stacks_match_the_stack_files() -> None:
    files = {p.name.split(".")[1] for p in ROOT.glob("Pulumi.*.yaml")}
    if not files:
        pytest.skip("no Pulumi.<stack>.yaml at the repository root yet")
    assert files == STACKS


def test_every_pulumi_step_installs_the_cli_matching_the_locked_sdk() -> None:
    for path in WORKFLOWS:
        for job in load(path)["jobs"].values():
            for step in pulumi_steps(job):
                assert step["with"]["pulumi-version"] == "${{ steps.setup.outputs.pulumi-version }}"
                setup = next(s for s in job["steps"] if s.get("id") == "setup")
                assert setup["uses"] == "./.github/actions/pulumi"


def run_version_script(workdir: Path) -> subprocess.CompletedProcess[str]:
    action = load(GITHUB / "actions" / "pulumi" / "action.yml")
    (step,) = [s for s in action["runs"]["steps"] if s.get("id") == "pulumi"]
    out = workdir / "github_output"
    out.touch()
    return subprocess.run(
        ["bash", "-e", "-c", step["run"]],
        cwd=workdir,
        env={**os.environ, "GITHUB_OUTPUT": str(out)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_cli_version_step_reads_the_sdk_pin(tmp_path: Path) -> None:
    lock = (ROOT / "uv.lock").read_text()
    (pin,) = re.findall(r'^name = "pulumi"\nversion = "(\S+)"$', lock, flags=re.MULTILINE)
    (tmp_path / "uv.lock").write_text(lock)
    assert run_version_script(tmp_path).returncode == 0
    assert (tmp_path / "github_output").read_text() == f"version={pin}\n"

    (tmp_path / "uv.lock").write_text(lock.replace('name = "pulumi"\n', 'name = "pulumi-x"\n'))
    result = run_version_script(tmp_path)
    assert result.returncode != 0
    assert "no package pulumi in uv.lock" in result.stdout


# --- least privilege and pinning ---------------------------------------------


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_permissions_are_granted_per_job_only(path: Path) -> None:
    wf = load(path)
    assert wf["permissions"] == {}
    for name, job in wf["jobs"].items():
        perms = job["permissions"]
        assert perms.get("contents") == "read", name
        assumes_role = any(s.get("uses") == "./.github/actions/pulumi" for s in job["steps"])
        assert (perms.get("id-token") == "write") == assumes_role, name
        extra = set(perms) - {"contents", "id-token", "pull-requests"}
        assert not extra, f"{name}: {extra}"
        if perms.get("pull-requests") == "write":
            assert any(s.get("with", {}).get("comment-on-pr") for s in pulumi_steps(job)), name


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_checkout_leaves_no_token_behind(path: Path) -> None:
    for job in load(path)["jobs"].values():
        for step in job["steps"]:
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False


USES = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<ref>\S+)(?P<rest>.*)$")
PINNED = re.compile(r"^(?P<action>[\w.-]+/[\w./-]+)@(?P<sha>[0-9a-f]{40})$")
TAG_COMMENT = re.compile(r"^\s*#\s*v\d+\.\d+\.\d+\s*$")


def uses_lines() -> list[tuple[str, str, str]]:
    found = []
    for path in [*WORKFLOWS, *ACTIONS]:
        for line in path.read_text().splitlines():
            if m := USES.match(line):
                found.append((path.relative_to(ROOT).as_posix(), m["ref"], m["rest"]))
    return found


def test_every_third_party_action_is_pinned_to_a_commit_with_its_tag() -> None:
    uses = uses_lines()
    assert len(uses) >= 10
    versions: dict[str, set[str]] = {}
    for where, ref, rest in uses:
        if ref.startswith("./"):
            assert (ROOT / ref / "action.yml").is_file(), f"{where}: {ref} does not exist"
            continue
        m = PINNED.match(ref)
        assert m, f"{where}: {ref} is not pinned to a full commit SHA"
        assert TAG_COMMENT.match(rest), f"{where}: {ref} lacks its '# vX.Y.Z' comment"
        versions.setdefault(m["action"], set()).add(ref + rest)
    # One version of each action across all files, so an update touches them all.
    drift = {a: v for a, v in versions.items() if len(v) > 1}
    assert not drift


def test_dependabot_keeps_every_pinned_action_current() -> None:
    config = yaml.safe_load((GITHUB / "dependabot.yml").read_text())
    (actions,) = [u for u in config["updates"] if u["package-ecosystem"] == "github-actions"]
    assert set(actions["directories"]) == {"/", "/.github/actions/*"}
    # The glob covers one level: a nested composite action would never be updated.
    nested = [
        p for p in GITHUB.glob("actions/**/action.y*ml") if p.parent.parent != GITHUB / "actions"
    ]
    assert not nested


# --- what actionlint would check ----------------------------------------------


def jobs_and_steps() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path in WORKFLOWS:
        for name, job in load(path)["jobs"].items():
            yield path.name, name, job


def test_step_outputs_needs_and_matrix_references_resolve() -> None:
    for wf_name, job_name, job in jobs_and_steps():
        where = f"{wf_name}:{job_name}"
        wf_jobs = load(GITHUB / "workflows" / wf_name)["jobs"]
        matrix = job.get("strategy", {}).get("matrix", {})
        ids: dict[str, dict[str, Any]] = {}
        for step in job["steps"]:
            # `if:` holds a bare expression, without ${{ }}.
            bare = [step["if"]] if isinstance(step.get("if"), str) else []
            for expr in [*expressions(step), *bare]:
                for sid in re.findall(r"steps\.([\w-]+)\.(?:outcome|conclusion)", expr):
                    assert sid in ids, f"{where}: steps.{sid} is not an earlier step"
                for sid, output in re.findall(r"steps\.([\w-]+)\.outputs\.([\w-]+)", expr):
                    assert sid in ids, f"{where}: steps.{sid} is not an earlier step"
                    uses = ids[sid].get("uses", "")
                    if uses.startswith("./"):
                        declared = load(ROOT / uses / "action.yml").get("outputs", {})
                        assert output in declared, f"{where}: {uses} has no output {output}"
            if "id" in step:
                ids[step["id"]] = step
        # environment.url may read any step of the job.
        for expr in expressions(job.get("environment", {})):
            for sid in re.findall(r"steps\.([\w-]+)\.outputs", expr):
                assert sid in ids, f"{where}: environment reads unknown step {sid}"
        for expr in expressions(job):
            for key in re.findall(r"matrix\.([\w-]+)", expr):
                assert key in matrix, f"{where}: matrix.{key} is not in the job's matrix"
            for need in re.findall(r"needs\.([\w-]+)", expr):
                assert need in wf_jobs, f"{where}: needs.{need} is not a job"
        needs = job.get("needs", [])
        for need in [needs] if isinstance(needs, str) else needs:
            assert need in wf_jobs, f"{where}: needs {need}, which is not a job"


def local_action_calls() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path in [*WORKFLOWS, *ACTIONS]:
        doc = load(path)
        steps = (
            [s for job in doc["jobs"].values() for s in job["steps"]]
            if "jobs" in doc
            else doc["runs"]["steps"]
        )
        for step in steps:
            if step.get("uses", "").startswith("./"):
                yield path.name, step["uses"], step.get("with", {})


def test_local_actions_get_exactly_their_declared_inputs() -> None:
    calls = list(local_action_calls())
    local = {uses for _, uses, _ in calls}
    assert local == {"./.github/actions/python", "./.github/actions/pulumi"}
    for where, uses, given in calls:
        declared = load(ROOT / uses / "action.yml").get("inputs", {})
        assert set(given) <= set(declared), f"{where}: {uses} takes no {set(given) - set(declared)}"
        required = {k for k, v in declared.items() if v.get("required")}
        assert required <= set(given), f"{where}: {uses} needs {required - set(given)}"


@pytest.mark.parametrize("path", ACTIONS, ids=lambda p: p.parent.name)
def test_composite_actions_read_only_their_declared_inputs(path: Path) -> None:
    action = load(path)
    declared = set(action.get("inputs", {}))
    used = {n for e in expressions(action["runs"]) for n in re.findall(r"inputs\.([\w-]+)", e)}
    assert used <= declared
    assert declared <= used, f"declared but unused: {declared - used}"
    for step in action["runs"]["steps"]:
        if "run" in step:
            assert step.get("shell") == "bash", "composite run steps need an explicit shell"
            # Inputs reach scripts through env, never spliced into the script text.
            assert "${{" not in step["run"]


def test_every_variable_and_secret_is_documented() -> None:
    names = set()
    for path in [*WORKFLOWS, *ACTIONS]:
        for expr in expressions(load(path)):
            names |= set(re.findall(r"(?:vars|secrets)\.([A-Z0-9_]+)", expr))
    assert names == {
        "AWS_REGION",
        "AWS_PREVIEW_ROLE_ARN",
        "AWS_DEPLOY_ROLE_ARN",
        "PULUMI_ORG",
        "PULUMI_BACKEND_URL",
        "PULUMI_SECRETS_PROVIDER",
        "PULUMI_ACCESS_TOKEN",
    }
    doc = (ROOT / "docs" / "delivery.md").read_text()
    missing = {n for n in names if f"`{n}`" not in doc}
    assert not missing, f"docs/delivery.md does not explain {missing}"


# --- OIDC: the claims each job presents are the ones its role trusts -----------


MAIN_ONLY = '[ "$GITHUB_REF" = refs/heads/main ]'


def main_guard(job: dict[str, Any]) -> dict[str, Any] | None:
    """The job's first step, if it is the check that the run is on main."""
    first = job["steps"][0]
    return first if MAIN_ONLY in first.get("run", "") else None


def oidc_subject(repository: str, wf: dict[str, Any], job: dict[str, Any]) -> str:
    """The ``sub`` claim GitHub puts in the job's token (default claim template)."""
    if "environment" in job:
        env = job["environment"]
        return f"repo:{repository}:environment:{env['name'] if isinstance(env, dict) else env}"
    if "pull_request" in wf["on"]:
        return f"repo:{repository}:pull_request"
    if "push" in wf["on"]:
        (branch,) = wf["on"]["push"]["branches"]
        return f"repo:{repository}:ref:refs/heads/{branch}"
    # workflow_dispatch runs on whichever branch the user picks (schedule: the default
    # branch): the token names that branch, so the job must refuse anything but main.
    assert set(wf["on"]) <= {"workflow_dispatch", "schedule"}, wf["on"]
    assert main_guard(job) is not None, "a dispatched job must check it runs on main first"
    return f"repo:{repository}:ref:refs/heads/main"


def test_every_role_assuming_job_presents_a_subject_its_role_trusts() -> None:
    # The defaults the github-oidc stack deploys with, for some repository.
    args = GitHubOidcArgs(repository="acme/shop")
    trusted = {
        "${{ vars.AWS_PREVIEW_ROLE_ARN }}": set(preview_subjects(args)),
        "${{ vars.AWS_DEPLOY_ROLE_ARN }}": set(deploy_subjects(args)),
    }
    checked = 0
    for path in WORKFLOWS:
        wf = load(path)
        for name, job in wf["jobs"].items():
            for step in job["steps"]:
                if step.get("uses") != "./.github/actions/pulumi":
                    continue
                role = step["with"]["role-to-assume"]
                assert role in trusted, f"{path.name}:{name}: unknown role {role}"
                subject = oidc_subject("acme/shop", wf, job)
                assert subject in trusted[role], f"{path.name}:{name}: {subject} not trusted"
                checked += 1
    assert checked == 5  # preview (matrix), up-dev, up-prod, e2e leftover, e2e test


def test_previews_use_the_read_only_role_and_updates_the_deploy_role() -> None:
    for path in WORKFLOWS:
        for name, job in load(path)["jobs"].items():
            for step in pulumi_steps(job):
                setup = next(s for s in job["steps"] if s.get("id") == "setup")
                role = setup["with"]["role-to-assume"]
                # Install-only steps (no command) serve the e2e test, which deploys.
                if step["with"].get("command") == "preview":
                    assert role == "${{ vars.AWS_PREVIEW_ROLE_ARN }}", name
                else:
                    assert role == "${{ vars.AWS_DEPLOY_ROLE_ARN }}", name


def test_dev_setup_exists_for_ci() -> None:
    # The composite action runs `./dev setup`; it must be a real subcommand.
    action = load(GITHUB / "actions" / "python" / "action.yml")
    runs = [shlex.split(s["run"]) for s in action["runs"]["steps"] if "run" in s]
    assert ["./dev", "setup"] in runs
    assert re.search(r"^\s*setup\)$", (ROOT / "dev").read_text(), flags=re.MULTILINE)


# --- the end-to-end test on a real account (e2e.yml) ------------------------------------


def e2e_job(name: str = "e2e") -> dict[str, Any]:
    job: dict[str, Any] = workflow("e2e.yml")["jobs"][name]
    return job


def e2e_step(step_id: str) -> dict[str, Any]:
    (step,) = [s for s in e2e_job()["steps"] if s.get("id") == step_id]
    return step


def test_e2e_runs_on_demand_and_nightly_only() -> None:
    """Never on a push or a pull request: it deploys with the deploy role and is billed."""
    on = workflow("e2e.yml")["on"]
    assert set(on) == {"workflow_dispatch", "schedule"}
    assert len(on["schedule"]) == 1


@pytest.mark.parametrize("job", ["leftover", "e2e"])
def test_e2e_refuses_to_run_off_main(tmp_path: Path, job: str) -> None:
    """A dispatch from another branch would present a subject the deploy role does not
    trust; the first step of each job says so instead of an STS error."""
    guard = main_guard(e2e_job(job))
    assert guard is not None
    for ref, code in (("refs/heads/main", 0), ("refs/heads/feature", 1), ("refs/tags/v1", 1)):
        result = subprocess.run(
            ["bash", "-e", "-c", guard["run"]],
            cwd=tmp_path,
            env={"PATH": os.environ["PATH"], "GITHUB_REF": ref},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == code, ref
        assert ("::error::" in result.stdout) == bool(code)


def test_e2e_runs_only_the_e2e_test_and_fails_where_it_would_skip() -> None:
    test = e2e_step("test")
    assert shlex.split(test["run"].strip().splitlines()[-1]) == [
        "exec",
        ".venv/bin/python",
        "-m",
        "pytest",
        "tests/e2e/test_e2e.py",
        "-s",
        "-p",
        "no:cacheprovider",
    ]
    # The opt-in that turns every missing prerequisite into a failure.
    assert test["env"][lifecycle.OPT_IN] == "1"
    assert lifecycle.skip_or_fail(["x"], test["env"]) == (
        "fail",
        "end-to-end test on AWS not run: missing x",
    )


def test_e2e_installs_the_cli_and_assumes_the_deploy_role() -> None:
    job = e2e_job()
    (install,) = pulumi_steps(job)
    assert "command" not in install["with"]  # install only: the test drives Pulumi itself
    assert e2e_step("setup")["with"]["role-to-assume"] == "${{ vars.AWS_DEPLOY_ROLE_ARN }}"
    names = [s.get("id") or s.get("uses", "").split("@")[0] for s in job["steps"][1:]]
    assert names.index("setup") < names.index("pulumi/actions") < names.index("test")


def test_e2e_deploys_the_one_stack_the_deploy_role_lists_for_it() -> None:
    """The scoped deploy role changes only the stacks in its `stacks` (by name and Stack tag),
    so a per-run stack name would be AccessDenied: both jobs use the fixed name, which the
    role lists by default and the test accepts."""
    wf = workflow("e2e.yml")
    value = wf["env"][lifecycle.STACK_ENV]
    assert value == lifecycle.DEFAULT_STACK
    assert value in DEFAULT_STACKS
    for job in wf["jobs"].values():
        assert lifecycle.STACK_ENV not in job.get("env", {})
        for step in job["steps"]:
            assert lifecycle.STACK_ENV not in step.get("env", {})
    name = lifecycle.stack_name({lifecycle.STACK_ENV: value, "PULUMI_ORG": "acme"})
    assert name.qualified == f"acme/{value}"


def test_e2e_first_destroys_a_stack_an_earlier_run_left_then_tests() -> None:
    """One fixed name: a stack left by a run whose runner died would block the next `stack
    init`. The first job removes it (a no-op when there is none), with its own hour of
    credentials, and the test runs only after it succeeded."""
    leftover, test_job = e2e_job("leftover"), e2e_job("e2e")
    assert test_job["needs"] == "leftover"
    (cleanup,) = [s for s in leftover["steps"] if s.get("id") == "cleanup"]
    assert "if" not in cleanup
    command = shlex.split(cleanup["run"].strip().splitlines()[-1])
    assert command == ["exec", ".venv/bin/python", "-m", "tests.e2e.lifecycle", "cleanup"]
    # Its destroy retries stop before the step's timeout would cut one short.
    assert (
        int(cleanup["env"][lifecycle.CLEANUP_SECONDS_ENV]) <= cleanup["timeout-minutes"] * 60 - 60
    )
    for key in ("PULUMI_ORG", "PULUMI_BACKEND_URL", "PULUMI_ACCESS_TOKEN", "E2E_SECRETS_PROVIDER"):
        assert cleanup["env"][key] == e2e_step("test")["env"][key]
    setup = next(s for s in leftover["steps"] if s.get("id") == "setup")
    assert setup["with"]["role-to-assume"] == "${{ vars.AWS_DEPLOY_ROLE_ARN }}"
    assert cleanup["timeout-minutes"] <= leftover["timeout-minutes"] - 5


# configure-aws-credentials' default session (the deploy role's max_session_seconds default).
CREDENTIALS_MINUTES = 60
# Setup before the test starts: checkout, ./dev setup, QEMU and buildx, the CLI.
SETUP_MINUTES = 10
# GitHub force-terminates a cancelled run's steps 5 minutes after the cancel (workflow
# cancellation reference); what the cleanup step gets then, its credentials step aside.
CANCELLED_MINUTES = 5


def test_e2e_runs_one_at_a_time_never_cancelled_within_its_credentials_hour() -> None:
    wf = workflow("e2e.yml")
    assert wf["concurrency"] == {"group": "e2e", "cancel-in-progress": False}
    job = e2e_job()
    steps = job["steps"]
    test, credentials, cleanup = e2e_step("test"), steps[-2], steps[-1]
    # The test step ends within the hour of the setup's credentials, setup included.
    assert SETUP_MINUTES + test["timeout-minutes"] <= CREDENTIALS_MINUTES
    # The cleanup may start after that hour: it gets credentials of its own first, under the
    # same condition, from the same role.
    assert credentials["uses"].startswith("aws-actions/configure-aws-credentials@")
    assert credentials["if"] == cleanup["if"]
    assert credentials["with"]["role-to-assume"] == "${{ vars.AWS_DEPLOY_ROLE_ARN }}"
    assert cleanup["timeout-minutes"] <= CREDENTIALS_MINUTES
    assert (
        SETUP_MINUTES + test["timeout-minutes"] + cleanup["timeout-minutes"]
        <= job["timeout-minutes"]
    )


def test_a_cancelled_runs_cleanup_fits_what_github_gives_it() -> None:
    """On a cancel the cleanup step has what is left of 5 minutes: its destroy retries stop in
    time to print what is left (the leftover job of the next run finishes it); on a failure it
    gets most of its own timeout."""
    cleanup = e2e_job()["steps"][-1]
    budget = cleanup["env"][lifecycle.CLEANUP_SECONDS_ENV]
    match = re.fullmatch(r"\$\{\{ cancelled\(\) && '(\d+)' \|\| '(\d+)' \}\}", budget)
    assert match, budget
    cancelled, failed = (int(g) for g in match.groups())
    assert cancelled <= CANCELLED_MINUTES * 60 - 60
    assert cancelled < lifecycle.DESTROY_RETRY_WAITS[0] + lifecycle.DESTROY_RETRY_WAITS[1] + 60
    assert failed <= cleanup["timeout-minutes"] * 60 - 60


def test_e2e_python_is_the_entry_process_and_writes_unbuffered() -> None:
    """GitHub signals a cancelled step's entry process only: `exec` makes it Python, which
    passes SIGINT and SIGTERM on to the CLI (tests/e2e/interrupt.py). A pipe is block-buffered:
    without PYTHONUNBUFFERED the log's tail is lost when the step is killed."""
    steps = [e2e_step("test"), e2e_job()["steps"][-1]]
    steps += [s for s in e2e_job("leftover")["steps"] if s.get("id") == "cleanup"]
    for step in steps:
        assert step["run"].strip().splitlines()[-1].startswith("exec .venv/bin/python "), step
        assert step["env"]["PYTHONUNBUFFERED"] == "1"


def test_e2e_destroys_what_a_killed_test_left_behind() -> None:
    cleanup = e2e_job()["steps"][-1]
    assert cleanup["if"].startswith("always() && ")
    assert "steps.test.outcome == 'failure'" in cleanup["if"]
    assert "steps.test.outcome == 'cancelled'" in cleanup["if"]
    command = shlex.split(cleanup["run"].strip().splitlines()[-1])
    assert command == ["exec", ".venv/bin/python", "-m", "tests.e2e.lifecycle", "cleanup"]
    # Same backend and stack as the test.
    for key in ("PULUMI_ORG", "PULUMI_BACKEND_URL", "PULUMI_ACCESS_TOKEN"):
        assert cleanup["env"][key] == e2e_step("test")["env"][key]
    assert lifecycle.main(["cleanup"], {}) == 2  # no E2E_STACK: refuses, names the variable
