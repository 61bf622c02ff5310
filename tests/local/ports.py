"""Loopback addresses and ports for tests that must not collide with anything else.

Tests of the local stack run beside a developer's stack (127.0.0.1, 127.0.1.x,
127.0.2.x) and beside other test runs on the same machine, so each test takes a random
block of loopback networks and checks that the ports it needs there are free."""

from __future__ import annotations

import random
import socket
from ipaddress import IPv4Address, IPv4Network

# 127.0.x.x is left to the developer's stack and to the apps' tests.
_FIRST, _LAST = 100, 250


def free_port(host: str, *, udp_too: bool = False) -> int:
    """A port free on ``host`` now (for TCP, and for UDP too if asked)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((host, 0))
            port = int(tcp.getsockname()[1])
            if not udp_too:
                return port
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((host, port))
                except OSError:
                    continue
                return port
    raise RuntimeError(f"no free port on {host}")


def is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        try:
            tcp.bind((host, port))
        except OSError:
            return False
    return True


def random_block() -> tuple[IPv4Network, IPv4Network, IPv4Address]:
    """Two /24 networks (name, hello) and one address for the front, control and DNS."""
    second = random.randint(_FIRST, _LAST)
    third = random.randrange(0, 252, 4)
    name = IPv4Network(f"127.{second}.{third}.0/24")
    hello = IPv4Network(f"127.{second}.{third + 1}.0/24")
    endpoints = IPv4Address(f"127.{second}.{third + 2}.1")
    return name, hello, endpoints
