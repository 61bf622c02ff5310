"""Reading raw config values: the error every problem ends in, the reader that collects problems
by key, and one parser per kind of value (each raising `Invalid` with what is allowed).

Raw values arrive as Pulumi stores them: objects set with `pulumi config set --path` as JSON
text, scalars as text. Already-decoded values (dicts, ints) are accepted too.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from typing import TypeVar, cast

import pulumi

from stack.limits import (
    AWS_ENDPOINT_DOMAINS,
    AZ_MIN,
    DNS_LABEL,
    DRAIN_SECONDS_MAX,
    EMAIL,
    EMAIL_MAX,
    PORT_MAX,
    PRIVATE_TLDS,
    RFC1918,
    STOP_GRACE_SECONDS,
    STOP_TIMEOUT_MAX,
    UNPRIVILEGED_PORT_MIN,
    VPC_HOSTNAME_DOMAINS,
    VPC_PREFIX_MAX,
    VPC_PREFIX_MIN,
)


class ConfigError(pulumi.RunError):
    """Invalid stack configuration. A RunError, so Pulumi prints the message without a trace."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid stack configuration ({len(problems)} problem(s)):\n{lines}")


T = TypeVar("T")


class Invalid(Exception):
    """One bad value; collected by `Reader` into the single ConfigError."""


class Reader:
    """Reads values by key, collecting problems instead of stopping at the first."""

    def __init__(self, project: str) -> None:
        self.project = project
        self.problems: list[str] = []

    def key(self, path: str) -> str:
        return f"{self.project}:{path}"

    def fail(self, path: str, message: str) -> None:
        self.problems.append(f"{self.key(path)}: {message}")

    def check(self, path: str, value: object, parse: Callable[[object], T], default: T) -> T:
        """Parse `value` (None means unset: the default); on failure record it, return default."""
        if value is None:
            return default
        try:
            return parse(value)
        except Invalid as e:
            self.fail(path, str(e))
            return default

    def section(self, path: str, value: object, allowed: tuple[str, ...]) -> dict[str, object]:
        """Decode an object-valued key and reject keys it does not know (typos)."""
        if value is None:
            return {}
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                self.fail(path, f"expected an object with keys {', '.join(allowed)}")
                return {}
        if not isinstance(value, dict):
            self.fail(path, f"expected an object with keys {', '.join(allowed)}")
            return {}
        section = cast(dict[str, object], value)
        for unknown in sorted(set(section) - set(allowed)):
            self.fail(f"{path}.{unknown}", f"unknown key; allowed: {', '.join(allowed)}")
        return section


# No value of this program nests deeper than 2 (network.publicSubnetIds: an object holding a
# list; aws:defaultTags: {tags: {...}}). A value nested thousands deep is a mistake, and Python's
# json would end it in a RecursionError that names no key: it is measured first, without recursion.
NESTING_MAX = 16


def nesting(value: object) -> int:
    """How deep `value` nests: a scalar 0, `[]` or `{}` 1, `[[1]]` 2; JSON text is measured as
    the value it encodes (without decoding it). Iterative, so any depth is measured."""
    if isinstance(value, str):
        return _text_nesting(value)
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = list(cast(dict[object, object], item).values())
        elif isinstance(item, list | tuple):
            children = list(cast(list[object], item))
        else:
            continue
        deepest = max(deepest, depth + 1)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _text_nesting(text: str) -> int:
    if not text.lstrip().startswith(("[", "{")):
        return 0  # a scalar as Pulumi stores it, not JSON
    deepest = depth = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def too_deep(value: object) -> str | None:
    """Why `value` is refused for its nesting alone, or None."""
    depth = nesting(value)
    if depth <= NESTING_MAX:
        return None
    return (
        f"nested {depth} levels deep; allowed: at most {NESTING_MAX} (no setting of this "
        "program nests deeper than 2)"
    )


SHOWN_MAX = 80


def show(value: object) -> str:
    """`value` as the message quotes it: JSON or repr, cut short past SHOWN_MAX characters."""
    shown = json.dumps(value) if not isinstance(value, str) else repr(value)
    if len(shown) <= SHOWN_MAX:
        return shown
    return f"{shown[: SHOWN_MAX - 3]}... ({len(shown)} characters)"


