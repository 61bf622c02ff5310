"""The Cloud Map stand-in: an authoritative DNS server for the namespace, built on dnslib.

What it mirrors: a Cloud Map private DNS namespace (``internal``) holding one A record per
registered IPv4 address and one AAAA record per registered IPv6 address of each service,
as Route 53 serves them to the tasks in the VPC:

- ``<service>.<namespace>`` answers the registered addresses with TTL 0 (the seed's
  ``DnsRecords: [{TTL: 0, Type: A}]``; a service with ``Type: AAAA`` as well gets its
  instances' ``AWS_INSTANCE_IPV6`` as AAAA records), so every lookup sees the current
  registry: an A query gets the IPv4 addresses, an AAAA query the IPv6 ones, ANY both;
- like Cloud Map's MULTIVALUE routing, at most eight records of each type per answer,
  chosen at random when more are registered: a new eight per query (``Answers.RANDOM``,
  the default), or the same eight to the same resolver while the registered set of that
  type is unchanged (``Answers.PER_RESOLVER``): Route 53 documents only that different
  resolvers get different combinations, and hello's accumulated lookup
  (aiohttp_discovery/accumulate.py) needs answers that vary, so the local stack can play
  the case where they do not;
- a name with no registered address of either type does not exist: NXDOMAIN, with the
  zone's SOA in the authority section (negative TTL 0, so no resolver caches the absence);
- a known name asked for a type it has no record of (AAAA of an IPv4-only service, A of
  an IPv6-only one, TXT...) gets NOERROR with no answers and the SOA (NODATA);
- names outside the namespace are REFUSED: this server is authoritative only, never a
  recursive resolver (``ra`` is off in every reply).

The :class:`Registry` is the service-instance table Cloud Map keeps; the runner (the
local ECS) registers a replica's IPv4 address once it is healthy and deregisters it on
scale-in or once it notices a crash. IPv6 addresses are registered the same way, by tests
(``registry.register("name", IPv6Address("::1"))``): a dual-stack instance is its IPv4
and its IPv6 address, each registered, and deregistered, on its own. Reads and writes
come from different threads (dnslib answers each query on its own thread), hence the lock.

Outages for fault tests: :meth:`CloudMapStandIn.stop` takes the namespace off the air in
one of three ways (see :class:`Outage`) and :meth:`CloudMapStandIn.start` brings it back.
"""

from __future__ import annotations

import enum
import random
import socket
import threading
import time
import types
from collections import Counter
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Any, TypeVar

from dnslib import AAAA, CLASS, OPCODE, QTYPE, RCODE, RR, SOA, A, DNSLabel, DNSRecord
from dnslib.server import BaseResolver, DNSHandler, DNSLogger, DNSServer

# Route 53 answers a multivalue-answer query with up to eight healthy records.
MAX_ANSWERS = 8
SHUTDOWN_POLL_SECONDS = 0.1

# One registered address: an A record if IPv4, an AAAA record if IPv6.
Address = IPv4Address | IPv6Address
_Ip = TypeVar("_Ip", IPv4Address, IPv6Address)


class Outage(enum.StrEnum):
    """How the stand-in fails while stopped.

    ``drop`` is the realistic one: a resolver that stops answering, so clients wait for
    their timeout. ``servfail`` answers every query with SERVFAIL at once. ``closed``
    closes the sockets: on loopback the client gets "connection refused" immediately.
    """

    DROP = "drop"
    SERVFAIL = "servfail"
    CLOSED = "closed"


class Answers(enum.StrEnum):
    """Which eight of more than eight records an answer holds (see the module docstring)."""

    RANDOM = "random"
    PER_RESOLVER = "per-resolver"


