"""Environment parsing: every bad value is named in one clear line."""

import re
from typing import Any

import pytest
from yarl import URL

from apps import ENVIRONMENT
from apps.common.env import EnvError
from apps.hello.app import upstream_settings, zone_routing
from apps.hello.settings import Settings, parse_dns_servers, parse_name_server
from apps.name.app import Settings as NameSettings


def test_hello_defaults_follow_the_contract() -> None:
    settings = Settings.from_env({"NAME_SERVER": "http://name.internal:3000/"})
    assert settings.name_server == URL("http://name.internal:3000/")
    assert (settings.host, settings.port) == ("0.0.0.0", 3000)
    assert settings.dns_servers == ()
    assert settings.dns_refresh_seconds == 5.0
    assert settings.connect_timeout_seconds == 0.25
    assert settings.request_timeout_seconds == 2.0
    assert settings.max_attempts == 3
    assert settings.drain_seconds == 0.0


def test_name_defaults_follow_the_contract() -> None:
    assert NameSettings.from_env({}) == NameSettings("0.0.0.0", 3000, 10.0)
    assert NameSettings.from_env({"DRAIN_SECONDS": "0"}).drain_seconds == 0.0


@pytest.mark.parametrize(
    "value",
    [
        "http://name.internal:3000/",
        "http://name.internal:3000",
        "http://10.0.1.7:3000/",
        "http://name.internal/",
        "http://name.internal:3000/api/name?x=1",
        "http://NAME.internal.:8080/",
    ],
)
def test_valid_name_servers(value: str) -> None:
    url = parse_name_server(value)
    assert url.scheme == "http"
    assert url.host
    assert url.port


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("name.internal:3000", "scheme must be http"),
        ("https://name.internal:3000/", "scheme must be http"),
        ("http://:3000/", "host is required"),
        ("http://name.internal:99999/", "Port out of range"),
        ("http://name.internal:abc/", "not a valid URL"),
        ("http://name.internal:0/", "the port must be from 1 to 65535"),
        ("http://user:secret@name.internal:3000/", "credentials"),
        ("http://name.internal:3000/#frag", "fragment"),
        ("http://[::1]:3000/", "IPv6"),
        ("http://name_internal:3000/", "not a valid host name"),
        ("http://-bad.internal:3000/", "not a valid host name"),
    ],
)
def test_malformed_name_servers_are_named(value: str, why: str) -> None:
    with pytest.raises(EnvError) as caught:
        parse_name_server(value)
    message = str(caught.value)
    assert message.startswith(f"NAME_SERVER={value!r}: ")
    assert why in message
    assert "http://name.internal:3000/" in message  # says what is expected
    assert "\n" not in message


def test_missing_name_server() -> None:
    for environ in ({}, {"NAME_SERVER": "  "}):
        with pytest.raises(EnvError, match=r"^NAME_SERVER is required but not set$"):
            Settings.from_env(environ)


def test_dns_servers() -> None:
    assert parse_dns_servers("") == ()
    assert parse_dns_servers("10.0.0.2") == ("10.0.0.2",)
    assert parse_dns_servers(" 127.0.0.1:5353 , 10.0.0.2 ") == ("127.0.0.1:5353", "10.0.0.2")
    assert parse_dns_servers("[::1]:53,::1") == ("[::1]:53", "::1")


@pytest.mark.parametrize("value", ["name.internal", "127.0.0.1:0", "127.0.0.1:x", "[::1", "1.2.3"])
def test_bad_dns_servers(value: str) -> None:
    with pytest.raises(EnvError, match=r"^DNS_SERVERS="):
        parse_dns_servers(value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORT", "0"),
        ("PORT", "70000"),
        ("PORT", "3000.5"),
        ("DNS_REFRESH_SECONDS", "0"),
        ("DNS_REFRESH_SECONDS", "soon"),
        ("DNS_REFRESH_SECONDS", "1e-9"),  # was accepted: thousands of DNS queries a second
        ("DNS_REFRESH_SECONDS", "0.09"),
        ("CONNECT_TIMEOUT_SECONDS", "-1"),
        ("CONNECT_TIMEOUT_SECONDS", "1e-9"),
        ("REQUEST_TIMEOUT_SECONDS", "0.001"),
        ("REQUEST_TIMEOUT_SECONDS", "nan"),
        ("REQUEST_TIMEOUT_SECONDS", "inf"),
        ("MAX_ATTEMPTS", "0"),
        ("MAX_ATTEMPTS", "2.5"),
        ("DRAIN_SECONDS", "-5"),
    ],
)
def test_every_bad_value_names_its_variable(name: str, value: str) -> None:
    environ = {"NAME_SERVER": "http://name.internal:3000/", name: value}
    with pytest.raises(EnvError) as caught:
        Settings.from_env(environ)
    assert str(caught.value).startswith(f"{name}={value!r}: expected ")


