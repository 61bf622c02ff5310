"""The stack in its other discovery mode, `discoveryMode: serviceConnect` (docs/service-connect.md):
the graph the program registers under mocks, beside the same stack in the DNS mode."""

from __future__ import annotations

import json

import pytest

from tests.infra.support import Run, Runs, container, environment

ECS_SERVICE = "aws:ecs/service:Service"
TASK = "aws:ecs/taskDefinition:TaskDefinition"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"


@pytest.fixture
def connect(runs: Runs) -> Run:
    run = runs["serviceConnect"]
    assert run.error is None, run.error
    return run


@pytest.fixture
def dns(runs: Runs) -> Run:
    run = runs["dev"]
    assert run.error is None, run.error
    return run


def test_the_cluster_defaults_to_the_stacks_own_service_connect_namespace(
    connect: Run, dns: Run
) -> None:
    """The HTTP namespace's name and description are ForceNew in the provider
    (servicediscovery/http_namespace.go), and its delete retries ResourceInUse for only two
    minutes while services still use it: both are fixed text, from the cluster's name, so no
    change to the stack replaces it."""
    (namespace,) = connect.of_type("aws:servicediscovery/httpNamespace:HttpNamespace")
    assert namespace.inputs["description"] == "Service Connect endpoints of this stack's services"
    (cluster,) = connect.of_type("aws:ecs/cluster:Cluster")
    assert cluster.inputs["serviceConnectDefaults"] == {"namespace": namespace.state["arn"]}
    assert namespace.inputs["name"] == "fargate-service-discovery-dev-connect"
    assert not dns.of_type("aws:servicediscovery/httpNamespace:HttpNamespace")
    (dns_cluster,) = dns.of_type("aws:ecs/cluster:Cluster")
    assert "serviceConnectDefaults" not in dns_cluster.inputs


def test_name_serves_by_its_alias_with_both_proxy_timeouts_and_its_logs_set(connect: Run) -> None:
    """A client-server service: a named port mapping, a discovery name, a client alias
    name:<port>; the proxy's timeouts and access logs set on purpose, every field spelled out
    (the provider reads them back: nothing left for ECS to fill in and show as a diff)."""
    service = connect.one(ECS_SERVICE, "name")
    config = service.inputs["serviceConnectConfiguration"]
    (namespace,) = connect.of_type("aws:servicediscovery/httpNamespace:HttpNamespace")
    assert config["enabled"] is True
    assert config["namespace"] == namespace.state["arn"]
    (served,) = config["services"]
    assert served["portName"] == served["discoveryName"] == "name"
    assert served["clientAlias"] == [{"dnsName": "name", "port": 3000}]
    assert served["timeout"] == {"perRequestTimeoutSeconds": 1, "idleTimeoutSeconds": 300}
    assert config["accessLogConfiguration"]["format"] == "JSON"
    assert config["logConfiguration"]["logDriver"] == "awslogs"
    (mapping,) = container(connect.one(TASK, "name"))["portMappings"]
    assert (mapping["name"], mapping["appProtocol"], mapping["containerPort"]) == (
        "name",
        "http",
        3000,
    )


def test_hello_is_a_client_that_calls_name_through_its_proxy(connect: Run, dns: Run) -> None:
    """One attempt through the proxy (the proxy retries), zones left to the proxy; in the DNS
    mode the same service finds name's tasks by Cloud Map DNS."""
    config = connect.one(ECS_SERVICE, "hello").inputs["serviceConnectConfiguration"]
    assert config["enabled"] is True
    assert "services" not in config  # a client only
    env = environment(connect.one(TASK, "hello"))
    assert env["DISCOVERY_MODE"] == "serviceConnect"
    assert env["NAME_SERVER"] == "http://name:3000/"
    assert env["ZONE_AWARE"] == "false"
    # hello's whole call outlasts the proxy's per-request bound, so the proxy answers first.
    assert float(env["PROXY_TIMEOUT_SECONDS"]) < 2
    assert "DISCOVERY_MODE" not in environment(dns.one(TASK, "hello"))
    assert "serviceConnectConfiguration" not in dns.one(ECS_SERVICE, "hello").inputs


def test_the_proxy_is_counted_in_each_task_size(connect: Run, dns: Run) -> None:
    """The proxy's reservation (256 CPU units, 64 MiB) on top of the application's, rounded
    up to a Fargate size: dev's 256/512 tasks become 512/1024."""
    for app in ("name", "hello"):
        with_proxy, without = connect.one(TASK, app).inputs, dns.one(TASK, app).inputs
        assert (int(without["cpu"]), int(without["memory"])) == (256, 512)
        assert (int(with_proxy["cpu"]), int(with_proxy["memory"])) == (512, 1024)


def test_hello_deploys_after_name_only_in_service_connect_mode(connect: Run, dns: Run) -> None:
    """Only client tasks started after the server's deployment can resolve its endpoint: in
    this mode hello's service waits for name's (its steady state, wait_for_steady_state)."""
    name, hello = connect.one(ECS_SERVICE, "name"), connect.one(ECS_SERVICE, "hello")
    assert name.urn in hello.dependencies
    dns_name, dns_hello = dns.one(ECS_SERVICE, "name"), dns.one(ECS_SERVICE, "hello")
    assert dns_name.urn not in dns_hello.dependencies


def test_name_keeps_its_dns_registration_and_gets_the_proxy_alarms(connect: Run, dns: Run) -> None:
    """name stays registered in Cloud Map DNS (callers still in the DNS mode during a switch
    find it); the proxies' own alarms exist in this mode only."""
    registries = connect.one(ECS_SERVICE, "name").inputs["serviceRegistries"]
    assert registries["registryArn"]
    alarms = {a.name for a in connect.of_type(ALARM)}
    assert {"name-proxy-5xx", "name-proxy-latency"} <= alarms
    assert not {"name-proxy-5xx", "name-proxy-latency"} & {a.name for a in dns.of_type(ALARM)}
    assert json.dumps(connect.exports["nameEndpoint"]) == json.dumps(dns.exports["nameEndpoint"])
