"""Shared by the local stack's tests: ``async def`` tests run on a fresh event loop each, and
one running stack serves test_stack.py's and test_zones.py's scenarios (each scenario sets the
counts it starts from), so the suite pays for one bring-up and one stop."""

from __future__ import annotations

import asyncio
import inspect
import signal
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.local.harness import StackProcess, running, wait_gone


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
        if sys.platform.startswith("linux"):
            # Nothing is checked at this stop (the stop tests start stacks of their own), so
            # no replica needs its drain: killed, the runner takes its replicas with it
            # (PR_SET_PDEATHSIG, test_even_a_killed_runner_leaves_no_process_behind).
            up.stop(signal.SIGKILL)
            wait_gone(up.stack_id)
