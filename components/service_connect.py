"""ECS Service Connect for a Fargate service: the proxy's share of the task, and the service's
Service Connect configuration with every field ECS would otherwise fill in spelled out.

docs/service-connect.md compares this mode with the DNS one. What the provider does with the
configuration (terraform-provider-aws ecs/service.go, recorded in docs/infrastructure.md's
provider notes): nothing in it forces a replacement (a change is a new deployment), and newer
provider releases read it back from the service's deployment, so a field left to ECS (the
discovery name, the client alias's DNS name, the timeouts) would come back as a diff on the
next `pulumi up`. The policy pack holds any service to the same (`service-connect-*` rules).

Args are TypedDicts and this module has no `from __future__ import annotations`: the
component that takes them is analysed by Pulumi's schema analyzer, which reads annotations at
run time (docs/package.md).
"""

import re
from collections.abc import Mapping, Sequence
from typing import NotRequired, TypedDict

import pulumi
import pulumi_aws as aws

# The proxy container's reservation AWS recommends adding to a task's size (ECS Developer
# Guide, "Service Connect concepts"; see docs/service-connect.md on how sure that is).
PROXY_CPU = 256
PROXY_MEMORY = 64
# The port mapping's protocol: the proxy then handles HTTP (and ECS publishes its HTTP
# metrics, HTTPCode_Target_5XX_Count and TargetResponseTime, for the service).
APP_PROTOCOL = "http"
# The proxy's access log lines, as JSON, without query strings (they may carry data).
ACCESS_LOG_FORMAT = "JSON"
ACCESS_LOG_QUERY_PARAMETERS = "DISABLED"
# ECS TimeoutConfiguration: integers, 0 disables; per-request only for HTTP protocols.
TIMEOUT_MAX = 2_147_483_647
# A client alias's DNS name: what the callers put in their URL (a DNS label or name).
_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_DNS_NAME = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")


class ServiceConnectServer(TypedDict):
    """The service as a Service Connect client-server service: its callers reach
    http://<dns_name>:<port>/ through their own proxies."""

    port_name: str
    """The name given to the container's port mapping (the service's port)."""
    discovery_name: str
    """The Cloud Map service ECS creates in the namespace for it."""
    dns_name: str
    """The client alias's DNS name, what callers put in their URL (lower case)."""
    port: int
    """The client alias's port, what callers put in their URL (1-65535)."""
    per_request_timeout_seconds: int
    """The proxy's bound on one request, its retries included (at least 1)."""
    idle_timeout_seconds: int
    """When the proxy closes an idle connection (at least per_request_timeout_seconds: a
    shorter idle timeout closes a connection mid-request)."""


class ServiceConnect(TypedDict):
    """A service in the Service Connect namespace: always a client (its tasks get a proxy that
    knows the namespace's endpoints); with `server`, also reachable by name."""

    namespace_arn: pulumi.Input[str]
    """The Cloud Map namespace's ARN (the cluster's Service Connect default)."""
    server: NotRequired[ServiceConnectServer]
    """Absent: a client only."""


def check(connect: ServiceConnect) -> None:
    """Refuse what ECS would refuse or what cannot work, naming the field."""
    server = connect.get("server")
    if server is None:
        return
    if not _DNS_NAME.match(server["dns_name"]):
        raise ValueError(
            f"service_connect.server.dns_name: {server['dns_name']!r} is not a lower-case DNS name"
        )
    for field, value in (
        ("port_name", server["port_name"]),
        ("discovery_name", server["discovery_name"]),
    ):
        if not _DNS_NAME.match(value):
            raise ValueError(f"service_connect.server.{field}: {value!r} is not a name")
    if not 1 <= int(server["port"]) <= 65535:
        raise ValueError(f"service_connect.server.port: {server['port']} is not a port")
    per_request = int(server["per_request_timeout_seconds"])
    idle = int(server["idle_timeout_seconds"])
    if not 1 <= per_request <= TIMEOUT_MAX:
        raise ValueError(
            "service_connect.server.per_request_timeout_seconds: at least 1 (0 would disable "
            f"the bound), not {per_request}"
        )
    if not per_request <= idle <= TIMEOUT_MAX:
        raise ValueError(
            f"service_connect.server.idle_timeout_seconds: {idle} is below the per-request "
            f"timeout {per_request}: the proxy would close connections mid-request"
        )


def task_size_with_proxy(
    cpu: int, memory: int, sizes: Mapping[int, Sequence[int]]
) -> tuple[int, int]:
    """The smallest Fargate size (``sizes``: CPU units -> allowed MiB) holding the application's
    ``cpu`` and ``memory`` plus the proxy's reservation."""
    want_cpu, want_memory = cpu + PROXY_CPU, memory + PROXY_MEMORY
    for units in sorted(sizes):
        if units >= want_cpu:
            fits = [m for m in sorted(sizes[units]) if m >= want_memory]
            if fits:
                return units, fits[0]
    raise ValueError(
        f"no Fargate size holds {cpu} CPU units and {memory} MiB plus the Service Connect "
        f"proxy's {PROXY_CPU} and {PROXY_MEMORY}"
    )


def configuration(
    connect: ServiceConnect,
    *,
    log_group: pulumi.Input[str],
    region: pulumi.Input[str],
    stream_prefix: str,
) -> aws.ecs.ServiceServiceConnectConfigurationArgsDict:
    """The ECS service's ``service_connect_configuration``: the proxy's logs and access logs
    to the service's log group, and for a server every field spelled out."""
    config: aws.ecs.ServiceServiceConnectConfigurationArgsDict = {
        "enabled": True,
        "namespace": connect["namespace_arn"],
        "log_configuration": {
            "log_driver": "awslogs",
            "options": {
                "awslogs-group": log_group,
                "awslogs-region": region,
                "awslogs-stream-prefix": stream_prefix,
            },
        },
        "access_log_configuration": {
            "format": ACCESS_LOG_FORMAT,
            "include_query_parameters": ACCESS_LOG_QUERY_PARAMETERS,
        },
    }
    server = connect.get("server")
    if server is not None:
        config["services"] = [
            {
                "port_name": server["port_name"],
                "discovery_name": server["discovery_name"],
                "client_alias": [{"port": int(server["port"]), "dns_name": server["dns_name"]}],
                "timeout": {
                    "per_request_timeout_seconds": int(server["per_request_timeout_seconds"]),
                    "idle_timeout_seconds": int(server["idle_timeout_seconds"]),
                },
            }
        ]
    return config
