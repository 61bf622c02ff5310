"""The whole program under mocks, with each stack's config: what it would deploy."""

from __future__ import annotations

import json

import pytest
import yaml

import stack as stack_settings
from components.service import FARGATE_MEMORY, REGISTRY_LABEL
from components.service_connect import task_size_with_proxy
from stack import Settings
from tests.infra.conftest import DOMAIN, EXISTING_VPC, prefix_of, settings_for
from tests.infra.support import (
    PROJECT,
    ROOT,
    Run,
    Runs,
    container,
    environment,
    flows,
)

SG = "aws:ec2/securityGroup:SecurityGroup"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
ECS_SERVICE = "aws:ecs/service:Service"
TASK = "aws:ecs/taskDefinition:TaskDefinition"
REGISTRY = "aws:servicediscovery/service:Service"
NAMESPACE = "aws:servicediscovery/privateDnsNamespace:PrivateDnsNamespace"
IMAGE = "awsx:ecr:Image"
VPC = "awsx:ec2:Vpc"
NETWORK = "fargate-service-discovery:network:Network"
ALB = "aws:lb/loadBalancer:LoadBalancer"
LISTENER = "aws:lb/listener:Listener"
TARGET_GROUP = "aws:lb/targetGroup:TargetGroup"
RULE = "aws:lb/listenerRule:ListenerRule"
RECORD = "aws:route53/record:Record"
CERTIFICATE = "aws:acm/certificate:Certificate"
VALIDATION = "aws:acm/certificateValidation:CertificateValidation"
# dev and prod, and dev in the other discovery mode (discoveryMode: serviceConnect): every
# property below holds in both modes, except where a test names the DNS mode's stacks.
DNS_STACKS = ["dev", "prod"]
STACKS = [*DNS_STACKS, "serviceConnect"]
WORLD = "0.0.0.0/0"


def settings_of(key: str) -> Settings:
    return settings_for(key)


