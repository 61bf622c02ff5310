"""Client-side service discovery for aiohttp services: DNS (Cloud Map) to balanced requests.

The pieces, each usable alone:

- ``RecordCache`` + ``DnsLookup``: a host's A records via aiodns, cached, refreshed
  in the background at most once per interval (single-flight), stale on failure.
- ``Balancer``: power of two choices on in-flight requests, with ejection and
  exponential backoff per address, never ejecting all.
- ``RetryBudget``: a token bucket bounding retries to a share of requests.
- ``UpstreamClient``: all of the above behind one ``get_text()`` call, on one
  keep-alive ``aiohttp.ClientSession``, with timeouts, bounded attempts on
  different addresses, a body cap and Prometheus counters.
- ``Registry``: the tiny Prometheus text registry they report into.

See docs/apps.md for the API and the reasoning behind each choice.
"""

from apps.discovery.balancer import Balancer, Endpoint
from apps.discovery.budget import RetryBudget
from apps.discovery.client import Reply, UpstreamClient, UpstreamError, UpstreamSettings
from apps.discovery.metrics import Registry
from apps.discovery.records import (
    AddressSource,
    DiscoveryError,
    DnsLookup,
    Lookup,
    LookupFailed,
    RecordCache,
    StaticAddresses,
)

__all__ = [
    "AddressSource",
    "Balancer",
    "DiscoveryError",
    "DnsLookup",
    "Endpoint",
    "Lookup",
    "LookupFailed",
    "RecordCache",
    "Registry",
    "Reply",
    "RetryBudget",
    "StaticAddresses",
    "UpstreamClient",
    "UpstreamError",
    "UpstreamSettings",
]
