"""``UpstreamSettings``: how to reach one upstream, every field checked at construction.

The defaults are for an upstream this library knows nothing about: any method, any
latency an interactive service has, any body size. Each is taken from, or weighed
against, what Envoy, Finagle and linkerd2-proxy do by default; the README's
"Defaults, and why" table gives the sources. In short:

- the whole call gets 15 s (Envoy's route timeout); one attempt may use all the time
  left (Envoy's per-try timeout is unset by default), so a slow but healthy upstream
  is never cut off by its own retries; set ``attempt_timeout`` to bound an attempt;
- connecting gets 1 s (Finagle and linkerd2-proxy: 1 s; Envoy: 5 s);
- no body cap (Envoy, Finagle and linkerd2-proxy stream bodies of any size); a cap the
  caller sets is the caller's limit, reported as ``BodyTooLarge``, never a task's fault;
- retries on a different task, up to 3 attempts, within a budget of 20% of requests
  plus 10 a second (Finagle's and linkerd2-proxy's retry budget);
- a hedge after the recent answers' p97, with no cap (hedging is off in the three
  proxies; here it is on because it is bounded by the same budget and keeps a slow
  replica's tail out of the caller's latency);
- no active health probe (an upstream need not have ``/health``): ejected tasks come
  back on probation when their backoff ends.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from yarl import URL

#: The DNS record types an upstream's addresses may come from.
RECORD_TYPES = ("A", "AAAA")


def _fail(kind: type[Exception], name: str, text: str) -> Exception:
    return kind(f"UpstreamSettings.{name}: {text}")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number(
    name: str, value: object, *, positive: bool = True, optional: bool = False
) -> float | None:
    if value is None and optional:
        return None
    if not _is_number(value):
        wanted = "a number" + (" or None" if optional else "")
        raise _fail(TypeError, name, f"expected {wanted}, not {value!r}")
    number = float(value)  # type: ignore[arg-type]
    if math.isnan(number) or math.isinf(number) or number < 0 or (positive and number == 0):
        rule = "> 0" if positive else ">= 0"
        raise _fail(ValueError, name, f"must be a finite number {rule}, not {value!r}")
    return number


def _integer(name: str, value: object, *, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _fail(TypeError, name, f"expected an integer, not {value!r}")
    if value < minimum:
        raise _fail(ValueError, name, f"must be >= {minimum}, not {value!r}")
    return value


def _percent(name: str, value: object) -> float:
    number = _number(name, value, positive=False)
    assert number is not None
    if number > 100:
        raise _fail(ValueError, name, f"must be from 0 to 100, not {value!r}")
    return number


def parse_url(value: object) -> URL:
    """An ``http://`` or ``https://`` URL with a host (a DNS name or an IP literal)."""
    if isinstance(value, str):
        try:
            url = URL(value)
        except (ValueError, TypeError) as exc:
            raise _fail(ValueError, "url", f"{value!r} is not a URL: {exc}") from None
    elif isinstance(value, URL):
        url = value
    else:
        raise _fail(TypeError, "url", f"expected a str or yarl.URL, not {value!r}")
    if url.scheme not in ("http", "https"):
        raise _fail(ValueError, "url", f"the scheme must be http or https, not {str(url)!r}")
    try:
        port = url.port
    except ValueError as exc:
        raise _fail(ValueError, "url", f"{str(url)!r} has a bad port: {exc}") from None
    if not url.host or port is None:
        raise _fail(
            ValueError, "url", f"needs a host, like http://orders.internal:8080/, not {str(url)!r}"
        )
    if url.user is not None or url.password is not None:
        raise _fail(ValueError, "url", "credentials in the URL are not supported (send a header)")
    if url.raw_fragment:
        raise _fail(ValueError, "url", "a fragment has no meaning in a request")
    return url


