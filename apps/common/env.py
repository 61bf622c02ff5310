"""Typed reads of environment variables that fail with one clear line.

Every error names the variable, what was found and what is allowed, so a task
that cannot start says why in its first log line instead of a traceback.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping


class EnvError(ValueError):
    """A missing or malformed environment variable. ``str()`` is the whole message."""


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
    try:
        parsed = float(value)
    except ValueError:
        raise EnvError(f"{name}={value!r}: expected {allowed}") from None
    low_ok = parsed >= minimum if allow_minimum else parsed > minimum
    if not math.isfinite(parsed) or not low_ok or parsed > maximum:
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
    try:
        parsed = int(value, 10)
    except ValueError:
        parsed = None
    if parsed is None or not minimum <= parsed <= maximum:
        raise EnvError(f"{name}={value!r}: expected an integer from {minimum} to {maximum}")
    return parsed


def port(name: str, default: int, env: Mapping[str, str] = os.environ) -> int:
    return integer(name, default, minimum=1, maximum=65535, env=env)
