"""The rules this program holds itself to, as Pulumi CrossGuard policies.

The Pulumi CLI runs them at `pulumi preview` and `pulumi up` when given this folder
(`--policy-pack policy`); policy/__main__.py serves them. Each resource policy reads the
resource's inputs the way the engine hands them over (`ResourceValidationArgs.props`: the
resource's input properties, after the provider's Check, by their camelCase Pulumi names, with
numbers as floats); the stack policy reads every resource's outputs (`PolicyResource.props`).

Unknown values. At preview, a value that depends on a resource not created yet (an id, an ARN,
the image digest inside `containerDefinitions`) arrives as one of the engine's "unknown"
sentinels, and pulumi-policy's proxy raises `UnknownValueError` when a policy reads it. Every
policy here reads through `known()`, checks whatever is known, and leaves what is not to
`pulumi up`: there the engine runs every resource policy again on known values before it
creates or updates the resource. A known violation is reported whatever else is unknown.

Levels. Mandatory where a violation exposes something or cannot be fixed after the fact;
advisory where it is reversible at any time and exposes nothing. The reason for each rule's
level is written beside it, and the README's table repeats them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from pulumi_policy import (
    EnforcementLevel,
    PolicyPack,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Severity,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import (
    UNKNOWN_ARCHIVE_VALUE,
    UNKNOWN_ARRAY_VALUE,
    UNKNOWN_ASSET_VALUE,
    UNKNOWN_BOOLEAN_VALUE,
    UNKNOWN_NUMBER_VALUE,
    UNKNOWN_OBJECT_VALUE,
    UNKNOWN_STRING_VALUE,
    UnknownValueError,
)

PACK_NAME = "fargate-service-discovery-guardrails"

# Resource types, as the engine names them. The aws:alb/* tokens are pulumi-aws's aliases of
# the aws:lb/* resources: a copy that uses them must not slip past the rules.
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
SECURITY_GROUP_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS_RULE = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
ECS_SERVICE = "aws:ecs/service:Service"
ECS_TASK_SET = "aws:ecs/taskSet:TaskSet"
TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
LOAD_BALANCERS = ("aws:lb/loadBalancer:LoadBalancer", "aws:alb/loadBalancer:LoadBalancer")
LISTENERS = ("aws:lb/listener:Listener", "aws:alb/listener:Listener")
CLOUD_MAP_SERVICE = "aws:servicediscovery/service:Service"

# Where the world may come in: the load balancer's listener ports, and nothing else.
WORLD = frozenset({"0.0.0.0/0", "::/0"})
PUBLIC_PORTS = frozenset({80, 443})
# "6" is TCP's protocol number, which AWS accepts in place of the name.
TCP = frozenset({"tcp", "6"})

# TLS policies with TLS 1.2 as the floor, TLS 1.3 offered, and only forward-secret AEAD ciphers
# for TLS 1.2 (no CBC or SHA-1 suites): AWS's recommended policy, its restricted, TLS 1.3-only,
# FIPS and post-quantum variants. Not the Ext* policies (they add legacy ciphers for old
# clients), nor ELBSecurityPolicy-2016-08, which the API applies when ssl_policy is left out.
# See "Security policies for your Application Load Balancer" in the ELB user guide.
MODERN_TLS_POLICIES = frozenset(
    {
        "ELBSecurityPolicy-TLS13-1-2-2021-06",
        "ELBSecurityPolicy-TLS13-1-2-Res-2021-06",
        "ELBSecurityPolicy-TLS13-1-3-2021-06",
        "ELBSecurityPolicy-TLS13-1-2-FIPS-2023-04",
        "ELBSecurityPolicy-TLS13-1-2-Res-FIPS-2023-04",
        "ELBSecurityPolicy-TLS13-1-3-FIPS-2023-04",
        "ELBSecurityPolicy-TLS13-1-2-PQ-2025-09",
        "ELBSecurityPolicy-TLS13-1-2-Res-PQ-2025-09",
        "ELBSecurityPolicy-TLS13-1-3-PQ-2025-09",
        "ELBSecurityPolicy-TLS13-1-2-FIPS-PQ-2025-09",
        "ELBSecurityPolicy-TLS13-1-2-Res-FIPS-PQ-2025-09",
        "ELBSecurityPolicy-TLS13-1-3-FIPS-PQ-2025-09",
    }
)


# --- Reading what the engine hands over ----------------------------------------------------


class Unknown:
    """A value the engine does not know yet (preview): checked again at `pulumi up`."""

    def __repr__(self) -> str:
        return "<unknown>"


UNKNOWN: Final[Unknown] = Unknown()
_SENTINELS = frozenset(
    {
        UNKNOWN_ARCHIVE_VALUE,
        UNKNOWN_ARRAY_VALUE,
        UNKNOWN_ASSET_VALUE,
        UNKNOWN_BOOLEAN_VALUE,
        UNKNOWN_NUMBER_VALUE,
        UNKNOWN_OBJECT_VALUE,
        UNKNOWN_STRING_VALUE,
    }
)


def _is_sentinel(value: object) -> bool:
    return isinstance(value, str) and value in _SENTINELS


def known(node: object, *path: str | int) -> Any:
    """The value at `path` under `node`: UNKNOWN if it (or anything on the way) is not known
    yet, None if absent.

    Works on pulumi-policy's proxies (whose item access raises UnknownValueError on an unknown
    value; they are Mappings and Sequences, not dicts and lists) and on plain JSON alike.
    """
    value: Any = node
    for key in path:
        if value is UNKNOWN or value is None or _is_sentinel(value):
            return UNKNOWN if value is not None else None
        try:
            if isinstance(value, Mapping) and isinstance(key, str):
                value = value.get(key)
            elif isinstance(value, Sequence) and not isinstance(value, str):
                if not isinstance(key, int) or not -len(value) <= key < len(value):
                    return None
                value = value[key]
            else:
                return None
        except UnknownValueError:
            return UNKNOWN
    return UNKNOWN if _is_sentinel(value) else value


def known_items(node: object, *path: str | int) -> list[Any] | Unknown:
    """The elements of the list at `path` (each one UNKNOWN where not known yet); [] if absent;
    UNKNOWN if the list itself is not known yet."""
    value = known(node, *path)
    if isinstance(value, Unknown):
        return value
    if value is None:
        return []
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [known(value, i) for i in range(len(value))]
    return [value]


def as_int(value: object) -> int | None:
    """A whole number (the wire carries every number as a float), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value) if float(value).is_integer() else None