@dataclass(frozen=True)
class UpstreamSettings:
    """How to reach one upstream service. Every field is validated on construction:
    a wrong type raises ``TypeError``, a wrong value ``ValueError``, naming the field."""

    url: URL | str
    """``http[s]://host[:port]/path``: ``host`` is a DNS name (its A and/or AAAA records,
    see ``record_types``) or an IP literal (``[::1]`` for IPv6). A ``str`` is parsed into a
    ``yarl.URL``. The path and query are what ``request()`` asks for when given no path."""
    nameservers: Sequence[str] = ()
    """``ip`` or ``ip:port`` (``[v6]:port``); empty: the system resolver (in a VPC, the
    Route 53 Resolver, which answers for Cloud Map private namespaces)."""
    record_types: Sequence[str] = ("A",)
    """Which records hold the addresses: ``("A",)``, ``("AAAA",)`` or both (a dual-stack
    service registered in Cloud Map with both record types)."""
    refresh_interval: float = 5.0
    """How often the records are refreshed in the background (at most one lookup in flight)."""
    connect_timeout: float = 1.0
    """The TCP (and TLS) handshake. What a vanished task costs before the next try."""
    request_timeout: float = 15.0
    """The whole call: every attempt, and the body (a streamed body included)."""
    attempt_timeout: float | None = None
    """One attempt's bound (headers and, unless streamed, body); None: the time left of
    ``request_timeout``. Set it below ``request_timeout`` to retry a stuck task in time."""
    max_attempts: int = 3
    """Attempts per call, hedges included, each on a different address."""
    max_body_bytes: int | None = None
    """The caller's limit on an answer's (decoded) body; None: no limit. Exceeding it
    raises ``BodyTooLarge``: not retried elsewhere, and no task is blamed."""
    pool_per_address: int = 100
    """Keep-alive connections per address (requests beyond it wait for one)."""
    keepalive_timeout: float = 15.0
    """Idle pooled connections close after this; keep it below the upstream's own
    keep-alive timeout, so the client, not the server, closes them."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """Sent with every request (a call's own headers override them)."""
    dns_timeout: float = 0.5
    dns_tries: int = 2
    base_ejection: float = 1.0
    """A failed task is skipped this long, doubling per consecutive failure..."""
    max_ejection: float = 30.0
    """...up to this."""
    max_ejection_percent: float = 50.0
    """At most this share of the addresses is ejected at once (at least one may be)."""
    panic_threshold_percent: float = 50.0
    """Below this share of available addresses, health is ignored."""
    latency_decay: float = 10.0
    """The peak-EWMA latency estimate's time constant, in seconds."""
    retry_statuses: Collection[int] = frozenset(range(500, 600))
    """Answers with these statuses are failed attempts: retried, ejecting."""
    retry_ratio: float = 0.2
    retry_min_per_second: float = 10.0
    retry_burst: float = 100.0
    max_hedges: int = 1
    """Extra attempts hedging may send per idempotent call: 1, or 0 for no hedging."""
    hedge_quantile: float = 0.97
    hedge_min_delay: float = 0.005
    hedge_max_delay: float | None = None
    """A cap on the hedge delay (None: the quantile alone decides)."""
    probe_path: str | None = None
    """Ejected addresses are probed with ``GET probe_path`` and readmitted on a 2xx
    (None: no probes; they come back on probation when their backoff ends)."""
    probe_interval: float = 1.0
    probe_timeout: float = 0.5
    proxy: bool = False
    """The URL names a local proxy that balances, ejects and retries itself (ECS Service
    Connect's): one address resolved once by the system resolver, never ejected, no DNS
    polling; ``max_attempts`` must be 1 and ``max_hedges`` 0. ``through_proxy()`` builds
    such settings with timeouts coordinated with the proxy's (proxy.py)."""

    def __post_init__(self) -> None:  # noqa: PLR0912, PLR0915 - one check per field
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        put("url", parse_url(self.url))
        if isinstance(self.nameservers, str) or not isinstance(self.nameservers, Iterable):
            raise _fail(
                TypeError, "nameservers", f"expected a tuple of str, not {self.nameservers!r}"
            )
        servers = tuple(self.nameservers)
        if not all(isinstance(s, str) and s.strip() for s in servers):
            raise _fail(TypeError, "nameservers", f"expected non-empty strings, not {servers!r}")
        put("nameservers", servers)
        if isinstance(self.record_types, str) or not isinstance(self.record_types, Iterable):
            raise _fail(
                TypeError,
                "record_types",
                f"expected a tuple like ('A',), not {self.record_types!r}",
            )
        types = tuple(dict.fromkeys(str(t).upper() for t in self.record_types))
        if not types or any(t not in RECORD_TYPES for t in types):
            raise _fail(
                ValueError, "record_types", f"expected A, AAAA or both, not {self.record_types!r}"
            )
        put("record_types", types)
        for name in (
            "refresh_interval",
            "connect_timeout",
            "request_timeout",
            "keepalive_timeout",
            "dns_timeout",
            "base_ejection",
            "max_ejection",
            "latency_decay",
            "hedge_min_delay",
            "probe_interval",
            "probe_timeout",
        ):
            put(name, _number(name, getattr(self, name)))
        for name in ("retry_ratio", "retry_min_per_second"):
            put(name, _number(name, getattr(self, name), positive=False))
        put("retry_burst", _number("retry_burst", self.retry_burst))
        if self.retry_burst < 1:
            raise _fail(ValueError, "retry_burst", f"must be >= 1, not {self.retry_burst!r}")
        put("attempt_timeout", _number("attempt_timeout", self.attempt_timeout, optional=True))
        put("hedge_max_delay", _number("hedge_max_delay", self.hedge_max_delay, optional=True))
        for name in ("max_ejection_percent", "panic_threshold_percent"):
            put(name, _percent(name, getattr(self, name)))
        _integer("max_attempts", self.max_attempts, minimum=1)
        _integer("pool_per_address", self.pool_per_address, minimum=1)
        _integer("dns_tries", self.dns_tries, minimum=1)
        if _integer("max_hedges", self.max_hedges, minimum=0) > 1:
            raise _fail(ValueError, "max_hedges", f"must be 0 or 1, not {self.max_hedges!r}")
        if self.max_body_bytes is not None:
            _integer("max_body_bytes", self.max_body_bytes, minimum=0)
        if not isinstance(self.headers, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.headers.items()
        ):
            raise _fail(
                TypeError, "headers", f"expected a mapping of str to str, not {self.headers!r}"
            )
        put("headers", dict(self.headers))
        if isinstance(self.retry_statuses, str | bytes) or not isinstance(
            self.retry_statuses, Iterable
        ):
            raise _fail(
                TypeError, "retry_statuses", f"expected a set of ints, not {self.retry_statuses!r}"
            )
        statuses = frozenset(self.retry_statuses)
        if not all(isinstance(s, int) and not isinstance(s, bool) for s in statuses):
            raise _fail(
                TypeError, "retry_statuses", f"expected a set of ints, not {self.retry_statuses!r}"
            )
        if not all(400 <= s <= 599 for s in statuses):
            raise _fail(ValueError, "retry_statuses", "statuses must be within 400-599")
        put("retry_statuses", statuses)
        quantile = _number("hedge_quantile", self.hedge_quantile)
        if quantile is None or quantile >= 1:
            raise _fail(
                ValueError,
                "hedge_quantile",
                f"must be between 0 and 1, not {self.hedge_quantile!r}",
            )
        if self.probe_path is not None and (
            not isinstance(self.probe_path, str) or not self.probe_path.startswith("/")
        ):
            raise _fail(
                ValueError, "probe_path", f"must start with / (or be None), not {self.probe_path!r}"
            )
        if not isinstance(self.proxy, bool):
            raise _fail(TypeError, "proxy", f"expected True or False, not {self.proxy!r}")
        # Relations between fields.
        if self.proxy and (self.max_attempts != 1 or self.max_hedges != 0):
            raise _fail(
                ValueError,
                "proxy",
                "needs max_attempts=1 and max_hedges=0: the proxy retries already, and a "
                "call retried here too is retried 3 x 3 times (through_proxy() sets both)",
            )
        if self.connect_timeout > self.request_timeout:
            raise _fail(ValueError, "connect_timeout", "must not exceed request_timeout")
        if self.attempt_timeout is not None and self.attempt_timeout > self.request_timeout:
            raise _fail(ValueError, "attempt_timeout", "must not exceed request_timeout")
        if self.max_ejection < self.base_ejection:
            raise _fail(ValueError, "max_ejection", "must not be below base_ejection")
        if self.hedge_max_delay is not None and self.hedge_max_delay < self.hedge_min_delay:
            raise _fail(ValueError, "hedge_max_delay", "must not be below hedge_min_delay")
        if self.probe_timeout >= self.probe_interval:
            raise _fail(ValueError, "probe_timeout", "must be below probe_interval")

    @property
    def target(self) -> URL:
        """``url`` as a ``yarl.URL`` (it always is one after construction)."""
        assert isinstance(self.url, URL)
        return self.url