@pytest.mark.parametrize(
    ("name", "floor", "message"),
    [
        ("DNS_REFRESH_SECONDS", "0.1", "expected a number at least 0.1 and at most 3600"),
        ("CONNECT_TIMEOUT_SECONDS", "0.01", "expected a number at least 0.01 and at most 60"),
        ("REQUEST_TIMEOUT_SECONDS", "0.01", "expected a number at least 0.01 and at most 300"),
    ],
)
def test_floors_are_accepted_and_what_is_below_them_is_refused_by_name(
    name: str, floor: str, message: str
) -> None:
    """A near-zero refresh made thousands of DNS queries a second; a near-zero timeout
    fails every attempt. The floor itself is allowed, and the refusal says what is."""
    environ = {"NAME_SERVER": "http://name.internal:3000/", "CONNECT_TIMEOUT_SECONDS": "0.01"}
    Settings.from_env({**environ, name: floor})
    below = str(float(floor) / 2)
    with pytest.raises(EnvError) as caught:
        Settings.from_env({**environ, name: below})
    assert str(caught.value) == f"{name}={below!r}: {message}"


def test_connect_timeout_cannot_exceed_request_timeout() -> None:
    environ = {
        "NAME_SERVER": "http://name.internal:3000/",
        "CONNECT_TIMEOUT_SECONDS": "3",
        "REQUEST_TIMEOUT_SECONDS": "2",
    }
    with pytest.raises(
        EnvError, match="CONNECT_TIMEOUT_SECONDS=3 exceeds REQUEST_TIMEOUT_SECONDS=2"
    ):
        Settings.from_env(environ)


class _Recording(dict[str, str]):
    """An environment that remembers every variable asked for, however it is asked."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.asked: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.asked.add(key)
        return super().__contains__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return super().get(key, default)


def test_environment_lists_exactly_what_the_services_read() -> None:
    """apps.ENVIRONMENT is what tests and the bench clear: it must not miss a variable."""
    hello_env = _Recording({"NAME_SERVER": "http://name.internal:3000/"})
    Settings.from_env(hello_env)
    name_env = _Recording({})
    NameSettings.from_env(name_env)
    assert hello_env.asked | name_env.asked == ENVIRONMENT


def test_service_connect_mode_makes_one_attempt_through_the_proxy_and_leaves_zones_to_it() -> None:
    """DISCOVERY_MODE=serviceConnect: name's URL leads to the task's proxy, which balances,
    ejects and retries (twice); hello's own retries would make one failure 3 x 3 requests."""
    environ = {
        "NAME_SERVER": "http://name:3000/",
        "DISCOVERY_MODE": "serviceConnect",
        "PROXY_TIMEOUT_SECONDS": "1",
        "ZONE_SUBNETS": '{"a": ["10.0.0.0/24"], "b": ["10.0.1.0/24"]}',
    }
    settings = Settings.from_env(environ)
    upstream = upstream_settings(settings)
    assert upstream.proxy
    assert (upstream.max_attempts, upstream.max_hedges) == (1, 0)
    assert upstream.request_timeout == settings.request_timeout_seconds == 2.0
    assert zone_routing(settings, environ) is None
    dns = Settings.from_env({**environ, "DISCOVERY_MODE": "dns"})
    assert not upstream_settings(dns).proxy
    assert upstream_settings(dns).max_attempts == 3
    assert zone_routing(dns, environ) is not None


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"DISCOVERY_MODE": "consul"}, "DISCOVERY_MODE='consul': expected dns or serviceConnect"),
        (
            {"DISCOVERY_MODE": "serviceConnect", "PROXY_TIMEOUT_SECONDS": "2"},
            "REQUEST_TIMEOUT_SECONDS=2 must exceed PROXY_TIMEOUT_SECONDS=2",
        ),
        ({"PROXY_IDLE_TIMEOUT_SECONDS": "0"}, "PROXY_IDLE_TIMEOUT_SECONDS"),
    ],
)
def test_a_discovery_mode_that_cannot_work_is_refused_naming_the_variable(
    extra: dict[str, str], words: str
) -> None:
    with pytest.raises(EnvError, match=re.escape(words)):
        Settings.from_env({"NAME_SERVER": "http://name:3000/", **extra})
