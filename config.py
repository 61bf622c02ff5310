"""The stack's settings: a typed, frozen tree, validated in full before any resource exists.

`parse_settings` is pure (raw config values in, `Settings` out) so every rule is unit-tested
without Pulumi; `load` feeds it from the running stack. Every problem found is reported in one
`ConfigError`, one line per problem, each naming the full key (`fargate-service-discovery:name.cpu`)
and what is allowed, so a bad `pulumi config set` costs one `pulumi preview`, not one per typo.

Raw values arrive as Pulumi stores them: objects set with `pulumi config set --path` as JSON
text, scalars as text. Already-decoded values (dicts, ints) are accepted too.
"""

from __future__ import annotations

import difflib
import importlib.util
import ipaddress
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar, cast

import pulumi

PROJECT = "fargate-service-discovery"

Architecture = Literal["X86_64", "ARM64"]
NatStrategy = Literal["Single", "OnePerAz"]
ARCHITECTURES: tuple[Architecture, ...] = ("X86_64", "ARM64")
# awsx's NatGatewayStrategy words. "None" is rejected: see _network.
NAT_STRATEGIES: tuple[NatStrategy, ...] = ("Single", "OnePerAz")


def _steps(low: int, high: int, step: int) -> tuple[int, ...]:
    return tuple(range(low, high + 1, step))


# Fargate's valid task sizes: CPU units -> allowed memory (MiB).
# https://docs.aws.amazon.com/AmazonECS/latest/developerguide/fargate-tasks-services.html
FARGATE_MEMORY: dict[int, tuple[int, ...]] = {
    256: (512, 1024, 2048),  # not a step range: 1536 is not a Fargate size
    512: _steps(1024, 4096, 1024),
    1024: _steps(2048, 8192, 1024),
    2048: _steps(4096, 16384, 1024),
    4096: _steps(8192, 30720, 1024),
    8192: _steps(16384, 61440, 4096),
    16384: _steps(32768, 122880, 8192),
}


def fargate_memory_text(cpu: int) -> str:
    """The memory sizes allowed with `cpu`, as a short human sentence."""
    sizes = FARGATE_MEMORY[cpu]
    if len(sizes) <= 4:
        return ", ".join(str(m) for m in sizes)
    return f"{sizes[0]} to {sizes[-1]} in steps of {sizes[1] - sizes[0]}"


# CloudWatch Logs accepts exactly these retention periods (days). "Never expire" is left out on
# purpose: task logs that never expire are a cost that only grows.
LOG_RETENTION_DAYS = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545,
    731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
)  # fmt: skip

# Records of a stopped task stay in clients' caches for up to the TTL, which the drain must
# cover; the drain rule (_drain_covers_discovery) narrows this further.
DNS_TTL_MAX = 60
# The scale-in drain (docs/infrastructure.md, "How a scale-in costs no request"). ECS deregisters
# a stopping name task from Cloud Map, which removes its record from the namespace's Route 53
# zone asynchronously; "changes generally propagate to all Route 53 name servers within 60
# seconds" (Route 53 Developer Guide), and the VPC resolver answers from those. Then the
# resolver's cache (dnsTtl) and hello's own (hello.dnsRefreshSeconds) may hold the address.
ROUTE53_PROPAGATION_SECONDS = 60
# Cloud Map documents no figure for its own step (DeregisterInstance is asynchronous, before the
# Route 53 change); the default drain keeps this much beyond the documented sum for it.
DRAIN_MARGIN_SECONDS = 10
# ECS waits at most 120 s between SIGTERM and SIGKILL on Fargate (stopTimeout); the task gets
# its drain period plus STOP_GRACE_SECONDS to finish in-flight requests (components/service.py).
STOP_TIMEOUT_MAX = 120
STOP_GRACE_SECONDS = 10
DRAIN_SECONDS_MAX = STOP_TIMEOUT_MAX - STOP_GRACE_SECONDS
# ECS's default quota of tasks per service; a larger desiredCount is a typo, not a plan.
DESIRED_COUNT_MAX = 5000
# Fargate Spot: AWS reclaims a Spot task with a two-minute warning, delivered as SIGTERM (the
# same signal as a scale-in), and stops it at the end of the warning at the latest. A task whose
# stopTimeout fits in it finishes its drain before the reclaim; stopTimeout is capped at
# STOP_TIMEOUT_MAX (below), which is why Spot needs no rule of its own for name.
SPOT_INTERRUPTION_WARNING_SECONDS = 120
# Seconds the ALB lets in-flight requests finish on a deregistering target (the target group's
# deregistration delay, components/entry.py DEREGISTRATION_DELAY_SECONDS; a test keeps the two
# equal). On a scale-in ECS waits this long before SIGTERM; on a Spot interruption SIGTERM comes
# at once, so hello on Spot must keep serving at least this long (hello.drainSeconds).
ALB_DEREGISTRATION_DELAY_SECONDS = 10
# Application Auto Scaling, target tracking (components/autoscaling.py).
# A minimum of 0 cannot work with target tracking here: with no task there is no CPU average and
# no request count per target, so the policy could never scale out again.
MIN_COUNT_MIN = 1
# Average CPU of name's tasks: below 10% the service would scale out at idle; above 90% a burst
# saturates the tasks before the next task (a minute away) takes load.
TARGET_CPU_MIN, TARGET_CPU_MAX = 10, 90
# Requests per hello task per minute (ALBRequestCountPerTarget is a one-minute sum per target).
TARGET_REQUESTS_MIN, TARGET_REQUESTS_MAX = 10, 100_000
# Capacity provider strategy limits (ECS CapacityProviderStrategyItem: base 0-100000, weight
# 0-1000; only one provider of a strategy may have a base).
CAPACITY_BASE_MAX = 100_000
CAPACITY_WEIGHT_MAX = 1000
# An e-mail address for the alarm subscription: one @, a dot in the domain, no spaces (SNS
# checks deliverability itself: the address must confirm the subscription).
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
EMAIL_MAX = 254
# awsx places one public and one private subnet per zone; the largest regions have six zones.
AZ_MIN, AZ_MAX = 2, 6
# /16 is the largest VPC AWS allows; below /22 the per-zone subnets get too small for an ALB
# (which needs a /27 with 8 free addresses) once six zones share the range.
VPC_PREFIX_MIN, VPC_PREFIX_MAX = 16, 22

