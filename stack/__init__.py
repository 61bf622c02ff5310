"""The stack's configuration: read, validated in full, and mapped to the components' arguments.

    settings  the typed settings tree and its defaults
    limits    AWS's limits and the drain timeline the settings are checked against
    values    the raw-value reader: ConfigError, the problem collector, one parser per kind
    rules     the stack's cross-key rules and the provider config every stack must carry
    parse     parse_settings (pure) and load (from the running stack)
    args      the settings as the components' arguments, and what this project's images need

A package, not a `config.py`: a program that copies `components/` may have a config module of
its own. This module re-exports what the program, ./dev check and the tests use.
"""

from stack.limits import (
    ALB_DEREGISTRATION_DELAY_SECONDS,
    DRAIN_SECONDS_MAX,
    FARGATE_MEMORY,
    ROUTE53_PROPAGATION_SECONDS,
    SPOT_INTERRUPTION_WARNING_SECONDS,
    STOP_TIMEOUT_MAX,
)
from stack.parse import TOP_LEVEL_KEYS, load, parse_settings, stack_region
from stack.rules import aws_config_keys, default_tag_problems, provider_key_problems
from stack.settings import (
    PROJECT,
    Alarms,
    Capacity,
    Domain,
    ExistingVpc,
    HelloSettings,
    NameSettings,
    NewVpc,
    ServiceSettings,
    Settings,
)
from stack.values import NESTING_MAX, ConfigError, nesting, too_deep

__all__ = [
    "ALB_DEREGISTRATION_DELAY_SECONDS",
    "DRAIN_SECONDS_MAX",
    "FARGATE_MEMORY",
    "NESTING_MAX",
    "PROJECT",
    "ROUTE53_PROPAGATION_SECONDS",
    "SPOT_INTERRUPTION_WARNING_SECONDS",
    "STOP_TIMEOUT_MAX",
    "TOP_LEVEL_KEYS",
    "Alarms",
    "Capacity",
    "ConfigError",
    "Domain",
    "ExistingVpc",
    "HelloSettings",
    "NameSettings",
    "NewVpc",
    "ServiceSettings",
    "Settings",
    "aws_config_keys",
    "default_tag_problems",
    "load",
    "nesting",
    "parse_settings",
    "provider_key_problems",
    "stack_region",
    "too_deep",
]
