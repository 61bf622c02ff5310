"""shop: a small aiohttp service that calls an ``orders`` service through aiohttp-discovery.

A second user of the library, next to hello: it needs only the installed distributions
(``pip install aiohttp-discovery``, which brings aiohttp), nothing from this repository.
Three kinds of call, each the way the library means it:

- ``POST /checkout`` (a JSON cart): ``POST /orders`` upstream, not idempotent, so it is
  retried only when the request provably never reached a task; then ``GET /prices``
  with a query, idempotent, so it is retried on another task and hedged when slow.
  The upstream's 4xx is an answer and is passed on; no usable answer is the
  ``UpstreamError``'s status (502 or 503).
- ``GET /prices?sku=...``: one idempotent call, its answer passed on.
- ``GET /export``: the upstream's export, of any size, streamed to the caller chunk
  by chunk (``client.stream``), so the shop's memory stays bounded.

Plus ``GET /metrics`` (the client's Prometheus metrics) and ``GET /health``.

Configured by the environment:

- ``ORDERS_URL`` (required): the orders service, ``http://orders.internal:8080/`` (a DNS
  name: its A records are the tasks, as AWS Cloud Map serves them) or an IP literal;
- ``ORDERS_NAMESERVERS``: ``ip[:port]`` list, comma-separated (default: the system's
  resolver, which in a VPC answers for Cloud Map's private namespaces);
- ``HOST`` (default ``127.0.0.1``), ``PORT`` (default ``8080``): where the shop listens.

Run it with ``python shop.py`` (or ``python -m shop`` from this folder).
"""

from __future__ import annotations

import logging
import os
import sys
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp_discovery import Registry, UpstreamClient, UpstreamError, UpstreamSettings
from aiohttp_discovery.metrics import CONTENT_TYPE

log = logging.getLogger("shop")

ORDERS = web.AppKey("orders", UpstreamClient)
REGISTRY = web.AppKey("registry", Registry)
#: The chunk size the export is relayed in: the shop holds about this much of it at once.
EXPORT_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Config:
    orders_url: str
    nameservers: tuple[str, ...] = ()
    host: str = "127.0.0.1"
    port: int = 8080

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> Config:
        """The shop's settings from ``environ``; ``ValueError`` naming the variable."""
        url = environ.get("ORDERS_URL", "").strip()
        if not url:
            raise ValueError("ORDERS_URL is required, like http://orders.internal:8080/")
        servers = environ.get("ORDERS_NAMESERVERS", "")
        port_text = environ.get("PORT", "8080")
        try:
            port = int(port_text)
        except ValueError:
            raise ValueError(f"PORT must be a number, not {port_text!r}") from None
        if not 0 < port < 65536:
            raise ValueError(f"PORT must be from 1 to 65535, not {port}")
        return cls(
            orders_url=url,
            nameservers=tuple(s.strip() for s in servers.split(",") if s.strip()),
            host=environ.get("HOST", "127.0.0.1"),
            port=port,
        )


def upstream_headers(answer_address: str, attempts: int) -> dict[str, str]:
    """Who answered, for the shop's caller (and the tests): handy when reading logs."""
    return {"X-Upstream-Address": answer_address, "X-Upstream-Attempts": str(attempts)}


def unavailable(exc: UpstreamError) -> web.Response:
    # exc.status: 503 when no orders task could be reached, 502 when one answered badly;
    # exc.message says which task and why (it is also in the client's log lines).
    log.warning("orders unavailable: %s", exc.message)
    return web.json_response({"error": "orders unavailable"}, status=exc.status)


async def cart_of(request: web.Request) -> dict[str, Any] | None:
    """The JSON cart in the request's body, or None if it is not one."""
    try:
        cart = await request.json()
    except ValueError:
        return None
    return cart if isinstance(cart, dict) and isinstance(cart.get("sku"), str) else None


