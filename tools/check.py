"""``./dev check <stack>...``: validate a stack's config file the way ``pulumi up`` will.

No Pulumi CLI, no AWS account: ``Pulumi.<stack>.yaml`` is read as Pulumi hands its values to
the program (objects as JSON text, scalars as text) and checked by the program's own code
(``stack.load``'s checks: ``parse_settings``, the ``aws:defaultTags`` rule, and the
provider's key list, so ``aws:regoin`` is refused like ``fargate-service-discovery:dnsTTL``).
When the file is valid, the effective settings are printed, defaults included; when not, the
error ``pulumi up`` would print, and exit 1.

``./dev check dev`` reads ``Pulumi.dev.yaml``; a path to a file works too. ``--all`` checks
every ``Pulumi.*.yaml`` stack file of the project (the gate runs that).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import yaml

from stack import (
    NESTING_MAX,
    ConfigError,
    Settings,
    default_tag_problems,
    parse_settings,
    provider_key_problems,
)

ROOT = Path(__file__).resolve().parent.parent
# libyaml's parser when PyYAML has it (as its wheels do): the pure-Python one takes seconds on a
# value nested thousands deep.
_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_STACK_FILE = re.compile(r"^Pulumi\.(?P<stack>[^.]+(?:\.[^.]+)*)\.ya?ml$")


@dataclasses.dataclass
class Result:
    path: Path
    stack: str
    project: str
    problems: list[str]
    settings: Settings | None = None
    region: str | None = None
    # Keys (without the project prefix, dotted paths inside objects) the file sets.
    given: set[str] = dataclasses.field(default_factory=set)
    other: dict[str, str] = dataclasses.field(default_factory=dict)


def project_name(root: Path) -> str:
    with (root / "Pulumi.yaml").open() as f:
        project = yaml.safe_load(f)
    name = project.get("name") if isinstance(project, dict) else None
    if not isinstance(name, str):
        raise SystemExit(f"check: {root / 'Pulumi.yaml'} has no project name")
    return name


def stack_files(root: Path) -> list[Path]:
    return sorted(p for p in root.glob("Pulumi.*.y*ml") if _STACK_FILE.match(p.name))


def pulumi_text(value: object) -> str:
    """A YAML value as Pulumi hands it to the program: text, objects as JSON text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return "" if value is None else str(value)


def _too_deep(text: str) -> list[str]:
    """Config keys whose value nests past NESTING_MAX, from YAML's event stream (which, unlike
    composing the document, does not recurse), so such a file is refused naming the key."""
    found: list[str] = []
    # One frame per open mapping or sequence: [is a mapping, the next scalar is a key].
    frames: list[list[bool]] = []
    root_key = key = ""
    try:
        events = list(yaml.parse(text, Loader=_LOADER))
    except yaml.YAMLError as error:
        # libyaml stops at 1,000 levels itself: the key is the one on or above that line.
        mark = getattr(error, "problem_mark", None)
        if mark is None or "nesting depth" not in str(error):
            raise
        return [_key_above(text, mark.line)]
    for event in events:
        if isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
            mapping = isinstance(event, yaml.MappingStartEvent)
            frames.append([mapping, mapping])
            # Frame 1 is the document, 2 the config mapping: a value's own nesting is beyond.
            if root_key == "config" and len(frames) - 2 == NESTING_MAX + 1 and key not in found:
                found.append(key)
        elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
            frames.pop()
            if frames and frames[-1][0]:
                frames[-1][1] = True  # the value is done: a key comes next
        elif isinstance(event, yaml.ScalarEvent | yaml.AliasEvent) and frames and frames[-1][0]:
            if frames[-1][1] and isinstance(event, yaml.ScalarEvent):
                if len(frames) == 1:
                    root_key = event.value
                elif len(frames) == 2 and root_key == "config":
                    key = event.value
            frames[-1][1] = not frames[-1][1]
    return found


def _key_above(text: str, line: int) -> str:
    """The config key whose value holds `line` (0-based): the last one at or above it."""
    key = "config"
    indent: int | None = None
    inside = False
    for row in text.splitlines()[: line + 1]:
        if re.match(r"^config:\s*(#.*)?$", row):
            inside = True
            continue
        stripped = row.lstrip()
        if not inside or not stripped or stripped.startswith("#"):
            continue
        depth = len(row) - len(stripped)
        if depth == 0:
            inside = False
            continue
        indent = depth if indent is None else indent
        found = re.match(r"^([^\s:#][^:]*(?::[^\s:][^:]*)?):(\s|$)", stripped)
        if depth == indent and found:
            key = found.group(1)
    return key


def read_config(path: Path) -> tuple[dict[str, object], list[str]]:
    """The file's `config:` mapping, or the problems that stop it from being read."""
    text = path.read_text()
    try:
        deep = _too_deep(text)
        if deep:
            return {}, [
                f"{key}: nested more than {NESTING_MAX} levels deep; no setting of this "
                "program nests deeper than 2"
                for key in deep
            ]
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        return {}, [f"{path.name} is not valid YAML: {error}"]
    if document is None:
        return {}, []
    if not isinstance(document, dict) or not isinstance(document.get("config", {}), dict):
        return {}, [f"{path.name}: expected a mapping with a `config:` mapping in it"]
    config = document.get("config") or {}
    return {str(k): v for k, v in config.items()}, []


