"""The runner: the local ECS. Keeps each service at its desired count of replicas.

What it mirrors from an ECS service:

- each replica is a real process (``python -m apps.<service>``) on its own loopback
  address and the service's port, as each Fargate task gets its own ENI address;
- a replica is registered (in the Cloud Map stand-in, or as a target of the front) only
  once its ``/health`` answers 200, as ECS registers a task once it is running and healthy;
- scale-in deregisters first, then sends SIGTERM and waits for the replica to drain and
  exit, up to the stop timeout (ECS's ``stopTimeout``), then SIGKILL;
- a replica that dies on its own (or is killed with ``kill``) is a crash: it stays
  registered for ``crash_deregister_seconds``, as a dead task stays in DNS until ECS
  notices and Cloud Map catches up, then it is deregistered; it is replaced at once
  (ECS starts a task whenever fewer than the desired count run) unless
  ``replace_crashed`` is off, in which case the desired count drops by one instead;
- a replica that fails to become healthy is stopped and retried with a backoff that
  doubles up to 30 s, as ECS throttles a service whose tasks keep failing to start;
- ``deploy`` starts a new revision (the service's environment, changed) and retires the
  old replicas as an ECS rolling deployment with 200/75 does, under the deployment circuit
  breaker with rollback (the arithmetic and its sources: :mod:`local.rolling`).

Every replica runs in its own session and process group (so a Ctrl-C in the terminal
reaches only the runner, and signals reach anything a replica spawns), and is started
through :mod:`local.launch`, which makes Linux kill it if the runner itself dies and
gives it its own hostname.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import aiohttp

from local.config import ROOT
from local.dns import Registry
from local.front import Front, TargetState
from local.rolling import Deployment, Revision, Rolling, Rollout

log = logging.getLogger("local")

HEALTH_PATH = "/health"
PROBE_INTERVAL = 0.1  # how often a starting replica's /health is polled
MAX_BACKOFF = 30.0
HISTORY = 50  # finished replicas kept per service for status
DEPLOYMENTS = 10  # deployments kept per service for status
# components/service.py deploys both services with maximumPercent 200, minimumHealthyPercent 75.
ROLLING = Rolling()


class State(enum.StrEnum):
    STARTING = "starting"  # process started, /health not yet 200
    RUNNING = "running"  # healthy and registered
    DRAINING = "draining"  # deregistered, SIGTERM sent, waiting for it to exit
    STOPPED = "stopped"  # exited after a stop we asked for
    CRASHED = "crashed"  # exited on its own (or was killed hard) while running
    FAILED = "failed"  # never became healthy


LIVE = frozenset({State.STARTING, State.RUNNING})


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    module: str  # run as ``python -m <module>``
    network: IPv4Network  # one address per replica
    port: int
    env: Mapping[str, str]
    discoverable: bool  # registered in the Cloud Map stand-in as <name>.<namespace>
    load_balanced: bool  # registered as a target of the front
    # (zone, subnet) per emulated availability zone; replicas are spread across them.
    subnets: tuple[tuple[str, IPv4Network], ...] = ()

    def zone_subnets(self) -> tuple[tuple[str, IPv4Network], ...]:
        return self.subnets or (("", self.network),)


@dataclass(eq=False)
class Replica:
    spec: ServiceSpec
    address: IPv4Address
    log_path: Path
    zone: str = ""
    state: State = State.STARTING
    process: asyncio.subprocess.Process | None = None
    started_at: float = field(default_factory=time.time)
    ready_at: float | None = None
    exited_at: float | None = None
    returncode: int | None = None
    registered: bool = False
    deregistered_at: float | None = None
    spawned: asyncio.Event = field(default_factory=asyncio.Event)
    revision: int = 1  # the service revision (environment) it was started with

    @property
    def name(self) -> str:
        return f"{self.spec.name} {self.address}"

    @property
    def hostname(self) -> str:
        """Named like a Fargate task's (ip-10-0-138-3...); see local.launch."""
        return "ip-" + str(self.address).replace(".", "-")

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def as_dict(self) -> dict[str, object]:
        return {
            "service": self.spec.name,
            "address": str(self.address),
            "port": self.spec.port,
            "hostname": self.hostname,
            "zone": self.zone,
            "revision": self.revision,
            "pid": self.pid,
            "state": str(self.state),
            "registered": self.registered,
            "started_at": self.started_at,
            "ready_at": self.ready_at,
            "deregistered_at": self.deregistered_at,
            "exited_at": self.exited_at,
            "returncode": self.returncode,
            "log": str(self.log_path),
        }


