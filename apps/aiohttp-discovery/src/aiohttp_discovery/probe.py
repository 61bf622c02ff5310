"""Active health probes of ejected addresses, so a recovered task is back within seconds.

Passive ejection alone readmits an address only when its backoff period ends;
while every task is down, each failed try on probation doubles that period, so
after an outage a recovered task could stay out for tens of seconds while the
first one back took all the load. The prober asks each *ejected* address for
``GET <path>`` (the services' ``/health``) every ``interval`` seconds, each
probe bounded by ``timeout``, and readmits the address on a 2xx. Cost: nothing
while no address is ejected (one timer tick per interval), and at most one
small request per ejected address per interval otherwise, which the ejection
cap bounds too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp_discovery.balancer import Balancer, Endpoint

log = logging.getLogger("aiohttp_discovery")


class Prober:
    """Runs ``check(endpoint) -> bool`` on every ejected endpoint once per ``interval``."""

    def __init__(
        self,
        balancer: Balancer,
        check: Callable[[Endpoint], Awaitable[bool]],
        *,
        interval: float,
        on_result: Callable[[Endpoint, bool], None] = lambda _e, _ok: None,
    ) -> None:
        self._balancer = balancer
        self._check = check
        self._interval = interval
        self._on_result = on_result
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="upstream probes")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            ejected = self._balancer.ejected()
            if ejected:
                await asyncio.gather(*(self.probe(e) for e in ejected))

    async def probe(self, endpoint: Endpoint) -> bool:
        """Probe one endpoint now; readmit it when healthy. Returns the result."""
        try:
            healthy = await self._check(endpoint)
        except Exception:  # a bug must not stop probing
            log.exception(
                "upstream probe of %s crashed",
                endpoint.address,
                extra={"address": endpoint.address},
            )
            healthy = False
        self._on_result(endpoint, healthy)
        if healthy and endpoint in self._balancer.ejected():
            self._balancer.readmit(endpoint)
            log.info(
                "upstream address %s readmitted after a health probe",
                endpoint.address,
                extra={"address": endpoint.address},
            )
        return healthy
