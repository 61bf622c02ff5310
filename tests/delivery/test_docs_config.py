"""Every `pulumi config set` the docs show works as written on both stack files.

Each command found in README.md and docs/*.md (code blocks and inline code) is applied, as the
Pulumi CLI applies it, to a copy of each stack file's config, which is then validated by
``./dev check``'s code (tools/check.py, the program's own checks). A command must leave both
stacks valid, unless the docs show it in a block that ends in ``./dev check <stack>``
followed by the error it prints: then it must print exactly that error.

Commands for the github-oidc project (docs/delivery.md, in its section) configure another
program: they are checked against that program's keys.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
from dataclasses import dataclass

import pytest
import yaml

from tests.infra.support import PROJECT, ROOT
from tools import check

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
STACKS = ["dev", "prod"]
OIDC_PROJECT = "github-oidc"
_FENCE = re.compile(r"^```(\w*)\s*$")
_INLINE = re.compile(r"`(pulumi config set [^`]+)`")


@dataclass(frozen=True)
class Command:
    doc: str
    line: int
    text: str
    project: str
    # The commands of one code block run together (a user runs the block): its first line.
    block: int
    # Set when the block ends in `./dev check <stack>` followed by the error it prints.
    expected_error: str | None = None
    checked_stack: str | None = None

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}: {self.text}"


def _blocks(lines: list[str]) -> list[tuple[int, str, list[str]]]:
    """Fenced blocks as (first line number, language, lines)."""
    out: list[tuple[int, str, list[str]]] = []
    start, language, body = 0, "", None
    for number, line in enumerate(lines, 1):
        fence = _FENCE.match(line)
        if fence and body is None:
            start, language, body = number + 1, fence.group(1), []
        elif line.strip() == "```" and body is not None:
            out.append((start, language, body))
            body = None
        elif body is not None:
            body.append(line)
    return out


def _heading_at(lines: list[str], number: int) -> str:
    for line in reversed(lines[:number]):
        if line.startswith("#") and not line.startswith("#!"):
            return line
    return ""


def _project(lines: list[str], number: int, block: list[str]) -> str:
    heading = _heading_at(lines, number).lower()
    if "github-oidc" in heading or any("cd deploy/github_oidc" in b for b in block):
        return OIDC_PROJECT
    return PROJECT


def documented_commands() -> list[Command]:
    found: list[Command] = []
    for doc in DOCS:
        lines = doc.read_text().splitlines()
        name = doc.relative_to(ROOT).as_posix()
        blocks = _blocks(lines)
        in_blocks: set[int] = set()
        for index, (start, _language, body) in enumerate(blocks):
            in_blocks.update(range(start - 1, start + len(body) + 1))
            error = stack = None
            checks = [b for b in body if b.strip().startswith("./dev check ")]
            if checks and index + 1 < len(blocks) and blocks[index + 1][1] == "text":
                stack = checks[-1].split()[2]
                error = "\n".join(blocks[index + 1][2]) + "\n"
            for offset, line in enumerate(body):
                if line.strip().startswith("pulumi config set "):
                    number = start + offset
                    found.append(
                        Command(
                            name,
                            number,
                            line.strip(),
                            _project(lines, number, body),
                            start,
                            error,
                            stack,
                        )
                    )
        for number, line in enumerate(lines, 1):
            if number - 1 in in_blocks:
                continue
            for match in _INLINE.finditer(line):
                found.append(
                    Command(name, number, match.group(1), _project(lines, number, []), number)
                )
    return found


COMMANDS = documented_commands()


def stack_config(stack: str) -> dict[str, object]:
    return dict(yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"])


def _typed(value: str) -> object:
    """A `--path` value as the CLI stores it: true/false and integers typed, the rest text."""
    if value in ("true", "false"):
        return value == "true"
    if re.fullmatch(r"-?[0-9]+", value):
        return int(value)
    return value


def config_set(config: dict[str, object], command: str, project: str) -> None:
    """Apply one `pulumi config set [--path] [--secret|--plaintext] KEY [VALUE]` to `config`."""
    words = shlex.split(command, comments=True)
    assert words[:3] == ["pulumi", "config", "set"], command
    path = False
    rest: list[str] = []
    for word in words[3:]:
        if word == "--path":
            path = True
        elif word in ("--plaintext", "--secret"):
            continue
        elif word.startswith("-"):
            raise AssertionError(f"an option this test does not know: {word} in {command}")
        else:
            rest.append(word)
    assert len(rest) == 2, f"expected KEY VALUE: {command}"
    key, value = rest
    if path:
        assert "[" not in key, f"list paths are not emulated here: {command}"
        head, *inside = key.split(".")
        full = head if ":" in head else f"{project}:{head}"
        if not inside:
            config[full] = _typed(value)
            return
        node = config.setdefault(full, {})
        for step in inside[:-1]:
            assert isinstance(node, dict), f"{command}: {step} is not inside an object"
            node = node.setdefault(step, {})
        assert isinstance(node, dict), f"{command}: {inside[-1]} is not inside an object"
        node[inside[-1]] = _typed(value)
        return
    config[key if ":" in key else f"{project}:{key}"] = value


def test_the_docs_show_config_commands_and_each_is_found() -> None:
    shown = {c.text.split("#")[0].strip() for c in COMMANDS if c.project == PROJECT}
    assert "pulumi config set --path name.minCount 4" in shown
    assert "pulumi config set --path hello.memory 1024" in shown  # inline, in the reference
    assert any(c.expected_error for c in COMMANDS), "the error example is no longer found"


def _runs() -> list[list[Command]]:
    """The documented commands in runs: each code block's together, each inline one alone."""
    runs: dict[tuple[str, int], list[Command]] = {}
    for c in COMMANDS:
        if c.project == PROJECT and c.expected_error is None:
            runs.setdefault((c.doc, c.block), []).append(c)
    return list(runs.values())


