"""AAAA records end to end: the local Cloud Map stand-in serves a dual-stack name, and the
client, asked for A, AAAA or both, calls the tasks those records name (IPv6 on ::1)."""

from __future__ import annotations

import socket
from ipaddress import IPv4Address, IPv6Address

import pytest
from aiohttp import web
from aiohttp_discovery import UpstreamClient, UpstreamSettings

from local.dns import CloudMapStandIn, Registry
from tests.apps.support import run
from tests.local.ports import free_port


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not ipv6_loopback(), reason="this machine has no IPv6 loopback (::1)")
def test_aaaa_records_from_the_stand_in_are_called_and_both_families_merge() -> None:
    registry = Registry()
    dns = CloudMapStandIn(registry, host="127.0.0.1", port=free_port("127.0.0.1", udp_too=True))
    with socket.socket(socket.AF_INET6) as probe:
        probe.bind(("::1", 0))
        port = probe.getsockname()[1]
    registry.register("orders", IPv6Address("::1"))
    registry.register("orders", IPv4Address("127.0.0.2"))

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text=f"from {request.transport.get_extra_info('sockname')[0]}")  # type: ignore[union-attr]

    async def scenario() -> dict[str, tuple[str, ...]]:
        app = web.Application()
        app.router.add_get("/", hello)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "::1", port).start()
        await web.TCPSite(runner, "127.0.0.2", port).start()
        found = {}
        try:
            for types in (("AAAA",), ("A",), ("A", "AAAA")):
                settings = UpstreamSettings(
                    url=f"http://orders.internal:{port}/",
                    nameservers=(f"{dns.host}:{dns.port}",),
                    record_types=types,
                )
                async with UpstreamClient(settings) as client:
                    answer = await client.request()
                    assert answer.text() == f"from {answer.address}"
                    found["+".join(types)] = await client.source.addresses()
        finally:
            await runner.cleanup()
        return found

    dns.start()
    try:
        found = run(scenario())
    finally:
        dns.stop()
    assert found == {
        "AAAA": ("::1",),
        "A": ("127.0.0.2",),
        "A+AAAA": ("127.0.0.2", "::1"),
    }
