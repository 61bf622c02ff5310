"""hello's settings, read and validated from the environment before anything starts."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from aiohttp_discovery.zones import ZoneMap, ZoneMapError
from yarl import URL

from apps.common import env
from apps.common.env import EnvError
from apps.hello.tuning import Tuning

_EXAMPLE = "http://name.internal:3000/"
# A DNS name: dot-separated labels of letters, digits and inner hyphens.
_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
_HOSTNAME = re.compile(rf"^{_LABEL}(\.{_LABEL})*\.?$")

# Floors, so that a typo cannot turn a setting into a storm or a service that never
# answers. The refresh interval is how often each hello task refreshes from DNS, whatever
# its load (one refresh in flight at most); a refresh is one query, or several when
# answers hold 8 records, capped at 50 queries a second per task (aiohttp_discovery/
# accumulate.py): 5% of the VPC resolver's 1,024 packets per second per network
# interface. 0.1 s is also below the 0.5 s that one lookup may take anyway. 1e-9 was
# accepted before and made thousands of queries a second.
MIN_DNS_REFRESH_SECONDS = 0.1
# A connect timeout under 10 ms fails on a merely busy event loop (one garbage
# collection), turning every attempt into a failure and a retry.
MIN_TIMEOUT_SECONDS = 0.01
# How hello reaches name: "dns" (Cloud Map records; the client balances, retries and
# ejects) or "serviceConnect" (NAME_SERVER leads to the task's Service Connect proxy,
# which does all that; the client makes one attempt, see aiohttp_discovery/proxy.py).
DISCOVERY_MODES = ("dns", "serviceConnect")


@dataclass(frozen=True)
class Settings:
    name_server: URL
    host: str = "0.0.0.0"
    port: int = 3000
    dns_servers: tuple[str, ...] = ()
    dns_refresh_seconds: float = 5.0
    connect_timeout_seconds: float = 0.25
    request_timeout_seconds: float = 2.0
    max_attempts: int = 3
    # Behind the ALB, ECS deregisters the target (and waits out the target group's
    # deregistration delay) before sending SIGTERM, so hello need not linger.
    drain_seconds: float = 0.0
    # Zone-aware routing (aiohttp_discovery/zones.py): on unless ZONE_AWARE=false, and only
    # with ZONE_SUBNETS (the private subnets' CIDR blocks per zone) and a zone of our own
    # from the ECS task metadata endpoint.
    zone_aware: bool = True
    zone_subnets: ZoneMap | None = None
    # hello's own Cloud Map name (hello.internal): its tasks are the callers whose spread
    # over zones the rule weighs; unset: an even spread over ZONE_SUBNETS' zones.
    zone_callers: str | None = None
    # Retries, hedging, balancing, ejection and probes (apps/hello/tuning.py).
    tuning: Tuning = field(default_factory=Tuning)
    discovery_mode: str = "dns"
    # serviceConnect: the proxy's perRequestTimeoutSeconds and idleTimeoutSeconds, as the
    # stack sets them on name's Service Connect service (REQUEST_TIMEOUT_SECONDS must
    # exceed the first, so the proxy's own answer reaches hello first).
    proxy_timeout_seconds: float = 1.0
    proxy_idle_timeout_seconds: float = 300.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        connect = env.number(
            "CONNECT_TIMEOUT_SECONDS",
            cls.connect_timeout_seconds,
            minimum=MIN_TIMEOUT_SECONDS,
            maximum=60,
            env=environ,
        )
        request = env.number(
            "REQUEST_TIMEOUT_SECONDS",
            cls.request_timeout_seconds,
            minimum=MIN_TIMEOUT_SECONDS,
            maximum=300,
            env=environ,
        )
        if connect > request:
            raise EnvError(
                f"CONNECT_TIMEOUT_SECONDS={connect:g} exceeds REQUEST_TIMEOUT_SECONDS={request:g}"
            )
        mode = environ.get("DISCOVERY_MODE", "").strip() or cls.discovery_mode
        if mode not in DISCOVERY_MODES:
            raise EnvError(f"DISCOVERY_MODE={mode!r}: expected {' or '.join(DISCOVERY_MODES)}")
        proxy_timeout = env.number(
            "PROXY_TIMEOUT_SECONDS",
            cls.proxy_timeout_seconds,
            minimum=MIN_TIMEOUT_SECONDS,
            maximum=300,
            env=environ,
        )
        if mode == "serviceConnect" and request <= proxy_timeout:
            raise EnvError(
                f"REQUEST_TIMEOUT_SECONDS={request:g} must exceed PROXY_TIMEOUT_SECONDS="
                f"{proxy_timeout:g}: the proxy's answer must reach hello before hello gives up"
            )
        return cls(
            discovery_mode=mode,
            proxy_timeout_seconds=proxy_timeout,
            proxy_idle_timeout_seconds=env.number(
                "PROXY_IDLE_TIMEOUT_SECONDS",
                cls.proxy_idle_timeout_seconds,
                minimum=1,
                maximum=86400,
                env=environ,
            ),
            name_server=parse_name_server(env.text("NAME_SERVER", env=environ)),
            host=env.text("HOST", cls.host, environ),
            port=env.port("PORT", cls.port, environ),
            dns_servers=parse_dns_servers(environ.get("DNS_SERVERS", "")),
            dns_refresh_seconds=env.number(
                "DNS_REFRESH_SECONDS",
                cls.dns_refresh_seconds,
                minimum=MIN_DNS_REFRESH_SECONDS,
                maximum=3600,
                env=environ,
            ),
            connect_timeout_seconds=connect,
            request_timeout_seconds=request,
            max_attempts=env.integer(
                "MAX_ATTEMPTS", cls.max_attempts, minimum=1, maximum=10, env=environ
            ),
            drain_seconds=env.number("DRAIN_SECONDS", cls.drain_seconds, maximum=3600, env=environ),
            zone_aware=parse_switch("ZONE_AWARE", environ.get("ZONE_AWARE", ""), default=True),
            zone_subnets=parse_zone_subnets(environ.get("ZONE_SUBNETS", "")),
            zone_callers=parse_zone_callers(environ.get("ZONE_CALLERS", "")),
            tuning=Tuning.from_env(environ),
        )


def parse_switch(name: str, value: str, *, default: bool) -> bool:
    text = value.strip().lower()
    if not text:
        return default
    if text in ("true", "1", "on"):
        return True
    if text in ("false", "0", "off"):
        return False
    raise EnvError(f"{name}={value!r}: expected true or false")


def parse_zone_subnets(value: str) -> ZoneMap | None:
    """``{"<zone>": ["<IPv4 CIDR>", ...], ...}``: the private subnets per zone; unset: None."""
    if not value.strip():
        return None
    try:
        return ZoneMap.from_json(value)
    except ZoneMapError as exc:
        raise EnvError(
            f"ZONE_SUBNETS={value!r}: {exc}"
            ' (expected JSON like {"us-east-1a": ["10.0.0.0/18"], "us-east-1b": ["10.0.64.0/18"]})'
        ) from None


def parse_zone_callers(value: str) -> str | None:
    """A DNS name (``hello.internal``) whose A records are hello's tasks; unset: None."""
    host = value.strip()
    if not host:
        return None
    if _is_ipv4(host) or not _HOSTNAME.match(host):
        raise EnvError(
            f"ZONE_CALLERS={value!r}: not a DNS name"
            " (expected hello's own Cloud Map name, like hello.internal)"
        )
    return host


