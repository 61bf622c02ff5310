"""components/service_connect.py: the proxy's share of a task, and a Service Connect
configuration that the policy pack's rules pass as built (every field ECS would fill in
spelled out: the provider reads the deployment back, docs/infrastructure.md provider notes)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from components import service_connect as sc
from components.service import FARGATE_MEMORY
from policy import guardrails
from tests.policy.engine import Engine

SERVER = sc.ServiceConnectServer(
    port_name="name",
    discovery_name="name",
    dns_name="name",
    port=3000,
    per_request_timeout_seconds=1,
    idle_timeout_seconds=300,
)
NAMESPACE = "arn:aws:servicediscovery:us-east-1:123456789012:namespace/ns-0123456789abcdef"
SC_POLICIES = {p.name for p in guardrails.POLICIES if p.name.startswith("service-connect-")}


def camel(value: Any) -> Any:
    """A Python SDK input dict as the engine hands it to the policy pack (camelCase keys)."""
    if isinstance(value, dict):
        return {
            re.sub(r"_([a-z])", lambda m: m.group(1).upper(), k): camel(v) for k, v in value.items()
        }
    if isinstance(value, list):
        return [camel(v) for v in value]
    return value


@pytest.mark.parametrize(
    ("cpu", "memory", "expected"),
    [
        (256, 512, (512, 1024)),  # name and dev's hello: 0.25 vCPU / 0.5 GB -> 0.5 / 1
        (512, 1024, (1024, 2048)),  # prod's hello: 0.75 vCPU is no Fargate size -> 1 / 2
        (256, 2048, (512, 3072)),  # memory decides: 2 GB + 64 MiB
    ],
)
def test_the_proxys_reservation_is_counted_in_the_task_size(
    cpu: int, memory: int, expected: tuple[int, int]
) -> None:
    assert sc.task_size_with_proxy(cpu, memory, FARGATE_MEMORY) == expected


def test_a_task_the_proxy_no_longer_fits_in_is_refused() -> None:
    with pytest.raises(ValueError, match="no Fargate size"):
        sc.task_size_with_proxy(16384, 122880, FARGATE_MEMORY)


@pytest.mark.parametrize("role", ["server", "client"])
def test_the_configuration_as_built_passes_the_service_connect_rules(
    engine: Engine, role: str
) -> None:
    connect = sc.ServiceConnect(namespace_arn=NAMESPACE)
    if role == "server":
        connect["server"] = SERVER
    config = sc.configuration(
        connect, log_group="/ecs/p-dev/name", region="us-east-1", stream_prefix="proxy"
    )
    props = {"serviceConnectConfiguration": camel(config)}
    verdict = engine.analyze(guardrails.ECS_SERVICE, props, "name")
    assert not SC_POLICIES & set(verdict.violations), verdict.violations
    assert not SC_POLICIES & verdict.not_applicable
    assert config["access_log_configuration"]["format"] == "JSON"
    if role == "server":
        (service,) = config["services"]
        assert service["client_alias"] == [{"port": 3000, "dns_name": "name"}]
        assert service["timeout"] == {"per_request_timeout_seconds": 1, "idle_timeout_seconds": 300}
    else:
        assert "services" not in config


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"per_request_timeout_seconds": 0}, "0 would disable"),
        ({"idle_timeout_seconds": 0}, "mid-request"),
        ({"dns_name": "Name"}, "lower-case DNS name"),
        ({"discovery_name": "name service"}, "discovery_name"),
        ({"port": 70000}, "not a port"),
    ],
)
def test_a_server_that_cannot_work_is_refused_naming_the_field(
    change: dict[str, Any], words: str
) -> None:
    sc.check(sc.ServiceConnect(namespace_arn=NAMESPACE, server=SERVER))
    with pytest.raises(ValueError, match=words):
        sc.check(sc.ServiceConnect(namespace_arn=NAMESPACE, server={**SERVER, **change}))  # type: ignore[typeddict-item]