@dataclass(eq=False)
class Service:
    spec: ServiceSpec
    desired: int
    # Replicas that are live or still hold their address (draining, or crashed and
    # not yet deregistered); finished ones move to ``history``.
    replicas: list[Replica] = field(default_factory=list)
    history: deque[Replica] = field(default_factory=lambda: deque(maxlen=HISTORY))
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    failures: int = 0  # consecutive failed starts
    retry_at: float = 0.0  # loop time before which no start is attempted
    down: set[str] = field(default_factory=set)  # zones where no replica may run
    rebalancing: bool = False  # an extra replica is starting in a short zone
    # ECS's per-service availabilityZoneRebalancing (ENABLED by default for new services).
    az_rebalancing: bool = True
    # The revision new replicas start with (a deployment's target), the last one a deployment
    # completed (what a failed deployment rolls back to), the deployments so far, and whether
    # a failed deployment had nothing to roll back to (then no replica is started).
    revision: Revision = field(init=False)
    completed: Revision | None = field(init=False)
    deployments: deque[Deployment] = field(default_factory=lambda: deque(maxlen=DEPLOYMENTS))
    deployed: int = 0  # deployments started so far: the next one's id is this + 1
    revisions: int = 1  # revisions created so far
    stalled: bool = False

    def __post_init__(self) -> None:
        self.revision = self.completed = Revision(1, self.spec.env)

    def deployment(self) -> Deployment | None:
        """The deployment in progress, if any."""
        if self.deployments and self.deployments[-1].state is Rollout.IN_PROGRESS:
            return self.deployments[-1]
        return None

    def zones_up(self) -> list[str]:
        return [zone for zone, _ in self.spec.zone_subnets() if zone not in self.down]

    def per_zone(self, replicas: list[Replica]) -> dict[str, int]:
        counts = dict.fromkeys(self.zones_up(), 0)
        for replica in replicas:
            if replica.zone in counts:
                counts[replica.zone] += 1
        return counts

    def live(self) -> list[Replica]:
        return [r for r in self.replicas if r.state in LIVE]

    def settled(self) -> bool:
        return self.deployment() is None and (
            self.desired
            == len(self.replicas)
            == sum(r.state is State.RUNNING for r in self.replicas)
        )


class StartFailed(RuntimeError):
    """A replica did not become healthy (raised by :meth:`Runner.wait_settled`)."""


