"""The Cloud Map stand-in on its own: real UDP/TCP queries on loopback."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv6Address

import aiodns
import pytest
from aiohttp_discovery.accumulate import AccumulatingLookup
from aiohttp_discovery.records import DnsLookup
from dnslib import QTYPE, RCODE, DNSRecord

from local.dns import MAX_ANSWERS, Answers, CloudMapStandIn, Outage, Registry, lookup
from tests.local.ports import free_port

HOST = "127.0.0.1"


@pytest.fixture
def registry() -> Registry:
    return Registry()


@pytest.fixture
def dns(registry: Registry) -> Iterator[CloudMapStandIn]:
    server = CloudMapStandIn(registry, host=HOST, port=free_port(HOST, udp_too=True))
    server.start()
    yield server
    server.stop()


def ask(dns: CloudMapStandIn, name: str, qtype: str = "A", timeout: float = 5.0) -> DNSRecord:
    return lookup(name, (dns.host, dns.port), qtype, timeout=timeout)


def a_records(reply: DNSRecord) -> list[str]:
    return sorted(str(rr.rdata) for rr in reply.rr if rr.rtype == QTYPE.A)


def aaaa_records(reply: DNSRecord) -> list[str]:
    return sorted(str(rr.rdata) for rr in reply.rr if rr.rtype == QTYPE.AAAA)


def addr(text: str) -> IPv4Address:
    return IPv4Address(text)


def addr6(text: str) -> IPv6Address:
    return IPv6Address(text)


def assert_no_data(reply: DNSRecord, what: str = "") -> None:
    """NOERROR, no answer, the zone's SOA in the authority section (RFC 2308 NODATA)."""
    assert reply.header.rcode == RCODE.NOERROR, what
    assert reply.header.aa == 1, what
    assert not reply.rr, what
    assert [rr.rtype for rr in reply.auth] == [QTYPE.SOA], what


def test_registered_addresses_are_served_with_ttl_0(
    dns: CloudMapStandIn, registry: Registry
) -> None:
    registry.register("name", addr("127.0.1.1"))
    registry.register("name", addr("127.0.1.2"))
    reply = ask(dns, "name.internal")
    assert reply.header.rcode == RCODE.NOERROR
    assert reply.header.aa == 1, "authoritative for its namespace"
    assert reply.header.ra == 0, "not a recursive resolver"
    assert a_records(reply) == ["127.0.1.1", "127.0.1.2"]
    assert {rr.ttl for rr in reply.rr} == {0}


def test_names_are_case_insensitive(dns: CloudMapStandIn, registry: Registry) -> None:
    registry.register("name", addr("127.0.1.1"))
    assert a_records(ask(dns, "NAME.Internal.")) == ["127.0.1.1"]


def test_unknown_names_in_the_zone_are_nxdomain_with_the_soa(
    dns: CloudMapStandIn, registry: Registry
) -> None:
    registry.register("name", addr("127.0.1.1"))
    for name in ("hello.internal", "x.name.internal"):
        reply = ask(dns, name)
        assert reply.header.rcode == RCODE.NXDOMAIN, name
        assert reply.header.aa == 1
        assert not reply.rr
        (soa,) = reply.auth
        assert soa.rtype == QTYPE.SOA
        assert soa.ttl == 0
        assert soa.rdata.times[-1] == 0, "negative answers must not be cached"


def test_a_name_with_no_registered_address_does_not_exist(
    dns: CloudMapStandIn, registry: Registry
) -> None:
    registry.register("name", addr("127.0.1.1"))
    assert registry.deregister("name", addr("127.0.1.1"))
    assert not registry.deregister("name", addr("127.0.1.1"))
    assert ask(dns, "name.internal").header.rcode == RCODE.NXDOMAIN


def test_other_types_of_a_known_name_get_no_data(dns: CloudMapStandIn, registry: Registry) -> None:
    registry.register("name", addr("127.0.1.1"))
    for qtype in ("AAAA", "TXT", "SRV"):
        reply = ask(dns, "name.internal", qtype)
        assert reply.header.rcode == RCODE.NOERROR, qtype
        assert not reply.rr, qtype
        assert [rr.rtype for rr in reply.auth] == [QTYPE.SOA]
    assert a_records(ask(dns, "name.internal", "ANY")) == ["127.0.1.1"]


