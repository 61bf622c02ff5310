"""The two services of the pattern and the discovery client they share.

- ``apps.name``: the backend, answers ``<Name> (from <hostname>)``.
- ``apps.hello``: the front, finds name's tasks through DNS (Cloud Map) and
  answers ``Hello (from <hostname>) <name's answer>``.
- ``aiohttp_discovery``: the reusable client-side discovery and load-balancing
  library (DNS cache, power-of-two-choices balancer, retry budget, upstream client).
- ``apps.common``: the services' runtime (env parsing, JSON logs, drain on SIGTERM).
- ``apps.healthcheck``: a tiny probe for the ECS container health check.
"""

#: Every environment variable either service reads (``apps.name.app.Settings`` and
#: ``apps.hello.settings.Settings``; tests/apps/test_settings.py keeps this exact).
#: Whatever starts the services for a measurement or a test clears these from the
#: inherited environment, so a run gets the documented defaults unless it says otherwise.
ENVIRONMENT = frozenset(
    {
        "HOST",
        "PORT",
        "DRAIN_SECONDS",
        "NAME_SERVER",
        "DNS_SERVERS",
        "DNS_REFRESH_SECONDS",
        "CONNECT_TIMEOUT_SECONDS",
        "REQUEST_TIMEOUT_SECONDS",
        "MAX_ATTEMPTS",
        "ZONE_AWARE",
        "ZONE_SUBNETS",
        "ZONE_CALLERS",
        "DISCOVERY_MODE",
        "PROXY_TIMEOUT_SECONDS",
        "PROXY_IDLE_TIMEOUT_SECONDS",
        # apps/hello/tuning.py
        "RETRY_STATUSES",
        "MAX_HEDGES",
        "HEDGE_QUANTILE",
        "HEDGE_MIN_DELAY_SECONDS",
        "HEDGE_MAX_DELAY_SECONDS",
        "LATENCY_DECAY_SECONDS",
        "MAX_EJECTION_PERCENT",
        "PANIC_THRESHOLD_PERCENT",
        "PROBE_INTERVAL_SECONDS",
        "PROBE_TIMEOUT_SECONDS",
    }
)
