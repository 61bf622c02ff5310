"""The local stack assembled: Cloud Map stand-in, front, runner and control endpoint."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from ipaddress import IPv4Network

import aiohttp
from aiohttp import web
from aiohttp_discovery.zones import ZoneMap

from local.api import METADATA_PREFIX, control_app
from local.config import Endpoint, StackConfig
from local.dns import CloudMapStandIn, Registry
from local.front import Front, HealthCheck
from local.runner import Runner, ServiceSpec

log = logging.getLogger("local")
READY_POLL_SECONDS = 0.1
# The EMF metric lines the tasks write on AWS (apps/common/emf.py), in each replica's log, every
# 10 s rather than every 60 so that a user sees them soon: what CloudWatch would receive.
METRICS_ENV = {
    "METRICS_NAMESPACE": "fargate-service-discovery-local",
    "METRICS_INTERVAL_SECONDS": "10",
}


def zone_map(config: StackConfig) -> ZoneMap:
    """Each emulated zone's subnets (name's and hello's quarter): the private subnets per
    zone that the Pulumi program hands hello as ZONE_SUBNETS."""
    blocks: dict[str, list[IPv4Network]] = {}
    for network in (config.name_network, config.hello_network):
        for zone, subnet in config.subnets(network):
            blocks.setdefault(zone, []).append(subnet)
    return ZoneMap({zone: tuple(subnets) for zone, subnets in blocks.items()})


def service_specs(config: StackConfig) -> list[ServiceSpec]:
    """The two services as the Pulumi program deploys them, addresses aside."""
    name = ServiceSpec(
        name="name",
        module="apps.name",
        network=config.name_network,
        port=config.service_port,
        env={"DRAIN_SECONDS": str(config.drain_seconds), **METRICS_ENV, **config.name_env},
        discoverable=True,
        load_balanced=False,
        subnets=config.subnets(config.name_network),
    )
    hello = ServiceSpec(
        name="hello",
        module="apps.hello",
        network=config.hello_network,
        port=config.service_port,
        env={
            # Derived from the name service's registration, as __main__.py derives it
            # in AWS: http://<service>.<namespace>:<port>/.
            "NAME_SERVER": f"http://{name.name}.{config.namespace}:{config.service_port}/",
            # In a VPC the system resolver already asks Route 53; here hello must be
            # pointed at the stand-in.
            "DNS_SERVERS": str(config.dns),
            "DNS_REFRESH_SECONDS": str(config.dns_refresh_seconds),
            # As the program hands it the private subnets' CIDR blocks per zone, and its
            # own Cloud Map name: its tasks are the callers whose zones the rule weighs.
            "ZONE_SUBNETS": zone_map(config).to_json(),
            "ZONE_CALLERS": f"hello.{config.namespace}",
            **METRICS_ENV,
            **config.hello_env,
        },
        # Registered in the Cloud Map stand-in as hello.<namespace>, as the program
        # registers it, and a target of the front.
        discoverable=True,
        load_balanced=True,
        subnets=config.subnets(config.hello_network),
    )
    return [name, hello]


@dataclass
class Stack:
    config: StackConfig

    def __post_init__(self) -> None:
        config = self.config
        self.stack_id = uuid.uuid4().hex
        self.registry = Registry()
        self.dns = CloudMapStandIn(
            self.registry,
            namespace=config.namespace,
            host=str(config.dns.host),
            port=config.dns.port,
            answers=config.dns_answers,
        )
        self.front = Front(
            str(config.front.host),
            config.front.port,
            health=HealthCheck(
                interval=config.health_interval,
                timeout=config.health_interval,
                healthy_threshold=config.healthy_threshold,
                unhealthy_threshold=config.unhealthy_threshold,
            ),
            deregistration_delay=config.deregistration_delay,
        )
        self.runner = Runner(
            service_specs(config),
            registry=self.registry,
            front=self.front,
            logs=config.logs,
            stack_id=self.stack_id,
            start_timeout=config.start_timeout,
            stop_timeout=config.stop_timeout,
            crash_deregister_seconds=config.crash_deregister_seconds,
            replace_crashed=config.replace_crashed,
            # Served by the control endpoint (local/api.py), as ECS serves one per task.
            metadata_url=f"http://{config.control}{METADATA_PREFIX}",
        )
        self._control: web.AppRunner | None = None
        self._started: list[str] = []

    async def start(self) -> None:
        """Bind everything, start the replicas, and return once they all serve."""
        config = self.config
        clashes = busy_addresses(config)
        if clashes:
            # Every clash at once, so one run names every option to change; no guess at
            # what holds an address: `ss -ltnup` names it.
            raise StackError(
                f"cannot listen on {len(clashes)} address(es):\n"
                + "\n".join(f"  {clash}" for clash in clashes)
                + "\nfree them, or move the stack with the options named (python -m local --help)"
            )
        _bind("DNS stand-in", config.dns, "--dns", self.dns.start)
        self._started.append("dns")
        await _abind("front", config.front, "--front", self.front.start())
        self._started.append("front")
        self._control = web.AppRunner(control_app(self), access_log=None, handle_signals=False)
        await self._control.setup()
        site = web.TCPSite(self._control, str(config.control.host), config.control.port)
        await _abind("control endpoint", config.control, "--control", site.start())
        await self.runner.start()
        self._started.append("runner")
        deadline = config.start_timeout * 3
        try:
            await asyncio.wait_for(self._bring_up(), deadline)
        except TimeoutError:
            raise StackError(f"not serving after {deadline:.0f}s; logs: {config.logs}") from None

    async def _bring_up(self) -> None:
        config = self.config
        # name first, as the seed's parent stack deploys it: a hello that looked up
        # name.internal before any name task was registered would get NXDOMAIN and
        # answer 503 until its next lookup.
        self.runner.scale("name", config.name_count)
        await self.runner.wait_settled()
        self.runner.scale("hello", config.hello_count)
        await self.runner.wait_settled()
        if not config.hello_count:
            return
        # The URL is worth printing only once the front routes to every hello and a
        # request through it is answered.
        await self.front.wait_for(
            lambda: sum(t["state"] == "healthy" for t in self.front.targets()) >= config.hello_count
        )
        await _answered(config.front.url)

    async def close(self) -> None:
        if "runner" in self._started:
            await self.runner.close()
        if self._control is not None:
            await self._control.cleanup()
        if "front" in self._started:
            await self.front.close()
        if "dns" in self._started:
            self.dns.stop()
        self._started.clear()

    async def status(self) -> dict[str, object]:
        alive = [r for r in self.runner.replicas() if r.alive]
        healths = await asyncio.gather(*(self.runner.health(r) for r in alive))
        health = dict(zip(alive, healths, strict=True))
        services = self.runner.status()
        for name, svc in self.runner.services.items():
            rows = services[name]["replicas"]
            assert isinstance(rows, list)
            for row, replica in zip(rows, svc.replicas, strict=True):
                row["health"] = health.get(replica, "down")
        namespace = self.config.namespace
        records = {
            f"{service}.{namespace}": [
                {"address": str(address), "registered_at": when}
                for address, when in sorted(instances.items())
            ]
            for service, instances in self.registry.snapshot().items()
        }
        outage = self.dns.outage
        zones = {
            zone: {
                "subnets": [str(n) for n in subnets],
                "down": sorted(n for n, svc in self.runner.services.items() if zone in svc.down),
            }
            for zone, subnets in zone_map(self.config).blocks.items()
        }
        return {
            "stack_id": self.stack_id,
            "zones": zones,
            "pid": os.getpid(),
            "front": {"url": self.config.front.url, "targets": self.front.targets()},
            "dns": {
                "address": str(self.config.dns),
                "namespace": namespace,
                "state": "serving" if outage is None else f"stopped ({outage})",
                "answers": str(self.config.dns_answers),
                "records": records,
                "queries": self.dns.queries(),
            },
            "services": services,
        }


async def _answered(url: str) -> None:
    """Wait (unbounded: the caller sets the deadline) until ``url`` answers 200."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        while True:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(READY_POLL_SECONDS)


