from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.apps.support import FakeDns, free_port_on

# Name replicas live on these loopback addresses, like tasks with their own ENIs.
REPLICA_IPS = [f"127.0.0.{n}" for n in range(2, 7)]


@pytest.fixture(scope="session")
def name_port() -> int:
    """One port for every name replica (DNS A records carry no port), free on 127.0.0.2-6.

    Picked per session, never 3000: other suites run servers on 127.0.0.x:3000.
    """
    return free_port_on(REPLICA_IPS)


@pytest.fixture
def dns() -> Iterator[FakeDns]:
    server = FakeDns()
    try:
        yield server
    finally:
        server.stop()
