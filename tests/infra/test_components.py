"""Each component on its own (tests/infra/scenarios.py), and the components' pure helpers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pulumi_awsx.ecs as ecs
import pytest
from pulumi_aws.acm.outputs import CertificateDomainValidationOption

from components.domain import VALIDATION_RECORD_TTL, validation_record
from components.entry import FORWARD_RULE_PRIORITY, PUBLIC_PATHS
from components.image import lifecycle_policy
from components.network import SubnetMasks, subnet_masks
from components.platform import execution_role_trust_policy
from components.service import container_definition
from stack import ServiceSettings
from stack.args import CONTAINER_USER, HEALTH_CHECK_COMMAND, HEALTH_PATH, service_args
from tests.infra import scenarios
from tests.infra.conftest import settings_for
from tests.infra.support import PROJECT, ROOT, Resource, Run, Runs, container, environment, names

INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"


@pytest.fixture
def run(runs: Runs) -> Run:
    result = runs["components"]
    assert result.error is None, result.error
    return result


def component(run: Run, kind: str, name: str) -> Resource:
    return run.one(f"{PROJECT}:{kind}", name)


# --- Network ----------------------------------------------------------------------------


def test_existing_vpc_creates_nothing_and_passes_ids_through(run: Run) -> None:
    network = component(run, "network:Network", "existing")
    assert run.children(network) == []
    outputs = dict(run.outputs[network.urn])
    zones = outputs.pop("privateSubnetZones")
    assert outputs == {
        "vpcId": scenarios.VPC_ID,
        "publicSubnetIds": list(scenarios.PUBLIC),
        "privateSubnetIds": list(scenarios.PRIVATE),
    }
    # Each private subnet's zone and block, from lookups (the harness answers getSubnet).
    assert sum(len(blocks) for blocks in zones.values()) == len(scenarios.PRIVATE)


def test_new_vpc_layout(run: Run) -> None:
    network = component(run, "network:Network", "fresh")
    (vpc,) = run.children(network)
    assert vpc.type == "awsx:ec2:Vpc"
    assert vpc.inputs["cidrBlock"] == "10.20.0.0/20"
    assert vpc.inputs["numberOfAvailabilityZones"] == 3
    assert vpc.inputs["natGateways"] == {"strategy": "OnePerAz"}
    assert vpc.inputs["subnetStrategy"] == "Auto"
    # /20 over three zones: a /22 per zone, a /23 private and a /24 public subnet in each.
    assert vpc.inputs["availabilityZoneCidrMask"] == 22
    assert vpc.inputs["subnetSpecs"] == [
        {"type": "Private", "cidrMask": 23},
        {"type": "Public", "cidrMask": 24},
    ]
    # The outputs are awsx's, not its inputs echoed back.
    assert run.outputs[network.urn]["vpcId"] == vpc.state["vpcId"]
    assert run.outputs[network.urn]["privateSubnetIds"] == vpc.state["privateSubnetIds"]


@pytest.mark.parametrize(
    ("prefix", "zones", "masks"),
    [
        (16, 2, SubnetMasks(zone=17, private=18, public=19)),
        (16, 3, SubnetMasks(zone=18, private=19, public=20)),
        (16, 4, SubnetMasks(zone=18, private=19, public=20)),
        (22, 6, SubnetMasks(zone=25, private=26, public=27)),
    ],
)
def test_subnet_masks(prefix: int, zones: int, masks: SubnetMasks) -> None:
    assert subnet_masks(prefix, zones) == masks
    # Every zone's range fits in the VPC, and the public subnets stay big enough for an ALB.
    assert 2 ** (masks.zone - prefix) >= zones
    assert masks.public <= 27


# --- Platform ---------------------------------------------------------------------------


def test_platform(run: Run) -> None:
    platform = component(run, "platform:Platform", "shared")
    children = {r.type: r for r in run.children(platform)}
    cluster = children["aws:ecs/cluster:Cluster"].inputs
    assert cluster["name"] == "test-cluster"
    assert cluster["settings"] == [{"name": "containerInsights", "value": "enabled"}]

    role = children["aws:iam/role:Role"]
    trust = json.loads(role.inputs["assumeRolePolicy"])
    assert trust == json.loads(execution_role_trust_policy("aws", "eu-west-1", "123456789012"))
    attachment = children["aws:iam/rolePolicyAttachment:RolePolicyAttachment"].inputs
    assert attachment["role"] == role.state["name"]
    assert attachment["policyArn"] == (
        "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
    )

    namespace = children["aws:servicediscovery/privateDnsNamespace:PrivateDnsNamespace"].inputs
    assert (namespace["name"], namespace["vpc"]) == ("corp.example", scenarios.VPC_ID)


def test_execution_role_trust_has_the_confused_deputy_conditions() -> None:
    (statement,) = json.loads(execution_role_trust_policy("aws-cn", "cn-north-1", "210987654321"))[
        "Statement"
    ]
    assert statement["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
    assert statement["Action"] == "sts:AssumeRole"
    assert statement["Condition"] == {
        "ArnLike": {"aws:SourceArn": "arn:aws-cn:ecs:cn-north-1:210987654321:*"},
        "StringEquals": {"aws:SourceAccount": "210987654321"},
    }


# --- Image ------------------------------------------------------------------------------


def test_image(run: Run) -> None:
    image = component(run, "image:ServiceImage", "solo-image")
    children = {r.type: r for r in run.children(image)}
    repository = children["aws:ecr/repository:Repository"]
    assert repository.inputs["forceDelete"] is True
    assert repository.inputs["imageScanningConfiguration"] == {"scanOnPush": True}
    policy = children["aws:ecr/lifecyclePolicy:LifecyclePolicy"].inputs
    assert policy["repository"] == repository.state["name"]
    assert json.loads(policy["policy"]) == json.loads(lifecycle_policy(10))
    build = children["awsx:ecr:Image"]
    assert build.inputs == {
        "repositoryUrl": repository.state["repositoryUrl"],
        "context": "apps",
        "dockerfile": "apps/solo/Dockerfile",
        "platform": "linux/arm64",
    }
    assert run.outputs[image.urn]["imageUri"] == build.state["imageUri"]


def test_lifecycle_policy_expires_only_old_untagged_images() -> None:
    (rule,) = json.loads(lifecycle_policy(7))["rules"]
    assert rule["selection"] == {
        "tagStatus": "untagged",
        "countType": "imageCountMoreThan",
        "countNumber": 7,
    }
    assert rule["action"] == {"type": "expire"}


# --- Discoverable service ---------------------------------------------------------------


def test_lone_service_admits_nothing(run: Run) -> None:
    solo = component(run, "service:DiscoverableService", "solo")
    group = run.one("aws:ec2/securityGroup:SecurityGroup", "solo")
    assert not [r for r in run.of_type(INGRESS) if r.inputs["securityGroupId"] == group.id]
    egress = [r for r in run.of_type(EGRESS) if r.inputs["securityGroupId"] == group.id]
    assert [
        (r.inputs["ipProtocol"], r.inputs["fromPort"], r.inputs["cidrIpv4"]) for r in egress
    ] == [("tcp", 443, "0.0.0.0/0")]
    service = run.one("aws:ecs/service:Service", "solo").inputs
    assert "loadBalancers" not in service
    assert "healthCheckGracePeriodSeconds" not in service
    assert run.outputs[solo.urn]["endpoint"] == "http://solo.corp.example:8080/"


def test_lone_service_task(run: Run) -> None:
    task = run.one("aws:ecs/taskDefinition:TaskDefinition", "solo")
    assert task.inputs["family"] == "test-solo"
    assert (task.inputs["cpu"], task.inputs["memory"]) == ("512", "1024")
    assert task.inputs["runtimePlatform"]["cpuArchitecture"] == "ARM64"
    c = container(task)
    assert c["image"] == scenarios.IMAGE
    assert c["stopTimeout"] == 25  # 15 s of drain and 10 to finish in-flight requests
    # Exactly what it was given: the component adds no variable of this project's apps.
    assert environment(task) == {"GREETING": "hi"}
    assert c["healthCheck"] == {
        "command": ["CMD", "/bin/check", "--quick"],
        "interval": 10,
        "timeout": 5,
        "retries": 3,
        "startPeriod": 10,
    }
    assert c["logConfiguration"]["options"]["awslogs-region"] == "eu-west-1"
    registry = run.one("aws:servicediscovery/service:Service", "solo").inputs
    assert registry["dnsConfig"]["dnsRecords"] == [{"type": "A", "ttl": 3}]
    log_group = run.one("aws:cloudwatch/logGroup:LogGroup", "solo").inputs
    assert (log_group["name"], log_group["retentionInDays"]) == ("/ecs/test/solo", 14)


def test_allow_from_opens_one_tcp_port_in_both_directions(run: Run) -> None:
    callee = component(run, "service:DiscoverableService", "callee")
    group = run.one("aws:ec2/securityGroup:SecurityGroup", "callee")
    rules = [r for r in run.children(callee) if r.type in (INGRESS, EGRESS)]
    assert names(rules) == {"callee-https-out", "callee-from-caller", "caller-to-callee"}
    ingress = run.one(INGRESS, "callee-from-caller").inputs
    assert ingress["securityGroupId"] == group.id
    assert ingress["referencedSecurityGroupId"] == scenarios.CALLER_GROUP
    egress = run.one(EGRESS, "caller-to-callee").inputs
    assert egress["securityGroupId"] == scenarios.CALLER_GROUP
    assert egress["referencedSecurityGroupId"] == group.id
    for rule in (ingress, egress):
        assert (rule["ipProtocol"], rule["fromPort"], rule["toPort"]) == ("tcp", 8080, 8080)


ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"


def test_a_service_without_secrets_or_policy_gets_no_role_of_its_own(run: Run) -> None:
    """No task role by default: the application can call no AWS API. The execution role is the
    one given (the platform's, shared by services without secrets)."""
    solo = component(run, "service:DiscoverableService", "solo")
    assert not [r for r in run.children(solo) if r.type.startswith("aws:iam/")]
    task = run.one("aws:ecs/taskDefinition:TaskDefinition", "solo").inputs
    assert "taskRoleArn" not in task
    assert task["executionRoleArn"] == "arn:aws:iam::123456789012:role/test-execution"
    assert run.outputs[solo.urn]["taskRoleArn"] == ""


def test_secrets_reach_the_container_by_arn_and_the_execution_role_reads_exactly_them(
    run: Run,
) -> None:
    """ECS fetches `secrets` with the task's execution role (Amazon ECS Developer Guide,
    "Required IAM permissions for Amazon ECS secrets"): secretsmanager:GetSecretValue on the
    secret (a JSON key's ARN names the secret plus ":password::", the grant is on the secret),
    ssm:GetParameters on the parameter, kms:Decrypt only on the customer managed keys given.
    The role is the service's own, so no other task definition can read them through it."""
    task = run.one("aws:ecs/taskDefinition:TaskDefinition", "keeper")
    assert container(task)["secrets"] == [
        {"name": name, "valueFrom": scenarios.SECRETS[name]} for name in sorted(scenarios.SECRETS)
    ]
    role = run.one(ROLE, "keeper-execution")
    assert role.inputs["path"] == "/test/"
    trust = json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]
    assert trust["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
    assert trust["Condition"]["StringEquals"] == {"aws:SourceAccount": "123456789012"}
    assert task.inputs["executionRoleArn"] == role.state["arn"]
    secrets = run.one(ROLE_POLICY, "keeper-secrets")
    assert secrets.inputs["role"] == role.state["name"]
    statements = json.loads(secrets.inputs["policy"])["Statement"]
    assert statements == [
        {
            "Effect": "Allow",
            "Action": "kms:Decrypt",
            "Resource": [scenarios.KMS_KEY],
        },
        {
            "Effect": "Allow",
            "Action": "secretsmanager:GetSecretValue",
            "Resource": [
                "arn:aws:secretsmanager:eu-west-1:123456789012:secret:keeper/db-GhIjKl",
                "arn:aws:secretsmanager:eu-west-1:123456789012:secret:keeper/token-AbCdEf",
            ],
        },
        {
            "Effect": "Allow",
            "Action": "ssm:GetParameters",
            "Resource": [scenarios.SECRETS["LICENSE"]],
        },
    ]
    attachment = run.one(ATTACHMENT, "keeper-execution").inputs
    assert attachment["policyArn"] == (
        "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
    )
    # No task starts before the role may pull, log and read the secrets.
    for grant in (secrets, run.one(ATTACHMENT, "keeper-execution")):
        assert grant.urn in task.dependencies


def test_the_task_role_carries_exactly_the_applications_policy(run: Run) -> None:
    """task_role_arn is ForceNew in the provider (ecs/task_definition.go): a new role is a new
    task definition, hence a deployment. The inline policy (iam/role_policy.go: name and role
    ForceNew, the document compared as equivalent JSON) holds only what the caller wrote."""
    task = run.one("aws:ecs/taskDefinition:TaskDefinition", "keeper")
    role = run.one(ROLE, "keeper-task")
    assert role.inputs["path"] == "/test/"
    assert json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]["Principal"] == {
        "Service": "ecs-tasks.amazonaws.com"
    }
    policy = run.one(ROLE_POLICY, "keeper-task")
    assert (policy.inputs["role"], policy.inputs["name"]) == (role.state["name"], "application")
    assert policy.inputs["policy"] == scenarios.TASK_POLICY
    assert task.inputs["taskRoleArn"] == role.state["arn"]
    assert policy.urn in task.dependencies
    keeper = component(run, "service:DiscoverableService", "keeper")
    assert run.outputs[keeper.urn]["taskRoleArn"] == role.state["arn"]


