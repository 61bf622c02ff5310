"""Shared by the local stack's tests: ``async def`` tests run on a fresh event loop each, and
one running stack serves test_stack.py's and test_zones.py's scenarios (each scenario sets the
counts it starts from), so the suite pays for one bring-up and one stop."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterator
from typing import Any

import pytest

from tests.local.harness import StackProcess, running


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    kwargs: dict[str, Any] = {name: pyfuncitem.funcargs[name] for name in names}
    asyncio.run(pyfuncitem.obj(**kwargs))
    return True


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProcess]:
    """3 name, 2 hello (one per zone) in the default 2 emulated zones."""
    with running(tmp_path_factory.mktemp("stack"), name=3, hello=2, extra=["--zones=2"]) as up:
        yield up