def parse_name_server(value: str) -> URL:
    """``http://<dns name or IPv4>[:port]/[path]``, or EnvError saying what is wrong."""

    def bad(why: str) -> EnvError:
        return EnvError(f"NAME_SERVER={value!r}: {why} (expected a URL like {_EXAMPLE})")

    try:
        url = URL(value)
        port = url.port
    except ValueError as exc:
        raise bad(f"not a valid URL: {exc}") from None
    if url.scheme != "http":
        raise bad("the scheme must be http")
    host = url.raw_host or ""
    if not host:
        raise bad("no host")
    if ":" in host:
        raise bad("IPv6 literals are not supported (Cloud Map serves A records)")
    if not _is_ipv4(host) and not _HOSTNAME.match(host):
        raise bad(f"{host!r} is not a valid host name")
    if port is None or not 1 <= port <= 65535:
        raise bad("the port must be from 1 to 65535")
    if url.user is not None or url.password is not None:
        raise bad("credentials are not supported")
    if url.raw_fragment:
        raise bad("a fragment has no meaning here")
    return url


def parse_dns_servers(value: str) -> tuple[str, ...]:
    """``ip[:port]`` items, comma-separated (IPv6: ``[addr]:port`` or bare ``addr``)."""
    servers: list[str] = []
    for raw in value.split(","):
        item = raw.strip()
        if not item:
            continue
        servers.append(_parse_dns_server(item, value))
    return tuple(servers)


def _parse_dns_server(item: str, whole: str) -> str:
    def bad(why: str) -> EnvError:
        return EnvError(f"DNS_SERVERS={whole!r}: {item!r} {why} (expected ip[:port],...)")

    host, port = item, None
    if item.startswith("["):
        host, sep, rest = item[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise bad("is not [ipv6]:port")
        port = rest[1:] or None
    elif item.count(":") == 1:
        host, port = item.split(":")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise bad("is not an IP address") from None
    number = None if port is None else env.parse_port(port)
    if port is not None and number is None:
        raise bad("has no port from 1 to 65535 (ASCII digits 0-9)")
    text = f"[{address}]" if address.version == 6 and number else str(address)
    return f"{text}:{number}" if number else text


def _is_ipv4(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).version == 4
    except ValueError:
        return False