def test_an_image_without_a_health_check_gets_none(run: Run) -> None:
    """No health_check: no healthCheck key (the provider fills in interval/retries/timeout
    defaults only for a check that exists; an empty one would differ from what ECS returns).
    The region, not given, is the provider's own (looked up)."""
    c = container(run.one("aws:ecs/taskDefinition:TaskDefinition", "keeper"))
    assert "healthCheck" not in c
    assert c["logConfiguration"]["options"]["awslogs-region"] == "us-east-1"
    # The region (logs, trust policies), partition and account, each looked up once (only the
    # keeper, whose region and roles are its own, looks them up in this run).
    looked_up = [t for t in run.invokes if t.startswith("aws:index/")]
    assert sorted(looked_up) == [
        "aws:index/getCallerIdentity:getCallerIdentity",
        "aws:index/getPartition:getPartition",
        "aws:index/getRegion:getRegion",
    ]


def _solo_definition() -> dict[str, Any]:
    """Every key the component can write: user, read-only root, secrets, a health check."""
    args = scenarios.service_args("test")
    args["environment"] = {"B": "2", "A": "1"}
    args["secrets"] = {"Z": scenarios.SECRETS["LICENSE"], "Y": scenarios.SECRETS["API_TOKEN"]}
    args["user"] = "10001:10001"
    args["read_only_root_filesystem"] = True
    return container_definition(
        "solo", args, log_group="/ecs/test/solo", region="eu-west-1", labels={"example.label": "v"}
    )


