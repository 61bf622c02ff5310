"""The stack's settings: a typed, frozen tree, validated in full before any resource exists.

`parse_settings` is pure (raw config values in, `Settings` out) so every rule is unit-tested
without Pulumi; `load` feeds it from the running stack. Every problem found is reported in one
`ConfigError`, one line per problem, each naming the full key (`fargate-service-discovery:name.cpu`)
and what is allowed, so a bad `pulumi config set` costs one `pulumi preview`, not one per typo.

Raw values arrive as Pulumi stores them: objects set with `pulumi config set --path` as JSON
text, scalars as text. Already-decoded values (dicts, ints) are accepted too.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
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

# Records of a stopped task stay in clients' caches for up to the TTL. A minute is already far
# longer than a task takes to drain; anything longer only sends traffic to tasks that are gone.
DNS_TTL_MAX = 60
# ECS waits at most 120 s between SIGTERM and SIGKILL on Fargate; the task gets its drain period
# plus STOP_GRACE_SECONDS to finish in-flight requests (see components/service.py).
STOP_TIMEOUT_MAX = 120
STOP_GRACE_SECONDS = 10
DRAIN_SECONDS_MAX = STOP_TIMEOUT_MAX - STOP_GRACE_SECONDS
# ECS's default quota of tasks per service; a larger desiredCount is a typo, not a plan.
DESIRED_COUNT_MAX = 5000
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
    r"^arn:aws(?:-cn|-us-gov)?:acm:[a-z]{2}(?:-[a-z]+)+-\d:\d{12}:certificate/"
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
)


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
    desired_count: int
    port: int
    # Seconds the service keeps serving after SIGTERM while DNS forgets it (DRAIN_SECONDS).
    drain_seconds: int

    @property
    def stop_timeout(self) -> int:
        """Seconds ECS waits after SIGTERM before SIGKILL: the drain plus time to finish."""
        return self.drain_seconds + STOP_GRACE_SECONDS


@dataclass(frozen=True)
class HelloSettings(ServiceSettings):
    """The public service, which also runs the discovery client."""

    # How often hello re-resolves name's records (DNS_REFRESH_SECONDS).
    dns_refresh_seconds: int


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
class Settings:
    architecture: Architecture
    namespace: str
    dns_ttl: int
    log_retention_days: int
    certificate_arn: str | None
    network: NewVpc | ExistingVpc
    name: ServiceSettings
    hello: HelloSettings

    @property
    def image_platform(self) -> str:
        """The Docker platform matching the task definitions' CPU architecture."""
        return "linux/arm64" if self.architecture == "ARM64" else "linux/amd64"


# Defaults: the dev choices. Pulumi.<stack>.yaml files spell the tunables out anyway.
DEFAULTS_SERVICE: dict[str, int] = {"cpu": 256, "memory": 512, "desiredCount": 2, "port": 3000}
DEFAULT_DRAIN = {"name": 10, "hello": 0}  # the apps' own defaults (see the contract)
DEFAULT_DNS_REFRESH = 5
DEFAULT_CIDR = "10.0.0.0/16"

TOP_LEVEL_KEYS = (
    "architecture",
    "namespace",
    "dnsTtl",
    "logRetentionDays",
    "certificateArn",
    "network",
    "name",
    "hello",
)
_SERVICE_KEYS = ("cpu", "memory", "desiredCount", "port", "drainSeconds")
_HELLO_KEYS = (*_SERVICE_KEYS, "dnsRefreshSeconds")
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


def _show(value: object) -> str:
    return json.dumps(value) if not isinstance(value, str) else repr(value)


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
) -> tuple[int, int, int, int, int]:
    """cpu, memory, desiredCount, port and drainSeconds of one service section."""
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
        f"{path}.port", section.get("port"), _ranged(1, 65535), DEFAULTS_SERVICE["port"]
    )
    drain = reader.check(
        f"{path}.drainSeconds",
        section.get("drainSeconds"),
        _ranged(0, DRAIN_SECONDS_MAX),
        default_drain,
    )
    return cpu, memory, desired, port, drain


