"""Client-side service discovery for aiohttp services: DNS (Cloud Map) to balanced requests.

The pieces, each usable alone:

- ``RecordCache`` + ``DnsLookup``: a host's A records via aiodns, cached, refreshed
  in the background at most once per interval (single-flight), stale on failure.
- ``Balancer``: power of two choices over peak-EWMA latency x requests in flight,
  with ejection (exponential backoff, a cap on the share ejected, a panic threshold).
- ``RetryBudget``: a token bucket bounding retries and hedges to a share of requests.
- ``HedgeDelay``: when to hedge, from the recent answers' latency quantile.
- ``Prober``: health probes of ejected addresses, readmitting them when they answer.
- ``UpstreamClient``: all of the above behind ``request()`` (any method, path,
  query, headers, body or JSON) returning an ``Answer``, on one keep-alive
  ``aiohttp.ClientSession``, with timeouts, retries by method semantics, hedging,
  a body cap and Prometheus metrics.
- ``Registry``: the get-or-create front of a ``prometheus_client`` registry.

See docs/apps.md for the API and the reasoning behind each choice.
"""

from aiohttp_discovery.answer import Answer, Reply, UpstreamError, expect_text
from aiohttp_discovery.balancer import Balancer, Endpoint
from aiohttp_discovery.budget import RetryBudget
from aiohttp_discovery.client import IDEMPOTENT_METHODS, UpstreamClient, UpstreamSettings
from aiohttp_discovery.hedging import HedgeDelay
from aiohttp_discovery.metrics import Registry
from aiohttp_discovery.probe import Prober
from aiohttp_discovery.records import (
    AddressSource,
    DiscoveryError,
    DnsLookup,
    Lookup,
    LookupFailed,
    RecordCache,
    StaticAddresses,
)

__all__ = [
    "IDEMPOTENT_METHODS",
    "AddressSource",
    "Answer",
    "Balancer",
    "DiscoveryError",
    "DnsLookup",
    "Endpoint",
    "HedgeDelay",
    "Lookup",
    "LookupFailed",
    "Prober",
    "RecordCache",
    "Registry",
    "Reply",
    "RetryBudget",
    "StaticAddresses",
    "UpstreamClient",
    "UpstreamError",
    "UpstreamSettings",
    "expect_text",
]