def _keys(cls: type) -> set[str]:
    """The wire names an awsx ECS input type declares (its @pulumi.getter names)."""
    return {
        getattr(v.fget, "_pulumi_name", k) for k, v in vars(cls).items() if isinstance(v, property)
    }


def test_container_definition_uses_only_ecs_field_names() -> None:
    """terraform-provider-aws decodes container_definitions into the SDK's ContainerDefinition
    struct (ecs/container_definitions.go, expandContainerDefinitions): a misspelt key such as
    "stopTimeOut" is dropped without a word and never reaches ECS. awsx's typed ECS inputs
    mirror the API's field names, so every key here must be one of theirs."""
    definition = _solo_definition()
    assert set(definition) <= _keys(ecs.TaskDefinitionContainerDefinitionArgs)
    assert set(definition["healthCheck"]) <= _keys(ecs.TaskDefinitionHealthCheckArgs)
    for mapping in definition["portMappings"]:
        assert set(mapping) <= _keys(ecs.TaskDefinitionPortMappingArgs)
    assert set(definition["logConfiguration"]) <= _keys(ecs.TaskDefinitionLogConfigurationArgs)
    for pair in definition["environment"]:
        assert set(pair) == _keys(ecs.TaskDefinitionKeyValuePairArgs)
    for secret in definition["secrets"]:
        assert set(secret) == _keys(ecs.TaskDefinitionSecretArgs)