def _name_service(reader: _Reader, value: object) -> ServiceSettings:
    section = reader.section("name", value, _SERVICE_KEYS)
    return ServiceSettings(*_service_fields(reader, "name", section, DEFAULT_DRAIN["name"]))


def _hello_service(reader: _Reader, value: object) -> HelloSettings:
    section = reader.section("hello", value, _HELLO_KEYS)
    fields = _service_fields(reader, "hello", section, DEFAULT_DRAIN["hello"])
    refresh = reader.check(
        "hello.dnsRefreshSeconds",
        section.get("dnsRefreshSeconds"),
        _ranged(1, 60),
        DEFAULT_DNS_REFRESH,
    )
    return HelloSettings(*fields, dns_refresh_seconds=refresh)


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


def parse_settings(raw: Mapping[str, object], project: str = PROJECT) -> Settings:
    """Validate raw config values (keys without the project prefix) into `Settings`.

    Raises ConfigError listing every problem; returns only a fully valid tree.
    """
    reader = _Reader(project)
    for unknown in sorted(set(raw) - set(TOP_LEVEL_KEYS)):
        reader.fail(unknown, f"unknown key; allowed: {', '.join(TOP_LEVEL_KEYS)}")

    architecture = reader.check(
        "architecture",
        raw.get("architecture"),
        _one_of(ARCHITECTURES),
        ARCHITECTURES[0],
    )
    namespace = reader.check("namespace", raw.get("namespace"), _dns_name, "internal")
    dns_ttl = reader.check("dnsTtl", raw.get("dnsTtl"), _ranged(0, DNS_TTL_MAX), 0)
    retention = reader.check(
        "logRetentionDays", raw.get("logRetentionDays"), _one_of(LOG_RETENTION_DAYS), 7
    )
    certificate = reader.check(
        "certificateArn",
        raw.get("certificateArn"),
        _matching(_CERTIFICATE_ARN, "an ACM certificate ARN (arn:aws:acm:<region>:<account>:...)"),
        None,
    )
    network = _network(reader, raw.get("network"))
    name = _name_service(reader, raw.get("name"))
    hello = _hello_service(reader, raw.get("hello"))

    # Scale-in must cost no request: after SIGTERM a name task must keep serving for as long as
    # clients may still hold its address, that is the resolver's TTL plus hello's own cache.
    stale_for = dns_ttl + hello.dns_refresh_seconds
    if not reader.problems and name.drain_seconds < stale_for:
        reader.fail(
            "name.drainSeconds",
            f"{name.drain_seconds} is shorter than dnsTtl + hello.dnsRefreshSeconds "
            f"({stale_for}); clients could still send to a task that stopped serving. "
            f"Allowed: {stale_for} to {DRAIN_SECONDS_MAX}",
        )

    if reader.problems:
        raise ConfigError(reader.problems)
    return Settings(
        architecture=architecture,
        namespace=namespace,
        dns_ttl=dns_ttl,
        log_retention_days=retention,
        certificate_arn=certificate,
        network=network,
        name=name,
        hello=hello,
    )


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
    try:
        decoded = json.loads(value) if isinstance(value, str) else value
    except ValueError:
        decoded = None
    tags = decoded.get("tags") if isinstance(decoded, dict) else None
    want = {"Project": project, "Stack": stack}
    if not isinstance(tags, dict) or any(tags.get(k) != v for k, v in want.items()):
        shown = ", ".join(f"{k}: {v}" for k, v in want.items())
        return [f"aws:defaultTags: must be {{tags: {{{shown}}}}} (found {_show(value)})"]
    return []


def load() -> Settings:
    """The running stack's settings; raises ConfigError before any resource is registered."""
    project = pulumi.get_project()
    tags = pulumi.Config("aws").get("defaultTags")
    problems = default_tag_problems(tags, project, pulumi.get_stack())
    settings = None
    try:
        settings = parse_settings(dict(_project_values(project)), project)
    except ConfigError as e:
        problems += e.problems
    if problems or settings is None:
        raise ConfigError(problems)
    return settings