_RFC1918 = tuple(
    ipaddress.IPv4Network(block) for block in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
)
_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_VPC_ID = re.compile(r"^vpc-(?:[0-9a-f]{8}|[0-9a-f]{17})$")
_SUBNET_ID = re.compile(r"^subnet-(?:[0-9a-f]{8}|[0-9a-f]{17})$")
_CERTIFICATE_ARN = re.compile(
    r"^arn:aws(?:-cn|-us-gov)?:acm:(?P<region>[a-z]{2}(?:-[a-z]+)+-\d):\d{12}:certificate/"
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
)
# Route 53 hosted zone ids: "Z" and up to 31 more upper-case letters and digits, bare (no
# "/hostedzone/" prefix, which the provider strips and would then show as a diff).
_ZONE_ID = re.compile(r"^Z[A-Z0-9]{1,31}$")

# The containers run as user 10001 (components/service.py, CONTAINER_USER; the images' USER).
# A non-root process cannot bind a port below 1024, and Fargate offers no way to lower
# net.ipv4.ip_unprivileged_port_start (aws/containers-roadmap#1721): the task would crash-loop.
UNPRIVILEGED_PORT_MIN = 1024
# Ports of the image's own processes (none today) are the only other limit inside the task.
PORT_MAX = 65535

# Namespaces that would shadow names the tasks need. A Cloud Map namespace is a Route 53 private
# hosted zone associated with the VPC; inside the VPC it answers every name under it, with
# NXDOMAIN for names it does not hold (Route 53 does not fall through to public DNS).
# - AWS service endpoints: the tasks pull images from ECR (<account>.dkr.ecr.<region>.
#   amazonaws.com, S3 for the layers) and ship logs to logs.<region>.amazonaws.com.
_AWS_ENDPOINT_DOMAINS = ("amazonaws.com", "amazonaws.com.cn", "api.aws")
# - The VPC's own hostnames: ip-10-0-1-2.ec2.internal (us-east-1) and
#   ip-10-0-1-2.<region>.compute.internal (every other region).
_VPC_HOSTNAME_DOMAINS = ("ec2.internal", "compute.internal")
# A one-label namespace is a top-level domain: allowed only when it can never be a public one.
# RFC 6762 appendix G lists these as in private use; ICANN reserved .internal for private use
# (2024). Anything else ("com", "net", "aws", "io", ...) would shadow a whole public TLD.
PRIVATE_TLDS = ("internal", "intranet", "private", "corp", "home", "lan")
# ACM puts the first domain name in the certificate's subject CN, which X.509 caps at 64.
ACM_DOMAIN_NAME_MAX = 64
# ECS cluster names and task definition families (both start with <project>-<stack>) allow
# letters, digits, hyphens and underscores only; Pulumi stack names may also contain dots.
_ECS_NAME = re.compile(r"^[A-Za-z0-9_-]{1,255}$")


class ConfigError(pulumi.RunError):
    """Invalid stack configuration. A RunError, so Pulumi prints the message without a trace."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid stack configuration ({len(problems)} problem(s)):\n{lines}")


@dataclass(frozen=True)
class ServiceSettings:
    """One Fargate service: task size, replica count, container port, drain period."""

    cpu: int
    memory: int
    # The task count a new service starts with: desiredCount moved into min_count..max_count.
    # Afterwards Application Auto Scaling owns the count (components/autoscaling.py), and
    # `pulumi up` leaves it alone (components/service.py, ignore_changes).
    desired_count: int
    port: int
    # Seconds the service keeps serving after SIGTERM while DNS forgets it (DRAIN_SECONDS).
    drain_seconds: int
    min_count: int = field(default=1, kw_only=True)
    max_count: int = field(default=4, kw_only=True)

    @property
    def stop_timeout(self) -> int:
        """Seconds ECS waits after SIGTERM before SIGKILL: the drain plus time to finish."""
        return self.drain_seconds + STOP_GRACE_SECONDS


@dataclass(frozen=True)
class NameSettings(ServiceSettings):
    """The discovered service: it scales on its tasks' average CPU."""

    target_cpu_percent: int = field(default=60, kw_only=True)