def test_the_apex_exists_and_has_an_soa(dns: CloudMapStandIn) -> None:
    reply = ask(dns, "internal", "SOA")
    assert reply.header.rcode == RCODE.NOERROR
    assert [rr.rtype for rr in reply.rr] == [QTYPE.SOA]
    assert ask(dns, "internal", "A").header.rcode == RCODE.NOERROR


def test_names_outside_the_namespace_are_refused(dns: CloudMapStandIn) -> None:
    for name in ("example.com", "internal.example.com", "com"):
        reply = ask(dns, name)
        assert reply.header.rcode == RCODE.REFUSED, name
        assert reply.header.aa == 0


def test_at_most_eight_records_per_answer_chosen_at_random(
    dns: CloudMapStandIn, registry: Registry
) -> None:
    registered = {f"127.0.1.{i}" for i in range(1, 13)}
    for address in registered:
        registry.register("name", addr(address))
    seen: set[str] = set()
    for _ in range(30):
        answer = a_records(ask(dns, "name.internal"))
        assert len(answer) == MAX_ANSWERS
        assert set(answer) <= registered
        seen.update(answer)
    # 30 random draws of 8 from 12 leave any one address out with probability (1/3)^30.
    assert seen == registered


def test_per_resolver_answers_repeat_for_one_resolver_until_the_set_changes(
    registry: Registry,
) -> None:
    """The case Route 53 does not rule out: one resolver, the same eight every time."""
    dns = CloudMapStandIn(
        registry, host=HOST, port=free_port(HOST, udp_too=True), answers=Answers.PER_RESOLVER
    )
    dns.start()
    try:
        for i in range(1, 13):
            registry.register("name", addr(f"127.0.1.{i}"))
        answers = {tuple(a_records(ask(dns, "name.internal"))) for _ in range(10)}
        assert len(answers) == 1
        assert len(next(iter(answers))) == MAX_ANSWERS
    finally:
        dns.stop()


async def test_accumulated_lookups_see_every_record_and_flag_answers_that_repeat(
    dns: CloudMapStandIn, registry: Registry
) -> None:
    """hello's lookup (aiodns, accumulated) against the stand-in: all 20 records from random
    answers; with per-resolver answers only 8, and the repeat is counted."""
    for i in range(1, 21):
        registry.register("name", addr(f"127.0.1.{i}"))
    server = [f"{dns.host}:{dns.port}"]
    lookup = AccumulatingLookup(DnsLookup(server), refresh_interval=5.0)
    try:
        assert len(await lookup("name.internal")) == 20
        assert lookup.repeats == 0
    finally:
        await lookup.close()
    sticky = CloudMapStandIn(
        registry, host=HOST, port=free_port(HOST, udp_too=True), answers=Answers.PER_RESOLVER
    )
    sticky.start()
    lookup = AccumulatingLookup(DnsLookup([f"{sticky.host}:{sticky.port}"]), refresh_interval=5.0)
    try:
        assert len(await lookup("name.internal")) == MAX_ANSWERS
        assert lookup.repeats == 1
    finally:
        await lookup.close()
        sticky.stop()


def test_ipv6_addresses_are_served_as_aaaa_with_ttl_0(
    dns: CloudMapStandIn, registry: Registry
) -> None:
    registry.register("name", addr6("::1"))
    registry.register("name", addr6("2001:db8::2"))
    registry.register("name", addr6("::1"))  # the same address again: still one record
    reply = ask(dns, "name.internal", "AAAA")
    assert reply.header.rcode == RCODE.NOERROR
    assert reply.header.aa == 1
    assert reply.header.ra == 0
    assert aaaa_records(reply) == ["2001:db8::2", "::1"]
    assert [rr.rtype for rr in reply.rr] == [QTYPE.AAAA] * 2
    assert {rr.ttl for rr in reply.rr} == {0}
    assert aaaa_records(ask(dns, "NAME.Internal.", "AAAA")) == ["2001:db8::2", "::1"]
    assert registry.ipv6_addresses("name") == [addr6("::1"), addr6("2001:db8::2")]
    assert registry.addresses("name") == [], "addresses() are the IPv4 ones only"
    with pytest.raises(TypeError):
        registry.register("name", "::2")  # type: ignore[arg-type]