# --- Security group rules, whatever resource declares them -----------------------------------


@dataclass(frozen=True)
class Rule:
    """One security group rule, from any of the four shapes pulumi-aws offers."""

    direction: str  # "ingress" or "egress"
    protocol: Any
    from_port: Any
    to_port: Any
    # Peers that are address ranges (IPv4/IPv6 CIDRs, prefix lists), and security groups
    # ("self" for the group itself). Elements may be UNKNOWN.
    ranges: list[Any] = field(default_factory=list)
    groups: list[Any] = field(default_factory=list)
    # True when a whole list of peers is not known yet, so the peers cannot even be counted.
    uncounted: bool = False
    # Which part of the resource it is, for messages: "" or "ingress[0]".
    where: str = ""

    def label(self) -> str:
        return f"{self.where} " if self.where else ""


def _listed(*lists: list[Any] | Unknown) -> tuple[list[Any], bool]:
    """The elements of several lists, and whether any whole list is not known yet."""
    out: list[Any] = []
    uncounted = False
    for items in lists:
        if isinstance(items, Unknown):
            uncounted = True
        else:
            out += items
    return out, uncounted


def _present(*values: Any) -> list[Any]:
    return [v for v in values if v is not None and v != ""]


def rules_of(resource_type: str, props: Mapping[str, Any]) -> Iterator[Rule]:
    """Every security group rule a resource declares, from its properties."""
    if resource_type in (INGRESS_RULE, EGRESS_RULE):
        yield Rule(
            direction="ingress" if resource_type == INGRESS_RULE else "egress",
            protocol=known(props, "ipProtocol"),
            from_port=known(props, "fromPort"),
            to_port=known(props, "toPort"),
            ranges=_present(
                known(props, "cidrIpv4"), known(props, "cidrIpv6"), known(props, "prefixListId")
            ),
            groups=_present(known(props, "referencedSecurityGroupId")),
        )
    elif resource_type == SECURITY_GROUP_RULE:
        direction = known(props, "type")
        ranges, uncounted = _listed(
            known_items(props, "cidrBlocks"),
            known_items(props, "ipv6CidrBlocks"),
            known_items(props, "prefixListIds"),
        )
        is_self = known(props, "self")
        yield Rule(
            direction=direction if isinstance(direction, str) else "unknown",
            protocol=known(props, "protocol"),
            from_port=known(props, "fromPort"),
            to_port=known(props, "toPort"),
            ranges=ranges,
            groups=[
                *_present(known(props, "sourceSecurityGroupId")),
                *(["self"] if is_self is True else []),
            ],
            uncounted=uncounted or is_self is UNKNOWN,
        )
    elif resource_type == SECURITY_GROUP:
        for direction in ("ingress", "egress"):
            blocks = known_items(props, direction)
            if isinstance(blocks, Unknown):
                continue
            for i, block in enumerate(blocks):
                if block is UNKNOWN:
                    continue
                ranges, uncounted = _listed(
                    known_items(block, "cidrBlocks"),
                    known_items(block, "ipv6CidrBlocks"),
                    known_items(block, "prefixListIds"),
                )
                groups, groups_uncounted = _listed(known_items(block, "securityGroups"))
                is_self = known(block, "self")
                yield Rule(
                    direction=direction,
                    protocol=known(block, "protocol"),
                    from_port=known(block, "fromPort"),
                    to_port=known(block, "toPort"),
                    ranges=ranges,
                    groups=[*groups, *(["self"] if is_self is True else [])],
                    uncounted=uncounted or groups_uncounted or is_self is UNKNOWN,
                    where=f"{direction}[{i}]",
                )