@dataclass(frozen=True)
class HelloSettings(ServiceSettings):
    """The public service, which also runs the discovery client."""

    # How often hello re-resolves name's records (DNS_REFRESH_SECONDS).
    dns_refresh_seconds: int
    # It scales on the load balancer's requests per task per minute (ALBRequestCountPerTarget).
    target_requests_per_task: int = field(default=1000, kw_only=True)
    # Prefer name tasks in hello's own availability zone (ZONE_AWARE; aiohttp_discovery/zones.py):
    # cross-zone traffic costs $0.01/GB each way.
    zone_aware: bool = field(default=True, kw_only=True)


@dataclass(frozen=True)
class Capacity:
    """Where the services' tasks run: a capacity provider strategy, the same for both.

    The first `on_demand_base` tasks of each service run on FARGATE; the rest are spread over
    FARGATE and FARGATE_SPOT by weight (ECS CapacityProviderStrategyItem).
    """

    on_demand_base: int = 0
    on_demand_weight: int = 1
    spot_weight: int = 0

    @property
    def uses_spot(self) -> bool:
        return self.spot_weight > 0


@dataclass(frozen=True)
class Alarms:
    """Where alarm notifications go besides the SNS topic (None: topic only)."""

    email: str | None = None


@dataclass(frozen=True)
class NewVpc:
    """A VPC created by this stack with awsx: public and private subnets in each zone."""

    cidr_block: str
    availability_zones: int
    nat_gateways: NatStrategy


@dataclass(frozen=True)
class ExistingVpc:
    """A VPC the platform team already runs; this stack only places resources in it."""

    vpc_id: str
    public_subnet_ids: tuple[str, ...]
    private_subnet_ids: tuple[str, ...]


@dataclass(frozen=True)
class Domain:
    """The public name visitors use, in a Route 53 public hosted zone of the same account.

    Exactly one of `zone_id` and `zone_name` is set; a zone given by name is looked up.
    """

    name: str
    zone_id: str | None
    zone_name: str | None


@dataclass(frozen=True)
class Settings:
    architecture: Architecture
    namespace: str
    dns_ttl: int
    log_retention_days: int
    # A certificate of the stack's region for `domain.name`; unset with a domain: ACM issues one.
    certificate_arn: str | None
    network: NewVpc | ExistingVpc
    name: NameSettings
    hello: HelloSettings
    # Unset: plain HTTP on the load balancer's own name.
    domain: Domain | None = None
    capacity: Capacity = field(default_factory=Capacity)
    # Each service keeps at least one task per availability zone (minCount >= zones).
    zone_redundant: bool = False
    alarms: Alarms = field(default_factory=Alarms)

    @property
    def zones(self) -> int:
        """Availability zones the tasks spread over (one private subnet per zone)."""
        if isinstance(self.network, NewVpc):
            return self.network.availability_zones
        return len(self.network.private_subnet_ids)

    @property
    def image_platform(self) -> str:
        """The Docker platform matching the task definitions' CPU architecture."""
        return "linux/arm64" if self.architecture == "ARM64" else "linux/amd64"


# Defaults: the dev choices. Pulumi.<stack>.yaml files spell the tunables out anyway.
DEFAULTS_SERVICE: dict[str, int] = {
    "cpu": 256,
    "memory": 512,
    "desiredCount": 2,
    "port": 3000,
    "minCount": 1,
    "maxCount": 4,
}
DEFAULT_TARGET_CPU = 60
DEFAULT_TARGET_REQUESTS = 1000
DEFAULT_DNS_REFRESH = 5
DEFAULT_DNS_TTL = 0
DEFAULT_DRAIN = {
    # Route 53 propagation (60) + dnsTtl (0) + hello.dnsRefreshSeconds (5) + margin (10) = 75:
    # the apps' own default (10 s, for the local stack, which has no Route 53) is far too short
    # on AWS. hello drains through the load balancer instead (see _drain_covers_discovery).
    "name": ROUTE53_PROPAGATION_SECONDS
    + DEFAULT_DNS_TTL
    + DEFAULT_DNS_REFRESH
    + DRAIN_MARGIN_SECONDS,
    "hello": 0,
}
DEFAULT_CIDR = "10.0.0.0/16"

TOP_LEVEL_KEYS = (
    "architecture",
    "namespace",
    "dnsTtl",
    "logRetentionDays",
    "certificateArn",
    "domain",
    "network",
    "name",
    "hello",
    "capacity",
    "zoneRedundant",
    "alarms",
)
_DOMAIN_KEYS = ("name", "zoneId", "zoneName")
_SERVICE_KEYS = ("cpu", "memory", "desiredCount", "port", "drainSeconds", "minCount", "maxCount")
_NAME_KEYS = (*_SERVICE_KEYS, "targetCpuPercent")
_HELLO_KEYS = (*_SERVICE_KEYS, "dnsRefreshSeconds", "targetRequestsPerTask", "zoneAware")
_CAPACITY_KEYS = ("onDemandBase", "onDemandWeight", "spotWeight")
_ALARM_KEYS = ("email",)
_NEW_VPC_KEYS = ("cidrBlock", "availabilityZones", "natGateways")
_EXISTING_VPC_KEYS = ("vpcId", "publicSubnetIds", "privateSubnetIds")

