"""The running policy pack, and the program runs it judges (shared with tests/infra)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.infra.conftest import shared_runs
from tests.infra.support import Runs
from tests.policy.engine import Engine


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    started = Engine()
    yield started
    started.close()


@pytest.fixture(scope="session")
def runs() -> Iterator[Runs]:
    # The same runs tests/infra reads: the program is run once per session for both.
    started = shared_runs()
    yield started
    started.close()
