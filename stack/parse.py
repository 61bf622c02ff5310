"""The stack's settings, validated in full before any resource exists.

`parse_settings` is pure (raw config values in, `Settings` out) so every rule is unit-tested
without Pulumi; `load` feeds it from the running stack. Every problem found is reported in one
`ConfigError`, one line per problem, each naming the full key (`fargate-service-discovery:name.cpu`)
and what is allowed, so a bad `pulumi config set` costs one `pulumi preview`, not one per typo.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping

import pulumi

from stack.limits import (
    ACM_DOMAIN_NAME_MAX,
    AZ_MAX,
    AZ_MIN,
    CAPACITY_BASE_MAX,
    CAPACITY_WEIGHT_MAX,
    CERTIFICATE_ARN,
    DESIRED_COUNT_MAX,
    DNS_TTL_MAX,
    FARGATE_MEMORY,
    LOG_RETENTION_DAYS,
    MIN_COUNT_MIN,
    SUBNET_ID,
    TARGET_CPU_MAX,
    TARGET_CPU_MIN,
    TARGET_REQUESTS_MAX,
    TARGET_REQUESTS_MIN,
    VPC_ID,
    ZONE_ID,
    fargate_memory_text,
)
from stack.rules import (
    default_tag_problems,
    drain_covers_discovery,
    provider_key_problems,
    stack_name_rule,
    zones_and_spot,
)
from stack.settings import (
    ARCHITECTURES,
    DEFAULT_CIDR,
    DEFAULT_DNS_REFRESH,
    DEFAULT_DNS_TTL,
    DEFAULT_DRAIN,
    DEFAULT_TARGET_CPU,
    DEFAULT_TARGET_REQUESTS,
    DEFAULTS_SERVICE,
    DISCOVERY_MODES,
    NAT_STRATEGIES,
    PROJECT,
    Alarms,
    Capacity,
    Domain,
    ExistingVpc,
    HelloSettings,
    NameSettings,
    NewVpc,
    Settings,
)
from stack.values import (
    ConfigError,
    Reader,
    as_boolean,
    as_dns_name,
    as_drain_seconds,
    as_email,
    as_integer,
    as_namespace,
    as_private_cidr,
    as_service_port,
    at_or_under,
    id_list,
    matching,
    one_of,
    ranged,
    too_deep,
)

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
    "discoveryMode",
)
_DOMAIN_KEYS = ("name", "zoneId", "zoneName")
_SERVICE_KEYS = ("cpu", "memory", "desiredCount", "port", "drainSeconds", "minCount", "maxCount")
_NAME_KEYS = (*_SERVICE_KEYS, "targetCpuPercent")
_HELLO_KEYS = (*_SERVICE_KEYS, "dnsRefreshSeconds", "targetRequestsPerTask", "zoneAware")
_CAPACITY_KEYS = ("onDemandBase", "onDemandWeight", "spotWeight")
_ALARM_KEYS = ("email",)
_NEW_VPC_KEYS = ("cidrBlock", "availabilityZones", "natGateways")
_EXISTING_VPC_KEYS = ("vpcId", "publicSubnetIds", "privateSubnetIds")


def _service_fields(
    reader: Reader, path: str, section: Mapping[str, object], default_drain: int
) -> dict[str, int]:
    """cpu, memory, desiredCount, port, drainSeconds, minCount and maxCount of one service."""
    before = len(reader.problems)
    cpu = reader.check(
        f"{path}.cpu", section.get("cpu"), one_of(tuple(FARGATE_MEMORY)), DEFAULTS_SERVICE["cpu"]
    )
    memory = reader.check(
        f"{path}.memory", section.get("memory"), as_integer, DEFAULTS_SERVICE["memory"]
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
        ranged(0, DESIRED_COUNT_MAX),
        DEFAULTS_SERVICE["desiredCount"],
    )
    port = reader.check(
        f"{path}.port", section.get("port"), as_service_port, DEFAULTS_SERVICE["port"]
    )
    drain = reader.check(
        f"{path}.drainSeconds", section.get("drainSeconds"), as_drain_seconds, default_drain
    )
    before = len(reader.problems)
    low = reader.check(
        f"{path}.minCount",
        section.get("minCount"),
        ranged(MIN_COUNT_MIN, DESIRED_COUNT_MAX),
        DEFAULTS_SERVICE["minCount"],
    )
    high = reader.check(
        f"{path}.maxCount",
        section.get("maxCount"),
        ranged(MIN_COUNT_MIN, DESIRED_COUNT_MAX),
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


def _name_service(reader: Reader, value: object) -> NameSettings:
    section = reader.section("name", value, _NAME_KEYS)
    fields = _service_fields(reader, "name", section, DEFAULT_DRAIN["name"])
    target = reader.check(
        "name.targetCpuPercent",
        section.get("targetCpuPercent"),
        ranged(TARGET_CPU_MIN, TARGET_CPU_MAX),
        DEFAULT_TARGET_CPU,
    )
    return NameSettings(**fields, target_cpu_percent=target)


def _hello_service(reader: Reader, value: object) -> HelloSettings:
    section = reader.section("hello", value, _HELLO_KEYS)
    fields = _service_fields(reader, "hello", section, DEFAULT_DRAIN["hello"])
    refresh = reader.check(
        "hello.dnsRefreshSeconds",
        section.get("dnsRefreshSeconds"),
        ranged(1, 60),
        DEFAULT_DNS_REFRESH,
    )
    target = reader.check(
        "hello.targetRequestsPerTask",
        section.get("targetRequestsPerTask"),
        ranged(TARGET_REQUESTS_MIN, TARGET_REQUESTS_MAX),
        DEFAULT_TARGET_REQUESTS,
    )
    zone_aware = reader.check("hello.zoneAware", section.get("zoneAware"), as_boolean, True)
    return HelloSettings(
        **fields,
        dns_refresh_seconds=refresh,
        target_requests_per_task=target,
        zone_aware=zone_aware,
    )


def _capacity(reader: Reader, value: object) -> Capacity:
    section = reader.section("capacity", value, _CAPACITY_KEYS)
    before = len(reader.problems)
    base = reader.check(
        "capacity.onDemandBase", section.get("onDemandBase"), ranged(0, CAPACITY_BASE_MAX), 0
    )
    on_demand = reader.check(
        "capacity.onDemandWeight",
        section.get("onDemandWeight"),
        ranged(0, CAPACITY_WEIGHT_MAX),
        1,
    )
    spot = reader.check(
        "capacity.spotWeight", section.get("spotWeight"), ranged(0, CAPACITY_WEIGHT_MAX), 0
    )
    if len(reader.problems) == before and on_demand + spot == 0:
        # ECS: at least one provider of a strategy must have a weight above 0.
        reader.fail(
            "capacity.spotWeight",
            "and capacity.onDemandWeight are both 0: ECS places tasks beyond the base by "
            f"weight, so at least one must be 1 to {CAPACITY_WEIGHT_MAX}",
        )
    return Capacity(on_demand_base=base, on_demand_weight=on_demand, spot_weight=spot)


def _alarms(reader: Reader, value: object) -> Alarms:
    section = reader.section("alarms", value, _ALARM_KEYS)
    return Alarms(email=reader.check("alarms.email", section.get("email"), as_email, None))


def _network(reader: Reader, value: object) -> NewVpc | ExistingVpc:
    section = reader.section("network", value, _NEW_VPC_KEYS + _EXISTING_VPC_KEYS)
    if "vpcId" in section or "publicSubnetIds" in section or "privateSubnetIds" in section:
        for key in _NEW_VPC_KEYS:
            if key in section:
                reader.fail(f"network.{key}", "only applies to a new VPC; remove it or vpcId")
        for key in _EXISTING_VPC_KEYS:
            if key not in section:
                reader.fail(f"network.{key}", "required when using an existing VPC")
        vpc_id = reader.check(
            "network.vpcId", section.get("vpcId"), matching(VPC_ID, "a VPC id (vpc-...)"), ""
        )
        subnet_list = id_list(SUBNET_ID, "subnet id (subnet-...)")
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
            "network.cidrBlock", section.get("cidrBlock"), as_private_cidr, DEFAULT_CIDR
        ),
        availability_zones=reader.check(
            "network.availabilityZones",
            section.get("availabilityZones"),
            ranged(AZ_MIN, AZ_MAX),
            AZ_MIN,
        ),
        nat_gateways=reader.check(
            "network.natGateways",
            section.get("natGateways"),
            one_of(NAT_STRATEGIES, nat_why),
            NAT_STRATEGIES[0],
        ),
    )


def _domain(
    reader: Reader, value: object, namespace: str, requests_certificate: bool
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
    name = reader.check("domain.name", section.get("name"), as_dns_name, "")
    if name and len(reader.problems) == before:
        if "." not in name:
            reader.fail(
                "domain.name", f"{name!r} is a top-level domain; allowed: a name in a zone you own"
            )
        elif at_or_under(name, namespace):
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
        matching(ZONE_ID, "a Route 53 hosted zone id (Z followed by letters and digits)"),
        None,
    )
    zone_name = reader.check("domain.zoneName", section.get("zoneName"), as_dns_name, None)
    if zone_name and name and not at_or_under(name, zone_name):
        reader.fail(
            "domain.zoneName",
            f"{zone_name!r} does not hold {name!r}; allowed: {name!r} or one of its parent domains",
        )
    return Domain(name=name, zone_id=zone_id, zone_name=zone_name)


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
    reader = Reader(project)
    if stack is not None:
        stack_name_rule(reader, stack)
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
        one_of(ARCHITECTURES),
        ARCHITECTURES[0],
    )
    namespace = reader.check("namespace", raw.get("namespace"), as_namespace, "internal")
    dns_ttl = reader.check("dnsTtl", raw.get("dnsTtl"), ranged(0, DNS_TTL_MAX), DEFAULT_DNS_TTL)
    retention = reader.check(
        "logRetentionDays", raw.get("logRetentionDays"), one_of(LOG_RETENTION_DAYS), 7
    )
    certificate = reader.check(
        "certificateArn",
        raw.get("certificateArn"),
        matching(CERTIFICATE_ARN, "an ACM certificate ARN (arn:aws:acm:<region>:<account>:...)"),
        None,
    )
    domain = _domain(reader, raw.get("domain"), namespace, requests_certificate=not certificate)
    if certificate is not None:
        match = CERTIFICATE_ARN.match(certificate)
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
    zone_redundant = reader.check("zoneRedundant", raw.get("zoneRedundant"), as_boolean, False)
    alarms = _alarms(reader, raw.get("alarms"))
    discovery_mode = reader.check(
        "discoveryMode", raw.get("discoveryMode"), one_of(DISCOVERY_MODES), DISCOVERY_MODES[0]
    )

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
        discovery_mode=discovery_mode,
        alarms=alarms,
    )
    if not reader.problems:
        drain_covers_discovery(reader, dns_ttl, name, hello)
        zones_and_spot(reader, settings)

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
