"""The local stack as a command-line tool: busy addresses, option help, status columns.

In process: no stack is started (a busy address stops it before anything binds)."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from local.config import Endpoint, StackConfig, parser
from local.control import render
from local.stack import Stack, StackError, busy_addresses
from tests.local.ports import free_port, random_block


@pytest.fixture
def block() -> Iterator[tuple[StackConfig, ExitStack]]:
    _, _, host = random_block()
    config = StackConfig(
        dns=Endpoint(host, free_port(str(host), udp_too=True)),
        front=Endpoint(host, free_port(str(host))),
        control=Endpoint(host, free_port(str(host))),
    )
    with ExitStack() as held:
        yield config, held


def hold(held: ExitStack, where: Endpoint, kind: socket.SocketKind) -> None:
    """Take ``where`` as another program would: a TCP listener, or a bound UDP socket."""
    sock = held.enter_context(socket.socket(socket.AF_INET, kind))
    sock.bind((str(where.host), where.port))
    if kind == socket.SOCK_STREAM:
        sock.listen()


def test_free_addresses_are_no_clash(block: tuple[StackConfig, ExitStack]) -> None:
    config, _ = block
    assert busy_addresses(config) == []


def test_every_busy_address_is_named_with_the_option_that_moves_it(
    block: tuple[StackConfig, ExitStack],
) -> None:
    config, held = block
    hold(held, config.dns, socket.SOCK_DGRAM)
    hold(held, config.front, socket.SOCK_STREAM)
    hold(held, config.control, socket.SOCK_STREAM)
    in_use = "Address already in use"
    assert busy_addresses(config) == [
        f"{config.dns}/udp (DNS stand-in, --dns): {in_use}",
        f"{config.front}/tcp (front, --front): {in_use}",
        f"{config.control}/tcp (control endpoint, --control): {in_use}",
    ]


def test_the_stack_stops_before_binding_anything_and_guesses_no_cause(
    block: tuple[StackConfig, ExitStack],
) -> None:
    config, held = block
    hold(held, config.dns, socket.SOCK_STREAM)
    hold(held, config.control, socket.SOCK_STREAM)
    with pytest.raises(StackError) as caught:
        asyncio.run(Stack(config).start())
    message = str(caught.value)
    assert message.splitlines() == [
        "cannot listen on 2 address(es):",
        f"  {config.dns}/tcp (DNS stand-in, --dns): Address already in use",
        f"  {config.control}/tcp (control endpoint, --control): Address already in use",
        "free them, or move the stack with the options named (python -m local --help)",
    ]
    assert "another stack" not in message
    # Nothing of the stack was bound: the front's address is still free.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((str(config.front.host), config.front.port))


def test_one_address_given_to_two_listeners_is_a_clash_too(
    block: tuple[StackConfig, ExitStack],
) -> None:
    config, _ = block
    shared = StackConfig(dns=config.dns, front=config.front, control=config.front)
    assert busy_addresses(shared) == [
        f"{config.front}/tcp (control endpoint, --control): also given to the front"
    ]


def test_no_replace_help_says_what_the_option_does() -> None:
    (action,) = [a for a in parser()._actions if "--no-replace" in a.option_strings]
    assert action.help is not None
    assert action.help.startswith("leave a crashed replica down")
    assert "by default it is replaced" in action.help


def replica(address: str, state: str, **extra: object) -> dict[str, object]:
    return {
        "address": address,
        "port": 3000,
        "zone": "local-1a",
        "pid": 4242,
        "state": state,
        "registered": state == "running",
        "returncode": None,
    } | extra


def test_status_keeps_its_columns_for_stopped_replicas() -> None:
    status = {
        "front": {"url": "http://127.0.0.1:8080/", "targets": []},
        "dns": {"address": "127.0.0.1:8053", "state": "serving", "records": {}},
        "services": {
            "name": {
                "desired": 2,
                "settled": True,
                "replicas": [
                    replica("127.0.1.1", "running", health="ok"),
                    replica("127.0.1.2", "running", health="ok", zone="local-1b"),
                ],
                "finished": [
                    replica("127.0.1.3", "exited", returncode=-9, pid=None),
                    replica("127.0.1.14", "exited", returncode=0, zone=None),
                ],
            }
        },
    }
    rows = [line for line in render(status).splitlines() if line.startswith("  127.")]
    assert len(rows) == 4
    columns = [[m.start() for m in re.finditer(r"(?<=\s)\S", row)] for row in rows]
    assert all(c[:7] == columns[0][:7] for c in columns), "\n".join(rows)
    assert rows[2].split()[1:] == ["local-1a", "pid", "-", "exited", "health", "-", "exit", "-9"]
    assert rows[3].split()[1] == "-"  # no zone: a dash, not a shifted column