class Runner:
    def __init__(
        self,
        specs: Sequence[ServiceSpec],
        *,
        registry: Registry,
        front: Front,
        logs: Path,
        stack_id: str,
        start_timeout: float = 30.0,
        stop_timeout: float = 30.0,
        crash_deregister_seconds: float = 5.0,
        replace_crashed: bool = True,
        metadata_url: str | None = None,
    ) -> None:
        self.metadata_url = metadata_url
        self.services = {spec.name: Service(spec, desired=0) for spec in specs}
        self.registry = registry
        self.front = front
        self.logs = logs
        self.stack_id = stack_id
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.crash_deregister_seconds = crash_deregister_seconds
        self.replace_crashed = replace_crashed
        self._tasks: set[asyncio.Task[None]] = set()
        self._reconcilers: list[asyncio.Task[None]] = []
        self._tick = asyncio.Event()
        self._closing = False
        self._probe: aiohttp.ClientSession | None = None

    # -- public API ------------------------------------------------------------------

    async def start(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        self._probe = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True),
            timeout=aiohttp.ClientTimeout(total=1.0),
        )
        self._reconcilers = [
            asyncio.create_task(self._reconcile(svc), name=f"reconcile {name}")
            for name, svc in self.services.items()
        ]

    def scale(self, service: str, count: int) -> None:
        svc = self._service(service)
        room = sum(n.num_addresses - 2 for _, n in svc.spec.zone_subnets())
        if count < 0 or count > room:
            raise ValueError(f"{service}: count must be 0-{room}")
        if self._closing:
            raise RuntimeError("the stack is stopping")
        if count != svc.desired:
            log.info("%s: desired count %d -> %d", service, svc.desired, count)
        svc.desired = count
        svc.failures, svc.retry_at = 0, 0.0  # an explicit request retries at once
        self._changed(svc)

    def kill(self, service: str, address: IPv4Address | None = None) -> Replica:
        """SIGKILL a running replica, without deregistering it: the crash case."""
        svc = self._service(service)
        running = [r for r in svc.replicas if r.state is State.RUNNING]
        if address is not None:
            running = [r for r in running if r.address == address]
        if not running:
            where = f" at {address}" if address else ""
            raise LookupError(f"no running {service} replica{where}")
        victim = running[0]
        log.info("%s: kill -9 (pid %s), still registered", victim.name, victim.pid)
        self._signal(victim, signal.SIGKILL)
        return victim

    def zone_down(self, zone: str, service: str | None = None) -> list[Replica]:
        """An availability zone fails: every running replica there (of ``service``, or of
        all) is SIGKILLed, a crash as far as DNS goes, and nothing is placed there until
        ``zone_up``; replacements go to the other zones, as ECS places them."""
        services = self._zone_services(zone, service)
        killed = []
        for svc in services:
            svc.down.add(zone)
            for replica in [r for r in svc.replicas if r.zone == zone and r.state in LIVE]:
                if replica.state is State.RUNNING:
                    self._signal(replica, signal.SIGKILL)
                    killed.append(replica)
                else:
                    self._stop(replica)
            self._changed(svc)
        log.warning(
            "zone %s down for %s: %d replica(s) killed, none placed there until it is back",
            zone,
            ", ".join(svc.spec.name for svc in services),
            len(killed),
        )
        return killed

    def zone_up(self, zone: str, service: str | None = None) -> None:
        """The zone is back: replicas are placed there again, and the services rebalance
        (start one in the short zone, then stop one in the fullest), as ECS's
        availability zone rebalancing does."""
        services = self._zone_services(zone, service)
        for svc in services:
            svc.down.discard(zone)
            self._changed(svc)
        log.info("zone %s up for %s", zone, ", ".join(svc.spec.name for svc in services))

    def set_az_rebalancing(self, service: str, enabled: bool) -> None:
        """``aws ecs update-service --availability-zone-rebalancing ENABLED|DISABLED``."""
        svc = self._service(service)
        svc.az_rebalancing = enabled
        log.info("%s: availability zone rebalancing %s", service, "on" if enabled else "off")
        self._changed(svc)

    def deploy(self, service: str, env: Mapping[str, str]) -> Deployment:
        """``aws ecs update-service`` with a new task definition revision (``env`` changed;
        none: ``--force-new-deployment``): a rolling deployment, see :mod:`local.rolling`."""
        svc = self._service(service)
        if self._closing:
            raise RuntimeError("the stack is stopping")
        current = svc.deployment()
        if current is not None:
            raise RuntimeError(
                f"{service}: deployment {current.id} is in progress; wait until it completes"
                " or rolls back"
            )
        svc.revisions += 1
        revision = Revision(svc.revisions, {**svc.revision.env, **env})
        deployment = Deployment(
            id=svc.deployed + 1,
            revision=revision,
            changes=dict(env),
            rollback_to=svc.completed,
            desired=svc.desired,
        )
        self._begin(svc, deployment, f"revision {svc.revision.number} -> {revision.number}")
        return deployment

    def _begin(self, svc: Service, deployment: Deployment, what: str) -> None:
        svc.deployed = deployment.id
        svc.deployments.append(deployment)
        svc.revision = deployment.revision
        svc.spec = replace(svc.spec, env=deployment.revision.env)
        svc.stalled = False
        svc.failures, svc.retry_at = 0, 0.0
        changes = " ".join(f"{k}={v}" for k, v in deployment.changes.items()) or "no change"
        log.info(
            "%s: deployment %d started: %s (%s); %d desired: at least %d healthy, at most %d"
            " running; circuit breaker after %d failed replicas in a row",
            svc.spec.name,
            deployment.id,
            what,
            changes,
            svc.desired,
            ROLLING.minimum_healthy(svc.desired),
            ROLLING.maximum(svc.desired),
            deployment.threshold,
        )
        self._changed(svc)

    def _zone_services(self, zone: str, service: str | None) -> list[Service]:
        services = [self._service(service)] if service else list(self.services.values())
        zones = {z for svc in services for z, _ in svc.spec.zone_subnets()}
        if zone not in zones:
            raise LookupError(f"no zone {zone!r}; zones: {', '.join(sorted(zones))}")
        return services

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds, re-checking after every change of any replica.

        Unbounded: callers put it under ``asyncio.timeout``."""
        while not predicate():
            await self._tick.wait()

    async def wait_settled(self) -> None:
        """Wait until every service runs its desired count, healthy and registered.

        Raises :class:`StartFailed` as soon as a replica fails to start: for the first
        bring-up, failing fast with the replica's log beats retrying quietly."""

        def done() -> bool:
            if any(svc.failures for svc in self.services.values()):
                return True
            return all(svc.settled() for svc in self.services.values())

        await self.wait_until(done)
        for svc in self.services.values():
            failed = next((r for r in svc.history if r.state is State.FAILED), None)
            if svc.failures and failed is not None:
                raise StartFailed(f"{failed.name} did not become healthy (see {failed.log_path})")

    async def health(self, replica: Replica) -> str:
        """One live probe of a replica's /health: its status code, or why it failed."""
        assert self._probe is not None
        url = f"http://{replica.address}:{replica.spec.port}{HEALTH_PATH}"
        try:
            async with self._probe.get(url) as response:
                return str(response.status)
        except TimeoutError:
            return "timeout"
        except aiohttp.ClientError as error:
            return type(error).__name__

    def replicas(self) -> Iterator[Replica]:
        for svc in self.services.values():
            yield from svc.replicas

    def status(self) -> dict[str, dict[str, object]]:
        return {
            name: {
                "desired": svc.desired,
                "settled": svc.settled(),
                "revision": svc.revision.number,
                "stalled": svc.stalled,
                "deployments": [d.as_dict() for d in svc.deployments],
                "az_rebalancing": svc.az_rebalancing,
                "replicas": [r.as_dict() for r in svc.replicas],
                "finished": [r.as_dict() for r in svc.history],
            }
            for name, svc in self.services.items()
        }

    async def close(self) -> None:
        """Stop every replica as a scale-in to zero would, and wait for all of them."""
        self._closing = True
        self._changed()  # wakes crash timers: close() deregisters at once
        for task in self._reconcilers:
            task.cancel()
        for svc in self.services.values():
            for replica in svc.live():
                self._stop(replica)
            for replica in svc.replicas:
                if replica.state is State.CRASHED:
                    self._deregister(replica)
        # Everything left (drains, replicas' lifecycles, crash timers) ends on its own
        # now; a second Ctrl-C (kill_all) makes the drains end at once.
        await asyncio.gather(*self._reconcilers, *self._tasks, return_exceptions=True)
        if self._probe is not None:
            await self._probe.close()

    def kill_all(self) -> None:
        """SIGKILL every replica's process group now (second Ctrl-C, or a failure)."""
        for replica in self.replicas():
            self._signal(replica, signal.SIGKILL)

    # -- reconciling -----------------------------------------------------------------

    def _service(self, name: str) -> Service:
        try:
            return self.services[name]
        except KeyError:
            raise LookupError(
                f"no service {name!r}; services: {', '.join(self.services)}"
            ) from None

    def _changed(self, svc: Service | None = None) -> None:
        if svc is not None:
            svc.wake.set()
        self._tick.set()
        self._tick = asyncio.Event()

    def _spawn_task(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("runner: %s failed", task.get_name(), exc_info=task.exception())

    async def _reconcile(self, svc: Service) -> None:
        loop = asyncio.get_running_loop()
        while True:
            svc.wake.clear()
            deployment = svc.deployment()
            if deployment is not None:
                wait = self._roll(svc, deployment, loop.time())
            else:
                wait = self._keep_count(svc, loop.time())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await svc.wake.wait()

    def _keep_count(self, svc: Service, now: float) -> float | None:
        """Start or stop replicas toward the desired count, or move one to rebalance the
        zones; returns how long to wait before a launch may be tried again, or None."""
        live = svc.live()
        if len(live) < svc.desired:
            if svc.stalled or not svc.zones_up():
                # A failed deployment with nothing to roll back to (ECS starts no task), or
                # every zone down: nowhere to place a replica.
                return None
            wait = svc.retry_at - now
            if wait > 0:
                return wait
            for _ in range(svc.desired - len(live)):
                self._launch(svc)
        elif len(live) > svc.desired:
            if svc.rebalancing and any(r.state is State.STARTING for r in live):
                return None  # start before stop: the extra replica must serve first
            svc.rebalancing = False
            for replica in _victims(svc, live, len(live) - svc.desired):
                self._stop(replica)
        elif self._unbalanced(svc, live):
            wait = svc.retry_at - now
            if wait > 0:
                return wait
            svc.rebalancing = True
            self._launch(svc)
        return None

    def _roll(self, svc: Service, deployment: Deployment, now: float) -> float | None:
        """One step of a rolling deployment; returns how long to wait before the next
        launch may be tried (a failed start's backoff), or None."""
        deployment.desired = svc.desired  # the threshold follows the latest desired count
        number = deployment.revision.number
        live = svc.live()
        new = [r for r in live if r.revision == number]
        old = [r for r in live if r.revision != number]
        for replica in [r for r in old if r.state is State.STARTING]:
            log.info(
                "%s: deployment %d: stopping it (revision %d, not yet healthy)",
                replica.name,
                deployment.id,
                replica.revision,
            )
            self._stop(replica)
            deployment.stopped += 1
        if len(new) > svc.desired:  # scaled in during the deployment
            for replica in _victims(svc, new, len(new) - svc.desired):
                self._stop(replica)
        running = [r for r in old if r.state is State.RUNNING]
        healthy = sum(self._healthy(r) for r in live)
        step = ROLLING.step(svc.desired, new=len(new), old=len(running), healthy=healthy)
        for replica in _victims(svc, running, step.stop):
            log.info(
                "%s: deployment %d: retiring it (revision %d): %d healthy, at least %d must stay",
                replica.name,
                deployment.id,
                replica.revision,
                healthy,
                ROLLING.minimum_healthy(svc.desired),
            )
            healthy -= 1
            self._stop(replica)
            deployment.stopped += 1
        if step.start and svc.zones_up():
            wait = svc.retry_at - now
            if wait > 0:
                return wait
            log.info(
                "%s: deployment %d: starting %d replica(s) of revision %d",
                svc.spec.name,
                deployment.id,
                step.start,
                number,
            )
            for _ in range(step.start):
                self._launch(svc)
            deployment.started += step.start
        elif self._deployed(svc, number):
            self._complete(svc, deployment)
        return None

    def _deployed(self, svc: Service, number: int) -> bool:
        """Only the new revision left, at the desired count, every replica healthy."""
        replicas = svc.replicas
        return len(replicas) == svc.desired and all(
            r.revision == number and self._healthy(r) for r in replicas
        )

    def _complete(self, svc: Service, deployment: Deployment) -> None:
        deployment.end(
            Rollout.COMPLETED,
            f"{svc.desired} replica(s) of revision {deployment.revision.number} healthy;"
            f" {deployment.stopped} of older revisions stopped",
        )
        svc.completed = deployment.revision
        log.info(
            "%s: deployment %d completed after %.1fs: %s%s",
            svc.spec.name,
            deployment.id,
            (deployment.ended_at or deployment.started_at) - deployment.started_at,
            deployment.reason,
            f" (rolled back deployment {deployment.rollback_of})" if deployment.rollback_of else "",
        )
        self._changed(svc)

    def _healthy(self, replica: Replica) -> bool:
        """Counted as healthy by a deployment: running, and for a load-balanced service
        healthy in the front's target group too, as ECS waits for the target group."""
        if replica.state is not State.RUNNING:
            return False
        if not replica.spec.load_balanced:
            return True
        return self.front.state(str(replica.address), replica.spec.port) is TargetState.HEALTHY

    def _deployment_failure(self, svc: Service, replica: Replica, why: str) -> None:
        """A replica of the deployment's new revision failed: the circuit breaker counts it."""
        deployment = svc.deployment()
        if deployment is None or replica.revision != deployment.revision.number:
            return
        deployment.failures += 1
        log.warning(
            "%s: deployment %d: circuit breaker %d of %d (%s)",
            replica.name,
            deployment.id,
            deployment.failures,
            deployment.threshold,
            why,
        )
        if deployment.failures < deployment.threshold:
            return
        target = deployment.rollback_to
        deployment.end(
            Rollout.FAILED,
            f"circuit breaker: {deployment.failures} replicas of revision"
            f" {deployment.revision.number} failed in a row (threshold {deployment.threshold})",
        )
        log.error("%s: deployment %d failed: %s", svc.spec.name, deployment.id, deployment.reason)
        if target is None:
            svc.stalled = True
            log.error(
                "%s: no completed deployment to roll back to: no replica is started until"
                " the next deploy",
                svc.spec.name,
            )
            self._changed(svc)
            return
        # The rollback is in progress, so not eligible for a rollback of its own.
        svc.completed = None
        rollback = Deployment(
            id=svc.deployed + 1,
            revision=target,
            changes={},
            rollback_to=None,
            desired=svc.desired,
            rollback_of=deployment.id,
        )
        self._begin(svc, rollback, f"rollback to revision {target.number}")

    def _watch_target(self, svc: Service, replica: Replica) -> None:
        """During a deployment, re-plan once a new hello replica is healthy in the front's
        target group (what the deployment waits for before retiring an old one)."""

        async def watch() -> None:
            host, port = str(replica.address), replica.spec.port
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.start_timeout):
                    await self.front.wait_for(
                        lambda: self.front.state(host, port) in (TargetState.HEALTHY, None)
                    )
            self._changed(svc)

        self._spawn_task(watch(), name=f"target health {replica.name}")

    @staticmethod
    def _unbalanced(svc: Service, live: list[Replica]) -> bool:
        """Settled, but one zone has two replicas more than another (after a zone was
        down): ECS's availability zone rebalancing moves one at a time."""
        if not svc.az_rebalancing or any(r.state is not State.RUNNING for r in live):
            return False
        counts = svc.per_zone(live)
        return len(counts) > 1 and max(counts.values()) - min(counts.values()) > 1

    def _free_address(self, svc: Service) -> tuple[str, IPv4Address]:
        """The zone with the fewest live replicas (of the zones up), and its lowest free
        address: ECS spreads a service's tasks evenly across the zones of its subnets."""
        held = {r.address for r in svc.replicas}
        held.update(self.registry.addresses(svc.spec.name))
        counts = svc.per_zone(svc.live())
        order = sorted(counts, key=lambda zone: counts[zone])
        subnets = dict(svc.spec.zone_subnets())
        for zone in order:
            for address in subnets[zone].hosts():
                if address not in held:
                    return zone, address
        raise RuntimeError(f"{svc.spec.name}: no free address left in the zones that are up")

    def _launch(self, svc: Service) -> None:
        zone, address = self._free_address(svc)
        log_path = self.logs / f"{svc.spec.name}-{address}.log"
        replica = Replica(svc.spec, address, log_path, zone=zone, revision=svc.revision.number)
        svc.replicas.append(replica)
        self._spawn_task(self._lifecycle(svc, replica), name=f"run {replica.name}")
        self._changed()

    def _stop(self, replica: Replica) -> None:
        replica.state = State.DRAINING
        self._spawn_task(self._drain(replica), name=f"drain {replica.name}")
        self._changed()

    # -- one replica's life ----------------------------------------------------------

    def _environment(self, replica: Replica) -> dict[str, str]:
        env = dict(os.environ)
        env.update(replica.spec.env)
        env.update(
            {
                "HOST": str(replica.address),
                "PORT": str(replica.spec.port),
                "PYTHONUNBUFFERED": "1",
                # Marks every process of this stack (tests look for leftovers by it).
                "LOCAL_STACK_ID": self.stack_id,
            }
        )
        if self.metadata_url:
            # The task metadata endpoint, one per replica as ECS gives one per task: the
            # replica reads its zone from ${ECS_CONTAINER_METADATA_URI_V4}/task.
            env["ECS_CONTAINER_METADATA_URI_V4"] = f"{self.metadata_url}/{replica.address}"
        return env

    async def _lifecycle(self, svc: Service, replica: Replica) -> None:
        try:
            await self._spawn(replica)
        finally:
            replica.spawned.set()
        process = replica.process
        if process is None:
            self._start_failed(svc, replica, "could not be started")
            return
        if await self._await_healthy(replica) and replica.state is State.STARTING:
            replica.state = State.RUNNING
            replica.ready_at = time.time()
            svc.failures = 0
            deployment = svc.deployment()
            if deployment is not None and replica.revision == deployment.revision.number:
                deployment.failures = 0  # resetOnHealthyTask: the count is of failures in a row
            self._register(replica)
            spec = replica.spec
            where = [("in Cloud Map", spec.discoverable), ("with the front", spec.load_balanced)]
            log.info(
                "%s: healthy after %.1fs (pid %d, revision %d), registered %s",
                replica.name,
                replica.ready_at - replica.started_at,
                process.pid,
                replica.revision,
                " and ".join(w for w, yes in where if yes),
            )
            if spec.load_balanced and deployment is not None:
                self._watch_target(svc, replica)
            self._changed(svc)  # a rebalance may now stop one
        elif replica.state is State.STARTING:
            if process.returncode is None:
                why = f"not healthy within {self.start_timeout:.0f}s; killed"
                self._signal(replica, signal.SIGKILL)
                await process.wait()
            else:
                why = f"exited with {process.returncode} before /health answered 200"
            self._start_failed(svc, replica, why)
            return
        returncode = await process.wait()
        if replica.state is State.RUNNING:
            await self._crashed(svc, replica, returncode)

    async def _spawn(self, replica: Replica) -> None:
        replica.log_path.parent.mkdir(parents=True, exist_ok=True)
        with replica.log_path.open("ab") as out:
            out.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} starting\n".encode())
            out.flush()
            try:
                replica.process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "local.launch",
                    str(os.getpid()),
                    replica.hostname,
                    replica.spec.module,
                    cwd=ROOT,
                    env=self._environment(replica),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=out,
                    stderr=asyncio.subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as error:
                out.write(f"cannot start: {error}\n".encode())
                log.error("%s: cannot start: %s", replica.name, error)
                return
        log.info(
            "%s: started (pid %d, revision %d)", replica.name, replica.process.pid, replica.revision
        )

    async def _await_healthy(self, replica: Replica) -> bool:
        assert self._probe is not None
        assert replica.process is not None
        process = replica.process
        url = f"http://{replica.address}:{replica.spec.port}{HEALTH_PATH}"
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.start_timeout):
                while replica.state is State.STARTING and process.returncode is None:
                    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                        async with self._probe.get(url) as response:
                            if response.status == 200:
                                return True
                    # Poll again shortly, or stop as soon as the process exits.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(PROBE_INTERVAL):
                            await process.wait()
        return False

    def _start_failed(self, svc: Service, replica: Replica, why: str) -> None:
        loop = asyncio.get_running_loop()
        replica.state = State.FAILED
        replica.exited_at = time.time()
        replica.returncode = None if replica.process is None else replica.process.returncode
        svc.failures += 1
        backoff = min(MAX_BACKOFF, 2.0 ** (svc.failures - 1))
        svc.retry_at = loop.time() + backoff
        log.error(
            "%s: %s; retrying in %.0fs. Last lines of %s:\n%s",
            replica.name,
            why,
            backoff,
            replica.log_path,
            _tail(replica.log_path),
        )
        self._deployment_failure(svc, replica, why)
        self._finish(svc, replica)

    async def _crashed(self, svc: Service, replica: Replica, returncode: int) -> None:
        replica.state = State.CRASHED
        replica.exited_at = time.time()
        replica.returncode = returncode
        if not self.replace_crashed and not self._closing:
            svc.desired = max(0, svc.desired - 1)
        log.warning(
            "%s: exited with %s while running (crashed); still registered, deregistering"
            " in %.1fs as ECS would; %s",
            replica.name,
            returncode,
            self.crash_deregister_seconds,
            "replacing it" if self.replace_crashed else f"not replacing it: desired {svc.desired}",
        )
        self._deployment_failure(svc, replica, f"exited with {returncode} while running")
        self._changed(svc)
        if not self._closing:
            # _closing can flip during this wait; close() then deregisters at once.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.crash_deregister_seconds):
                    await self.wait_until(lambda: self._closing)
        self._deregister(replica)
        self._finish(svc, replica)

    async def _drain(self, replica: Replica) -> None:
        await replica.spawned.wait()
        svc = self.services[replica.spec.name]
        process = replica.process
        if process is None:
            return  # never started; _lifecycle recorded the failure
        self._deregister(replica)
        if replica.spec.load_balanced:
            log.info("%s: deregistering from the front (in-flight requests finish)", replica.name)
            # Waits for the requests in flight to it, up to the deregistration delay.
            await self.front.deregister(str(replica.address), replica.spec.port)
        drain_started = time.monotonic()
        log.info("%s: SIGTERM, draining (SIGKILL after %.0fs)", replica.name, self.stop_timeout)
        self._signal(replica, signal.SIGTERM)
        try:
            async with asyncio.timeout(self.stop_timeout):
                await process.wait()
        except TimeoutError:
            log.warning("%s: still running after %.0fs; SIGKILL", replica.name, self.stop_timeout)
            self._signal(replica, signal.SIGKILL)
            await process.wait()
        replica.state = State.STOPPED
        replica.exited_at = time.time()
        replica.returncode = process.returncode
        log.info(
            "%s: drained, exited with %s after %.1fs",
            replica.name,
            process.returncode,
            time.monotonic() - drain_started,
        )
        self._finish(svc, replica)

    def _register(self, replica: Replica) -> None:
        if replica.spec.discoverable:
            self.registry.register(replica.spec.name, replica.address)
        if replica.spec.load_balanced:
            self.front.register(str(replica.address), replica.spec.port)
        replica.registered = True

    def _deregister(self, replica: Replica) -> None:
        """Take a replica out of DNS now. Front targets are drained by ``_drain``; a
        crashed one is simply dropped, its health checks having already failed."""
        if not replica.registered:
            return
        replica.registered = False
        replica.deregistered_at = time.time()
        if replica.spec.discoverable:
            self.registry.deregister(replica.spec.name, replica.address)
            log.info("%s: deregistered from Cloud Map", replica.name)
        if replica.spec.load_balanced and replica.state is State.CRASHED:
            self._spawn_task(
                self.front.deregister(str(replica.address), replica.spec.port),
                name=f"front deregister {replica.name}",
            )
            log.info("%s: deregistered from the front", replica.name)
        self._changed()

    def _finish(self, svc: Service, replica: Replica) -> None:
        if replica in svc.replicas:
            svc.replicas.remove(replica)
        svc.history.append(replica)
        self._changed(svc)

    def _signal(self, replica: Replica, sig: signal.Signals) -> None:
        # Only while the process is unreaped: its pid (= its process group id, as the
        # leader of its own session) cannot have been reused by anything else yet.
        if replica.alive and replica.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(replica.pid, sig)


def _victims(svc: Service, live: list[Replica], count: int) -> list[Replica]:
    """Which replicas a scale-in stops: one at a time from the zone with the most, newest
    first there (a replica still starting costs nothing to stop), so the zones stay even."""
    remaining = sorted(live, key=lambda r: r.started_at)
    victims: list[Replica] = []
    for _ in range(count):
        counts: dict[str, int] = {}
        for replica in remaining:
            counts[replica.zone] = counts.get(replica.zone, 0) + 1
        # Replicas in a zone that is down go first, then the fullest zone.
        fullest = max(counts, key=lambda zone: (zone in svc.down, counts[zone]))
        victim = [r for r in remaining if r.zone == fullest][-1]
        remaining.remove(victim)
        victims.append(victim)
    return victims


def _tail(path: Path, lines: int = 15) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 8192))
            text = f.read().decode("utf-8", "replace")
    except OSError as error:
        return f"  (cannot read: {error})"
    return "\n".join("  " + line for line in text.splitlines()[-lines:])