def _bind(what: str, where: Endpoint, option: str, start: Callable[[], None]) -> None:
    try:
        start()
    except OSError as error:
        raise StackError(_bind_message(what, where, option, error)) from None


async def _abind(what: str, where: Endpoint, option: str, start: Awaitable[None]) -> None:
    try:
        await start
    except OSError as error:
        raise StackError(_bind_message(what, where, option, error)) from None


def _bind_message(what: str, where: Endpoint, option: str, error: OSError) -> str:
    reason = error.strerror or str(error)
    return f"{what}: cannot listen on {where}: {reason} (to move it: {option})"


def busy_addresses(config: StackConfig) -> list[str]:
    """The stack's own listeners (DNS stand-in on UDP and TCP, front, control endpoint) whose
    address cannot be bound now, each with the option that moves it: every clash, not the
    first, and not why (what holds a port is not this program's to guess)."""
    listeners = [
        ("DNS stand-in", config.dns, "--dns", (socket.SOCK_DGRAM, socket.SOCK_STREAM)),
        ("front", config.front, "--front", (socket.SOCK_STREAM,)),
        ("control endpoint", config.control, "--control", (socket.SOCK_STREAM,)),
    ]
    clashes: list[str] = []
    owners: dict[tuple[Endpoint, int], str] = {}
    for what, where, option, kinds in listeners:
        for kind in kinds:
            protocol = "udp" if kind == socket.SOCK_DGRAM else "tcp"
            label = f"{where}/{protocol} ({what}, {option})"
            if (where, kind) in owners:
                clashes.append(f"{label}: also given to the {owners[where, kind]}")
                continue
            owners[where, kind] = what
            with socket.socket(socket.AF_INET, kind) as probe:
                if kind == socket.SOCK_STREAM:
                    # As the listeners themselves bind: a connection in TIME_WAIT is no clash.
                    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind((str(where.host), where.port))
                except OSError as error:
                    clashes.append(f"{label}: {error.strerror or error}")
    return clashes


class StackError(RuntimeError):
    """The stack cannot start; the message says why and what to change."""
