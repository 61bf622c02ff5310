"""hello's gray-failure knobs: defaults, and every bad value refused in one line naming it."""

import pytest

from apps.common.env import EnvError
from apps.hello.app import upstream_settings
from apps.hello.settings import Settings
from apps.hello.tuning import Tuning

BASE = {"NAME_SERVER": "http://name.internal:3000/"}


def test_defaults_are_the_discovery_clients_own() -> None:
    settings = Settings.from_env(BASE)
    assert settings.tuning == Tuning()
    upstream = upstream_settings(settings)
    assert upstream.retry_statuses == frozenset(range(500, 600))
    assert (upstream.max_hedges, upstream.hedge_quantile) == (1, 0.97)
    assert (upstream.hedge_min_delay, upstream.hedge_max_delay) == (0.005, 0.25)
    assert (upstream.max_ejection_percent, upstream.panic_threshold_percent) == (50.0, 50.0)
    assert (upstream.probe_interval, upstream.probe_timeout, upstream.probe_path) == (
        1.0,
        0.25,
        "/health",
    )
    assert upstream.latency_decay == 10.0


def test_values_are_passed_through() -> None:
    env = BASE | {
        "RETRY_STATUSES": "502, 503,504",
        "MAX_HEDGES": "0",
        "HEDGE_QUANTILE": "0.9",
        "HEDGE_MIN_DELAY_SECONDS": "0.002",
        "HEDGE_MAX_DELAY_SECONDS": "0.1",
        "LATENCY_DECAY_SECONDS": "5",
        "MAX_EJECTION_PERCENT": "34",
        "PANIC_THRESHOLD_PERCENT": "20",
        "PROBE_INTERVAL_SECONDS": "0.5",
        "PROBE_TIMEOUT_SECONDS": "0.2",
    }
    upstream = upstream_settings(Settings.from_env(env))
    assert upstream.retry_statuses == {502, 503, 504}
    assert upstream.max_hedges == 0
    assert (upstream.hedge_quantile, upstream.hedge_min_delay, upstream.hedge_max_delay) == (
        0.9,
        0.002,
        0.1,
    )
    assert (upstream.latency_decay, upstream.max_ejection_percent) == (5.0, 34.0)
    assert (upstream.panic_threshold_percent, upstream.probe_interval) == (20.0, 0.5)
    assert Tuning.from_env({"RETRY_STATUSES": "5xx,429"}).retry_statuses == (
        frozenset(range(500, 600)) | {429}
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RETRY_STATUSES", "200"),
        ("RETRY_STATUSES", "5xx,abc"),
        ("MAX_HEDGES", "2"),
        ("HEDGE_QUANTILE", "1"),
        ("HEDGE_QUANTILE", "0.2"),
        ("HEDGE_MIN_DELAY_SECONDS", "0"),
        ("HEDGE_MAX_DELAY_SECONDS", "0.001"),  # below the 5 ms floor
        ("LATENCY_DECAY_SECONDS", "0"),
        ("MAX_EJECTION_PERCENT", "101"),
        ("PANIC_THRESHOLD_PERCENT", "-1"),
        ("PROBE_INTERVAL_SECONDS", "0.01"),
        ("PROBE_TIMEOUT_SECONDS", "2"),  # not below the 1 s interval
    ],
)
def test_a_bad_value_is_refused_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(EnvError, match=name):
        Settings.from_env(BASE | {name: value})