class Registry:
    """Registered addresses per service: the instance table of a Cloud Map service.

    IPv4 and IPv6 addresses live side by side (A and AAAA records of the same name); an
    address registered twice is one record, as DNS has no duplicate records in a set.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # service -> address -> when it was registered (time.time(), for status/tests)
        self._instances: dict[str, dict[Address, float]] = {}

    def register(self, service: str, address: Address) -> None:
        if not isinstance(address, IPv4Address | IPv6Address):
            raise TypeError(f"expected an IPv4Address or IPv6Address, got {address!r}")
        with self._lock:
            self._instances.setdefault(service, {}).setdefault(address, time.time())

    def deregister(self, service: str, address: Address) -> bool:
        """Remove one instance; return whether it was registered."""
        with self._lock:
            instances = self._instances.get(service, {})
            return instances.pop(address, None) is not None

    def addresses(self, service: str) -> list[IPv4Address]:
        """The IPv4 addresses (A records), sorted."""
        return self.records(service)[0]

    def ipv6_addresses(self, service: str) -> list[IPv6Address]:
        """The IPv6 addresses (AAAA records), sorted."""
        return self.records(service)[1]

    def records(self, service: str) -> tuple[list[IPv4Address], list[IPv6Address]]:
        """The IPv4 and the IPv6 addresses, sorted, read at one instant."""
        with self._lock:
            registered = list(self._instances.get(service, {}))
        ipv4 = sorted(a for a in registered if isinstance(a, IPv4Address))
        ipv6 = sorted(a for a in registered if isinstance(a, IPv6Address))
        return ipv4, ipv6

    def snapshot(self) -> dict[str, dict[Address, float]]:
        """Every service's instances with their registration times (a copy)."""
        with self._lock:
            return {name: dict(instances) for name, instances in self._instances.items()}


@dataclass(frozen=True)
class _Zone:
    origin: DNSLabel
    soa: RR


class _Resolver(BaseResolver):  # type: ignore[misc]
    """Answers queries from the registry; called on dnslib's handler threads."""

    def __init__(
        self, namespace: str, registry: Registry, max_answers: int, answers: Answers
    ) -> None:
        self.answers = answers
        origin = DNSLabel(namespace)
        # Serial 1 never changes: no secondary server ever transfers this zone. Every
        # timer is 0 so that negative answers are not cached (RFC 2308 takes the
        # minimum of the SOA's TTL and its MINIMUM field).
        soa = RR(
            origin,
            QTYPE.SOA,
            ttl=0,
            rdata=SOA(origin.add("ns"), origin.add("hostmaster"), (1, 0, 0, 0, 0)),
        )
        self.zone = _Zone(origin=origin, soa=soa)
        self.registry = registry
        self.max_answers = max_answers
        self.outage: Outage | None = None
        self.queries: Counter[str] = Counter()
        self._queries_lock = threading.Lock()

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        reply = request.reply(ra=0, aa=1)
        qname = DNSLabel(request.q.qname)
        with self._queries_lock:
            self.queries[str(qname).lower()] += 1
        rcode = self._rejection(request, qname)
        if rcode is None:
            self._answer(reply, qname, request.q.qtype, str(handler.client_address[0]))
        else:
            reply.header.aa = 0
            reply.header.rcode = rcode
        return reply

    def _rejection(self, request: DNSRecord, qname: DNSLabel) -> int | None:
        """The error code for a query this zone does not answer, or None."""
        if self.outage is Outage.SERVFAIL:
            return int(RCODE.SERVFAIL)
        if request.header.opcode != OPCODE.QUERY:
            return int(RCODE.NOTIMP)
        if request.q.qclass != CLASS.IN or not qname.matchSuffix(self.zone.origin):
            return int(RCODE.REFUSED)
        return None

    def _answer(self, reply: DNSRecord, qname: DNSLabel, qtype: int, client: str) -> None:
        if qname == self.zone.origin:
            # The apex exists: its SOA, or NOERROR/no data for any other type.
            if qtype in (QTYPE.SOA, QTYPE.ANY):
                reply.add_answer(self.zone.soa)
            else:
                reply.add_auth(self.zone.soa)
            return
        labels = qname.stripSuffix(self.zone.origin).label
        service = labels[0].decode("ascii", "replace").lower() if len(labels) == 1 else ""
        ipv4, ipv6 = self.registry.records(service) if service else ([], [])
        if not ipv4 and not ipv6:
            reply.header.rcode = RCODE.NXDOMAIN
            reply.add_auth(self.zone.soa)
            return
        # Each type is its own record set, capped and drawn on its own (MULTIVALUE).
        if qtype in (QTYPE.A, QTYPE.ANY):
            for address in self._pick(ipv4, QTYPE.A, client):
                reply.add_answer(RR(qname, QTYPE.A, ttl=0, rdata=A(str(address))))
        if qtype in (QTYPE.AAAA, QTYPE.ANY):
            for address6 in self._pick(ipv6, QTYPE.AAAA, client):
                reply.add_answer(RR(qname, QTYPE.AAAA, ttl=0, rdata=AAAA(str(address6))))
        if not reply.rr:
            reply.add_auth(self.zone.soa)  # NOERROR, no data: no record of that type

    def _pick(self, addresses: list[_Ip], rtype: int, client: str) -> list[_Ip]:
        """At most ``max_answers`` of one type's addresses (see :class:`Answers`)."""
        if len(addresses) <= self.max_answers:
            return addresses
        rng: random.Random | types.ModuleType = random
        if self.answers is Answers.PER_RESOLVER:
            # The same draw for the same resolver, record type and registered set.
            seed = f"{client}|{QTYPE[rtype]}|{','.join(map(str, addresses))}"
            rng = random.Random(seed)  # noqa: S311
        return rng.sample(addresses, self.max_answers)


