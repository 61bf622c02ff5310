"""Client-side service discovery for aiohttp services: DNS (AWS Cloud Map) to balanced calls.

``UpstreamClient`` is the front: ``request()`` (an ``Answer``, read whole) and
``stream()`` (a ``StreamedAnswer``, read in chunks), over one keep-alive
``aiohttp.ClientSession``, with timeouts, retries by method semantics, hedging, an
optional body cap, zone-aware routing and Prometheus metrics. The pieces behind it,
each usable alone:

- ``RecordCache`` + ``DnsLookup``: a host's A and/or AAAA records via aiodns, cached,
  refreshed in the background at most once per interval (single-flight), stale on failure;
- ``Balancer``: power of two choices over peak-EWMA latency x requests in flight,
  with ejection (exponential backoff, a cap on the share ejected, a panic threshold);
- ``RetryBudget``: a token bucket bounding retries and hedges to a share of requests;
- ``HedgeDelay``: when to hedge, from the recent answers' latency quantile;
- ``Prober``: health probes of ejected addresses, readmitting them when they answer;
- ``ZoneRouting``/``ZoneRouter``/``ZoneMap``: Envoy's zone-aware routing rule;
- ``through_proxy``/``ProxyAddress``: one local proxy that balances and retries itself
  (ECS Service Connect's) instead of the tasks;
- ``Registry``: the get-or-create front of a ``prometheus_client`` registry.

The API reference and the reasons for each default are in the distribution's README.
"""

from aiohttp_discovery.answer import (
    Answer,
    BodyTooLarge,
    Reply,
    StreamedAnswer,
    UpstreamError,
    expect_text,
)
from aiohttp_discovery.balancer import Balancer, Endpoint
from aiohttp_discovery.budget import RetryBudget
from aiohttp_discovery.client import IDEMPOTENT_METHODS, UpstreamClient
from aiohttp_discovery.hedging import HedgeDelay
from aiohttp_discovery.metrics import Registry
from aiohttp_discovery.probe import Prober
from aiohttp_discovery.proxy import ProxyAddress, through_proxy
from aiohttp_discovery.records import (
    AddressSource,
    DiscoveryError,
    DnsLookup,
    Lookup,
    LookupFailed,
    RecordCache,
    StaticAddresses,
)
from aiohttp_discovery.settings import UpstreamSettings
from aiohttp_discovery.zones import ZoneMap, ZoneMapError, ZoneRouter, ZoneRouting

__version__ = "1.1.0"

__all__ = [
    "IDEMPOTENT_METHODS",
    "AddressSource",
    "Answer",
    "Balancer",
    "BodyTooLarge",
    "DiscoveryError",
    "DnsLookup",
    "Endpoint",
    "HedgeDelay",
    "Lookup",
    "LookupFailed",
    "Prober",
    "ProxyAddress",
    "RecordCache",
    "Registry",
    "Reply",
    "RetryBudget",
    "StaticAddresses",
    "StreamedAnswer",
    "UpstreamClient",
    "UpstreamError",
    "UpstreamSettings",
    "ZoneMap",
    "ZoneMapError",
    "ZoneRouter",
    "ZoneRouting",
    "__version__",
    "expect_text",
    "through_proxy",
]
