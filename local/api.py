"""The control endpoint: HTTP on loopback, driven by ``python -m local.control``.

    GET  /control/status                        replicas, health, DNS records, targets
    POST /control/scale/{service}   {"count": 5}
    POST /control/kill/{service}    {"address": "127.0.1.3"}   (address optional)
    POST /control/dns/stop          {"mode": "drop"|"servfail"|"closed"}   (mode optional)
    POST /control/dns/start
    POST /control/zone/{zone}/down  {"service": "name"}   (service optional: all)
    POST /control/zone/{zone}/up    {"service": "name"}
    POST /control/rebalancing/{service}  {"enabled": false}
    POST /control/deploy/{service}  {"env": {"KEY": "VALUE"}}   (env optional: same revision)
    GET  /v4/{address}/task                     a replica's ECS task metadata (v4)

Answers are JSON. It can kill processes, so besides listening on loopback only it
refuses requests whose Host is not its own address (a web page cannot reach it through
DNS rebinding) and POSTs that are not ``application/json`` (a page cannot send those
cross-origin without a CORS preflight, which this endpoint never grants).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from local.config import loopback
from local.dns import Outage

if TYPE_CHECKING:
    from local.runner import Replica
    from local.stack import Stack

log = logging.getLogger("local")
STACK: web.AppKey[Stack] = web.AppKey("stack")
# Each replica's ECS_CONTAINER_METADATA_URI_V4 is http://<control>/v4/<its address>.
METADATA_PREFIX = "/v4"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def control_app(stack: Stack) -> web.Application:
    app = web.Application(middlewares=[_guard])
    app[STACK] = stack
    app.router.add_get("/control/status", _status)
    app.router.add_post("/control/scale/{service}", _scale)
    app.router.add_post("/control/kill/{service}", _kill)
    app.router.add_post("/control/dns/{action}", _dns)
    app.router.add_post("/control/zone/{zone}/{action}", _zone)
    app.router.add_post("/control/rebalancing/{service}", _rebalancing)
    app.router.add_post("/control/deploy/{service}", _deploy)
    app.router.add_get(METADATA_PREFIX + "/{address}", _container_metadata)
    app.router.add_get(METADATA_PREFIX + "/{address}/task", _task_metadata)
    return app


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    control = request.app[STACK].config.control
    allowed = {str(control), f"localhost:{control.port}"}
    if request.host not in allowed:
        return _error(403, f"Host must be one of {sorted(allowed)}")
    if request.method == "POST" and request.content_type != "application/json":
        return _error(415, "POST bodies must be application/json")
    return await handler(request)


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.body_exists:
        return {}
    try:
        body = await request.json()
    except json.JSONDecodeError as error:
        raise web.HTTPBadRequest(text=json.dumps({"error": f"invalid JSON: {error}"})) from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text=json.dumps({"error": "the body must be a JSON object"}))
    return body


async def _status(request: web.Request) -> web.Response:
    return web.json_response(await request.app[STACK].status())


async def _scale(request: web.Request) -> web.Response:
    stack = request.app[STACK]
    service = request.match_info["service"]
    count = (await _body(request)).get("count")
    if not isinstance(count, int) or isinstance(count, bool):
        return _error(400, 'expected {"count": <integer>}')
    try:
        stack.runner.scale(service, count)
    except LookupError as error:
        return _error(404, str(error))
    except ValueError as error:
        return _error(400, str(error))
    except RuntimeError as error:
        return _error(409, str(error))
    return web.json_response({"service": service, "desired": count}, status=202)


async def _kill(request: web.Request) -> web.Response:
    stack = request.app[STACK]
    service = request.match_info["service"]
    raw = (await _body(request)).get("address")
    try:
        address = None if raw is None else loopback(str(raw))
    except ValueError as error:
        return _error(400, str(error))
    try:
        victim = stack.runner.kill(service, address)
    except LookupError as error:
        return _error(404, str(error))
    return web.json_response(
        {"killed": victim.as_dict(), "note": "still registered until the runner notices"}
    )


async def _dns(request: web.Request) -> web.Response:
    stack = request.app[STACK]
    action = request.match_info["action"]
    before = _dns_state(stack.dns.outage)
    if action == "start":
        try:
            stack.dns.start()
        except OSError as error:
            return _error(409, str(error))
    elif action == "stop":
        raw = (await _body(request)).get("mode", Outage.DROP.value)
        try:
            mode = Outage(raw)
        except ValueError:
            return _error(400, f"mode must be one of {[m.value for m in Outage]}")
        stack.dns.stop(mode)
    else:
        return _error(404, "use /control/dns/stop or /control/dns/start")
    after = _dns_state(stack.dns.outage)
    # One line in the runner's output, like every other event.
    log.info("dns %s: %s -> %s (local.control dns %s)", stack.config.dns, before, after, action)
    return web.json_response({"dns": after})


async def _zone(request: web.Request) -> web.Response:
    stack = request.app[STACK]
    zone, action = request.match_info["zone"], request.match_info["action"]
    service = (await _body(request)).get("service")
    if service is not None and not isinstance(service, str):
        return _error(400, 'expected {"service": "name"|"hello"} or nothing')
    try:
        if action == "down":
            killed = stack.runner.zone_down(zone, service)
            return web.json_response(
                {"zone": zone, "state": "down", "killed": [r.as_dict() for r in killed]}
            )
        if action == "up":
            stack.runner.zone_up(zone, service)
            return web.json_response({"zone": zone, "state": "up"})
    except LookupError as error:
        return _error(404, str(error))
    return _error(404, "use /control/zone/{zone}/down or /control/zone/{zone}/up")


async def _rebalancing(request: web.Request) -> web.Response:
    service = request.match_info["service"]
    enabled = (await _body(request)).get("enabled")
    if not isinstance(enabled, bool):
        return _error(400, 'expected {"enabled": true|false}')
    try:
        request.app[STACK].runner.set_az_rebalancing(service, enabled)
    except LookupError as error:
        return _error(404, str(error))
    return web.json_response({"service": service, "az_rebalancing": enabled})


async def _deploy(request: web.Request) -> web.Response:
    service = request.match_info["service"]
    env = (await _body(request)).get("env", {})
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and k and isinstance(v, str) for k, v in env.items()
    ):
        return _error(400, 'expected {"env": {"KEY": "VALUE", ...}} (strings) or nothing')
    try:
        deployment = request.app[STACK].runner.deploy(service, env)
    except LookupError as error:
        return _error(404, str(error))
    except RuntimeError as error:
        return _error(409, str(error))
    return web.json_response({"service": service, "deployment": deployment.as_dict()}, status=202)


def _replica(request: web.Request) -> Replica | None:
    address = request.match_info["address"]
    return next(
        (r for r in request.app[STACK].runner.replicas() if str(r.address) == address), None
    )


async def _task_metadata(request: web.Request) -> web.Response:
    """What ECS's task metadata endpoint v4 answers at ``/task``, the fields that matter
    here (AWS: "Task metadata v4 JSON response"); ``AvailabilityZone`` is the replica's."""
    replica = _replica(request)
    if replica is None:
        return _error(404, "no such task")
    stack = request.app[STACK]
    task_arn = f"arn:aws:ecs:local:000000000000:task/local-{stack.stack_id[:8]}/{replica.address}"
    return web.json_response(
        {
            "Cluster": f"local-{stack.stack_id[:8]}",
            "TaskARN": task_arn,
            "Family": replica.spec.name,
            "DesiredStatus": "RUNNING",
            "KnownStatus": "RUNNING",
            "LaunchType": "FARGATE",
            "AvailabilityZone": replica.zone,
            "Containers": [_container(replica)],
        }
    )


async def _container_metadata(request: web.Request) -> web.Response:
    replica = _replica(request)
    if replica is None:
        return _error(404, "no such container")
    return web.json_response(_container(replica))


def _container(replica: Replica) -> dict[str, object]:
    return {
        "Name": replica.spec.name,
        "DesiredStatus": "RUNNING",
        "KnownStatus": "RUNNING",
        "Networks": [{"NetworkMode": "awsvpc", "IPv4Addresses": [str(replica.address)]}],
    }


def _dns_state(outage: Outage | None) -> str:
    return "serving" if outage is None else f"stopped ({outage})"
