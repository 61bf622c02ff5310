"""hello's knobs for gray failures: retries, hedging, balancing, ejection and probes.

Read from the environment with the same rules as the other settings (one clear
line naming the variable on a bad value), and handed to ``UpstreamSettings``.
Every default is the discovery client's own.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from apps.common import env
from apps.common.env import EnvError

_FIVE_XX = frozenset(range(500, 600))


@dataclass(frozen=True)
class Tuning:
    retry_statuses: frozenset[int] = _FIVE_XX
    max_hedges: int = 1
    hedge_quantile: float = 0.97
    hedge_min_delay_seconds: float = 0.005
    hedge_max_delay_seconds: float = 0.25
    latency_decay_seconds: float = 10.0
    max_ejection_percent: float = 50.0
    panic_threshold_percent: float = 50.0
    probe_interval_seconds: float = 1.0
    probe_timeout_seconds: float = 0.25

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Tuning:
        hedge_min = env.number(
            "HEDGE_MIN_DELAY_SECONDS",
            cls.hedge_min_delay_seconds,
            allow_minimum=False,
            maximum=10,
            env=environ,
        )
        hedge_max = env.number(
            "HEDGE_MAX_DELAY_SECONDS", cls.hedge_max_delay_seconds, maximum=60, env=environ
        )
        if hedge_max < hedge_min:
            raise EnvError(
                f"HEDGE_MAX_DELAY_SECONDS={hedge_max:g} is below "
                f"HEDGE_MIN_DELAY_SECONDS={hedge_min:g}"
            )
        probe_interval = env.number(
            "PROBE_INTERVAL_SECONDS",
            cls.probe_interval_seconds,
            minimum=0.1,
            maximum=60,
            env=environ,
        )
        probe_timeout = env.number(
            "PROBE_TIMEOUT_SECONDS",
            cls.probe_timeout_seconds,
            allow_minimum=False,
            maximum=60,
            env=environ,
        )
        if probe_timeout >= probe_interval:
            raise EnvError(
                f"PROBE_TIMEOUT_SECONDS={probe_timeout:g} must be below "
                f"PROBE_INTERVAL_SECONDS={probe_interval:g}"
            )
        return cls(
            retry_statuses=parse_statuses(environ.get("RETRY_STATUSES", "")),
            max_hedges=env.integer("MAX_HEDGES", cls.max_hedges, minimum=0, maximum=1, env=environ),
            hedge_quantile=env.number(
                "HEDGE_QUANTILE", cls.hedge_quantile, minimum=0.5, maximum=0.999, env=environ
            ),
            hedge_min_delay_seconds=hedge_min,
            hedge_max_delay_seconds=hedge_max,
            latency_decay_seconds=env.number(
                "LATENCY_DECAY_SECONDS",
                cls.latency_decay_seconds,
                minimum=0.1,
                maximum=600,
                env=environ,
            ),
            max_ejection_percent=env.number(
                "MAX_EJECTION_PERCENT", cls.max_ejection_percent, maximum=100, env=environ
            ),
            panic_threshold_percent=env.number(
                "PANIC_THRESHOLD_PERCENT", cls.panic_threshold_percent, maximum=100, env=environ
            ),
            probe_interval_seconds=probe_interval,
            probe_timeout_seconds=probe_timeout,
        )


def parse_statuses(value: str) -> frozenset[int]:
    """``5xx`` or comma-separated statuses from 400 to 599 (``502,503,504``); empty: 5xx."""
    if not value.strip():
        return _FIVE_XX
    statuses: set[int] = set()
    for raw in value.split(","):
        item = raw.strip().lower()
        if item == "5xx":
            statuses |= _FIVE_XX
            continue
        status = env.parse_integer(item)
        if status is None or not 400 <= status <= 599:
            raise EnvError(
                f"RETRY_STATUSES={value!r}: {raw.strip()!r} is not a status from 400 to 599 "
                "in ASCII digits (expected 5xx or a list like 502,503,504)"
            )
        statuses.add(status)
    return frozenset(statuses)