T = TypeVar("T")


class _Invalid(Exception):
    """One bad value; collected by `_Reader` into the single ConfigError."""


class _Reader:
    """Reads values by key, collecting problems instead of stopping at the first."""

    def __init__(self, project: str) -> None:
        self.project = project
        self.problems: list[str] = []

    def key(self, path: str) -> str:
        return f"{self.project}:{path}"

    def fail(self, path: str, message: str) -> None:
        self.problems.append(f"{self.key(path)}: {message}")

    def check(self, path: str, value: object, parse: Callable[[object], T], default: T) -> T:
        """Parse `value` (None means unset: the default); on failure record it, return default."""
        if value is None:
            return default
        try:
            return parse(value)
        except _Invalid as e:
            self.fail(path, str(e))
            return default

    def section(self, path: str, value: object, allowed: tuple[str, ...]) -> dict[str, object]:
        """Decode an object-valued key and reject keys it does not know (typos)."""
        if value is None:
            return {}
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                self.fail(path, f"expected an object with keys {', '.join(allowed)}")
                return {}
        if not isinstance(value, dict):
            self.fail(path, f"expected an object with keys {', '.join(allowed)}")
            return {}
        section = cast(dict[str, object], value)
        for unknown in sorted(set(section) - set(allowed)):
            self.fail(f"{path}.{unknown}", f"unknown key; allowed: {', '.join(allowed)}")
        return section


# No value of this program nests deeper than 2 (network.publicSubnetIds: an object holding a
# list; aws:defaultTags: {tags: {...}}). A value nested thousands deep is a mistake, and Python's
# json would end it in a RecursionError that names no key: it is measured first, without recursion.
NESTING_MAX = 16


def nesting(value: object) -> int:
    """How deep `value` nests: a scalar 0, `[]` or `{}` 1, `[[1]]` 2; JSON text is measured as
    the value it encodes (without decoding it). Iterative, so any depth is measured."""
    if isinstance(value, str):
        return _text_nesting(value)
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = list(cast(dict[object, object], item).values())
        elif isinstance(item, list | tuple):
            children = list(cast(list[object], item))
        else:
            continue
        deepest = max(deepest, depth + 1)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _text_nesting(text: str) -> int:
    if not text.lstrip().startswith(("[", "{")):
        return 0  # a scalar as Pulumi stores it, not JSON
    deepest = depth = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def too_deep(value: object) -> str | None:
    """Why `value` is refused for its nesting alone, or None."""
    depth = nesting(value)
    if depth <= NESTING_MAX:
        return None
    return (
        f"nested {depth} levels deep; allowed: at most {NESTING_MAX} (no setting of this "
        "program nests deeper than 2)"
    )


SHOWN_MAX = 80


def _show(value: object) -> str:
    """`value` as the message quotes it: JSON or repr, cut short past SHOWN_MAX characters."""
    shown = json.dumps(value) if not isinstance(value, str) else repr(value)
    if len(shown) <= SHOWN_MAX:
        return shown
    return f"{shown[: SHOWN_MAX - 3]}... ({len(shown)} characters)"


