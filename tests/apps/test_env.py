"""apps.common.env: one parser per kind of value, shared by the services and their health check.

A value the services serve on must never be one the container health check refuses (ECS would
replace healthy tasks), and a value neither can use must end in one line naming the variable,
never in a traceback.
"""

from __future__ import annotations

import pytest

from apps import healthcheck
from apps.common import env
from apps.common.env import EnvError
from apps.hello.settings import Settings as HelloSettings
from apps.hello.settings import parse_dns_servers
from apps.hello.tuning import parse_statuses
from apps.name.app import Settings as NameSettings

NAME_SERVER = {"NAME_SERVER": "http://name.internal:3000/"}

# Spelled every way a user or a template might: the rule is ASCII digits, surrounding
# whitespace ignored, nothing else.
PORTS_ACCEPTED = {"3063": 3063, " 3063": 3063, "3063\n": 3063, "": 3000, "   ": 3000}
PORTS_REFUSED = [
    "3_063",  # int() accepts the separator
    "٣٠٦٣",  # Arabic-Indic digits: int() accepts them too
    "\uff13\uff10\uff16\uff13",  # fullwidth digits
    "306³",  # a superscript: isdigit() is true, int() raises
    "+3063",
    "30 63",
    "0x0bef",
    "0",
    "65536",
    "-1",
    "3063.0",
]


@pytest.mark.parametrize("raw", sorted(PORTS_ACCEPTED))
def test_a_port_the_services_serve_on_is_the_one_the_health_check_probes(raw: str) -> None:
    environ = {"PORT": raw} | NAME_SERVER
    expected = PORTS_ACCEPTED[raw]
    assert NameSettings.from_env(environ).port == expected
    assert HelloSettings.from_env(environ).port == expected
    assert healthcheck.target(environ) == ("127.0.0.1", expected)


@pytest.mark.parametrize("raw", PORTS_REFUSED)
def test_a_port_the_services_refuse_the_health_check_refuses_naming_the_variable(
    raw: str, capsys: pytest.CaptureFixture[str]
) -> None:
    environ = {"PORT": raw} | NAME_SERVER
    for read in (NameSettings.from_env, HelloSettings.from_env, healthcheck.target):
        with pytest.raises(EnvError, match=r"^PORT=.*expected an integer from 1 to 65535"):
            read(environ)
    # The health check's own exit: one line on stderr, no probe, no traceback.
    assert healthcheck.main([], environ) == 1
    err = capsys.readouterr().err
    assert err.startswith("healthcheck: PORT=")
    assert err.count("\n") == 1


def test_the_health_check_probes_the_address_the_service_binds() -> None:
    assert healthcheck.target({"HOST": " 127.0.1.5 "}) == ("127.0.1.5", 3000)
    for wildcard in ("0.0.0.0", "::", ""):
        assert healthcheck.target({"HOST": wildcard}) == ("127.0.0.1", 3000)


def test_digits_of_other_scripts_say_what_is_allowed() -> None:
    with pytest.raises(EnvError) as caught:
        env.port("PORT", 3000, {"PORT": "3_063"})
    assert str(caught.value) == (
        "PORT='3_063': expected an integer from 1 to 65535 written with the ASCII digits 0-9 only"
    )
    with pytest.raises(EnvError, match=r"^DRAIN_SECONDS='1\u0660': expected a number .* 0-9 only$"):
        env.number("DRAIN_SECONDS", 1.0, env={"DRAIN_SECONDS": "1\u0660"})


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0.25", 0.25), (".5", 0.5), ("5.", 5.0), ("1e-3", 0.001), ("-2", -2.0), (" 7 ", 7.0)],
)
def test_numbers_in_ascii_decimal(text: str, expected: float) -> None:
    assert env.parse_number(text) == expected


@pytest.mark.parametrize("text", ["1_0", "٣", "5²", "inf", "nan", "1e999", "0x10", "", "."])
def test_not_numbers(text: str) -> None:
    assert env.parse_number(text) is None


@pytest.mark.parametrize("value", ["50²", "50³", "٥٠٣", "5_03", "+503"])
def test_retry_statuses_in_other_digits_are_refused_naming_the_variable(value: str) -> None:
    with pytest.raises(EnvError, match=r"^RETRY_STATUSES=.* is not a status from 400 to 599"):
        parse_statuses(value)


def test_retry_statuses_in_ascii_digits() -> None:
    assert parse_statuses(" 502, 503 ") == frozenset({502, 503})


@pytest.mark.parametrize("port", ["5³", "٥٣", "5_3", "+53", "", "0", "65536"])
def test_dns_server_ports_in_other_digits_are_refused_naming_the_variable(port: str) -> None:
    with pytest.raises(EnvError, match=r"^DNS_SERVERS=.* has no port from 1 to 65535"):
        parse_dns_servers(f"127.0.0.1:{port}")


def test_dns_server_ports_in_ascii_digits() -> None:
    assert parse_dns_servers("127.0.0.1:53,[::1]:5353") == ("127.0.0.1:53", "[::1]:5353")