@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize("commands", _runs(), ids=lambda run: " && ".join(map(str, run)))
def test_every_documented_config_command_works_as_written(
    commands: list[Command], stack: str
) -> None:
    config = stack_config(stack)
    for command in commands:
        config_set(config, command.text, PROJECT)
    result = check.check_config(config, PROJECT, stack)
    assert result.problems == [], f"{commands[0]}\non {stack}: {result.problems}"


def test_the_documented_scaling_steps_together_work_on_both_stacks() -> None:
    """README and docs/infrastructure.md raise name's floor, then its ceiling."""
    scaling = [c for c in COMMANDS if "name.minCount" in c.text or "name.maxCount" in c.text]
    assert scaling
    for stack in STACKS:
        config = stack_config(stack)
        for command in scaling:
            config_set(config, command.text, PROJECT)
        result = check.check_config(config, PROJECT, stack)
        assert result.problems == [], (stack, result.problems)


def _error_examples() -> list[tuple[str, str, list[Command]]]:
    groups: dict[tuple[str, str, str], list[Command]] = {}
    for c in COMMANDS:
        if c.expected_error is not None and c.checked_stack is not None:
            groups.setdefault((c.doc, c.checked_stack, c.expected_error), []).append(c)
    return [(f"{doc}:{stack}", error, cs) for (doc, stack, error), cs in groups.items()]


@pytest.mark.parametrize(
    ("where", "error", "commands"), _error_examples(), ids=[w for w, _, _ in _error_examples()]
)
def test_every_documented_error_is_what_the_check_prints(
    where: str, error: str, commands: list[Command]
) -> None:
    stack = commands[0].checked_stack
    assert stack is not None
    config = stack_config(stack)
    for command in commands:
        config_set(config, command.text, PROJECT)
    result = check.check_config(config, PROJECT, stack)
    assert check.report(result) + "\n" == error, where


def _strings(call: ast.Call) -> set[str]:
    return {a.value for a in call.args if isinstance(a, ast.Constant) and isinstance(a.value, str)}


def _oidc_keys() -> set[str]:
    """The keys deploy/github_oidc/__main__.py reads: config.get*/require* calls, and its
    names(config, "<key>", default) helper."""
    tree = ast.parse((ROOT / "deploy" / "github_oidc" / "__main__.py").read_text())
    keys: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        getter = isinstance(node.func, ast.Attribute) and re.match(
            r"^(get|require)\w*$", node.func.attr
        )
        helper = isinstance(node.func, ast.Name) and node.func.id == "names"
        if getter or helper:
            keys |= _strings(node)
    return keys


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.project == OIDC_PROJECT], ids=str)
def test_github_oidc_commands_set_keys_that_program_reads(command: Command) -> None:
    config: dict[str, object] = {}
    config_set(config, command.text, OIDC_PROJECT)
    (key,) = config
    namespace, _, name = key.partition(":")
    if namespace == "aws":
        assert check.provider_key_problems([key]) == []
    else:
        assert namespace == OIDC_PROJECT
        assert name in _oidc_keys(), f"{command}: {name} is not read by deploy/github_oidc"
    value = config[key]
    if isinstance(value, str) and value.startswith("["):
        json.loads(value)  # lists are JSON, as the docs say


def test_config_set_follows_the_cli() -> None:
    config: dict[str, object] = {f"{PROJECT}:name": {"cpu": 256}}
    config_set(config, "pulumi config set --path name.minCount 4  # comment", PROJECT)
    config_set(config, "pulumi config set --path domain.name hello.example.com", PROJECT)
    config_set(config, "pulumi config set dnsTtl 5", PROJECT)
    config_set(config, "pulumi config set aws:region eu-west-1", PROJECT)
    config_set(config, "pulumi config set --path a.b.c true", PROJECT)
    assert config == {
        f"{PROJECT}:name": {"cpu": 256, "minCount": 4},
        f"{PROJECT}:domain": {"name": "hello.example.com"},
        f"{PROJECT}:dnsTtl": "5",
        "aws:region": "eu-west-1",
        f"{PROJECT}:a": {"b": {"c": True}},
    }


def _readme_table(heading: str) -> dict[str, list[str]]:
    """The first table under `heading` in README.md: first cell -> the other cells."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index(f"\n{heading}\n") :]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    table: dict[str, list[str]] = {}
    for line in rows[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        table[cells[0]] = cells[1:]
        if not section[section.index(line) + len(line) + 1 :].startswith("| "):
            break
    return table


def test_the_readme_dev_and_prod_table_says_what_the_stack_files_choose() -> None:
    table = _readme_table("## Dev and prod")
    for column, stack in enumerate(STACKS):
        result = check.check_file(ROOT / f"Pulumi.{stack}.yaml", PROJECT)
        s = result.settings
        assert s is not None
        assert str(s.zones) in table["Zones, NAT gateways"][column].split(",")[0]
        for row, service in (("name tasks", s.name), ("hello tasks", s.hello)):
            cell = table[row][column]
            size = f"{service.cpu / 1024:g} vCPU / {service.memory / 1024:g} GB"
            assert cell.startswith(size), (stack, row, cell)
            assert f"{service.desired_count} at creation" in cell, (stack, row, cell)
            assert f"{service.min_count} to {service.max_count} on" in cell, (stack, row, cell)
        assert table["Log retention"][column] == f"{s.log_retention_days} days"
        assert table["hello's drain"][column] == f"{s.hello.drain_seconds} s"
        spot = "FARGATE_SPOT" in table["Capacity"][column]
        assert spot == s.capacity.uses_spot, stack