def test_container_definition_is_already_what_ecs_reads_back() -> None:
    """A second `pulumi up` must be a no-op. container_definitions forces a new task definition
    (hence a deployment) on any difference the provider does not normalise away; its
    normalisation (containerDefinitionsAreEquivalent) sorts environment variables, drops empty
    lists and fills in the defaults ECS adds. Writing the definition in that form already
    (every default ECS would add spelt out, nothing empty, environment sorted) leaves nothing
    to depend on: what DescribeTaskDefinition returns is what we sent."""
    definition = _solo_definition()

    def empty(value: object) -> bool:
        if isinstance(value, dict):
            return not value or any(empty(v) for v in value.values())
        if isinstance(value, list):
            return not value or any(empty(v) for v in value)
        return value is None or value == ""

    assert not empty(definition)
    assert definition["essential"] is True  # ECS's default, spelt out
    check = definition["healthCheck"]
    assert {"interval", "retries", "timeout", "startPeriod"} <= set(check)
    for mapping in definition["portMappings"]:
        # awsvpc: ECS sets hostPort to containerPort when it is left out.
        assert mapping["hostPort"] == mapping["containerPort"]
        assert mapping["protocol"] == "tcp"
    for key in ("environment", "secrets"):
        names = [pair["name"] for pair in definition[key]]
        assert names == sorted(names), key
    assert all(isinstance(pair["value"], str) for pair in definition["environment"])