@pytest.fixture(params=STACKS)
def stack(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def run(runs: Runs, stack: str) -> Run:
    result = runs[stack]
    assert result.error is None, result.error
    return result


Flow = tuple[str, str, str, int, int, str]


def expected_flows(name_port: int, hello_port: int, listener_ports: tuple[int, ...]) -> set[Flow]:
    """The complete network policy of a stack, rule by rule."""
    return {
        # The world reaches the load balancer, and only it, on the listener ports.
        *{("in", "entry", "tcp", p, p, WORLD) for p in listener_ports},
        # The load balancer reaches hello on hello's port (requests and health checks).
        ("out", "entry", "tcp", hello_port, hello_port, "hello"),
        ("in", "hello", "tcp", hello_port, hello_port, "entry"),
        # hello reaches name on name's port: the service discovery flow.
        ("out", "hello", "tcp", name_port, name_port, "name"),
        ("in", "name", "tcp", name_port, name_port, "hello"),
        # Tasks pull images and ship logs over HTTPS.
        ("out", "hello", "tcp", 443, 443, WORLD),
        ("out", "name", "tcp", 443, 443, WORLD),
    }


# --- Network policy ---------------------------------------------------------------------


def test_network_policy_is_exactly_the_needed_flows(run: Run, stack: str) -> None:
    s = settings_of(stack)
    assert flows(run) == expected_flows(s.name.port, s.hello.port, (80,))


def test_name_admits_only_tcp_on_its_port_from_hello(run: Run, stack: str) -> None:
    port = settings_of(stack).name.port
    name_group = run.one(SG, "name")
    hello_group = run.one(SG, "hello")
    rules = [r for r in run.of_type(INGRESS) if r.inputs["securityGroupId"] == name_group.id]
    assert len(rules) == 1
    rule = rules[0].inputs
    assert rule["ipProtocol"] == "tcp"
    assert (rule["fromPort"], rule["toPort"]) == (port, port)
    assert rule["referencedSecurityGroupId"] == hello_group.id
    assert "cidrIpv4" not in rule
    assert "cidrIpv6" not in rule


@pytest.mark.parametrize("key", ["alternatives", *STACKS])
def test_no_rule_opens_every_protocol(runs: Runs, key: str) -> None:
    rules = runs[key].of_type(INGRESS) + runs[key].of_type(EGRESS)
    assert rules
    for rule in rules:
        assert rule.inputs["ipProtocol"] == "tcp", rule.name
        assert 0 < rule.inputs["fromPort"] <= rule.inputs["toPort"] < 65536, rule.name


@pytest.mark.parametrize("key", ["alternatives", *STACKS])
def test_only_the_load_balancer_is_open_to_the_world(runs: Runs, key: str) -> None:
    run = runs[key]
    alb_group = run.one(SG, "entry")
    public = [
        r
        for r in run.of_type(INGRESS)
        if "cidrIpv4" in r.inputs or "cidrIpv6" in r.inputs or "prefixListId" in r.inputs
    ]
    assert public
    for rule in public:
        assert rule.inputs["securityGroupId"] == alb_group.id, rule.name
        assert rule.inputs["fromPort"] == rule.inputs["toPort"], rule.name
        assert rule.inputs["fromPort"] in (80, 443), rule.name


def test_security_groups_carry_no_inline_rules(run: Run) -> None:
    # Inline rules would fight the separate rule resources, and hide from the checks above.
    for group in run.of_type(SG):
        assert not group.inputs.get("ingress"), group.name
        assert not group.inputs.get("egress"), group.name


# --- Tasks ------------------------------------------------------------------------------


def test_tasks_run_in_private_subnets_without_public_ip(run: Run) -> None:
    vpc = run.one(VPC, "network").state
    for service in run.of_type(ECS_SERVICE):
        net = service.inputs["networkConfiguration"]
        assert net["assignPublicIp"] is False, service.name
        assert net["subnets"] == vpc["privateSubnetIds"], service.name
        assert not set(net["subnets"]) & set(vpc["publicSubnetIds"]), service.name
        assert net["securityGroups"] == [run.one(SG, service.name).id]


@pytest.mark.parametrize("key", ["alternatives", *DNS_STACKS])
def test_name_server_is_derived_from_name_registration(runs: Runs, key: str) -> None:
    """In the DNS mode hello finds name's tasks by name's Cloud Map name (Service Connect's
    client alias: tests/infra/test_service_connect_stack.py)."""
    run, s = runs[key], settings_of(key)
    expected = f"http://name.{s.namespace}:{s.name.port}/"
    # Derived from the resources, not typed: hello's task waits on name's registration.
    hello_task = run.one(TASK, "hello")
    assert run.one(REGISTRY, "name").urn in hello_task.dependencies
    assert run.one(NAMESPACE, "platform").urn in hello_task.dependencies
    assert environment(run.one(TASK, "hello"))["NAME_SERVER"] == expected
    assert run.exports["nameEndpoint"] == expected
    # ... and those parts are what Cloud Map registers.
    assert run.one(REGISTRY, "name").inputs["name"] == "name"
    assert run.one(NAMESPACE, "platform").inputs["name"] == s.namespace
    assert container(run.one(TASK, "name"))["portMappings"][0]["containerPort"] == s.name.port


@pytest.mark.parametrize("stack", DNS_STACKS)
def test_services_get_the_contract_environment(run: Run, stack: str) -> None:
    s = settings_of(stack)
    metrics = {"METRICS_NAMESPACE": prefix_of(stack)}
    assert environment(run.one(TASK, "name")) == {
        "PORT": str(s.name.port),
        "DRAIN_SECONDS": str(s.name.drain_seconds),
        **metrics,
    }
    hello = environment(run.one(TASK, "hello"))
    zones = json.loads(hello.pop("ZONE_SUBNETS"))
    # hello's own Cloud Map name, as registered: its tasks are the zone rule's callers.
    registered = run.one(REGISTRY, "hello").inputs["name"]
    assert hello.pop("ZONE_CALLERS") == f"{registered}.{s.namespace}"
    assert hello == {
        **metrics,
        "PORT": str(s.hello.port),
        "DRAIN_SECONDS": str(s.hello.drain_seconds),
        "DNS_REFRESH_SECONDS": str(s.hello.dns_refresh_seconds),
        "NAME_SERVER": f"http://name.{s.namespace}:{s.name.port}/",
        "ZONE_AWARE": "true",
    }
    assert zones == run.outputs[run.one(NETWORK, "network").urn]["privateSubnetZones"]


def test_hello_gets_the_private_subnets_per_zone_from_lookups_of_their_ids(
    runs: Runs, stack: str
) -> None:
    """ZONE_SUBNETS is how hello tells a name task's zone from its address: the private
    subnets' blocks by zone (name's tasks live there), never the public ones, for a created
    VPC and an existing one alike; looked up (invokes), so nothing is created in apply."""
    for key in (stack, "alternatives"):
        run = runs[key]
        vpc = (
            EXISTING_VPC
            if key == "alternatives"
            else next(r.state for r in run.resources if r.type == VPC)
        )
        looked_up = sorted(
            i["args"]["id"] for i in run.invoke_args if i["token"] == "aws:ec2/getSubnet:getSubnet"
        )
        assert looked_up == sorted(vpc["privateSubnetIds"]), key
        zones = run.outputs[run.one(NETWORK, "network").urn]["privateSubnetZones"]
        blocks = [block for cidrs in zones.values() for block in cidrs]
        assert len(blocks) == len(vpc["privateSubnetIds"]), key
        assert all(zone.startswith("us-east-1") for zone in zones), key


def test_zone_awareness_can_be_switched_off_per_stack(alternatives: Run) -> None:
    hello = environment(alternatives.one(TASK, "hello"))
    assert hello["ZONE_AWARE"] == "false"
    assert "ZONE_SUBNETS" not in hello
    assert "ZONE_CALLERS" not in hello


def test_images_are_built_from_apps_for_the_task_architecture(run: Run, stack: str) -> None:
    s = settings_of(stack)
    for app in ("name", "hello"):
        image = run.one(IMAGE, app).inputs
        assert image["context"] == "apps"
        assert image["dockerfile"] == f"apps/{app}/Dockerfile"
        assert (ROOT / image["dockerfile"]).is_file()
        assert (
            image["platform"] == {"X86_64": "linux/amd64", "ARM64": "linux/arm64"}[s.architecture]
        )
        assert run.one(TASK, app).inputs["runtimePlatform"] == {
            "operatingSystemFamily": "LINUX",
            "cpuArchitecture": s.architecture,
        }
        repository = run.one("aws:ecr/repository:Repository", app)
        assert image["repositoryUrl"] == repository.state["repositoryUrl"]


def test_task_definitions_use_digest_pinned_images(run: Run) -> None:
    for app in ("name", "hello"):
        uri = run.one(IMAGE, app).state["imageUri"]
        assert "@sha256:" in uri
        assert container(run.one(TASK, app))["image"] == uri


def test_task_definitions(run: Run, stack: str) -> None:
    s = settings_of(stack)
    for app, svc in (("name", s.name), ("hello", s.hello)):
        task = run.one(TASK, app)
        assert task.inputs["networkMode"] == "awsvpc"
        assert task.inputs["requiresCompatibilities"] == ["FARGATE"]
        size = (svc.cpu, svc.memory)
        if s.discovery_mode == "serviceConnect":  # the proxy's reservation on top
            size = task_size_with_proxy(svc.cpu, svc.memory, FARGATE_MEMORY)
        assert (task.inputs["cpu"], task.inputs["memory"]) == tuple(str(n) for n in size)
        assert (
            task.inputs["executionRoleArn"]
            == run.one("aws:iam/role:Role", "platform-task-execution").state["arn"]
        )
        # No task role: the services call no AWS API, so their containers get no credentials.
        assert "taskRoleArn" not in task.inputs
        c = container(task)
        assert c["name"] == app
        assert c["essential"] is True
        uid, gid = (int(part) for part in c["user"].split(":"))
        assert uid > 0
        assert gid > 0
        assert c["readonlyRootFilesystem"] is True
        (mapping,) = c["portMappings"]
        assert mapping.items() >= {"containerPort": svc.port, "hostPort": svc.port}.items()
        assert mapping["protocol"] == "tcp"
        # SIGKILL only after the drain period, with time left to finish requests.
        assert c["stopTimeout"] > svc.drain_seconds
        assert c["stopTimeout"] <= 120
        check = c["healthCheck"]
        # apps.healthcheck probes 127.0.0.1:$PORT, and PORT is the container port.
        assert check["command"] == ["CMD", "python", "-m", "apps.healthcheck", "/health"]
        assert environment(task)["PORT"] == str(svc.port)
        assert check["interval"] * check["retries"] <= 60
        log = c["logConfiguration"]
        assert log["logDriver"] == "awslogs"
        assert log["options"]["mode"] == "non-blocking"
        assert log["options"]["max-buffer-size"]
        assert (
            log["options"]["awslogs-group"]
            == run.one("aws:cloudwatch/logGroup:LogGroup", app).state["name"]
        )
        assert log["options"]["awslogs-region"] == "us-east-1"


def test_log_groups_have_the_configured_retention(run: Run, stack: str) -> None:
    days = settings_of(stack).log_retention_days
    for group in run.of_type("aws:cloudwatch/logGroup:LogGroup"):
        assert group.inputs["retentionInDays"] == days


# --- Discovery --------------------------------------------------------------------------


def test_cloud_map_services(run: Run, stack: str) -> None:
    s = settings_of(stack)
    namespace = run.one(NAMESPACE, "platform")
    for app in ("name", "hello"):
        registry = run.one(REGISTRY, app).inputs
        dns = registry["dnsConfig"]
        assert dns["namespaceId"] == namespace.id
        assert dns["routingPolicy"] == "MULTIVALUE"
        assert dns["dnsRecords"] == [{"type": "A", "ttl": s.dns_ttl}]
        assert "healthCheckConfig" not in registry  # Route 53 checks cannot reach private IPs
        assert registry["forceDestroy"] is True


def test_cloud_map_gets_the_ecs_health_config_the_provider_actually_sends(
    run: Run, stack: str
) -> None:
    """failureThreshold must be 1, not merely present: terraform-provider-aws drops an empty
    healthCheckCustomConfig block (expandHealthCheckCustomConfig returns nil for an empty map),
    so CreateService would go out without it, Cloud Map would answer with unhealthy tasks too,
    and every later `pulumi up` would show the block as a replacement (provider issue 44285)."""
    for app in ("name", "hello"):
        registry = run.one(REGISTRY, app).inputs
        assert registry["healthCheckCustomConfig"] == {"failureThreshold": 1}, app


@pytest.mark.parametrize("key", ["alternatives", *STACKS])
def test_replacing_a_cloud_map_service_also_rolls_its_tasks(runs: Runs, key: str) -> None:
    """A Cloud Map service recreated under the same name can keep its id (provider issue 46930):
    the ECS service would see no change, and its running tasks, deregistered when the old
    service was deleted, would never register in the new one. The container carries every
    setting that replaces the Cloud Map service in a label, so the same change also makes a
    new task definition, that is a deployment, whose tasks register."""
    run, s = runs[key], settings_of(key)
    for app in ("name", "hello"):
        registry = run.one(REGISTRY, app).inputs
        (record,) = registry["dnsConfig"]["dnsRecords"]
        health = int(registry["healthCheckCustomConfig"]["failureThreshold"])
        label = container(run.one(TASK, app))["dockerLabels"][REGISTRY_LABEL]
        assert label == (
            f"{registry['name']}.{s.namespace} {record['type']} "
            f"{registry['dnsConfig']['routingPolicy']} failureThreshold={health}"
        ), app


def test_cloud_map_service_is_deleted_before_its_replacement_is_created(run: Run) -> None:
    """Its name is fixed and unique per namespace: Pulumi's default create-before-delete would
    fail with ServiceAlreadyExists, leaving the stack stuck (for example when upgrading a
    stack created before the health config was sent)."""
    for app in ("name", "hello"):
        assert run.one(REGISTRY, app).delete_before_replace, app


def test_namespace_lives_in_the_vpc(run: Run, stack: str) -> None:
    namespace = run.one(NAMESPACE, "platform").inputs
    assert namespace["name"] == settings_of(stack).namespace
    assert namespace["vpc"] == run.one(VPC, "network").state["vpcId"]


def test_ecs_services(run: Run, stack: str) -> None:
    s = settings_of(stack)
    cluster = run.one("aws:ecs/cluster:Cluster", "platform")
    for app, svc in (("name", s.name), ("hello", s.hello)):
        service = run.one(ECS_SERVICE, app).inputs
        assert service["cluster"] == cluster.state["arn"]
        # Fargate through the stack's capacity provider strategy (test_operations.py); ECS
        # refuses launchType beside a strategy.
        assert "launchType" not in service
        assert service["desiredCount"] == svc.desired_count
        assert service["taskDefinition"] == run.one(TASK, app).state["arn"]
        assert service["serviceRegistries"] == {"registryArn": run.one(REGISTRY, app).state["arn"]}
        assert (
            service["deploymentMaximumPercent"],
            service["deploymentMinimumHealthyPercent"],
        ) == (
            200,
            75,
        )
        assert service["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}


def test_tasks_launch_only_after_the_execution_role_has_its_policy(run: Run) -> None:
    """The task definitions take the role's ARN, but the role is useless until the managed
    policy is attached: without this dependency, ECS can start tasks in parallel with the
    attachment (image pulls and log delivery fail with AccessDenied, and the circuit breaker
    counts the failures), and `pulumi destroy` can detach the policy while tasks still drain.
    Destroy runs in reverse: services, task definitions, then the attachment, then the role."""
    attachment = run.one(
        "aws:iam/rolePolicyAttachment:RolePolicyAttachment", "platform-task-execution"
    )
    for app in ("name", "hello"):
        assert attachment.urn in run.one(TASK, app).dependencies, app
        assert run.one(TASK, app).urn in run.one(ECS_SERVICE, app).dependencies, app


def test_log_groups_outlive_the_tasks_that_write_to_them(run: Run) -> None:
    """awslogs does not create the group (no awslogs-create-group): the task definition must
    depend on the log group, so it exists before a task starts, and `pulumi destroy` deletes
    it only after the service and its tasks are gone."""
    for app in ("name", "hello"):
        group = run.one("aws:cloudwatch/logGroup:LogGroup", app)
        assert group.urn in run.one(TASK, app).dependencies, app
        assert (
            "awslogs-create-group"
            not in container(run.one(TASK, app))["logConfiguration"]["options"]
        )


def test_tasks_can_pull_before_they_start(run: Run) -> None:
    # The first tasks pull their image over 443 at once: the egress rule must exist first.
    for app in ("name", "hello"):
        rule = run.one(EGRESS, f"{app}-https-out")
        assert rule.urn in run.one(ECS_SERVICE, app).dependencies


# --- Public entry -----------------------------------------------------------------------


def test_load_balancer(run: Run, stack: str) -> None:
    s = settings_of(stack)
    vpc = run.one(VPC, "network").state
    alb = run.one(ALB, "entry").inputs
    assert alb["internal"] is False
    assert alb["loadBalancerType"] == "application"
    assert alb["dropInvalidHeaderFields"] is True
    assert alb["subnets"] == vpc["publicSubnetIds"]
    assert alb["securityGroups"] == [run.one(SG, "entry").id]
    target_group = run.one(TARGET_GROUP, "entry").inputs
    assert target_group["targetType"] == "ip"
    assert target_group["port"] == s.hello.port
    assert target_group["protocol"] == "HTTP"
    assert target_group["healthCheck"]["path"] == "/health"
    assert target_group["deregistrationDelay"] <= 30


def test_plain_http_listener_forwards_only_the_root_path_to_hello(run: Run) -> None:
    """Without a domain: plain HTTP on port 80, where only `/` reaches hello; /metrics and
    everything else get the load balancer's own 404."""
    (listener,) = run.of_type(LISTENER)
    assert (listener.inputs["port"], listener.inputs["protocol"]) == (80, "HTTP")
    assert listener.inputs["loadBalancerArn"] == run.one(ALB, "entry").state["arn"]
    (action,) = listener.inputs["defaultActions"]
    assert (action["type"], action["fixedResponse"]["statusCode"]) == ("fixed-response", "404")
    (rule,) = run.of_type(RULE)
    assert rule.inputs["listenerArn"] == listener.state["arn"]
    assert rule.inputs["conditions"] == [{"pathPattern": {"values": ["/"]}}]
    assert rule.inputs["actions"] == [
        {"type": "forward", "targetGroupArn": run.one(TARGET_GROUP, "entry").state["arn"]}
    ]
    # No domain: no certificate, no DNS record, no zone lookup.
    assert not run.of_type(CERTIFICATE)
    assert not run.of_type(RECORD)


def test_hello_sits_behind_the_listener(run: Run, stack: str) -> None:
    hello = run.one(ECS_SERVICE, "hello")
    assert hello.inputs["loadBalancers"] == [
        {
            "targetGroupArn": run.one(TARGET_GROUP, "entry").state["arn"],
            "containerName": "hello",
            "containerPort": settings_of(stack).hello.port,
        }
    ]
    # ECS refuses a service whose target group no load balancer uses yet; here the rule is what
    # attaches the target group to the load balancer, so the service waits for the rule.
    assert run.one(RULE, "entry-public").urn in hello.dependencies
    name = run.one(ECS_SERVICE, "name")
    assert "loadBalancers" not in name.inputs


def test_exports(run: Run, stack: str) -> None:
    alb = run.one(ALB, "entry").state
    assert run.exports["url"] == f"http://{alb['dnsName']}"
    assert run.exports["clusterName"] == prefix_of(stack)
    assert run.exports["namespace"] == settings_of(stack).namespace
    assert run.exports["nameService"] == run.one(ECS_SERVICE, "name").state["name"]
    assert run.exports["helloService"] == run.one(ECS_SERVICE, "hello").state["name"]


# --- Network ----------------------------------------------------------------------------


def test_vpc_follows_the_stack(run: Run, stack: str) -> None:
    network = settings_of(stack).network
    vpc = run.one(VPC, "network").inputs
    assert vpc["numberOfAvailabilityZones"] == network.availability_zones  # type: ignore[union-attr]
    assert vpc["natGateways"] == {"strategy": network.nat_gateways}  # type: ignore[union-attr]
    assert vpc["enableDnsSupport"] is True
    assert vpc["enableDnsHostnames"] is True
    assert {s["type"] for s in vpc["subnetSpecs"]} == {"Public", "Private"}


def test_nat_strategy_per_stack(runs: Runs) -> None:
    assert runs["dev"].one(VPC, "network").inputs["natGateways"] == {"strategy": "Single"}
    assert runs["prod"].one(VPC, "network").inputs["natGateways"] == {"strategy": "OnePerAz"}


# --- Structure --------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["alternatives", *STACKS])
def test_every_resource_belongs_to_a_component(runs: Runs, key: str) -> None:
    run = runs[key]
    ours = {r.urn for r in run.resources if r.type.startswith(f"{PROJECT}:")}
    for resource in run.resources:
        if resource.type.startswith(f"{PROJECT}:"):
            assert resource.parent.split("::")[-2].endswith("pulumi:pulumi:Stack"), resource.urn
        else:
            assert resource.parent in ours, f"{resource.urn} is not parented by a component"


@pytest.mark.parametrize("key", ["alternatives", *STACKS])
def test_every_component_registers_outputs(runs: Runs, key: str) -> None:
    run = runs[key]
    for component in run.resources:
        if component.type.startswith(f"{PROJECT}:"):
            assert run.outputs.get(component.urn), component.urn


def test_lookups_happen_once(run: Run, stack: str) -> None:
    zones = settings_of(stack).network.availability_zones  # type: ignore[union-attr]
    assert sorted(run.invokes) == [
        *["aws:ec2/getSubnet:getSubnet"] * zones,  # one per private subnet (ZONE_SUBNETS)
        "aws:index/getCallerIdentity:getCallerIdentity",
        "aws:index/getPartition:getPartition",
        "aws:index/getRegion:getRegion",
    ]


# --- The alternatives: existing VPC, HTTPS, Graviton ------------------------------------


@pytest.fixture
def alternatives(runs: Runs) -> Run:
    result = runs["alternatives"]
    assert result.error is None, result.error
    return result


def test_existing_vpc_is_used_as_given(alternatives: Run) -> None:
    run = alternatives
    assert not run.of_type(VPC)
    assert run.one(NAMESPACE, "platform").inputs["vpc"] == EXISTING_VPC["vpcId"]
    for group in run.of_type(SG):
        assert group.inputs["vpcId"] == EXISTING_VPC["vpcId"]
    for service in run.of_type(ECS_SERVICE):
        assert service.inputs["networkConfiguration"]["subnets"] == EXISTING_VPC["privateSubnetIds"]
    assert run.one(ALB, "entry").inputs["subnets"] == EXISTING_VPC["publicSubnetIds"]
    assert run.exports["vpcId"] == EXISTING_VPC["vpcId"]


def test_https_listener_and_redirect(alternatives: Run) -> None:
    run = alternatives
    s = settings_of("alternatives")
    assert flows(run) == expected_flows(s.name.port, s.hello.port, (80, 443))
    https = run.one(LISTENER, "entry-https")
    assert (https.inputs["port"], https.inputs["protocol"]) == (443, "HTTPS")
    assert https.inputs["sslPolicy"] == "ELBSecurityPolicy-TLS13-1-2-2021-06"
    (not_found,) = https.inputs["defaultActions"]
    assert not_found["type"] == "fixed-response"
    rule = run.one(RULE, "entry-public")
    assert rule.inputs["listenerArn"] == https.state["arn"]
    assert rule.inputs["actions"] == [
        {"type": "forward", "targetGroupArn": run.one(TARGET_GROUP, "entry").state["arn"]}
    ]
    http = run.one(LISTENER, "entry-http").inputs
    assert (http["port"], http["protocol"]) == (80, "HTTP")
    (redirect,) = http["defaultActions"]
    assert redirect["type"] == "redirect"
    assert redirect["redirect"] == {"protocol": "HTTPS", "port": "443", "statusCode": "HTTP_301"}
    assert rule.urn in run.one(ECS_SERVICE, "hello").dependencies


def test_domain_gets_an_issued_certificate_before_the_https_listener(alternatives: Run) -> None:
    """The HTTPS listener takes its certificate from the CertificateValidation, which completes
    only once ACM has issued the certificate: never a pending certificate on a listener."""
    run = alternatives
    certificate = run.one(CERTIFICATE, "domain")
    assert certificate.inputs == {"domainName": DOMAIN["name"], "validationMethod": "DNS"}
    validation = run.one(VALIDATION, "domain")
    https = run.one(LISTENER, "entry-https")
    assert https.inputs["certificateArn"] == validation.state["certificateArn"]
    assert validation.urn in https.dependencies
    assert validation.inputs["validationRecordFqdns"] == [
        run.one(RECORD, "domain-validation").state["fqdn"]
    ]


def test_domain_points_at_the_load_balancer_and_is_the_url(alternatives: Run) -> None:
    run = alternatives
    alb = run.one(ALB, "entry").state
    alias = run.one(RECORD, "domain-alias").inputs
    assert (alias["name"], alias["type"]) == (DOMAIN["name"], "A")
    assert alias["aliases"] == [
        {"name": alb["dnsName"], "zoneId": alb["zoneId"], "evaluateTargetHealth": False}
    ]
    # The zone was given by name: looked up once, among public zones only (ACM validates through
    # public DNS; a private zone of the same name would never validate), and both records use it.
    (lookup,) = [i for i in run.invoke_args if i["token"] == "aws:route53/getZone:getZone"]
    assert lookup["args"] == {"name": DOMAIN["zoneName"], "privateZone": False}
    assert run.one(RECORD, "domain-validation").inputs["zoneId"] == alias["zoneId"]
    assert run.exports["url"] == f"https://{DOMAIN['name']}/"


def test_graviton_builds_arm64_images_for_arm64_tasks(alternatives: Run) -> None:
    for app in ("name", "hello"):
        assert alternatives.one(IMAGE, app).inputs["platform"] == "linux/arm64"
        assert alternatives.one(TASK, app).inputs["runtimePlatform"]["cpuArchitecture"] == "ARM64"


# --- Bad config -------------------------------------------------------------------------


def test_bad_config_stops_the_program_before_any_resource(runs: Runs) -> None:
    run = runs["invalid"]
    assert run.error is not None
    assert f"{PROJECT}:name.cpu: 300 is not allowed" in run.error
    assert f"{PROJECT}:hello.port: 70000 is out of range" in run.error
    # A key the program does not know is caught too (read from the language host's config).
    assert f"{PROJECT}:dnsTTL: unknown key" in run.error
    # And one in the aws provider's namespace, which the provider would ignore without a word.
    assert "aws:regoin: unknown key of the aws provider; did you mean aws:region?" in run.error
    assert run.resources == []
    assert run.invokes == []


def test_project_file_matches_the_program() -> None:
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    # Config keys are namespaced by the project name; stack/ must agree with Pulumi.yaml.
    assert project["name"] == stack_settings.PROJECT == PROJECT
    assert project["runtime"] == {
        "name": "python",
        "options": {"toolchain": "uv", "virtualenv": ".venv"},
    }