def test_an_ipv6_only_name_has_no_a_records_and_unknown_names_no_aaaa(
    dns: CloudMapStandIn, registry: Registry
) -> None:
    registry.register("name", addr6("::1"))
    for qtype in ("A", "TXT"):
        assert_no_data(ask(dns, "name.internal", qtype), qtype)
    assert aaaa_records(ask(dns, "name.internal", "ANY")) == ["::1"]
    for name in ("hello.internal", "x.name.internal"):
        reply = ask(dns, name, "AAAA")
        assert reply.header.rcode == RCODE.NXDOMAIN, name
        assert not reply.rr
        (soa,) = reply.auth
        assert soa.rtype == QTYPE.SOA
        assert soa.rdata.times[-1] == 0
    assert registry.deregister("name", addr6("::1"))
    assert not registry.deregister("name", addr6("::1"))
    assert ask(dns, "name.internal", "AAAA").header.rcode == RCODE.NXDOMAIN


def test_a_dual_stack_name_answers_each_type_with_its_own_records(
    dns: CloudMapStandIn, registry: Registry
) -> None:
    registry.register("name", addr("127.0.1.1"))
    registry.register("name", addr6("::1"))
    a = ask(dns, "name.internal", "A")
    assert [rr.rtype for rr in a.rr] == [QTYPE.A]
    assert a_records(a) == ["127.0.1.1"]
    aaaa = ask(dns, "name.internal", "AAAA")
    assert [rr.rtype for rr in aaaa.rr] == [QTYPE.AAAA]
    assert aaaa_records(aaaa) == ["::1"]
    both = ask(dns, "name.internal", "ANY")
    assert (a_records(both), aaaa_records(both)) == (["127.0.1.1"], ["::1"])
    query = DNSRecord.question("name.internal", "AAAA")
    over_tcp = DNSRecord.parse(query.send(dns.host, dns.port, tcp=True, timeout=5))
    assert aaaa_records(over_tcp) == ["::1"]
    # The IPv4 address leaves: the name still exists, with AAAA only.
    assert registry.deregister("name", addr("127.0.1.1"))
    assert_no_data(ask(dns, "name.internal", "A"), "A after the IPv4 address left")
    assert aaaa_records(ask(dns, "name.internal", "AAAA")) == ["::1"]
    # And the other way round.
    registry.register("name", addr("127.0.1.1"))
    assert registry.deregister("name", addr6("::1"))
    assert_no_data(ask(dns, "name.internal", "AAAA"), "AAAA after the IPv6 address left")
    assert a_records(ask(dns, "name.internal", "A")) == ["127.0.1.1"]


def test_at_most_eight_aaaa_records_per_answer_each_type_capped_on_its_own(
    dns: CloudMapStandIn, registry: Registry
) -> None:
    ipv6 = {f"2001:db8::{i:x}" for i in range(1, 13)}
    ipv4 = {f"127.0.1.{i}" for i in range(1, 4)}
    for address in ipv6:
        registry.register("name", addr6(address))
    for address in ipv4:
        registry.register("name", addr(address))
    seen: set[str] = set()
    for _ in range(30):
        answer = aaaa_records(ask(dns, "name.internal", "AAAA"))
        assert len(answer) == MAX_ANSWERS
        assert set(answer) <= ipv6
        seen.update(answer)
    # 30 random draws of 8 from 12 leave any one address out with probability (1/3)^30.
    assert seen == ipv6
    # Twelve AAAA records do not crowd out the three A records, nor the other way round.
    assert set(a_records(ask(dns, "name.internal", "A"))) == ipv4
    both = ask(dns, "name.internal", "ANY")
    assert set(a_records(both)) == ipv4
    assert len(aaaa_records(both)) == MAX_ANSWERS
    for i in range(4, 13):
        registry.register("name", addr(f"127.0.1.{i}"))
    both = ask(dns, "name.internal", "ANY")
    assert (len(a_records(both)), len(aaaa_records(both))) == (MAX_ANSWERS, MAX_ANSWERS)


def test_per_resolver_aaaa_answers_repeat_for_one_resolver(registry: Registry) -> None:
    dns = CloudMapStandIn(
        registry, host=HOST, port=free_port(HOST, udp_too=True), answers=Answers.PER_RESOLVER
    )
    dns.start()
    try:
        for i in range(1, 13):
            registry.register("name", addr6(f"2001:db8::{i:x}"))
        answers = {tuple(aaaa_records(ask(dns, "name.internal", "AAAA"))) for _ in range(10)}
        assert len(answers) == 1
        assert len(next(iter(answers))) == MAX_ANSWERS
    finally:
        dns.stop()