# --- Public entry -----------------------------------------------------------------------


def listeners(run: Run, entry: str) -> dict[str, dict[str, Any]]:
    parent = component(run, "entry:PublicEntry", entry)
    return {r.name: r.inputs for r in run.children(parent) if r.type == "aws:lb/listener:Listener"}


def world_ports(run: Run, entry: str) -> set[int]:
    group = run.one("aws:ec2/securityGroup:SecurityGroup", entry)
    return {
        r.inputs["fromPort"]
        for r in run.of_type(INGRESS)
        if r.inputs["securityGroupId"] == group.id and r.inputs.get("cidrIpv4") == "0.0.0.0/0"
    }


def test_plain_entry_listens_on_80_only(run: Run) -> None:
    assert world_ports(run, "plain") == {80}
    assert set(listeners(run, "plain")) == {"plain-http"}
    entry = component(run, "entry:PublicEntry", "plain")
    assert run.outputs[entry.urn]["url"].startswith("http://")


def test_tls_entry_serves_443_and_redirects_80(run: Run) -> None:
    assert world_ports(run, "tls") == {80, 443}
    found = listeners(run, "tls")
    assert set(found) == {"tls-http", "tls-https"}
    assert found["tls-https"]["certificateArn"] == scenarios.CERTIFICATE
    (action,) = found["tls-http"]["defaultActions"]
    assert action["type"] == "redirect"
    entry = component(run, "entry:PublicEntry", "tls")
    # The load balancer's own name is never an https:// URL: no certificate can match
    # *.elb.amazonaws.com. The stack's https:// URL comes from its domain (PublicDomain).
    assert run.outputs[entry.urn]["url"].startswith("http://")


def rules(run: Run, entry: str) -> list[Resource]:
    parent = component(run, "entry:PublicEntry", entry)
    return [r for r in run.children(parent) if r.type == "aws:lb/listenerRule:ListenerRule"]


@pytest.mark.parametrize(("entry", "serving"), [("plain", "plain-http"), ("tls", "tls-https")])
def test_only_the_root_path_reaches_hello(run: Run, entry: str, serving: str) -> None:
    """/metrics (every name task's private address, failure counters) and /health must stay
    inside the VPC: the serving listener answers 404 itself unless the one rule matches `/`."""
    listener = listeners(run, entry)[serving]
    assert listener["defaultActions"] == [
        {
            "type": "fixed-response",
            "fixedResponse": {
                "contentType": "text/plain",
                "messageBody": "not found\n",
                "statusCode": "404",
            },
        }
    ]
    (rule,) = rules(run, entry)
    assert rule.name == f"{entry}-public"
    served = run.one("aws:lb/listener:Listener", serving)
    assert rule.inputs["listenerArn"] == served.state["arn"]
    assert rule.inputs["conditions"] == [{"pathPattern": {"values": ["/"]}}]
    assert list(PUBLIC_PATHS) == ["/"]
    target_group = run.one("aws:lb/targetGroup:TargetGroup", entry)
    assert rule.inputs["actions"] == [
        {"type": "forward", "targetGroupArn": target_group.state["arn"]}
    ]


def test_forwarding_rule_has_a_fixed_priority(run: Run) -> None:
    """Unset, the provider takes the next free priority at create time, so the rule's place
    among others would depend on creation order; here it is in the code."""
    for entry in ("plain", "tls"):
        (rule,) = rules(run, entry)
        assert rule.inputs["priority"] == FORWARD_RULE_PRIORITY == 1