async def checkout(request: web.Request) -> web.Response:
    cart = await cart_of(request)
    if cart is None:
        return web.json_response({"error": "expected a JSON cart like {'sku': 'b-42'}"}, status=400)
    orders = request.app[ORDERS]
    request_id = request.headers.get("X-Request-Id") or uuid.uuid4().hex
    try:
        # Not idempotent: retried only if the request never reached a task.
        created = await orders.request(
            "POST", "/orders", json=cart, headers={"X-Request-Id": request_id}
        )
        if 400 <= created.status < 500:  # the upstream's 4xx is an answer: pass it on
            return web.json_response(created.json(), status=created.status)
        if not created.ok:
            return web.json_response({"error": f"orders answered {created.status}"}, status=502)
        # Idempotent: retried on another task after a failure, and hedged when slow.
        price = await orders.request("GET", "/prices", query={"sku": cart["sku"]})
    except UpstreamError as exc:
        return unavailable(exc)
    if not price.ok:
        return web.json_response({"error": f"prices answered {price.status}"}, status=502)
    return web.json_response(
        {"order": created.json(), "price": price.json()},
        status=201,
        headers={"X-Request-Id": request_id},
    )


async def prices(request: web.Request) -> web.Response:
    sku = request.query.get("sku")
    if not sku:
        return web.json_response({"error": "sku is required"}, status=400)
    try:
        answer = await request.app[ORDERS].request("GET", "/prices", query={"sku": sku})
    except UpstreamError as exc:
        return unavailable(exc)
    return web.Response(
        status=answer.status,
        body=answer.body,
        content_type=answer.content_type,
        headers=upstream_headers(answer.address, answer.attempts),
    )


class ExportCut(Exception):
    """The export broke off after its headers were sent: the handler raises this, and
    aiohttp closes the connection without the final chunk, so the caller sees the body
    cut short instead of a complete-looking one."""


async def export(request: web.Request) -> web.StreamResponse:
    try:
        async with request.app[ORDERS].stream("GET", "/export") as answer:
            if not answer.ok:
                return web.json_response({"error": f"export answered {answer.status}"}, status=502)
            response = web.StreamResponse(
                headers={
                    "Content-Type": answer.content_type,
                    **upstream_headers(answer.address, answer.attempts),
                }
            )
            await response.prepare(request)
            try:
                async for chunk in answer.iter_chunks(EXPORT_CHUNK):
                    await response.write(chunk)
            except UpstreamError as exc:  # the status is sent: all that is left is to cut
                log.warning("export cut short: %s", exc.message)
                raise ExportCut(exc.message) from exc
            await response.write_eof()
            return response
    except UpstreamError as exc:  # before the headers: retried and hedged already
        return unavailable(exc)


async def metrics(request: web.Request) -> web.Response:
    return web.Response(text=request.app[REGISTRY].render(), headers={"Content-Type": CONTENT_TYPE})


async def health(_request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


def make_app(config: Config) -> web.Application:
    """The shop: its routes, and one ``UpstreamClient`` for orders for the app's lifetime."""
    registry = Registry()
    # Only the URL (and where DNS is) given: the library's defaults suit an ordinary
    # upstream (a 15 s call, no body cap, retries and hedges within a budget).
    settings = UpstreamSettings(url=config.orders_url, nameservers=config.nameservers)

    async def orders_client(app: web.Application) -> AsyncIterator[None]:
        async with UpstreamClient(settings, registry=registry, metrics_prefix="shop_orders") as c:
            app[ORDERS] = c
            yield

    app = web.Application()
    app[REGISTRY] = registry
    app.cleanup_ctx.append(orders_client)
    app.router.add_post("/checkout", checkout)
    app.router.add_get("/prices", prices)
    app.router.add_get("/export", export)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/health", health)
    return app


def main(environ: Mapping[str, str] = os.environ) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        config = Config.from_environment(environ)
        app = make_app(config)
    except (ValueError, TypeError) as exc:  # UpstreamSettings names the field it rejects
        print(f"shop: {exc}", file=sys.stderr)
        return 2
    web.run_app(app, host=config.host, port=config.port, access_log=None, print=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