def as_integer(value: object) -> int:
    # Booleans are ints in Python; "true" is never a port. Text must be a plain integer.
    if isinstance(value, bool):
        raise Invalid(f"{show(value)} is not an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    raise Invalid(f"{show(value)} is not an integer")


def ranged(low: int, high: int) -> Callable[[object], int]:
    def parse(value: object) -> int:
        number = as_integer(value)
        if not low <= number <= high:
            raise Invalid(f"{number} is out of range; allowed: {low} to {high}")
        return number

    return parse


def one_of(allowed: tuple[T, ...], why: Mapping[str, str] | None = None) -> Callable[[object], T]:
    def parse(value: object) -> T:
        for option in allowed:
            # `True == 1` in Python; a boolean never means a number here.
            if isinstance(value, bool) and not isinstance(option, bool):
                break
            if value == option or (isinstance(value, str) and value == str(option)):
                return option
        reason = (why or {}).get(value) if isinstance(value, str) else None
        shown = ", ".join(str(a) for a in allowed)
        raise Invalid(f"{show(value)} is {reason or 'not allowed'}; allowed: {shown}")

    return parse


def as_text(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Invalid(f"{show(value)} is not a non-empty string")
    return value.strip()


def as_dns_name(value: object) -> str:
    name = as_text(value)
    labels = name.split(".")
    if len(name) > 253 or not all(DNS_LABEL.match(label) for label in labels):
        raise Invalid(
            f"{show(value)} is not a valid DNS name; allowed: lowercase labels of 1-63 "
            "letters, digits and inner hyphens, joined by dots, 253 characters at most, "
            "no trailing dot"
        )
    if labels[-1] == "local":
        # RFC 6762 reserves .local for multicast DNS; many resolvers never send it to the VPC's.
        raise Invalid(f"{show(value)} ends in .local, which resolvers route to mDNS")
    return name


def at_or_under(name: str, domain: str) -> bool:
    return name == domain or name.endswith(f".{domain}")


def as_namespace(value: object) -> str:
    """A DNS name that, as a private zone in the VPC, shadows nothing the tasks need."""
    name = as_dns_name(value)
    for domain in AWS_ENDPOINT_DOMAINS:
        if at_or_under(name, domain):
            raise Invalid(
                f"{name!r} would shadow AWS service endpoints under {domain} inside the VPC, so "
                "tasks could not pull images (ECR) or ship logs; choose a name of your own, "
                "e.g. 'internal' or 'svc.example.com'"
            )
    for domain in VPC_HOSTNAME_DOMAINS:
        if at_or_under(name, domain):
            example = "ec2.internal" if domain == "ec2.internal" else "<region>.compute.internal"
            raise Invalid(
                f"{name!r} would shadow the VPC's own hostnames (ip-10-0-1-2.{example}); choose a "
                "name of your own, e.g. 'internal' or 'svc.example.com'"
            )
    if "." not in name and name not in PRIVATE_TLDS:
        raise Invalid(
            f"{name!r} is a top-level domain that may be public: inside the VPC the private zone "
            "would answer for every name under it (AWS endpoints included); allowed: a name of "
            f"two labels or more, or one of {', '.join(PRIVATE_TLDS)}"
        )
    return name


def as_service_port(value: object) -> int:
    number = as_integer(value)
    if 1 <= number < UNPRIVILEGED_PORT_MIN:
        raise Invalid(
            f"{number} is a privileged port, which the containers' non-root user (10001) cannot "
            "bind on Fargate (aws/containers-roadmap#1721); "
            f"allowed: {UNPRIVILEGED_PORT_MIN} to {PORT_MAX}"
        )
    if not UNPRIVILEGED_PORT_MIN <= number <= PORT_MAX:
        raise Invalid(f"{number} is out of range; allowed: {UNPRIVILEGED_PORT_MIN} to {PORT_MAX}")
    return number


def as_private_cidr(value: object) -> str:
    text = as_text(value)
    try:
        network = ipaddress.IPv4Network(text, strict=True)
    except ValueError as e:
        raise Invalid(f"{show(value)} is not an IPv4 network in CIDR form ({e})") from e
    if not any(network.subnet_of(block) for block in RFC1918):
        raise Invalid(f"{text} is not a private (RFC 1918) range")
    if not VPC_PREFIX_MIN <= network.prefixlen <= VPC_PREFIX_MAX:
        raise Invalid(
            f"/{network.prefixlen} is out of range; allowed: /{VPC_PREFIX_MIN} to /{VPC_PREFIX_MAX}"
        )
    return str(network)


def matching(pattern: re.Pattern[str], what: str) -> Callable[[object], str]:
    def parse(value: object) -> str:
        text = as_text(value)
        if not pattern.match(text):
            raise Invalid(f"{show(value)} is not {what}")
        return text

    return parse


def id_list(pattern: re.Pattern[str], what: str) -> Callable[[object], tuple[str, ...]]:
    one = matching(pattern, what)

    def parse(value: object) -> tuple[str, ...]:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise Invalid(f"{show(value)} is not a list of {what}s") from None
        if not isinstance(value, list):
            raise Invalid(f"{show(value)} is not a list of {what}s")
        ids = tuple(one(item) for item in cast(list[object], value))
        if len(ids) < AZ_MIN:
            raise Invalid(f"{len(ids)} given; at least {AZ_MIN} (in different zones) required")
        if len(set(ids)) != len(ids):
            raise Invalid("lists a subnet twice")
        return ids

    return parse


def as_drain_seconds(value: object) -> int:
    number = as_integer(value)
    if not 0 <= number <= DRAIN_SECONDS_MAX:
        raise Invalid(
            f"{number} is out of range; allowed: 0 to {DRAIN_SECONDS_MAX} (stopTimeout is "
            f"drainSeconds + {STOP_GRACE_SECONDS} s to finish in-flight requests: "
            f"{number} + {STOP_GRACE_SECONDS} = {number + STOP_GRACE_SECONDS} s, and Fargate "
            f"allows at most {STOP_TIMEOUT_MAX} s)"
        )
    return number


def as_boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise Invalid(f"{show(value)} is not a boolean; allowed: true, false")


def as_email(value: object) -> str:
    text = as_text(value)
    if len(text) > EMAIL_MAX or not EMAIL.match(text):
        raise Invalid(f"{show(value)} is not an e-mail address (name@example.com)")
    return text