def test_entry_exports_the_alias_target(run: Run) -> None:
    entry = component(run, "entry:PublicEntry", "plain")
    balancer = run.one("aws:lb/loadBalancer:LoadBalancer", "plain")
    assert run.outputs[entry.urn]["zoneId"] == balancer.state["zoneId"]
    assert run.outputs[entry.urn]["dnsName"] == balancer.state["dnsName"]


# --- Public domain ----------------------------------------------------------------------


def domain_children(run: Run, name: str) -> dict[tuple[str, str], Resource]:
    parent = component(run, "domain:PublicDomain", name)
    return {(r.type, r.name): r for r in run.children(parent)}


def test_requested_certificate_is_validated_through_dns(run: Run) -> None:
    children = domain_children(run, "requested")
    certificate = children[("aws:acm/certificate:Certificate", "requested")]
    assert certificate.inputs == {"domainName": "app.example.org", "validationMethod": "DNS"}
    (option,) = certificate.state["domainValidationOptions"]
    record = children[("aws:route53/record:Record", "requested-validation")].inputs
    # ACM's answer, as Route 53 takes it: the name without ACM's trailing dot.
    assert record["name"] == option["resourceRecordName"].rstrip(".")
    assert not record["name"].endswith(".")
    assert (record["type"], record["records"]) == ("CNAME", [option["resourceRecordValue"]])
    assert record["zoneId"] == scenarios.ZONE_ID
    assert record["ttl"] == VALIDATION_RECORD_TTL


def test_validation_record_may_already_exist(run: Run) -> None:
    """ACM derives the validation CNAME from the account and the name: a replacement certificate
    (created before the old one is deleted) or one requested earlier by hand needs the very same
    record. With CREATE the second writer fails; UPSERT rewrites the same value."""
    children = domain_children(run, "requested")
    record = children[("aws:route53/record:Record", "requested-validation")]
    assert record.inputs["allowOverwrite"] is True


def test_https_waits_for_the_issued_certificate(run: Run) -> None:
    """The component hands out the ARN of the CertificateValidation, which resolves only once ACM
    has issued the certificate: a listener never gets a certificate still pending validation."""
    domain = component(run, "domain:PublicDomain", "requested")
    children = domain_children(run, "requested")
    certificate = children[("aws:acm/certificate:Certificate", "requested")]
    record = children[("aws:route53/record:Record", "requested-validation")]
    validation = children[("aws:acm/certificateValidation:CertificateValidation", "requested")]
    assert validation.inputs == {
        "certificateArn": certificate.state["arn"],
        "validationRecordFqdns": [record.state["fqdn"]],
    }
    assert record.urn in validation.dependencies
    assert run.outputs[domain.urn]["certificateArn"] == validation.state["certificateArn"]
    assert run.outputs[domain.urn]["url"] == "https://app.example.org/"


def test_alias_record_points_the_name_at_the_load_balancer(run: Run) -> None:
    children = domain_children(run, "requested")
    alias = children[("aws:route53/record:Record", "requested-alias")].inputs
    assert (alias["name"], alias["type"], alias["zoneId"]) == (
        "app.example.org",
        "A",
        scenarios.ZONE_ID,
    )
    assert alias["aliases"] == [
        {"name": scenarios.ALB_DNS, "zoneId": scenarios.ALB_ZONE, "evaluateTargetHealth": False}
    ]
    assert "ttl" not in alias  # alias records take the target's TTL; the provider refuses one


def test_alias_record_never_takes_over_an_existing_record(run: Run) -> None:
    """CREATE, not UPSERT: if the name already has a record (the old site), `pulumi up` fails
    instead of silently repointing it."""
    children = domain_children(run, "requested")
    assert (
        children[("aws:route53/record:Record", "requested-alias")].inputs["allowOverwrite"] is False
    )


def test_given_certificate_is_used_as_is(run: Run) -> None:
    domain = component(run, "domain:PublicDomain", "given")
    assert run.children(domain) == []  # no ACM request, no validation record
    assert run.outputs[domain.urn]["certificateArn"] == scenarios.CERTIFICATE
    # The zone given by name is looked up, public zones only (ACM validates through public DNS).
    assert "aws:route53/getZone:getZone" in run.invokes


