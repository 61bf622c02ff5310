"""The stack's own rules: what no single value shows wrong, checked across keys (the drain
timeline, zones and Spot, the stack's name), and the provider config every stack must carry.
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import re
from collections.abc import Iterable
from pathlib import Path

from components.service import discovery_drain_needed
from stack.limits import (
    ALB_DEREGISTRATION_DELAY_SECONDS,
    DRAIN_SECONDS_MAX,
    ECS_NAME,
    ROUTE53_PROPAGATION_SECONDS,
    STOP_GRACE_SECONDS,
    STOP_TIMEOUT_MAX,
)
from stack.settings import HelloSettings, NewVpc, ServiceSettings, Settings
from stack.values import Reader, show, too_deep


def zones_and_spot(reader: Reader, settings: Settings) -> None:
    """What each stack promises about availability zones and Spot, checked across keys."""
    zones = settings.zones
    zone_key = (
        "network.availabilityZones"
        if isinstance(settings.network, NewVpc)
        else "network.privateSubnetIds"
    )
    if settings.zone_redundant:
        for path, service in (("name", settings.name), ("hello", settings.hello)):
            if service.min_count < zones:
                reader.fail(
                    f"{path}.minCount",
                    f"{service.min_count} is fewer than one task per zone: zoneRedundant is "
                    f"true and the tasks spread over {zones} zones ({zone_key}); allowed: "
                    f"{zones} or more",
                )
        capacity = settings.capacity
        if capacity.uses_spot and capacity.on_demand_base < zones:
            # Spot capacity can be reclaimed in every zone at once; only FARGATE tasks (the base)
            # keep the one-task-per-zone promise through that.
            reader.fail(
                "capacity.onDemandBase",
                f"{capacity.on_demand_base} with capacity.spotWeight {capacity.spot_weight}: "
                f"zoneRedundant is true, and Spot can reclaim every Spot task at once, so at "
                f"least one FARGATE task per zone ({zones}, {zone_key}) must be the base; "
                f"allowed: {zones} or more, or capacity.spotWeight 0",
            )
    if settings.capacity.uses_spot and settings.hello.drain_seconds < (
        ALB_DEREGISTRATION_DELAY_SECONDS
    ):
        reader.fail(
            "hello.drainSeconds",
            f"{settings.hello.drain_seconds} is too short with capacity.spotWeight "
            f"{settings.capacity.spot_weight}: a Spot interruption sends SIGTERM as the load "
            f"balancer starts deregistering the task, so hello must keep serving for the "
            f"target group's {ALB_DEREGISTRATION_DELAY_SECONDS} s deregistration delay; "
            f"allowed: {ALB_DEREGISTRATION_DELAY_SECONDS} to {DRAIN_SECONDS_MAX}",
        )


def drain_covers_discovery(
    reader: Reader, dns_ttl: int, name: ServiceSettings, hello: HelloSettings
) -> None:
    """Scale-in and deployments must lose no request: after SIGTERM a name task keeps serving
    for as long as hello may still pick its address. ECS deregisters it from Cloud Map at the
    same moment at worst; the record's removal then takes Route 53 propagation, the resolver
    may cache it for dnsTtl, and hello for hello.dnsRefreshSeconds. The drain has to cover the
    sum and, with the grace period, fit in Fargate's stopTimeout.

    hello needs no such rule: behind the ALB, ECS deregisters its target and waits out the
    target group's deregistration delay before SIGTERM.

    The arithmetic is the component's (DiscoverableService checks the same relation between its
    arguments); here it is reported under the stack's keys, with every other problem at once.
    """
    needed = discovery_drain_needed(dns_ttl, hello.dns_refresh_seconds)
    sum_text = (
        f"Route 53 propagation ({ROUTE53_PROPAGATION_SECONDS}) + dnsTtl ({dns_ttl}) + "
        f"hello.dnsRefreshSeconds ({hello.dns_refresh_seconds}) = {needed} s"
    )
    if needed > DRAIN_SECONDS_MAX:
        room = DRAIN_SECONDS_MAX - ROUTE53_PROPAGATION_SECONDS
        reader.fail(
            "dnsTtl",
            f"together with hello.dnsRefreshSeconds leaves no workable name.drainSeconds: a "
            f"stopping name task must keep serving for {sum_text}, but drainSeconds + "
            f"{STOP_GRACE_SECONDS} s grace = {needed + STOP_GRACE_SECONDS} s exceeds Fargate's "
            f"{STOP_TIMEOUT_MAX} s stopTimeout. Allowed: dnsTtl + hello.dnsRefreshSeconds at "
            f"most {room}",
        )
    elif name.drain_seconds < needed:
        reader.fail(
            "name.drainSeconds",
            f"{name.drain_seconds} is too short: hello can still send to a stopping name task "
            f"for {sum_text}, and it must keep serving that long. Allowed: {needed} to "
            f"{DRAIN_SECONDS_MAX} (drainSeconds + {STOP_GRACE_SECONDS} s grace must fit "
            f"Fargate's {STOP_TIMEOUT_MAX} s stopTimeout)",
        )


def stack_name_rule(reader: Reader, stack: str) -> None:
    if not ECS_NAME.match(f"{reader.project}-{stack}"):
        # Not a config key: reported under the stack's name.
        reader.problems.append(
            f"stack name {stack!r}: it becomes part of the ECS cluster name and task definition "
            f"families ({reader.project}-{stack}), which allow letters, digits, hyphens and "
            "underscores only; allowed: a stack name without other characters (e.g. no dots)"
        )


def default_tag_problems(value: object, project: str, stack: str) -> list[str]:
    """`aws:defaultTags` must tag every resource Project=<project>, Stack=<stack>: the CI deploy
    role (deploy/github_oidc/identity.py) may change only resources that carry those tags."""
    want = {"Project": project, "Stack": stack}
    shown = ", ".join(f"{k}: {v}" for k, v in want.items())
    why = too_deep(value)
    if why is not None:
        return [f"aws:defaultTags: {why}; must be {{tags: {{{shown}}}}}"]
    try:
        decoded = json.loads(value) if isinstance(value, str) else value
    except ValueError:
        decoded = None
    tags = decoded.get("tags") if isinstance(decoded, dict) else None
    if not isinstance(tags, dict) or any(tags.get(k) != v for k, v in want.items()):
        return [f"aws:defaultTags: must be {{tags: {{{shown}}}}} (found {show(value)})"]
    return []


def aws_config_keys() -> frozenset[str]:
    """Every config key the installed AWS provider reads (`aws:region`, `aws:defaultTags`, ...).

    Read from the pulumi_aws package's own config module (pulumi_aws/config/vars.py, one
    `__config__.get('<key>')` per key) without importing the provider, so the list follows the
    locked provider version."""
    spec = importlib.util.find_spec("pulumi_aws")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("pulumi_aws is not installed: run ./dev setup")
    source = Path(next(iter(spec.submodule_search_locations)), "config", "vars.py").read_text()
    keys = frozenset(re.findall(r"__config__\.get\w*\('(\w+)'", source))
    if "region" not in keys:
        raise RuntimeError(f"no config keys found in {spec.origin}: has pulumi_aws changed?")
    return keys


def provider_key_problems(full_keys: Iterable[str]) -> list[str]:
    """Keys in the `aws:` namespace the provider does not read: a typo (`aws:regoin`) would
    otherwise be ignored without a word, and the stack deploy where the environment points."""
    known = aws_config_keys()
    problems = []
    for full_key in sorted(full_keys):
        namespace, _, key = full_key.partition(":")
        if namespace != "aws" or key in known:
            continue
        near = difflib.get_close_matches(key, sorted(known), n=1)
        hint = f"; did you mean aws:{near[0]}?" if near else ""
        problems.append(
            f"{full_key}: unknown key of the aws provider{hint} "
            "(its keys: pulumi_aws/config/vars.py)"
        )
    return problems
