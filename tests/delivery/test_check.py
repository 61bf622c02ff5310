"""``./dev check <stack>``: a stack file validated as ``pulumi up`` will, without the Pulumi CLI.

In process (``tools.check``), on copies of the real stack files with one thing changed; and the
gate's "stack files" step, run as the gate runs it, on a tree with a broken stack file.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

import stack as stack_settings
from tests.infra.support import PROJECT, ROOT
from tools import check, gate

STACKS = ["dev", "prod"]


def stack_config(stack: str) -> dict[str, object]:
    document = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())
    return dict(document["config"])


def checked(config_map: dict[str, object], stack: str = "dev") -> check.Result:
    return check.check_config(config_map, PROJECT, stack)


@pytest.mark.parametrize("stack", STACKS)
def test_the_stack_files_are_valid_and_their_settings_printed(
    stack: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert check.main([stack]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == f"Pulumi.{stack}.yaml: valid: stack {stack!r} of {PROJECT}, region us-east-1"
    result = check.check_file(ROOT / f"Pulumi.{stack}.yaml", PROJECT)
    assert result.settings is not None
    # Every setting, defaults included, one line each, with the value the program will use.
    for key, value in check.effective(result.settings):
        (line,) = [line for line in lines[2:] if line[4:].split()[:1] == [key]]
        assert line.rstrip().endswith(check._shown(value)), line
    assert "  * name.minCount " in out
    assert "    alarms.email " in out  # commented out in both files: the default


def test_the_check_reads_the_values_as_pulumi_hands_them_over() -> None:
    assert check.pulumi_text(True) == "true"
    assert check.pulumi_text(0) == "0"
    assert check.pulumi_text({"cpu": 256, "zoneAware": False}) == '{"cpu": 256, "zoneAware": false}'


def test_a_typo_in_a_provider_key_is_refused_with_the_key_meant() -> None:
    raw = stack_config("dev")
    raw["aws:regoin"] = raw.pop("aws:region")
    result = checked(raw)
    assert result.problems == [
        "aws:regoin: unknown key of the aws provider; did you mean aws:region? "
        "(its keys: pulumi_aws/config/vars.py)"
    ]


def test_every_key_the_provider_reads_is_accepted() -> None:
    keys = stack_settings.aws_config_keys()
    assert {"region", "defaultTags", "profile", "skipCredentialsValidation"} <= keys
    assert stack_settings.provider_key_problems(f"aws:{key}" for key in keys) == []
    # Other providers' namespaces are theirs to check.
    assert stack_settings.provider_key_problems(["awsx:anything", f"{PROJECT}:name"]) == []


def test_an_unknown_project_key_is_refused_with_or_without_the_namespace() -> None:
    for key in (f"{PROJECT}:dnsTTL", "dnsTTL"):
        result = checked(stack_config("dev") | {key: 5})
        assert len(result.problems) == 1
        assert result.problems[0].startswith(f"{PROJECT}:dnsTTL: unknown key; allowed: ")


def test_default_tags_are_checked_for_the_stack_named_by_the_file() -> None:
    result = checked(stack_config("dev"), stack="prod")
    assert result.problems == [
        f"aws:defaultTags: must be {{tags: {{Project: {PROJECT}, Stack: prod}}}} "
        f'(found \'{{"tags": {{"Project": "{PROJECT}", "Stack": "dev"}}}}\')'
    ]


def test_a_secret_value_is_left_to_pulumi_up() -> None:
    secret = {"secure": "v1:AAAA"}
    result = checked(stack_config("dev") | {f"{PROJECT}:alarms": secret})
    assert result.problems == []
    assert result.other == {f"{PROJECT}:alarms": "(secret: checked by pulumi up only)"}


def test_the_region_comes_from_the_file_for_the_certificate_rule() -> None:
    raw = stack_config("prod") | {
        f"{PROJECT}:domain": {"name": "hello.example.com", "zoneName": "example.com"},
        f"{PROJECT}:certificateArn": "arn:aws:acm:eu-west-1:123456789012:certificate/"
        "12345678-1234-1234-1234-123456789012",
    }
    (problem,) = checked(raw, "prod").problems
    assert problem.startswith(f"{PROJECT}:certificateArn: is in eu-west-1, but the stack deploys")


def test_an_invalid_file_prints_the_error_pulumi_up_would_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "Pulumi.yaml").write_text(f"name: {PROJECT}\n")
    raw = stack_config("dev")
    raw[f"{PROJECT}:name"] = dict(raw[f"{PROJECT}:name"]) | {"cpu": 1024, "memory": 1024}  # type: ignore[arg-type]
    (tmp_path / "Pulumi.dev.yaml").write_text(yaml.safe_dump({"config": raw}))
    assert check.main(["dev"], root=tmp_path) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "Pulumi.dev.yaml: error: invalid stack configuration (1 problem(s)):\n"
        f"  - {PROJECT}:name.memory: 1024 MiB is not a Fargate size for cpu 1024; allowed: "
        "2048 to 8192 in steps of 1024\n"
    )


# 10,000: past libyaml's own limit (1,000); 100: within it, measured from the event stream.
@pytest.mark.parametrize("levels", [10_000, 100, stack_settings.NESTING_MAX + 1])
def test_a_value_nested_too_deep_is_refused_naming_its_key(tmp_path: Path, levels: int) -> None:
    deep = "[" * levels + "]" * levels
    text = (ROOT / "Pulumi.dev.yaml").read_text() + f"  {PROJECT}:alarms: {deep}\n  a: 1\n"
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text(text)
    result = check.check_file(path, PROJECT)
    assert result.problems == [
        f"{PROJECT}:alarms: nested more than {stack_settings.NESTING_MAX} levels deep; "
        "no setting of this program nests deeper than 2"
    ]
    # Just within the limit, the file is read and the value judged as usual.
    ok = "[" * stack_settings.NESTING_MAX + "]" * stack_settings.NESTING_MAX
    path.write_text((ROOT / "Pulumi.dev.yaml").read_text() + f"  {PROJECT}:alarms: {ok}\n")
    (problem,) = check.check_file(path, PROJECT).problems
    assert problem.startswith(f"{PROJECT}:alarms: expected an object with keys email")


def test_a_file_that_is_not_yaml_or_not_there_is_one_clear_line(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text("config: [unclosed\n")
    (problem,) = check.check_file(path, PROJECT).problems
    assert problem.startswith("Pulumi.dev.yaml is not valid YAML: ")
    assert check.check_file(tmp_path / "Pulumi.qa.yaml", PROJECT).problems == [
        f"{tmp_path / 'Pulumi.qa.yaml'}: no such file"
    ]


def test_the_gate_checks_every_stack_file() -> None:
    commands = dict(gate.steps(ROOT, []))
    assert commands["stack files"][1:] == [
        "-m",
        "tools.check",
        "--quiet",
        *sorted(p.name for p in ROOT.glob("Pulumi.*.yaml")),
    ]


def test_the_gate_fails_on_a_stack_file_pulumi_up_would_refuse(tmp_path: Path) -> None:
    for name in ("Pulumi.yaml", "Pulumi.dev.yaml", "Pulumi.prod.yaml"):
        shutil.copy(ROOT / name, tmp_path / name)
    # The settings' checks, and the component limits they share (components/service.py).
    for folder in ("tools", "stack", "components"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    commands = dict(gate.steps(tmp_path, []))
    passed = subprocess.run(commands["stack files"], cwd=tmp_path, capture_output=True, text=True)
    assert passed.returncode == 0, passed.stderr
    path = tmp_path / "Pulumi.prod.yaml"
    path.write_text(path.read_text().replace("aws:region:", "aws:regoin:"))
    failed = subprocess.run(commands["stack files"], cwd=tmp_path, capture_output=True, text=True)
    assert failed.returncode == 1
    assert "Pulumi.prod.yaml: error: invalid stack configuration (1 problem(s)):" in failed.stderr
    assert "aws:regoin: unknown key of the aws provider; did you mean aws:region?" in failed.stderr