def test_validation_record_helper() -> None:
    option = CertificateDomainValidationOption(
        domain_name="a.example.com",
        resource_record_name="_x.a.example.com.",
        resource_record_type="CNAME",
        resource_record_value="_y.acm-validations.aws.",
    )
    record = validation_record([option])
    assert (record.name, record.type, record.value) == (
        "_x.a.example.com",
        "CNAME",
        "_y.acm-validations.aws.",
    )
    # One name per certificate here; more options would mean records this code does not write.
    with pytest.raises(ValueError, match="one domain validation option"):
        validation_record([option, option])


def test_entry_grants_itself_no_egress(run: Run) -> None:
    # The target service grants the one flow the ALB needs (see allow_from).
    for entry in ("plain", "tls"):
        group = run.one("aws:ec2/securityGroup:SecurityGroup", entry)
        assert not [r for r in run.of_type(EGRESS) if r.inputs["securityGroupId"] == group.id]


# --- The container health check, run for real -------------------------------------------


@contextmanager
def serving(status: int) -> Iterator[int]:
    """An HTTP server on loopback answering `status` on the health path; yields its port."""

    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status if self.path == HEALTH_PATH else 404)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=60)


def probe(port: int) -> int:
    """Run the container's health check as ECS would: its command, with the container's env."""
    args = service_args(
        settings_for("dev"),
        ServiceSettings(cpu=256, memory=512, desired_count=1, port=port, drain_seconds=0),
        image="unused",
        cluster_arn="unused",
        execution_role_arn="unused",
        namespace_id="unused",
        namespace_name="unused",
        vpc_id="unused",
        subnet_ids=[],
        region="unused",
        prefix="unused",
        environment={},
        deployment_alarm_names=[],
    )
    definition = container_definition("probe", args, log_group="unused", region="unused")
    command = definition["healthCheck"]["command"]
    assert command[:2] == ["CMD", "python"]
    env = {e["name"]: e["value"] for e in definition["environment"]}
    # The image runs `python` in /app with the package importable; here the same interpreter
    # runs the same arguments from the repository root.
    done = subprocess.run(
        [sys.executable, *command[2:]],
        cwd=ROOT,
        env={"PATH": os.environ.get("PATH", ""), **env},
        capture_output=True,
        timeout=120,
    )
    return done.returncode


def test_health_check_passes_on_200() -> None:
    with serving(200) as port:
        assert probe(port) == 0


def test_health_check_fails_while_draining() -> None:
    with serving(503) as port:
        assert probe(port) != 0


def test_health_check_fails_when_nothing_listens() -> None:
    with serving(200) as port:
        pass
    assert probe(port) != 0


# --- Agreement with the images ----------------------------------------------------------


@pytest.mark.parametrize("app", ["name", "hello"])
def test_container_user_is_the_images_user(app: str) -> None:
    dockerfile = (ROOT / "apps" / app / "Dockerfile").read_text().splitlines()
    users = [line.split()[1] for line in dockerfile if line.startswith("USER ")]
    assert users, f"apps/{app}/Dockerfile sets no USER"
    assert users[-1] == CONTAINER_USER
    assert not users[-1].startswith("0")


@pytest.mark.parametrize("app", ["name", "hello"])
def test_image_ships_the_health_check(app: str) -> None:
    dockerfile = (ROOT / "apps" / app / "Dockerfile").read_text()
    module = HEALTH_CHECK_COMMAND[3]
    assert module == "apps.healthcheck"
    assert "healthcheck.py" in dockerfile
    assert (ROOT / "apps" / "healthcheck.py").is_file()


def test_entry_names_fit_the_load_balancer_limits(run: Run) -> None:
    """ALB and target group names allow 32 characters; Pulumi auto-names them
    `<logical name>-<7 random hex>`, so the logical names must stay within 24 characters (the
    names are ForceNew: renaming replaces the load balancer and its DNS name)."""
    for entry in ("plain", "tls"):
        for type_ in ("aws:lb/loadBalancer:LoadBalancer", "aws:lb/targetGroup:TargetGroup"):
            resource = run.one(type_, entry)
            assert "name" not in resource.inputs  # auto-named: replacements never collide
            assert len(f"{resource.name}-{'0' * 7}") <= 32


def test_entry_security_group_description_is_a_constant(run: Run) -> None:
    """A security group's description (and name) is ForceNew in the provider: anything that
    varied with config would replace the group under the load balancer on every change."""
    for entry in ("plain", "tls"):
        group = run.one("aws:ec2/securityGroup:SecurityGroup", entry)
        assert group.inputs["description"] == "Public load balancer"
        assert "name" not in group.inputs
