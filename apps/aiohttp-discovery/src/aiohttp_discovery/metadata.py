"""The task's own availability zone, from the ECS task metadata endpoint (version 4).

ECS sets ``ECS_CONTAINER_METADATA_URI_V4`` in every container of a Fargate task
(platform version 1.4.0 and later); ``GET ${ECS_CONTAINER_METADATA_URI_V4}/task``
answers the task's metadata as JSON, with its zone in ``AvailabilityZone``
(e.g. ``"us-east-1a"``). The endpoint is link-local and needs no credentials.

Read once at start: a task never moves. Without the variable (run outside ECS), or if
the endpoint does not answer within ``timeout`` or answers without a zone, the result
is None with the reason, and the caller routes zone-unaware and logs it once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
from yarl import URL

METADATA_VARIABLE = "ECS_CONTAINER_METADATA_URI_V4"


@dataclass(frozen=True)
class ZoneLookup:
    """The zone (None if unknown) and, when unknown, why."""

    zone: str | None
    reason: str = ""


async def task_zone(environ: Mapping[str, str], *, seconds: float = 2.0) -> ZoneLookup:
    base = environ.get(METADATA_VARIABLE, "").strip()
    if not base:
        return ZoneLookup(None, f"{METADATA_VARIABLE} is not set (not running on ECS)")
    try:
        url = URL(base.rstrip("/") + "/task")
    except ValueError as exc:
        return ZoneLookup(None, f"{METADATA_VARIABLE}={base!r} is not a URL: {exc}")
    if url.scheme != "http" or not url.host:
        return ZoneLookup(None, f"{METADATA_VARIABLE}={base!r} is not an http:// URL")
    try:
        body = await _get(url, seconds)
    except _Unusable as exc:
        return ZoneLookup(None, str(exc))
    return _zone(url, body)


class _Unusable(Exception):
    pass


async def _get(url: URL, seconds: float) -> bytes:
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=seconds)) as session,
            session.get(url) as response,
        ):
            if response.status != 200:
                raise _Unusable(f"{url} answered {response.status}")
            return await response.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise _Unusable(f"{url}: {type(exc).__name__}: {exc}") from None


def _zone(url: URL, body: bytes) -> ZoneLookup:
    try:
        zone = json.loads(body).get("AvailabilityZone")
    except (ValueError, AttributeError):
        return ZoneLookup(None, f"{url} answered something other than a JSON object")
    if not isinstance(zone, str) or not zone.strip():
        return ZoneLookup(None, f"{url} answered no AvailabilityZone")
    return ZoneLookup(zone.strip())