RULE_TYPES = (SECURITY_GROUP, SECURITY_GROUP_RULE, INGRESS_RULE, EGRESS_RULE)


def _tcp_one_port(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type not in RULE_TYPES:
        args.not_applicable("not a security group rule")
    for rule in rules_of(args.resource_type, args.props):
        if rule.protocol is not UNKNOWN and str(rule.protocol).lower() not in TCP:
            report(
                f"{rule.label()}allows protocol {rule.protocol!r}: use 'tcp' (-1 opens every "
                "protocol and port).",
                None,
            )
            continue
        if rule.from_port is UNKNOWN or rule.to_port is UNKNOWN:
            continue
        low, high = as_int(rule.from_port), as_int(rule.to_port)
        if low is None or low != high or not 0 < low < 65536:
            report(
                f"{rule.label()}opens ports {rule.from_port}-{rule.to_port}: open exactly one "
                "port (from_port == to_port).",
                None,
            )


def _world_on_public_port(rule: Rule) -> bool | None:
    """True when the rule admits the whole internet on a listener port; None if not known."""
    if any(r is UNKNOWN for r in rule.ranges) or UNKNOWN in (rule.from_port, rule.to_port):
        return None
    port = as_int(rule.from_port)
    return (
        bool(rule.ranges)
        and all(r in WORLD for r in rule.ranges)
        and port in PUBLIC_PORTS
        and as_int(rule.to_port) == port
    )


def _ingress_from_one_group(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type not in RULE_TYPES:
        args.not_applicable("not a security group rule")
    for rule in rules_of(args.resource_type, args.props):
        if rule.direction != "ingress" or rule.uncounted:
            continue
        if not rule.ranges and len(rule.groups) == 1:
            continue
        if rule.ranges and not rule.groups:
            world = _world_on_public_port(rule)
            if world is None or world:
                continue
            report(
                f"{rule.label()}admits address ranges {rule.ranges} on port {rule.from_port}: "
                "only the internet-facing load balancer takes traffic from addresses (0.0.0.0/0 "
                "or ::/0 on 80 or 443); everything else admits one security group.",
                None,
            )
            continue
        report(
            f"{rule.label()}admits {len(rule.groups)} security group(s) and "
            f"{len(rule.ranges)} address range(s): admit exactly one security group.",
            None,
        )


# --- Only the load balancer is open to the world (a stack policy) ----------------------------


def _lookup_ids(values: list[Any] | Unknown) -> tuple[set[str], bool]:
    """The known ids among `values`, and whether any of them is unknown."""
    if isinstance(values, Unknown):
        return set(), True
    return {v for v in values if isinstance(v, str)}, any(v is UNKNOWN for v in values)


def _urns(resource: PolicyResource, prop: str) -> set[str]:
    return {d.urn for d in resource.property_dependencies.get(prop, [])}


def _only_load_balancer_open(args: StackValidationArgs, report: ReportViolation) -> None:
    # The groups of internet-facing Application Load Balancers, by id and by the URN of the
    # security group resource (property dependencies: known at preview before any id is).
    alb_ids: set[str] = set()
    alb_urns: set[str] = set()
    undecidable = False
    for lb in args.resources:
        if lb.resource_type not in LOAD_BALANCERS:
            continue
        internal, kind = known(lb.props, "internal"), known(lb.props, "loadBalancerType")
        if internal is UNKNOWN or kind is UNKNOWN:
            undecidable = True
            continue
        if internal is True or kind not in (None, "application"):
            continue
        ids, some_unknown = _lookup_ids(known_items(lb.props, "securityGroups"))
        urns = _urns(lb, "securityGroups")
        alb_ids |= ids
        alb_urns |= urns
        undecidable |= some_unknown and not urns
    for resource in args.resources:
        if resource.resource_type not in RULE_TYPES:
            continue
        for rule in rules_of(resource.resource_type, resource.props):
            if rule.direction != "ingress" or not rule.ranges:
                continue
            if resource.resource_type == SECURITY_GROUP:
                group_ids = {known(resource.props, "id")} - {None, UNKNOWN}
                group_urns = {resource.urn}
            else:
                group_id = known(resource.props, "securityGroupId")
                group_ids = {group_id} - {None, UNKNOWN}
                group_urns = _urns(resource, "securityGroupId")
            if group_ids & alb_ids or group_urns & alb_urns:
                continue
            if undecidable or not (group_ids or group_urns):
                continue
            report(
                f"{resource.name} {rule.label()}admits address ranges {rule.ranges} into a "
                "security group that no internet-facing load balancer uses: only the load "
                "balancer is open to the world; everything behind it admits one security group.",
                resource.urn,
            )


# --- Tasks ------------------------------------------------------------------------------------


def _no_public_ip(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type not in (ECS_SERVICE, ECS_TASK_SET):
        args.not_applicable("not an ECS service or task set")
    # Absent means false (the provider's default).
    if known(args.props, "networkConfiguration", "assignPublicIp") is True:
        report(
            "networkConfiguration.assignPublicIp is true: run tasks in private subnets without a "
            "public IP; they go out through NAT and are reached through Cloud Map or the load "
            "balancer.",
            None,
        )


def containers(args: ResourceValidationArgs, report: ReportViolation) -> list[Mapping[str, Any]]:
    """The task definition's container definitions (a JSON text on the wire), or [] when not
    known yet or not a task definition."""
    if args.resource_type != TASK_DEFINITION:
        args.not_applicable("not an ECS task definition")
    text = known(args.props, "containerDefinitions")
    if text is UNKNOWN or text is None:
        return []
    try:
        parsed = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        parsed = None
    if not isinstance(parsed, list) or not all(isinstance(c, dict) for c in parsed):
        report("containerDefinitions is not a JSON list of containers; nothing to check.", None)
        return []
    return parsed


def _name(container: Mapping[str, Any]) -> str:
    return str(container.get("name", "?"))


def _non_root(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for c in containers(args, report):
        user = c.get("user")
        who = str(user).split(":", 1)[0].strip() if isinstance(user, str | int) else ""
        if not who:
            report(
                f"container {_name(c)} sets no user: it runs as the image's user, root unless "
                "the image says otherwise; set user to a non-root uid:gid.",
                None,
            )
        elif who in ("root", "0"):
            report(f"container {_name(c)} runs as {user!r}: set a non-root uid:gid.", None)


def _read_only_root(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for c in containers(args, report):
        if c.get("readonlyRootFilesystem") is not True:
            report(
                f"container {_name(c)} has a writable root filesystem: set "
                "readonlyRootFilesystem to true (mount a volume where it must write).",
                None,
            )


def _digest_pinned(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for c in containers(args, report):
        image = c.get("image")
        if not isinstance(image, str) or "@sha256:" not in image:
            report(
                f"container {_name(c)} uses image {image!r}, not pinned by digest: deploy "
                "<repository>@sha256:<digest> so the stack records exactly what runs.",
                None,
            )


# --- Logs, the load balancer, Cloud Map -------------------------------------------------------


def _log_retention(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != LOG_GROUP:
        args.not_applicable("not a CloudWatch log group")
    days = known(args.props, "retentionInDays")
    if days is UNKNOWN:
        return
    if not as_int(days):
        report("retentionInDays is not set: the log group keeps every event forever.", None)


def _drops_invalid_headers(args: ResourceValidationArgs, report: ReportViolation) -> None:
    kind = known(args.props, "loadBalancerType")
    # Absent means "application" (the provider's default).
    if args.resource_type not in LOAD_BALANCERS or kind not in (None, "application", UNKNOWN):
        args.not_applicable("not an Application Load Balancer")
    drops = known(args.props, "dropInvalidHeaderFields")
    if kind is UNKNOWN or drops is UNKNOWN:
        return
    if drops is not True:
        report(
            "dropInvalidHeaderFields is not true: the load balancer passes requests with "
            "malformed header names on to the targets.",
            None,
        )


def _modern_tls(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type not in LISTENERS:
        args.not_applicable("not a load balancer listener")
    protocol = known(args.props, "protocol")
    if protocol is UNKNOWN:
        return
    if protocol not in ("HTTPS", "TLS"):
        args.not_applicable("the listener does not terminate TLS")
    policy = known(args.props, "sslPolicy")
    if policy is UNKNOWN or policy in MODERN_TLS_POLICIES:
        return
    found = (
        f"sslPolicy is {policy}"
        if policy
        else "sslPolicy is not set, so AWS applies ELBSecurityPolicy-2016-08 (TLS 1.0 and up)"
    )
    report(
        f"{found}: use a TLS 1.3 policy with TLS 1.2 as the floor, such as "
        "ELBSecurityPolicy-TLS13-1-2-2021-06.",
        None,
    )


def _ecs_health(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != CLOUD_MAP_SERVICE:
        args.not_applicable("not a Cloud Map service")
    config = known(args.props, "healthCheckCustomConfig")
    if config is UNKNOWN:
        return
    threshold = known(config, "failureThreshold")
    if threshold is UNKNOWN:
        return
    if config is None or as_int(threshold) is None:
        report(
            "healthCheckCustomConfig.failureThreshold is not set: the provider sends no custom "
            "health check config for an empty block, so Cloud Map would answer with every task, "
            "healthy or not, and the setting cannot be added to an existing service. Set "
            "failureThreshold to 1 (AWS fixes it at 1).",
            None,
        )


# --- ECS Service Connect (docs/service-connect.md) ---------------------------------------------
# A service without Service Connect satisfies these rules: they judge every ECS service, so a
# program in the DNS mode shows they apply and pass.


def _service_connect(args: ResourceValidationArgs) -> Any:
    """The service's Service Connect configuration when it is known to be on, else None."""
    if args.resource_type != ECS_SERVICE:
        args.not_applicable("not an ECS service")
    config = known(args.props, "serviceConnectConfiguration")
    if config is UNKNOWN or config is None or known(config, "enabled") is not True:
        return None
    return config


def _connect_services(config: Any) -> list[tuple[str, Any]]:
    """Each known client-server entry of the configuration, with a label for messages."""
    entries = known_items(config, "services")
    if isinstance(entries, Unknown):
        return []
    return [
        (f"services[{i}] ({known(entry, 'portName')})", entry)
        for i, entry in enumerate(entries)
        if entry is not UNKNOWN and entry is not None
    ]


def _connect_timeouts(args: ResourceValidationArgs, report: ReportViolation) -> None:
    config = _service_connect(args)
    for label, entry in _connect_services(config):
        timeout = known(entry, "timeout")
        if timeout is UNKNOWN:
            continue
        values = {k: known(timeout, k) for k in ("perRequestTimeoutSeconds", "idleTimeoutSeconds")}
        missing = [k for k, v in values.items() if v is None]
        if missing:
            report(
                f"{label}: {' and '.join(missing)} not set: the proxy's defaults apply "
                "(5 minutes idle for HTTP; no per-request value stated), and what ECS fills in "
                "comes back on read as a diff; set both to the values the callers' own "
                "timeouts are coordinated with.",
                None,
            )
        elif as_int(values["perRequestTimeoutSeconds"]) == 0:
            report(
                f"{label}: perRequestTimeoutSeconds is 0, which disables it: a stuck task holds "
                "every request through the proxy until the caller gives up; set a bound.",
                None,
            )


def _connect_logs(args: ResourceValidationArgs, report: ReportViolation) -> None:
    config = _service_connect(args)
    if config is None:
        return
    logs = known(config, "logConfiguration")
    access = known(config, "accessLogConfiguration")
    if logs is None:
        report(
            "serviceConnectConfiguration.logConfiguration is not set: the proxy's own logs "
            "(and its access logs) go nowhere; send them to the service's log group.",
            None,
        )
    if access is None:
        report(
            "serviceConnectConfiguration.accessLogConfiguration is not set: the proxy writes "
            "no access log, so a failed call through it leaves no line naming the task.",
            None,
        )


def _connect_names(args: ResourceValidationArgs, report: ReportViolation) -> None:
    config = _service_connect(args)
    for label, entry in _connect_services(config):
        if known(entry, "discoveryName") is None:
            report(
                f"{label}: discoveryName is not set: ECS derives one, and a provider that reads "
                "the deployment back shows it as a diff on every update; name it.",
                None,
            )
        aliases = known_items(entry, "clientAlias")
        if isinstance(aliases, Unknown):
            continue
        if not aliases:
            report(f"{label}: no clientAlias: clients cannot call it by a name of yours.", None)
        for alias in aliases:
            if alias is not UNKNOWN and known(alias, "dnsName") is None:
                report(
                    f"{label}: a clientAlias without dnsName: ECS derives the name clients "
                    "call, and reads it back as a diff; name it.",
                    None,
                )


# --- The policies, each with its level and the reason for it ---------------------------------

MANDATORY = EnforcementLevel.MANDATORY
ADVISORY = EnforcementLevel.ADVISORY

POLICIES: list[ResourceValidationPolicy | StackValidationPolicy] = [
    # Mandatory: protocol -1 or a port range opens everything behind the group at once (the
    # reference design's IpProtocol -1); no flow here needs more than one TCP port.
    ResourceValidationPolicy(
        name="security-group-rules-tcp-one-port",
        description="Security group rules allow TCP on exactly one port, never protocol -1.",
        validate=_tcp_one_port,
        enforcement_level=MANDATORY,
        severity=Severity.HIGH,
    ),
    # Mandatory: an address range behind the load balancer reaches tasks directly, around the
    # one path that is meant to reach them; naming the caller's group keeps each flow explicit.
    ResourceValidationPolicy(
        name="ingress-from-one-security-group",
        description=(
            "Ingress comes from exactly one security group; only 0.0.0.0/0 or ::/0 on port 80 "
            "or 443 (the load balancer's listeners) may come from addresses."
        ),
        validate=_ingress_from_one_group,
        enforcement_level=MANDATORY,
        severity=Severity.HIGH,
    ),
    # Mandatory: anything else open to the internet is exposed without the load balancer in
    # front of it. A stack policy, as it relates rules to load balancers.
    StackValidationPolicy(
        name="only-the-load-balancer-is-open-to-the-world",
        description=(
            "Ingress from address ranges goes only to the security group of an internet-facing "
            "Application Load Balancer."
        ),
        validate=_only_load_balancer_open,
        enforcement_level=MANDATORY,
        severity=Severity.HIGH,
    ),
    # Mandatory: a public IP puts the task's port on the internet, skipping the load balancer
    # and its security group.
    ResourceValidationPolicy(
        name="tasks-get-no-public-ip",
        description="ECS services and task sets do not assign public IPs to their tasks.",
        validate=_no_public_ip,
        enforcement_level=MANDATORY,
        severity=Severity.HIGH,
    ),
    # Mandatory: a compromised process running as root owns the container, and root is one
    # kernel bug away from more; the images already run as an unprivileged user.
    ResourceValidationPolicy(
        name="containers-run-as-non-root",
        description="Every container sets a user that is not root (uid 0).",
        validate=_non_root,
        enforcement_level=MANDATORY,
        severity=Severity.HIGH,
    ),
    # Mandatory: a writable root filesystem lets an intruder plant tools and persist changes
    # in a running task; the services write nothing to disk.
    ResourceValidationPolicy(
        name="containers-read-only-root-filesystem",
        description="Every container has a read-only root filesystem.",
        validate=_read_only_root,
        enforcement_level=MANDATORY,
        severity=Severity.MEDIUM,
    ),
    # Advisory: a log group without retention costs money and keeps data forever, but nothing
    # is exposed and setting retention later removes the old events: warn, do not block.
    ResourceValidationPolicy(
        name="log-groups-expire",
        description="CloudWatch log groups set a retention period.",
        validate=_log_retention,
        enforcement_level=ADVISORY,
        severity=Severity.LOW,
    ),
    # Mandatory: the load balancer faces the internet; forwarding malformed headers invites
    # request smuggling against the targets, and the fix is one setting.
    ResourceValidationPolicy(
        name="load-balancers-drop-invalid-headers",
        description="Application Load Balancers drop header fields with invalid names.",
        validate=_drops_invalid_headers,
        enforcement_level=MANDATORY,
        severity=Severity.MEDIUM,
    ),
    # Mandatory: a listener left to AWS's default (ELBSecurityPolicy-2016-08) accepts TLS 1.0
    # and 1.1 from the internet.
    ResourceValidationPolicy(
        name="tls-listeners-use-a-modern-policy",
        description="HTTPS and TLS listeners use a TLS 1.3 policy with TLS 1.2 as the floor.",
        validate=_modern_tls,
        enforcement_level=MANDATORY,
        severity=Severity.MEDIUM,
    ),
    # Mandatory: without it DNS keeps answering with unhealthy and stopping tasks, and it can
    # only be set when the service is created (AWS cannot add it later): a deploy must not
    # create the service without it.
    ResourceValidationPolicy(
        name="cloud-map-services-take-ecs-health",
        description="Cloud Map services take task health from ECS (healthCheckCustomConfig).",
        validate=_ecs_health,
        enforcement_level=MANDATORY,
        severity=Severity.MEDIUM,
    ),
    # Advisory (the three Service Connect rules): each is reversible with one update and
    # exposes nothing, but left to ECS the value is not the one the callers were coordinated
    # with, and what ECS fills in comes back on read as a diff (provider notes).
    ResourceValidationPolicy(
        name="service-connect-timeouts-set",
        description=(
            "Service Connect client-server entries set perRequestTimeoutSeconds (not 0) and "
            "idleTimeoutSeconds."
        ),
        validate=_connect_timeouts,
        enforcement_level=ADVISORY,
        severity=Severity.LOW,
    ),
    ResourceValidationPolicy(
        name="service-connect-proxy-logs",
        description="Service Connect sends the proxy's logs and access logs somewhere.",
        validate=_connect_logs,
        enforcement_level=ADVISORY,
        severity=Severity.LOW,
    ),
    ResourceValidationPolicy(
        name="service-connect-names-spelled-out",
        description="Service Connect entries name their discoveryName and client aliases' dnsName.",
        validate=_connect_names,
        enforcement_level=ADVISORY,
        severity=Severity.LOW,
    ),
    # Advisory: a tag can move, so the stack no longer records what runs and a rollback may
    # not restore it; ECS itself resolves a tag to one digest per deployment, so nothing is
    # exposed, and a vendor's sidecar by tag should warn, not block.
    ResourceValidationPolicy(
        name="images-pinned-by-digest",
        description="Every container image is pinned by digest (…@sha256:…).",
        validate=_digest_pinned,
        enforcement_level=ADVISORY,
        severity=Severity.LOW,
    ),
]


def serve() -> None:
    """Serve the policies to the Pulumi engine (blocks; the CLI stops the process)."""
    PolicyPack(
        name=PACK_NAME,
        policies=list(POLICIES),
        description="The security and architecture rules of fargate-service-discovery.",
    )
