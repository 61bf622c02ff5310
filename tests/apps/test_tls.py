"""An https:// upstream: the certificate is checked against the URL's host name (the
service's), although every attempt connects to a task's address."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp_discovery import StaticAddresses, UpstreamClient, UpstreamError, UpstreamSettings

from tests.apps.support import run
from tests.local.ports import free_port

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")


def certificate(tmp: Path, name: str) -> tuple[Path, Path]:
    cert, key = tmp / f"{name}.pem", tmp / f"{name}.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def test_an_https_upstream_is_verified_against_its_name_not_the_tasks_address(
    tmp_path: Path,
) -> None:
    right_cert, right_key = certificate(tmp_path, "orders.internal")
    wrong_cert, wrong_key = certificate(tmp_path, "other.internal")
    port = free_port("127.0.0.2")

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="secure")

    async def call(cert: Path, key: Path) -> str:
        server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server.load_cert_chain(cert, key)
        client = ssl.create_default_context(cafile=str(cert))
        app = web.Application()
        app.router.add_get("/", hello)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.2", port, ssl_context=server).start()
        try:
            settings = UpstreamSettings(url=f"https://orders.internal:{port}/")
            async with UpstreamClient(
                settings, source=StaticAddresses(["127.0.0.2"]), ssl=client
            ) as orders:
                try:
                    return (await orders.request()).text()
                except UpstreamError as exc:
                    return f"{exc.status}: {exc.message}"
        finally:
            await runner.cleanup()

    assert run(call(right_cert, right_key)) == "secure"
    refused = run(call(wrong_cert, wrong_key))
    assert refused.startswith("503: ")
    assert "certificate" in refused.lower()