async def test_the_services_resolver_reads_aaaa(dns: CloudMapStandIn, registry: Registry) -> None:
    """aiodns (c-ares), which hello uses, asking AAAA of the stand-in on a non-standard port."""
    registry.register("name", addr6("::1"))
    registry.register("name", addr6("2001:db8::2"))
    registry.register("dual", addr("127.0.1.1"))
    registry.register("dual", addr6("::1"))
    registry.register("v4", addr("127.0.1.1"))
    resolver = aiodns.DNSResolver(nameservers=[f"{dns.host}:{dns.port}"], timeout=2, tries=1)
    result = await resolver.query_dns("name.internal", "AAAA")
    assert sorted(r.data.addr for r in result.answer) == ["2001:db8::2", "::1"]
    assert {r.ttl for r in result.answer} == {0}
    dual = await resolver.query_dns("dual.internal", "AAAA")
    assert [r.data.addr for r in dual.answer] == ["::1"]
    dual = await resolver.query_dns("dual.internal", "A")
    assert [r.data.addr for r in dual.answer] == ["127.0.1.1"]
    for name, qtype in (("name.internal", "A"), ("v4.internal", "AAAA")):
        with pytest.raises(aiodns.error.DNSError) as nodata:
            await resolver.query_dns(name, qtype)
        assert nodata.value.args[0] == aiodns.error.ARES_ENODATA, (name, qtype)
    with pytest.raises(aiodns.error.DNSError) as missing:
        await resolver.query_dns("missing.internal", "AAAA")
    assert missing.value.args[0] == aiodns.error.ARES_ENOTFOUND


def test_tcp_is_served_too(dns: CloudMapStandIn, registry: Registry) -> None:
    registry.register("name", addr("127.0.1.7"))
    query = DNSRecord.question("name.internal")
    reply = DNSRecord.parse(query.send(dns.host, dns.port, tcp=True, timeout=5))
    assert a_records(reply) == ["127.0.1.7"]


async def test_the_services_resolver_reads_it(dns: CloudMapStandIn, registry: Registry) -> None:
    """aiodns (c-ares), which hello uses, on a non-standard port: the local stack's setup."""
    registry.register("name", addr("127.0.1.1"))
    registry.register("name", addr("127.0.1.2"))
    resolver = aiodns.DNSResolver(nameservers=[f"{dns.host}:{dns.port}"], timeout=2, tries=1)
    result = await resolver.query_dns("name.internal", "A")
    assert sorted(r.data.addr for r in result.answer) == ["127.0.1.1", "127.0.1.2"]
    assert {r.ttl for r in result.answer} == {0}
    with pytest.raises(aiodns.error.DNSError):
        await resolver.query_dns("missing.internal", "A")


def test_queries_are_counted_per_name(dns: CloudMapStandIn, registry: Registry) -> None:
    registry.register("name", addr("127.0.1.1"))
    for _ in range(3):
        ask(dns, "name.internal")
    ask(dns, "other.internal")
    assert dns.queries() == {"name.internal.": 3, "other.internal.": 1}


def test_outage_drop_answers_nothing_until_started(
    dns: CloudMapStandIn, registry: Registry
) -> None:
    registry.register("name", addr("127.0.1.1"))
    dns.stop(Outage.DROP)
    assert dns.outage is Outage.DROP
    with pytest.raises(TimeoutError):
        ask(dns, "name.internal", timeout=0.5)
    dns.start()
    assert dns.outage is None
    assert a_records(ask(dns, "name.internal")) == ["127.0.1.1"]


def test_outage_servfail(dns: CloudMapStandIn, registry: Registry) -> None:
    registry.register("name", addr("127.0.1.1"))
    dns.stop(Outage.SERVFAIL)
    assert ask(dns, "name.internal").header.rcode == RCODE.SERVFAIL
    dns.start()
    assert ask(dns, "name.internal").header.rcode == RCODE.NOERROR


def test_outage_closed_releases_the_port_and_start_rebinds_it(
    dns: CloudMapStandIn, registry: Registry
) -> None:
    registry.register("name", addr("127.0.1.1"))
    dns.stop(Outage.CLOSED)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((dns.host, dns.port))  # would fail if the listener were still there
    dns.start()
    assert a_records(ask(dns, "name.internal")) == ["127.0.1.1"]


def test_a_busy_port_fails_at_start_and_names_it(dns: CloudMapStandIn) -> None:
    second = CloudMapStandIn(Registry(), host=dns.host, port=dns.port)
    with pytest.raises(OSError, match=f"{dns.host}:{dns.port}"):
        second.start()
