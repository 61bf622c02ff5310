"""stack.parse_settings: every rule, without Pulumi."""

from __future__ import annotations

import json

import pytest
import yaml

import stack as stack_settings
from stack import ConfigError, Domain, ExistingVpc, NewVpc, parse_settings
from tests.infra.support import PROJECT, ROOT, stack_config

VPC = {
    "vpcId": "vpc-0a1b2c3d4e5f60718",
    "publicSubnetIds": ["subnet-0aaaaaaaaaaaaaaa1", "subnet-0aaaaaaaaaaaaaaa2"],
    "privateSubnetIds": ["subnet-0bbbbbbbbbbbbbbb1", "subnet-0bbbbbbbbbbbbbbb2"],
}


def raw_of(stack: str) -> dict[str, object]:
    """A stack file's project values, keyed without the project prefix."""
    prefix = f"{PROJECT}:"
    return {k[len(prefix) :]: v for k, v in stack_config(stack).items() if k.startswith(prefix)}


def problems(raw: dict[str, object]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_settings(raw)
    return caught.value.problems


def test_defaults_are_the_dev_shape() -> None:
    s = parse_settings({})
    assert s.architecture == "X86_64"
    assert s.image_platform == "linux/amd64"
    assert s.namespace == "internal"
    assert s.dns_ttl == 0
    assert s.log_retention_days == 7
    assert s.certificate_arn is None
    assert s.network == NewVpc("10.0.0.0/16", 2, "Single")
    assert (s.name.cpu, s.name.memory, s.name.desired_count, s.name.port) == (256, 512, 2, 3000)
    # name drains for Route 53 propagation + TTL + hello's refresh + margin; hello (behind
    # the ALB, which drains it before SIGTERM) does not.
    assert (s.name.drain_seconds, s.hello.drain_seconds) == (75, 0)
    assert s.hello.dns_refresh_seconds == 5
    assert s.hello.zone_aware, "zone-aware routing is on unless a stack turns it off"


def test_dev_stack_file() -> None:
    s = parse_settings(raw_of("dev"))
    assert s.network == NewVpc("10.0.0.0/16", 2, "Single")
    assert (s.name.cpu, s.name.memory, s.name.desired_count, s.name.port) == (256, 512, 2, 3000)
    assert (s.hello.cpu, s.hello.memory, s.hello.desired_count, s.hello.port) == (256, 512, 2, 3000)


def test_prod_stack_file() -> None:
    s = parse_settings(raw_of("prod"))
    assert s.network == NewVpc("10.0.0.0/16", 3, "OnePerAz")
    assert (s.name.desired_count, s.hello.desired_count) == (3, 3)
    assert (s.hello.cpu, s.hello.memory) == (512, 1024)
    assert s.log_retention_days == 30


def test_stack_files_spell_out_every_service_tunable() -> None:
    # The issue asks for cpu, memory, desiredCount and port per service, explicitly.
    for stack in ("dev", "prod"):
        raw = raw_of(stack)
        for service in ("name", "hello"):
            section = json.loads(str(raw[service]))
            assert {"cpu", "memory", "desiredCount", "port"} <= section.keys(), (stack, service)


def test_values_as_pulumi_stores_them() -> None:
    # Scalars arrive as text, objects as JSON text.
    s = parse_settings(
        {
            "dnsTtl": "5",
            "logRetentionDays": "30",
            "name": '{"cpu": 1024, "memory": 3072, "desiredCount": 4, "port": 8080}',
            "network": '{"availabilityZones": 3, "natGateways": "OnePerAz"}',
        }
    )
    assert (s.dns_ttl, s.log_retention_days) == (5, 30)
    assert (s.name.cpu, s.name.memory, s.name.desired_count, s.name.port) == (1024, 3072, 4, 8080)
    assert s.network == NewVpc("10.0.0.0/16", 3, "OnePerAz")


@pytest.mark.parametrize(
    ("cpu", "memory"),
    [
        (256, 512),
        (256, 2048),
        (512, 4096),
        (1024, 8192),
        (2048, 16384),
        (4096, 30720),
        (8192, 61440),
        (16384, 122880),
    ],
)
def test_valid_fargate_sizes(cpu: int, memory: int) -> None:
    s = parse_settings({"name": {"cpu": cpu, "memory": memory}})
    assert (s.name.cpu, s.name.memory) == (cpu, memory)


@pytest.mark.parametrize("cidr", ["10.0.0.0/16", "172.31.0.0/16", "192.168.0.0/22"])
def test_private_ranges(cidr: str) -> None:
    assert parse_settings({"network": {"cidrBlock": cidr}}).network == NewVpc(cidr, 2, "Single")


def test_existing_vpc() -> None:
    s = parse_settings({"network": VPC})
    assert s.network == ExistingVpc(
        "vpc-0a1b2c3d4e5f60718",
        ("subnet-0aaaaaaaaaaaaaaa1", "subnet-0aaaaaaaaaaaaaaa2"),
        ("subnet-0bbbbbbbbbbbbbbb1", "subnet-0bbbbbbbbbbbbbbb2"),
    )


def test_arm64_builds_arm64_images() -> None:
    assert parse_settings({"architecture": "ARM64"}).image_platform == "linux/arm64"


CERT_EU = "arn:aws:acm:eu-west-1:123456789012:certificate/0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"
CERT_US = CERT_EU.replace("eu-west-1", "us-east-1")
DOMAIN = {"name": "hello.example.com", "zoneId": "Z0123456789ABCDEFGHIJ"}


def test_no_domain_means_plain_http() -> None:
    s = parse_settings({})
    assert (s.domain, s.certificate_arn) == (None, None)


def test_domain_with_zone_id_or_zone_name() -> None:
    assert parse_settings({"domain": DOMAIN}).domain == Domain(
        "hello.example.com", "Z0123456789ABCDEFGHIJ", None
    )
    by_name = {"name": "example.com", "zoneName": "example.com"}  # the zone apex works too
    assert parse_settings({"domain": json.dumps(by_name)}).domain == Domain(
        "example.com", None, "example.com"
    )


def test_certificate_of_the_stack_region_with_a_domain() -> None:
    s = parse_settings({"certificateArn": CERT_EU, "domain": DOMAIN}, region="eu-west-1")
    assert s.certificate_arn == CERT_EU
    assert s.domain == Domain("hello.example.com", "Z0123456789ABCDEFGHIJ", None)


def test_a_given_certificate_lifts_the_acm_name_length_limit() -> None:
    # ACM's 64-character limit applies to names it is asked to certify, not to a given ARN.
    long_name = f"{'a' * 60}.example.com"
    domain = {"name": long_name, "zoneId": "Z0123456789ABCDEFGHIJ"}
    assert parse_settings({"domain": domain, "certificateArn": CERT_US}).domain is not None


@pytest.mark.parametrize("namespace", ["internal", "svc.internal", "corp", "svc.example.com"])
def test_namespaces_that_shadow_nothing_aws_needs(namespace: str) -> None:
    assert parse_settings({"namespace": namespace}).namespace == namespace


@pytest.mark.parametrize("port", [1024, 3000, 8080, 65535])
def test_unprivileged_ports(port: int) -> None:
    assert parse_settings({"name": {"port": port}, "hello": {"port": port}}).name.port == port


def test_stack_names_that_fit_ecs_names() -> None:
    parse_settings({}, stack="dev")
    parse_settings({}, stack="team_a-prod-2")


def test_stack_name_with_a_dot_is_refused() -> None:
    """ECS cluster names and task definition families (<project>-<stack>) allow letters, digits,
    hyphens and underscores; Pulumi stack names may also contain dots, which ECS would refuse
    only halfway through `pulumi up`."""
    found = problems_for({}, stack="prod.eu")
    assert len(found) == 1
    assert found[0].startswith("stack name 'prod.eu': ")
    assert "hyphens and underscores" in found[0]


def problems_for(raw: dict[str, object], stack: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_settings(raw, stack=stack)
    return caught.value.problems


# Values that pass the shape checks but cannot work on AWS: each refused under its own key,
# with the reason. (raw config, stack region, key, fragment of the message)
UNWORKABLE = [
    # A private zone for these would answer NXDOMAIN inside the VPC for the AWS endpoints the
    # tasks need (ECR, CloudWatch Logs), so no task could ever start.
    ({"namespace": "amazonaws.com"}, None, "namespace", "shadow AWS service endpoints"),
    ({"namespace": "us-east-1.amazonaws.com"}, None, "namespace", "shadow AWS service endpoints"),
    ({"namespace": "amazonaws.com.cn"}, None, "namespace", "shadow AWS service endpoints"),
    ({"namespace": "api.aws"}, None, "namespace", "shadow AWS service endpoints"),
    # ... or for the VPC's own hostnames (ip-10-0-1-2.ec2.internal in us-east-1,
    # ip-10-0-1-2.<region>.compute.internal elsewhere).
    ({"namespace": "ec2.internal"}, None, "namespace", "VPC's own hostnames"),
    ({"namespace": "compute.internal"}, None, "namespace", "VPC's own hostnames"),
    ({"namespace": "eu-west-1.compute.internal"}, None, "namespace", "VPC's own hostnames"),
    ({"namespace": "svc.ec2.internal"}, None, "namespace", "VPC's own hostnames"),
    # A whole public top-level domain, shadowed for everything in the VPC.
    ({"namespace": "com"}, None, "namespace", "top-level domain"),
    ({"namespace": "aws"}, None, "namespace", "top-level domain"),
    ({"namespace": "io"}, None, "namespace", "top-level domain"),
    # The containers run as user 10001, which cannot bind below 1024 on Fargate
    # (aws/containers-roadmap#1721): the tasks would crash-loop.
    ({"name": {"port": 80}}, None, "name.port", "non-root user"),
    ({"hello": {"port": 443}}, None, "hello.port", "non-root user"),
    ({"hello": {"port": 1023}}, None, "hello.port", "allowed: 1024 to 65535"),
    # No certificate can match the load balancer's *.elb.amazonaws.com name.
    ({"certificateArn": CERT_US}, None, "certificateArn", "needs domain"),
    # A load balancer only takes a certificate of its own region.
    (
        {"certificateArn": CERT_EU, "domain": DOMAIN},
        "us-east-1",
        "certificateArn",
        "is in eu-west-1, but the stack deploys to us-east-1",
    ),
    # The domain must be a name in a zone we can write to, and reachable from the tasks too.
    ({"domain": {"zoneId": "Z0123456789ABCDEFGHIJ"}}, None, "domain.name", "required"),
    ({"domain": {**DOMAIN, "name": "com"}}, None, "domain.name", "top-level domain"),
    ({"domain": {**DOMAIN, "name": "Hello.example.com"}}, None, "domain.name", "valid DNS"),
    ({"domain": {**DOMAIN, "name": "*.example.com"}}, None, "domain.name", "valid DNS"),
    ({"domain": {**DOMAIN, "name": "hello.internal"}}, None, "domain.name", "inside the namespace"),
    (
        {"domain": {**DOMAIN, "name": "svc.example.com"}, "namespace": "example.com"},
        None,
        "domain.name",
        "inside the namespace",
    ),
    # ACM puts the requested name in the certificate's CN: 64 characters at most.
    (
        {"domain": {**DOMAIN, "name": f"{'a' * 53}.example.com"}},
        None,
        "domain.name",
        "at most 64",
    ),
    ({"domain": {"name": "hello.example.com"}}, None, "domain.zoneId", "exactly one"),
    (
        {"domain": {**DOMAIN, "zoneName": "example.com"}},
        None,
        "domain.zoneId",
        "exactly one",
    ),
    ({"domain": {**DOMAIN, "zoneId": "/hostedzone/Z123"}}, None, "domain.zoneId", "zone id"),
    ({"domain": {**DOMAIN, "zoneId": "z123"}}, None, "domain.zoneId", "zone id"),
    (
        {"domain": {"name": "hello.example.com", "zoneName": "example.org"}},
        None,
        "domain.zoneName",
        "does not hold",
    ),
    (
        {"domain": {"name": "hello.example.com", "zoneName": "lo.example.com"}},
        None,
        "domain.zoneName",
        "does not hold",
    ),
    ({"domain": {**DOMAIN, "ttl": 60}}, None, "domain.ttl", "unknown key"),
    ({"domain": "hello.example.com"}, None, "domain", "expected an object"),
]


@pytest.mark.parametrize(
    ("raw", "region", "key", "why"),
    UNWORKABLE,
    ids=[f"{u[2]}-{i}" for i, u in enumerate(UNWORKABLE)],
)
def test_value_that_cannot_work_on_aws_is_refused_naming_its_key(
    raw: dict[str, object], region: str | None, key: str, why: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings(raw, region=region)
    found = caught.value.problems
    assert len(found) == 1, found
    assert found[0].startswith(f"{PROJECT}:{key}: "), found[0]
    assert why in found[0], found[0]


def test_stack_files_drain_name_for_the_whole_discovery_timeline() -> None:
    """A stopping name task is deregistered from Cloud Map at SIGTERM at the earliest; hello can
    pick its address until Route 53 has propagated the removal (60 s), the resolver's cache
    (dnsTtl) and hello's (dnsRefreshSeconds) have expired. Both stacks drain that long, and
    still fit Fargate's 120 s stopTimeout."""
    for stack in ("dev", "prod"):
        s = parse_settings(raw_of(stack))
        needed = (
            stack_settings.ROUTE53_PROPAGATION_SECONDS + s.dns_ttl + s.hello.dns_refresh_seconds
        )
        assert s.name.drain_seconds >= needed, stack
        assert s.name.stop_timeout <= stack_settings.STOP_TIMEOUT_MAX, stack
        assert stack_settings.ROUTE53_PROPAGATION_SECONDS == 60  # Route 53's documented figure


def test_drain_rule_shows_its_arithmetic() -> None:
    """The error names every key involved and the sum, so the fix is obvious."""
    (problem,) = problems({"dnsTtl": 5, "name": {"drainSeconds": 69}})
    assert problem == (
        f"{PROJECT}:name.drainSeconds: 69 is too short: hello can still send to a stopping "
        "name task for Route 53 propagation (60) + dnsTtl (5) + hello.dnsRefreshSeconds (5) = "
        "70 s, and it must keep serving that long. Allowed: 70 to 110 (drainSeconds + 10 s "
        "grace must fit Fargate's 120 s stopTimeout)"
    )
    (problem,) = problems({"dnsTtl": 30, "hello": {"dnsRefreshSeconds": 30}})
    assert problem.startswith(f"{PROJECT}:dnsTtl: ")
    assert "= 120 s" in problem
    assert "drainSeconds + 10 s grace = 130 s exceeds Fargate's 120 s stopTimeout" in problem
    (problem,) = problems({"name": {"drainSeconds": 111}})
    assert "111 + 10 = 121 s, and Fargate allows at most 120 s" in problem


def test_drain_exactly_covering_the_timeline_is_accepted() -> None:
    s = parse_settings(
        {"dnsTtl": 10, "hello": {"dnsRefreshSeconds": 40}, "name": {"drainSeconds": 110}}
    )
    assert (s.name.drain_seconds, s.name.stop_timeout) == (110, 120)
    assert parse_settings({"name": {"drainSeconds": 65}}).name.drain_seconds == 65


def test_stop_timeout_covers_the_drain() -> None:
    s = parse_settings({"name": {"drainSeconds": 70}})
    assert s.name.stop_timeout > s.name.drain_seconds
    assert parse_settings(
        {"name": {"drainSeconds": stack_settings.DRAIN_SECONDS_MAX}}
    ).name.stop_timeout <= (stack_settings.STOP_TIMEOUT_MAX)


# Each bad value: the key it must be reported under and a fragment of what is allowed.
BAD = [
    ({"name": {"cpu": 300}}, "name.cpu", "allowed: 256, 512, 1024"),
    ({"hello": {"cpu": "lots"}}, "hello.cpu", "allowed: 256"),
    ({"name": {"memory": 1536}}, "name.memory", "allowed: 512, 1024, 2048"),
    ({"name": {"cpu": 1024, "memory": 1024}}, "name.memory", "2048 to 8192 in steps of 1024"),
    ({"hello": {"cpu": 8192, "memory": 18432}}, "hello.memory", "16384 to 61440 in steps of 4096"),
    ({"name": {"memory": "512MB"}}, "name.memory", "not an integer"),
    ({"name": {"desiredCount": -1}}, "name.desiredCount", "allowed: 0 to 5000"),
    ({"hello": {"desiredCount": 1.5}}, "hello.desiredCount", "not an integer"),
    ({"name": {"port": 0}}, "name.port", "allowed: 1024 to 65535"),
    ({"hello": {"port": 65536}}, "hello.port", "allowed: 1024 to 65535"),
    ({"hello": {"port": True}}, "hello.port", "not an integer"),
    ({"name": {"drainSeconds": 111}}, "name.drainSeconds", "allowed: 0 to 110"),
    ({"hello": {"dnsRefreshSeconds": 0}}, "hello.dnsRefreshSeconds", "allowed: 1 to 60"),
    # A switch: "yes" or 1 is a typo that must not silently mean on (or off).
    ({"hello": {"zoneAware": "yes"}}, "hello.zoneAware", "allowed: true, false"),
    ({"hello": {"zoneAware": 1}}, "hello.zoneAware", "allowed: true, false"),
    ({"dnsTtl": -1}, "dnsTtl", "allowed: 0 to 60"),
    ({"dnsTtl": 3600}, "dnsTtl", "allowed: 0 to 60"),
    ({"namespace": "Internal"}, "namespace", "not a valid DNS name"),
    ({"namespace": "internal."}, "namespace", "not a valid DNS name"),
    ({"namespace": "-svc.internal"}, "namespace", "not a valid DNS name"),
    ({"namespace": "a" * 64}, "namespace", "not a valid DNS name"),
    ({"namespace": "my_ns"}, "namespace", "not a valid DNS name"),
    ({"namespace": "svc.local"}, "namespace", "mDNS"),
    ({"namespace": ""}, "namespace", "non-empty string"),
    ({"architecture": "x86"}, "architecture", "allowed: X86_64, ARM64"),
    ({"architecture": "arm64"}, "architecture", "allowed: X86_64, ARM64"),
    ({"logRetentionDays": 10}, "logRetentionDays", "allowed: 1, 3, 5, 7, 14"),
    ({"logRetentionDays": 0}, "logRetentionDays", "allowed: 1, 3, 5, 7, 14"),
    ({"logRetentionDays": True}, "logRetentionDays", "allowed: 1, 3, 5, 7, 14"),
    ({"certificateArn": "arn:aws:iam::123456789012:role/x"}, "certificateArn", "ACM certificate"),
    ({"network": {"natGateways": "None"}}, "network.natGateways", "never start"),
    ({"network": {"natGateways": "single"}}, "network.natGateways", "allowed: Single, OnePerAz"),
    ({"network": {"availabilityZones": 1}}, "network.availabilityZones", "allowed: 2 to 6"),
    ({"network": {"availabilityZones": 7}}, "network.availabilityZones", "allowed: 2 to 6"),
    ({"network": {"cidrBlock": "10.0.0.1/16"}}, "network.cidrBlock", "CIDR"),
    ({"network": {"cidrBlock": "8.8.0.0/16"}}, "network.cidrBlock", "private"),
    ({"network": {"cidrBlock": "169.254.0.0/16"}}, "network.cidrBlock", "private"),
    ({"network": {"cidrBlock": "100.64.0.0/16"}}, "network.cidrBlock", "private"),
    ({"network": {"cidrBlock": "10.0.0.0/8"}}, "network.cidrBlock", "allowed: /16 to /22"),
    ({"network": {"cidrBlock": "10.0.0.0/24"}}, "network.cidrBlock", "allowed: /16 to /22"),
    ({"network": "10.0.0.0/16"}, "network", "expected an object"),
    ({"network": {**VPC, "vpcId": "vpc-123"}}, "network.vpcId", "not a VPC id"),
    (
        {"network": {**VPC, "publicSubnetIds": ["subnet-0aaaaaaaaaaaaaaa1"]}},
        "network.publicSubnetIds",
        "at least 2",
    ),
    (
        {"network": {**VPC, "privateSubnetIds": "subnet-0bbbbbbbbbbbbbbb1"}},
        "network.privateSubnetIds",
        "not a list",
    ),
    (
        {"network": {**VPC, "privateSubnetIds": ["subnet-0bbbbbbbbbbbbbbb1", "sn-1"]}},
        "network.privateSubnetIds",
        "subnet id",
    ),
    (
        {"network": {**VPC, "privateSubnetIds": ["subnet-0bbbbbbbbbbbbbbb1"] * 2}},
        "network.privateSubnetIds",
        "twice",
    ),
    (
        {"network": {**VPC, "privateSubnetIds": VPC["publicSubnetIds"]}},
        "network.privateSubnetIds",
        "shares subnets",
    ),
    (
        {"network": {"vpcId": VPC["vpcId"], "privateSubnetIds": VPC["privateSubnetIds"]}},
        "network.publicSubnetIds",
        "required",
    ),
    ({"network": {**VPC, "natGateways": "Single"}}, "network.natGateways", "only applies"),
    ({"name": {"cpus": 256}}, "name.cpus", "unknown key"),
    ({"dnsTTL": 5}, "dnsTTL", "unknown key"),
    ({"name": {"drainSeconds": 64}}, "name.drainSeconds", "Allowed: 65 to 110"),
    ({"dnsTtl": 20}, "name.drainSeconds", "(60) + dnsTtl (20) + hello.dnsRefreshSeconds (5)"),
    ({"hello": {"dnsRefreshSeconds": 16}}, "name.drainSeconds", "Allowed: 76 to 110"),
    ({"dnsTtl": 46}, "dnsTtl", "leaves no workable name.drainSeconds"),
    ({"hello": {"dnsRefreshSeconds": 51}}, "dnsTtl", "hello.dnsRefreshSeconds at most 50"),
]


@pytest.mark.parametrize(("raw", "key", "allowed"), BAD, ids=[b[1] for b in BAD])
def test_bad_value_is_rejected_naming_its_key(
    raw: dict[str, object], key: str, allowed: str
) -> None:
    found = problems(raw)
    assert len(found) == 1, found
    assert found[0].startswith(f"{PROJECT}:{key}: "), found[0]
    assert allowed in found[0], found[0]


def test_every_problem_is_reported_at_once() -> None:
    found = problems({"name": {"cpu": 300}, "hello": {"port": 0}, "namespace": "Bad", "dnsTTL": 1})
    keys = sorted(p.split(": ", 1)[0] for p in found)
    assert keys == [
        f"{PROJECT}:dnsTTL",
        f"{PROJECT}:hello.port",
        f"{PROJECT}:name.cpu",
        f"{PROJECT}:namespace",
    ]


def test_error_message_lists_the_problems() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings({"name": {"cpu": 300}})
    text = str(caught.value)
    assert "invalid stack configuration" in text
    assert f"{PROJECT}:name.cpu: 300 is not allowed" in text


def test_project_name_in_keys_follows_the_project() -> None:
    found = problems_for_project({"dnsTtl": -5}, "other-project")
    assert found[0].startswith("other-project:dnsTtl: ")


def problems_for_project(raw: dict[str, object], project: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_settings(raw, project)
    return caught.value.problems


def test_the_domain_example_in_the_prod_stack_file_is_valid() -> None:
    """Pulumi.prod.yaml shows the domain keys commented out; uncommented, they must pass."""
    lines = (ROOT / "Pulumi.prod.yaml").read_text().splitlines()
    start = lines.index("  # fargate-service-discovery:domain:")
    block = [line.replace("# ", "", 1) for line in lines[start : start + 3]]
    example = yaml.safe_load("\n".join(line[2:] for line in block))
    domain = example[f"{PROJECT}:domain"]
    s = parse_settings({**raw_of("prod"), "domain": domain}, region="us-east-1", stack="prod")
    assert s.domain == Domain("hello.example.com", None, "example.com")


def deeply_nested(levels: int) -> list[object]:
    """``[[[...]]]``, ``levels`` lists deep, built without recursion."""
    outer: list[object] = []
    inner = outer
    for _ in range(levels - 1):
        child: list[object] = []
        inner.append(child)
        inner = child
    return outer


DEEP = 10_000


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        # As Pulumi stores an object: JSON text (json.loads would raise RecursionError).
        ({"name": "[" * DEEP + "]" * DEEP}, "name"),
        ({"network": '{"cidrBlock": ' + "[" * DEEP + "]" * DEEP + "}"}, "network"),
        # Already decoded (a YAML stack file read by ./dev check); json.dumps would recurse.
        ({"hello": {"port": deeply_nested(DEEP)}}, "hello"),
        ({"capacity": deeply_nested(DEEP)}, "capacity"),
    ],
    ids=["json-text", "json-text-inside-an-object", "decoded-inside-an-object", "decoded"],
)
def test_a_value_nested_ten_thousand_deep_is_refused_naming_its_key(
    raw: dict[str, object], key: str
) -> None:
    found = problems(raw)
    assert found == [
        f"{PROJECT}:{key}: nested {stack_settings.nesting(raw[key])} levels deep; allowed: at most "
        f"{stack_settings.NESTING_MAX} (no setting of this program nests deeper than 2)"
    ]
    assert stack_settings.nesting(raw[key]) >= DEEP


def test_nesting_is_measured_as_json_reads_it() -> None:
    assert stack_settings.nesting("internal") == 0
    assert stack_settings.nesting("[not json") == 1
    assert stack_settings.nesting('{"a": "[[[[", "b": [1, {"c": "\\"]]"}]}') == 3
    assert stack_settings.nesting('["\\"[[[[", 1]') == 1  # an escaped quote does not end the string
    assert stack_settings.nesting({"tags": {"Project": "x"}}) == 2
    assert stack_settings.nesting(deeply_nested(5)) == 5


def test_deep_default_tags_are_refused_naming_the_key() -> None:
    found = stack_settings.default_tag_problems("{" * DEEP + "}" * DEEP, PROJECT, "dev")
    assert found == [
        f"aws:defaultTags: nested {DEEP} levels deep; allowed: at most "
        f"{stack_settings.NESTING_MAX} (no setting of this program nests deeper than 2); "
        f"must be {{tags: {{Project: {PROJECT}, Stack: dev}}}}"
    ]


def test_a_long_value_is_quoted_short() -> None:
    (found,) = problems({"namespace": "x" * 5000})
    assert "'xxxxxxxx" in found
    assert "... (5002 characters) is not a valid DNS name" in found
    assert len(found) < 400