class _Handler(DNSHandler):  # type: ignore[misc]
    """dnslib's handler, plus the ``drop`` outage: read the query, never answer."""

    def handle(self) -> None:
        if self.server.resolver.outage is Outage.DROP:
            return
        super().handle()


class _QuietLogger(DNSLogger):  # type: ignore[misc]
    """dnslib logs every query to stdout by default; keep only malformed requests."""

    def __init__(self) -> None:
        super().__init__(log="-request,-reply,-truncated,+error", prefix=False)


class CloudMapStandIn:
    """UDP and TCP DNS on one address and port, authoritative for ``namespace``."""

    def __init__(
        self,
        registry: Registry,
        *,
        namespace: str = "internal",
        host: str = "127.0.0.1",
        port: int = 8053,
        max_answers: int = MAX_ANSWERS,
        answers: Answers = Answers.RANDOM,
    ) -> None:
        self.registry = registry
        self.namespace = namespace
        self.host = host
        self.port = port
        self._resolver = _Resolver(namespace, registry, max_answers, answers)
        self._servers: list[DNSServer] = []
        self._outage: Outage | None = Outage.CLOSED  # closed until start()
        self._lock = threading.Lock()

    @property
    def outage(self) -> Outage | None:
        """None while serving, else how it is failing."""
        return self._outage

    def queries(self) -> dict[str, int]:
        """Queries received per name (lower-cased, with the trailing dot), outages included."""
        with self._resolver._queries_lock:
            return dict(self._resolver.queries)

    def start(self) -> None:
        """Serve (again). Binding happens here, so a busy port fails loudly at once."""
        with self._lock:
            if not self._servers:
                self._servers = self._bind()
            self._resolver.outage = self._outage = None

    def stop(self, outage: Outage = Outage.CLOSED) -> None:
        """Take the namespace off the air; ``Outage.CLOSED`` also releases the port."""
        with self._lock:
            if outage is Outage.CLOSED:
                servers, self._servers = self._servers, []
                for server in servers:
                    server.stop()
                    server.server.server_close()
                self._resolver.outage = None
            else:
                self._resolver.outage = outage
            self._outage = outage

    def _bind(self) -> list[DNSServer]:
        servers: list[DNSServer] = []
        try:
            # TCP first: a second UDP bind with SO_REUSEADDR (which dnslib sets) succeeds
            # silently on Linux, a second TCP listener does not, so a busy port fails here.
            for tcp in (True, False):
                server = DNSServer(
                    self._resolver,
                    address=self.host,
                    port=self.port,
                    tcp=tcp,
                    logger=_QuietLogger(),
                    handler=_Handler,
                )
                servers.append(server)
        except OSError as error:
            for server in servers:
                server.server.server_close()
            raise OSError(
                error.errno, f"DNS stand-in cannot bind {self.host}:{self.port}: {error.strerror}"
            ) from error
        for server in servers:
            # dnslib's start_thread() polls for shutdown every 0.5 s; 0.1 s makes
            # `dns stop` (and every test teardown) quick at a negligible cost.
            thread = threading.Thread(
                target=server.server.serve_forever,
                kwargs={"poll_interval": SHUTDOWN_POLL_SECONDS},
                name=f"dns {'tcp' if server.server.socket_type == socket.SOCK_STREAM else 'udp'}",
                daemon=True,
            )
            thread.start()
        return servers


def lookup(name: str, server: tuple[str, int], qtype: str = "A", timeout: float = 2.0) -> DNSRecord:
    """Ask ``server`` one question over UDP and parse the answer (for tests and status)."""
    query = DNSRecord.question(name, qtype)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(query.pack(), server)
        while True:
            data, _ = sock.recvfrom(65535)
            reply = DNSRecord.parse(data)
            if reply.header.id == query.header.id:
                return reply
