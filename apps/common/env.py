"""Typed reads of environment variables that fail with one clear line.

Every error names the variable, what was found and what is allowed, so a task
that cannot start says why in its first log line instead of a traceback.

One parser per kind of value, used by the services and by their container health
check (``apps.healthcheck``), so that a value one accepts the other never refuses:

- surrounding whitespace is ignored, and an empty value means unset (the default);
- an integer is ASCII digits ``0-9`` with an optional leading ``-``; nothing else:
  no ``_`` separators (``3_063``), no ``+``, no digits of other scripts (``٣``) or
  superscripts (``5³``), which Python's ``int()`` or ``str.isdigit()`` would let in;
- a number is such an integer with an optional ASCII fraction and exponent
  (``0.25``, ``.5``, ``1e-3``); ``inf`` and ``nan`` are not numbers here.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping

_INTEGER = re.compile(r"-?[0-9]+")
_NUMBER = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
PORT_MIN, PORT_MAX = 1, 65535


class EnvError(ValueError):
    """A missing or malformed environment variable. ``str()`` is the whole message."""


def parse_integer(text: str) -> int | None:
    """``text`` (surrounding whitespace ignored) as an integer, or None if it is not one."""
    value = text.strip()
    return int(value, 10) if _INTEGER.fullmatch(value) else None


def parse_number(text: str) -> float | None:
    """``text`` (surrounding whitespace ignored) as a finite float, or None if it is not one."""
    value = text.strip()
    if not _NUMBER.fullmatch(value):
        return None
    parsed = float(value)
    return parsed if math.isfinite(parsed) else None


def parse_port(text: str) -> int | None:
    """``text`` as a TCP port (1 to 65535), or None."""
    parsed = parse_integer(text)
    return parsed if parsed is not None and PORT_MIN <= parsed <= PORT_MAX else None


def _hint(value: str) -> str:
    """Why a value that looks numeric is not: other scripts' digits, ``_`` separators."""
    if "_" in value or any(c.isdigit() and not c.isascii() for c in value):
        return " written with the ASCII digits 0-9 only"
    return ""


def _raw(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    if value is None or value.strip() == "":
        return None
    return value.strip()


def text(name: str, default: str | None = None, env: Mapping[str, str] = os.environ) -> str:
    """A required string (``default`` None) or an optional one."""
    value = _raw(env, name)
    if value is not None:
        return value
    if default is None:
        raise EnvError(f"{name} is required but not set")
    return default


def number(
    name: str,
    default: float,
    *,
    minimum: float = 0.0,
    maximum: float = math.inf,
    allow_minimum: bool = True,
    env: Mapping[str, str] = os.environ,
) -> float:
    """A float within ``[minimum, maximum]`` (or ``(minimum, maximum]``)."""
    value = _raw(env, name)
    if value is None:
        return default
    bound = "at least" if allow_minimum else "more than"
    allowed = f"a number {bound} {minimum:g}" + (
        f" and at most {maximum:g}" if maximum != math.inf else ""
    )
    parsed = parse_number(value)
    if parsed is None:
        raise EnvError(f"{name}={value!r}: expected {allowed}{_hint(value)}")
    low_ok = parsed >= minimum if allow_minimum else parsed > minimum
    if not low_ok or parsed > maximum:
        raise EnvError(f"{name}={value!r}: expected {allowed}")
    return parsed


def integer(
    name: str,
    default: int,
    *,
    minimum: int,
    maximum: int,
    env: Mapping[str, str] = os.environ,
) -> int:
    """An integer within ``[minimum, maximum]``."""
    value = _raw(env, name)
    if value is None:
        return default
    parsed = parse_integer(value)
    if parsed is None or not minimum <= parsed <= maximum:
        raise EnvError(
            f"{name}={value!r}: expected an integer from {minimum} to {maximum}{_hint(value)}"
        )
    return parsed


def port(name: str, default: int, env: Mapping[str, str] = os.environ) -> int:
    return integer(name, default, minimum=PORT_MIN, maximum=PORT_MAX, env=env)