def _integer(value: object) -> int:
    # Booleans are ints in Python; "true" is never a port. Text must be a plain integer.
    if isinstance(value, bool):
        raise _Invalid(f"{_show(value)} is not an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    raise _Invalid(f"{_show(value)} is not an integer")


def _ranged(low: int, high: int) -> Callable[[object], int]:
    def parse(value: object) -> int:
        number = _integer(value)
        if not low <= number <= high:
            raise _Invalid(f"{number} is out of range; allowed: {low} to {high}")
        return number

    return parse


def _one_of(allowed: tuple[T, ...], why: Mapping[str, str] | None = None) -> Callable[[object], T]:
    def parse(value: object) -> T:
        for option in allowed:
            # `True == 1` in Python; a boolean never means a number here.
            if isinstance(value, bool) and not isinstance(option, bool):
                break
            if value == option or (isinstance(value, str) and value == str(option)):
                return option
        reason = (why or {}).get(value) if isinstance(value, str) else None
        shown = ", ".join(str(a) for a in allowed)
        raise _Invalid(f"{_show(value)} is {reason or 'not allowed'}; allowed: {shown}")

    return parse


def _text(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _Invalid(f"{_show(value)} is not a non-empty string")
    return value.strip()


def _dns_name(value: object) -> str:
    name = _text(value)
    labels = name.split(".")
    if len(name) > 253 or not all(_DNS_LABEL.match(label) for label in labels):
        raise _Invalid(
            f"{_show(value)} is not a valid DNS name; allowed: lowercase labels of 1-63 "
            "letters, digits and inner hyphens, joined by dots, 253 characters at most, "
            "no trailing dot"
        )
    if labels[-1] == "local":
        # RFC 6762 reserves .local for multicast DNS; many resolvers never send it to the VPC's.
        raise _Invalid(f"{_show(value)} ends in .local, which resolvers route to mDNS")
    return name


def _at_or_under(name: str, domain: str) -> bool:
    return name == domain or name.endswith(f".{domain}")


def _namespace(value: object) -> str:
    """A DNS name that, as a private zone in the VPC, shadows nothing the tasks need."""
    name = _dns_name(value)
    for domain in _AWS_ENDPOINT_DOMAINS:
        if _at_or_under(name, domain):
            raise _Invalid(
                f"{name!r} would shadow AWS service endpoints under {domain} inside the VPC, so "
                "tasks could not pull images (ECR) or ship logs; choose a name of your own, "
                "e.g. 'internal' or 'svc.example.com'"
            )
    for domain in _VPC_HOSTNAME_DOMAINS:
        if _at_or_under(name, domain):
            example = "ec2.internal" if domain == "ec2.internal" else "<region>.compute.internal"
            raise _Invalid(
                f"{name!r} would shadow the VPC's own hostnames (ip-10-0-1-2.{example}); choose a "
                "name of your own, e.g. 'internal' or 'svc.example.com'"
            )
    if "." not in name and name not in PRIVATE_TLDS:
        raise _Invalid(
            f"{name!r} is a top-level domain that may be public: inside the VPC the private zone "
            "would answer for every name under it (AWS endpoints included); allowed: a name of "
            f"two labels or more, or one of {', '.join(PRIVATE_TLDS)}"
        )
    return name


def _service_port(value: object) -> int:
    number = _integer(value)
    if 1 <= number < UNPRIVILEGED_PORT_MIN:
        raise _Invalid(
            f"{number} is a privileged port, which the containers' non-root user (10001) cannot "
            "bind on Fargate (aws/containers-roadmap#1721); "
            f"allowed: {UNPRIVILEGED_PORT_MIN} to {PORT_MAX}"
        )
    if not UNPRIVILEGED_PORT_MIN <= number <= PORT_MAX:
        raise _Invalid(f"{number} is out of range; allowed: {UNPRIVILEGED_PORT_MIN} to {PORT_MAX}")
    return number


def _private_cidr(value: object) -> str:
    text = _text(value)
    try:
        network = ipaddress.IPv4Network(text, strict=True)
    except ValueError as e:
        raise _Invalid(f"{_show(value)} is not an IPv4 network in CIDR form ({e})") from e
    if not any(network.subnet_of(block) for block in _RFC1918):
        raise _Invalid(f"{text} is not a private (RFC 1918) range")
    if not VPC_PREFIX_MIN <= network.prefixlen <= VPC_PREFIX_MAX:
        raise _Invalid(
            f"/{network.prefixlen} is out of range; allowed: /{VPC_PREFIX_MIN} to /{VPC_PREFIX_MAX}"
        )
    return str(network)


def _matching(pattern: re.Pattern[str], what: str) -> Callable[[object], str]:
    def parse(value: object) -> str:
        text = _text(value)
        if not pattern.match(text):
            raise _Invalid(f"{_show(value)} is not {what}")
        return text

    return parse


def _id_list(pattern: re.Pattern[str], what: str) -> Callable[[object], tuple[str, ...]]:
    one = _matching(pattern, what)

    def parse(value: object) -> tuple[str, ...]:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise _Invalid(f"{_show(value)} is not a list of {what}s") from None
        if not isinstance(value, list):
            raise _Invalid(f"{_show(value)} is not a list of {what}s")
        ids = tuple(one(item) for item in cast(list[object], value))
        if len(ids) < AZ_MIN:
            raise _Invalid(f"{len(ids)} given; at least {AZ_MIN} (in different zones) required")
        if len(set(ids)) != len(ids):
            raise _Invalid("lists a subnet twice")
        return ids

    return parse


def _service_fields(
    reader: _Reader, path: str, section: Mapping[str, object], default_drain: int
) -> dict[str, int]:
    """cpu, memory, desiredCount, port, drainSeconds, minCount and maxCount of one service."""
    before = len(reader.problems)
    cpu = reader.check(
        f"{path}.cpu", section.get("cpu"), _one_of(tuple(FARGATE_MEMORY)), DEFAULTS_SERVICE["cpu"]
    )
    memory = reader.check(
        f"{path}.memory", section.get("memory"), _integer, DEFAULTS_SERVICE["memory"]
    )
    # Only judge the pair when both values parsed, so one typo yields one message.
    if len(reader.problems) == before and memory not in FARGATE_MEMORY[cpu]:
        reader.fail(
            f"{path}.memory",
            f"{memory} MiB is not a Fargate size for cpu {cpu}; allowed: "
            f"{fargate_memory_text(cpu)}",
        )
    desired = reader.check(
        f"{path}.desiredCount",
        section.get("desiredCount"),
        _ranged(0, DESIRED_COUNT_MAX),
        DEFAULTS_SERVICE["desiredCount"],
    )
    port = reader.check(
        f"{path}.port", section.get("port"), _service_port, DEFAULTS_SERVICE["port"]
    )
    drain = reader.check(
        f"{path}.drainSeconds", section.get("drainSeconds"), _drain_seconds, default_drain
    )
    before = len(reader.problems)
    low = reader.check(
        f"{path}.minCount",
        section.get("minCount"),
        _ranged(MIN_COUNT_MIN, DESIRED_COUNT_MAX),
        DEFAULTS_SERVICE["minCount"],
    )
    high = reader.check(
        f"{path}.maxCount",
        section.get("maxCount"),
        _ranged(MIN_COUNT_MIN, DESIRED_COUNT_MAX),
        DEFAULTS_SERVICE["maxCount"],
    )
    if len(reader.problems) == before:
        if low > high:
            reader.fail(
                f"{path}.minCount",
                f"{low} exceeds {path}.maxCount ({high}); allowed: at most {path}.maxCount",
            )
        else:
            # desiredCount is the count a new service starts with, inside the range: Application
            # Auto Scaling would move a count outside it at once. So a changed range never makes
            # the file invalid (`pulumi config set --path name.minCount 4` works as written).
            desired = min(max(desired, low), high)
    return {
        "cpu": cpu,
        "memory": memory,
        "desired_count": desired,
        "port": port,
        "drain_seconds": drain,
        "min_count": low,
        "max_count": high,
    }


def _drain_seconds(value: object) -> int:
    number = _integer(value)
    if not 0 <= number <= DRAIN_SECONDS_MAX:
        raise _Invalid(
            f"{number} is out of range; allowed: 0 to {DRAIN_SECONDS_MAX} (stopTimeout is "
            f"drainSeconds + {STOP_GRACE_SECONDS} s to finish in-flight requests: "
            f"{number} + {STOP_GRACE_SECONDS} = {number + STOP_GRACE_SECONDS} s, and Fargate "
            f"allows at most {STOP_TIMEOUT_MAX} s)"
        )
    return number


def _name_service(reader: _Reader, value: object) -> NameSettings:
    section = reader.section("name", value, _NAME_KEYS)
    fields = _service_fields(reader, "name", section, DEFAULT_DRAIN["name"])
    target = reader.check(
        "name.targetCpuPercent",
        section.get("targetCpuPercent"),
        _ranged(TARGET_CPU_MIN, TARGET_CPU_MAX),
        DEFAULT_TARGET_CPU,
    )
    return NameSettings(**fields, target_cpu_percent=target)


def _hello_service(reader: _Reader, value: object) -> HelloSettings:
    section = reader.section("hello", value, _HELLO_KEYS)
    fields = _service_fields(reader, "hello", section, DEFAULT_DRAIN["hello"])
    refresh = reader.check(
        "hello.dnsRefreshSeconds",
        section.get("dnsRefreshSeconds"),
        _ranged(1, 60),
        DEFAULT_DNS_REFRESH,
    )
    target = reader.check(
        "hello.targetRequestsPerTask",
        section.get("targetRequestsPerTask"),
        _ranged(TARGET_REQUESTS_MIN, TARGET_REQUESTS_MAX),
        DEFAULT_TARGET_REQUESTS,
    )
    zone_aware = reader.check("hello.zoneAware", section.get("zoneAware"), _boolean, True)
    return HelloSettings(
        **fields,
        dns_refresh_seconds=refresh,
        target_requests_per_task=target,
        zone_aware=zone_aware,
    )


def _capacity(reader: _Reader, value: object) -> Capacity:
    section = reader.section("capacity", value, _CAPACITY_KEYS)
    before = len(reader.problems)
    base = reader.check(
        "capacity.onDemandBase", section.get("onDemandBase"), _ranged(0, CAPACITY_BASE_MAX), 0
    )
    on_demand = reader.check(
        "capacity.onDemandWeight",
        section.get("onDemandWeight"),
        _ranged(0, CAPACITY_WEIGHT_MAX),
        1,
    )
    spot = reader.check(
        "capacity.spotWeight", section.get("spotWeight"), _ranged(0, CAPACITY_WEIGHT_MAX), 0
    )
    if len(reader.problems) == before and on_demand + spot == 0:
        # ECS: at least one provider of a strategy must have a weight above 0.
        reader.fail(
            "capacity.spotWeight",
            "and capacity.onDemandWeight are both 0: ECS places tasks beyond the base by "
            f"weight, so at least one must be 1 to {CAPACITY_WEIGHT_MAX}",
        )
    return Capacity(on_demand_base=base, on_demand_weight=on_demand, spot_weight=spot)


def _boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise _Invalid(f"{_show(value)} is not a boolean; allowed: true, false")


def _email(value: object) -> str:
    text = _text(value)
    if len(text) > EMAIL_MAX or not _EMAIL.match(text):
        raise _Invalid(f"{_show(value)} is not an e-mail address (name@example.com)")
    return text


def _alarms(reader: _Reader, value: object) -> Alarms:
    section = reader.section("alarms", value, _ALARM_KEYS)
    return Alarms(email=reader.check("alarms.email", section.get("email"), _email, None))


def _zones_and_spot(reader: _Reader, settings: Settings) -> None:
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


def _network(reader: _Reader, value: object) -> NewVpc | ExistingVpc:
    section = reader.section("network", value, _NEW_VPC_KEYS + _EXISTING_VPC_KEYS)
    if "vpcId" in section or "publicSubnetIds" in section or "privateSubnetIds" in section:
        for key in _NEW_VPC_KEYS:
            if key in section:
                reader.fail(f"network.{key}", "only applies to a new VPC; remove it or vpcId")
        for key in _EXISTING_VPC_KEYS:
            if key not in section:
                reader.fail(f"network.{key}", "required when using an existing VPC")
        vpc_id = reader.check(
            "network.vpcId", section.get("vpcId"), _matching(_VPC_ID, "a VPC id (vpc-...)"), ""
        )
        subnet_list = _id_list(_SUBNET_ID, "subnet id (subnet-...)")
        none: tuple[str, ...] = ()
        public = reader.check(
            "network.publicSubnetIds", section.get("publicSubnetIds"), subnet_list, none
        )
        private = reader.check(
            "network.privateSubnetIds", section.get("privateSubnetIds"), subnet_list, none
        )
        if set(public) & set(private):
            reader.fail(
                "network.privateSubnetIds",
                "shares subnets with network.publicSubnetIds; tasks belong in private subnets only",
            )
        return ExistingVpc(vpc_id, public, private)

    nat_why = {
        "None": (
            "rejected: without NAT gateways (and this program creates no VPC endpoints) tasks "
            "in private subnets cannot reach ECR or CloudWatch Logs and never start"
        )
    }
    return NewVpc(
        cidr_block=reader.check(
            "network.cidrBlock", section.get("cidrBlock"), _private_cidr, DEFAULT_CIDR
        ),
        availability_zones=reader.check(
            "network.availabilityZones",
            section.get("availabilityZones"),
            _ranged(AZ_MIN, AZ_MAX),
            AZ_MIN,
        ),
        nat_gateways=reader.check(
            "network.natGateways",
            section.get("natGateways"),
            _one_of(NAT_STRATEGIES, nat_why),
            NAT_STRATEGIES[0],
        ),
    )


def _drain_covers_discovery(
    reader: _Reader, dns_ttl: int, name: ServiceSettings, hello: HelloSettings
) -> None:
    """Scale-in and deployments must lose no request: after SIGTERM a name task keeps serving
    for as long as hello may still pick its address. ECS deregisters it from Cloud Map at the
    same moment at worst; the record's removal then takes Route 53 propagation, the resolver
    may cache it for dnsTtl, and hello for hello.dnsRefreshSeconds. The drain has to cover the
    sum and, with the grace period, fit in Fargate's stopTimeout.

    hello needs no such rule: behind the ALB, ECS deregisters its target and waits out the
    target group's deregistration delay before SIGTERM.
    """
    needed = ROUTE53_PROPAGATION_SECONDS + dns_ttl + hello.dns_refresh_seconds
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


def _domain(
    reader: _Reader, value: object, namespace: str, requests_certificate: bool
) -> Domain | None:
    """The optional public name; None when unset (plain HTTP on the load balancer's name)."""
    if value is None:
        return None
    section = reader.section("domain", value, _DOMAIN_KEYS)
    if not section:
        if not any(p.startswith(reader.key("domain")) for p in reader.problems):
            reader.fail("domain", f"expected an object with keys {', '.join(_DOMAIN_KEYS)}")
        return None
    before = len(reader.problems)
    if "name" not in section:
        reader.fail("domain.name", "required: the DNS name visitors use, e.g. hello.example.com")
    name = reader.check("domain.name", section.get("name"), _dns_name, "")
    if name and len(reader.problems) == before:
        if "." not in name:
            reader.fail(
                "domain.name", f"{name!r} is a top-level domain; allowed: a name in a zone you own"
            )
        elif _at_or_under(name, namespace):
            # The namespace is a private zone in the VPC: there it would answer for this name
            # (NXDOMAIN), so the stack's own tasks could not reach its public URL.
            reader.fail(
                "domain.name",
                f"{name!r} is inside the namespace {namespace!r}, whose private zone shadows it "
                "inside the VPC; allowed: a name outside the namespace",
            )
        elif requests_certificate and len(name) > ACM_DOMAIN_NAME_MAX:
            reader.fail(
                "domain.name",
                f"{len(name)} characters; ACM requests allow at most {ACM_DOMAIN_NAME_MAX} for "
                "the certificate's first name (X.509 subject CN): shorten it, or bring a "
                "certificate with certificateArn",
            )
    has_id, has_name = "zoneId" in section, "zoneName" in section
    if has_id == has_name:
        reader.fail(
            "domain.zoneId",
            "set exactly one of domain.zoneId (Z...) and domain.zoneName (e.g. example.com): "
            "the Route 53 public hosted zone that holds domain.name",
        )
        return None
    zone_id = reader.check(
        "domain.zoneId",
        section.get("zoneId"),
        _matching(_ZONE_ID, "a Route 53 hosted zone id (Z followed by letters and digits)"),
        None,
    )
    zone_name = reader.check("domain.zoneName", section.get("zoneName"), _dns_name, None)
    if zone_name and name and not _at_or_under(name, zone_name):
        reader.fail(
            "domain.zoneName",
            f"{zone_name!r} does not hold {name!r}; allowed: {name!r} or one of its parent domains",
        )
    return Domain(name=name, zone_id=zone_id, zone_name=zone_name)


def _stack_name(reader: _Reader, stack: str) -> None:
    if not _ECS_NAME.match(f"{reader.project}-{stack}"):
        # Not a config key: reported under the stack's name.
        reader.problems.append(
            f"stack name {stack!r}: it becomes part of the ECS cluster name and task definition "
            f"families ({reader.project}-{stack}), which allow letters, digits, hyphens and "
            "underscores only; allowed: a stack name without other characters (e.g. no dots)"
        )


def stack_region() -> str | None:
    """The region the AWS provider deploys to: aws:region, else the provider's environment."""
    return (
        pulumi.Config("aws").get("region")
        or os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION")
    )


def parse_settings(
    raw: Mapping[str, object],
    project: str = PROJECT,
    *,
    region: str | None = None,
    stack: str | None = None,
) -> Settings:
    """Validate raw config values (keys without the project prefix) into `Settings`.

    `region` is the stack's AWS region (a given certificate must be in it) and `stack` the stack's
    name (part of resource names); either is skipped when None. Raises ConfigError listing every
    problem; returns only a fully valid tree.
    """
    reader = _Reader(project)
    if stack is not None:
        _stack_name(reader, stack)
    for unknown in sorted(set(raw) - set(TOP_LEVEL_KEYS)):
        reader.fail(unknown, f"unknown key; allowed: {', '.join(TOP_LEVEL_KEYS)}")
    # Measured before anything decodes or prints a value: past NESTING_MAX a key is reported and
    # then read as unset.
    shallow: dict[str, object] = {}
    for key, value in raw.items():
        why = too_deep(value)
        if why is None:
            shallow[key] = value
        elif key in TOP_LEVEL_KEYS:
            reader.fail(key, why)
    raw = shallow

    architecture = reader.check(
        "architecture",
        raw.get("architecture"),
        _one_of(ARCHITECTURES),
        ARCHITECTURES[0],
    )
    namespace = reader.check("namespace", raw.get("namespace"), _namespace, "internal")
    dns_ttl = reader.check("dnsTtl", raw.get("dnsTtl"), _ranged(0, DNS_TTL_MAX), DEFAULT_DNS_TTL)
    retention = reader.check(
        "logRetentionDays", raw.get("logRetentionDays"), _one_of(LOG_RETENTION_DAYS), 7
    )
    certificate = reader.check(
        "certificateArn",
        raw.get("certificateArn"),
        _matching(_CERTIFICATE_ARN, "an ACM certificate ARN (arn:aws:acm:<region>:<account>:...)"),
        None,
    )
    domain = _domain(reader, raw.get("domain"), namespace, requests_certificate=not certificate)
    if certificate is not None:
        match = _CERTIFICATE_ARN.match(certificate)
        cert_region = match.group("region") if match else None
        if raw.get("domain") is None:
            reader.fail(
                "certificateArn",
                "needs domain: no certificate can match the load balancer's own name "
                "(*.elb.amazonaws.com), so browsers would refuse it; set domain.name and "
                "domain.zoneId (or domain.zoneName), or remove certificateArn",
            )
        elif region is not None and cert_region != region:
            # The ALB accepts only certificates of its own region (ACM certificates are regional).
            reader.fail(
                "certificateArn",
                f"is in {cert_region}, but the stack deploys to {region} (aws:region); a load "
                f"balancer only accepts certificates of its own region; allowed: an ACM "
                f"certificate in {region}",
            )
    network = _network(reader, raw.get("network"))
    name = _name_service(reader, raw.get("name"))
    hello = _hello_service(reader, raw.get("hello"))
    capacity = _capacity(reader, raw.get("capacity"))
    zone_redundant = reader.check("zoneRedundant", raw.get("zoneRedundant"), _boolean, False)
    alarms = _alarms(reader, raw.get("alarms"))

    settings = Settings(
        architecture=architecture,
        namespace=namespace,
        dns_ttl=dns_ttl,
        log_retention_days=retention,
        certificate_arn=certificate,
        network=network,
        name=name,
        hello=hello,
        domain=domain,
        capacity=capacity,
        zone_redundant=zone_redundant,
        alarms=alarms,
    )
    if not reader.problems:
        _drain_covers_discovery(reader, dns_ttl, name, hello)
        _zones_and_spot(reader, settings)

    if reader.problems:
        raise ConfigError(reader.problems)
    return settings


def _project_values(project: str) -> Iterator[tuple[str, object]]:
    """Every value set for this project, including keys this program does not know."""
    prefix = f"{project}:"
    # The language host hands the program its config as one JSON bag (PULUMI_CONFIG); reading it
    # lets a typo such as `dnsTTL` fail loudly instead of being silently ignored.
    for full_key, value in pulumi.runtime.get_config_env().items():
        if full_key.startswith(prefix):
            yield full_key[len(prefix) :], value
    config = pulumi.Config(project)
    for key in TOP_LEVEL_KEYS:
        value = config.get(key)
        if value is not None:
            yield key, value


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
        return [f"aws:defaultTags: must be {{tags: {{{shown}}}}} (found {_show(value)})"]
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


def load() -> Settings:
    """The running stack's settings; raises ConfigError before any resource is registered."""
    project = pulumi.get_project()
    tags = pulumi.Config("aws").get("defaultTags")
    stack = pulumi.get_stack()
    problems = default_tag_problems(tags, project, stack)
    problems += provider_key_problems(pulumi.runtime.get_config_env())
    settings = None
    try:
        settings = parse_settings(
            dict(_project_values(project)), project, region=stack_region(), stack=stack
        )
    except ConfigError as e:
        problems += e.problems
    if problems or settings is None:
        raise ConfigError(problems)
    return settings