def _paths(value: object, prefix: str) -> Iterator[str]:
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, f"{prefix}.{key}")


def check_config(
    config: Mapping[str, object], project: str, stack: str, path: Path | None = None
) -> Result:
    """Validate one stack's `config:` mapping as `pulumi up` will (stack.load's checks)."""
    result = Result(path or Path(f"Pulumi.{stack}.yaml"), stack, project, [])
    raw: dict[str, object] = {}
    for full_key, value in config.items():
        namespace, sep, key = full_key.partition(":")
        if not sep:  # Pulumi reads a key without a namespace as the project's
            namespace, key = project, full_key
        if isinstance(value, dict) and set(value) == {"secure"}:
            result.other[f"{namespace}:{key}"] = "(secret: checked by pulumi up only)"
            continue
        if namespace == project:
            raw[key] = pulumi_text(value)
            result.given.update(_paths(value, key))
        elif namespace != "aws":
            result.other[full_key] = pulumi_text(value)
    region = config.get("aws:region")
    result.region = (
        pulumi_text(region)
        if region is not None
        else os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    )
    tags = config.get("aws:defaultTags")
    result.problems += default_tag_problems(
        None if tags is None else pulumi_text(tags), project, stack
    )
    result.problems += provider_key_problems(
        key for key in config if key.partition(":")[0] == "aws"
    )
    try:
        result.settings = parse_settings(raw, project, region=result.region, stack=stack)
    except ConfigError as error:
        result.problems += error.problems
    if result.problems:
        result.settings = None
    return result


def check_file(path: Path, project: str) -> Result:
    match = _STACK_FILE.match(path.name)
    stack = match.group("stack") if match else path.stem
    if not match:
        return Result(
            path, stack, project, [f"{path.name}: not a stack file (Pulumi.<stack>.yaml)"]
        )
    if not path.is_file():
        return Result(path, stack, project, [f"{path}: no such file"])
    config, problems = read_config(path)
    if problems:
        return Result(path, stack, project, problems)
    return check_config(config, project, stack, path)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def effective(settings: Settings) -> Iterator[tuple[str, object]]:
    """Every setting as (config key, value), defaults included, in the program's order."""

    def walk(prefix: str, value: object) -> Iterator[tuple[str, object]]:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            for f in dataclasses.fields(value):
                key = f"{prefix}.{_camel(f.name)}" if prefix else _camel(f.name)
                yield from walk(key, getattr(value, f.name))
        else:
            yield prefix, value

    yield from walk("", settings)


def _shown(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


def report(result: Result) -> str:
    name = result.path.name
    if result.problems:
        return f"{name}: error: {ConfigError(result.problems)}"
    assert result.settings is not None
    lines = [
        f"{name}: valid: stack {result.stack!r} of {result.project}, "
        f"region {result.region or '(from the environment at pulumi up)'}",
        f"effective settings ({result.project}:<key>; * set in the file, the rest defaults):",
    ]
    rows = list(effective(result.settings))
    width = max(len(key) for key, _ in rows) + 2
    for key, value in rows:
        mark = "*" if key in result.given else " "
        lines.append(f"  {mark} {key.ljust(width)}{_shown(value)}")
    for key, value in sorted(result.other.items()):
        lines.append(f"  other config: {key} = {value}")
    return "\n".join(lines)


def resolve(argument: str, root: Path) -> Path:
    """A stack name (`dev`) or a path to a stack file."""
    if argument.endswith((".yaml", ".yml")) or os.sep in argument:
        return Path(argument)
    return root / f"Pulumi.{argument}.yaml"


def main(argv: Sequence[str], root: Path = ROOT) -> int:
    parser = argparse.ArgumentParser(
        prog="./dev check",
        description="Validate a stack's config file (Pulumi.<stack>.yaml) the way `pulumi up` "
        "will, without the Pulumi CLI, and print the effective settings.",
    )
    parser.add_argument("stacks", nargs="*", metavar="STACK", help="dev, prod, or a file's path")
    parser.add_argument(
        "--all", action="store_true", help="every Pulumi.<stack>.yaml of the project"
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="one line per valid file, no settings"
    )
    args = parser.parse_args(argv)
    paths = [resolve(s, root) for s in args.stacks]
    if args.all:
        paths += stack_files(root)
    if not paths:
        known = ", ".join(p.name for p in stack_files(root))
        parser.error(f"name a stack (its file: {known}) or give --all")
    project = project_name(root)
    failed = 0
    for path in paths:
        result = check_file(path, project)
        text = report(result)
        if args.quiet and not result.problems:
            text = text.splitlines()[0]
        print(text, file=sys.stderr if result.problems else sys.stdout, flush=True)
        failed += bool(result.problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
