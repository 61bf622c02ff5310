"""A Fargate service that other services find through Cloud Map DNS, for any container image.

ECS registers each running task's private address in the Cloud Map service, which answers
`<service>.<namespace>` with an A record per healthy task; callers balance across them on the
client side (apps/aiohttp-discovery). The service's security group admits nothing until a caller is
allowed in with `allow_from`, which opens exactly one flow: TCP to this service's port, from
that caller's group.

The component knows nothing of the stack that uses it: the image, its port, health check, user,
environment, secrets and the application's own AWS permissions are all arguments
(`DiscoverableServiceArgs`). The arguments are a TypedDict with `pulumi.Input` where a value may be
an output, the shape Pulumi's schema analyzer infers a component package's schema from; so this
module has no `from __future__ import annotations` (the analyzer reads the annotations at run time).
"""

import enum
import json
from collections.abc import Mapping, Sequence
from typing import Any, NotRequired, TypedDict, cast

import pulumi
import pulumi_aws as aws

from components.platform import execution_role_trust_policy
from components.service_connect import (
    APP_PROTOCOL,
    ServiceConnect,
    configuration,
    task_size_with_proxy,
)
from components.service_connect import check as check_service_connect

# --- What AWS allows (the component refuses anything else before declaring a resource) -------

# Fargate's valid task sizes: CPU units -> allowed memory (MiB).
# https://docs.aws.amazon.com/AmazonECS/latest/developerguide/fargate-tasks-services.html


def _steps(low: int, high: int, step: int) -> tuple[int, ...]:
    return tuple(range(low, high + 1, step))


FARGATE_MEMORY: dict[int, tuple[int, ...]] = {
    256: (512, 1024, 2048),  # not a step range: 1536 is not a Fargate size
    512: _steps(1024, 4096, 1024),
    1024: _steps(2048, 8192, 1024),
    2048: _steps(4096, 16384, 1024),
    4096: _steps(8192, 30720, 1024),
    8192: _steps(16384, 61440, 4096),
    16384: _steps(32768, 122880, 8192),
}
# ECS waits at most 120 s between SIGTERM and SIGKILL on Fargate (ContainerDefinition.stopTimeout).
STOP_TIMEOUT_MAX = 120
# Without a stop timeout of its own, a task gets its drain plus this long to finish the requests
# it is serving.
STOP_GRACE_SECONDS = 10
# A stopping task's record leaves the answers asynchronously: ECS deregisters it from Cloud Map,
# which removes it from the namespace's Route 53 private zone; "changes generally propagate to all
# Route 53 name servers within 60 seconds" (Route 53 Developer Guide), and the VPC resolver answers
# from those. Then the resolver's cache (the record's TTL) and each caller's own may hold it.
CLOUD_MAP_PROPAGATION_SECONDS = 60
# A non-root process cannot bind a port below 1024, and Fargate offers no way to lower
# net.ipv4.ip_unprivileged_port_start (aws/containers-roadmap#1721).
UNPRIVILEGED_PORT_MIN = 1024
# ECS ContainerDefinition.healthCheck bounds (HealthCheck in the ECS API reference: interval
# 5-300 s, timeout 2-60 s, retries 1-10, startPeriod 0-300 s).
HEALTH_CHECK_BOUNDS = {
    "interval_seconds": (5, 300),
    "timeout_seconds": (2, 60),
    "retries": (1, 10),
    "start_period_seconds": (0, 300),
}
# IAM: the inline policies of one role may hold 10,240 characters together
# (terraform-provider-aws iam/role_policy.go validates each with ValidIAMPolicyJSON(10240)).
ROLE_POLICY_SIZE_MAX = 10_240

# --- The component's own fixed choices ---------------------------------------------------------

# awslogs blocks the application when CloudWatch is slow unless told not to; non-blocking mode
# buffers up to this much and then drops lines, which beats stalling request handling.
LOG_BUFFER = "25m"
# How long `pulumi up` waits for a service's deployment to finish (wait_for_steady_state)
# before it fails. Pinned to the provider's own default (ecs/service.go: 20 minutes for create
# and update) so a provider upgrade cannot change it unseen. Not shorter: ECS's circuit breaker
# may need most of it to roll a failing deployment back (pulumi-awsx#1848: three failed tasks
# and the rollback over 18 minutes), and a wait that ends first reports a timeout instead of
# the deployment's reason. A deployment that can never finish (Fargate Spot with no capacity:
# ECS keeps retrying and never falls back to FARGATE) fails here, loudly, not later
# (docs/infrastructure.md, "A deployment that cannot finish").
DEPLOYMENT_WAIT = pulumi.CustomTimeouts(create="20m", update="20m")
# Cloud Map's health fed by ECS. A dict, not ServiceHealthCheckCustomConfigArgs(...), so that the
# Python SDK does not log its deprecation warning for failure_threshold on every run (the
# provider may still mention the deprecation); the value is the one AWS fixes anyway. See the
# Cloud Map service below for why it must be set at all.
CUSTOM_HEALTH_CHECK: aws.servicediscovery.ServiceHealthCheckCustomConfigArgsDict = {
    "failure_threshold": 1
}
# The Cloud Map service's settings that force its replacement (with its name and namespace).
RECORD_TYPE = "A"
ROUTING_POLICY = "MULTIVALUE"
# Docker label on the container naming those settings; see registry_settings.
REGISTRY_LABEL = "fargate-service-discovery.cloud-map-service"
# The managed policy every execution role this component creates carries: pull from ECR, write
# to CloudWatch Logs.
EXECUTION_POLICY = "service-role/AmazonECSTaskExecutionRolePolicy"


class CpuArchitecture(enum.StrEnum):
    """The CPU architecture the tasks run on (and the image must be built for)."""

    X86_64 = "X86_64"
    ARM64 = "ARM64"


class ContainerHealthCheck(TypedDict):
    """The container's own health check, run by ECS inside the container. ECS reports its result
    to Cloud Map, so an unhealthy task leaves the DNS answers, and the deployment circuit breaker
    counts tasks that never turn healthy."""

    command: Sequence[str]
    """ECS's form: ["CMD", "executable", "arg", ...] or ["CMD-SHELL", "a shell command"]. It
    must exit 0 when the container can serve; the image must ship the executable."""
    interval_seconds: NotRequired[int]
    """Seconds between checks (5-300; default 10)."""
    timeout_seconds: NotRequired[int]
    """Seconds a check may take before it counts as failed (2-60; default 5)."""
    retries: NotRequired[int]
    """Failures in a row that make the container unhealthy (1-10; default 3)."""
    start_period_seconds: NotRequired[int]
    """Seconds after start during which failures do not count (0-300; default 10)."""


class ServiceLoadBalancer(TypedDict):
    """Puts the service's tasks behind a load balancer's target group as well."""

    target_group_arn: pulumi.Input[str]
    """The target group (target type ip). ECS refuses a service whose target group no load
    balancer uses yet: pass an output that resolves once the listener (or listener rule) that
    forwards to it exists, and the service waits for it."""
    health_check_grace_seconds: NotRequired[int]
    """Load balancer health checks are ignored this long after a task starts (default 30)."""


class CapacityStrategy(TypedDict):
    """Where the tasks run: the first `on_demand_base` on FARGATE, the rest spread over FARGATE
    and FARGATE_SPOT by weight (ECS CapacityProviderStrategyItem)."""

    on_demand_base: NotRequired[int]
    """Tasks that always run on FARGATE (0-100000; default 0)."""
    on_demand_weight: NotRequired[int]
    """FARGATE's share of the tasks beyond the base (0-1000; default 1)."""
    spot_weight: NotRequired[int]
    """FARGATE_SPOT's share of the tasks beyond the base (0-1000; default 0)."""


class DiscoverableServiceArgs(TypedDict):
    """What a DiscoverableService runs, where, and who may reach it."""

    image: pulumi.Input[str]
    """The container image (best pinned by digest: repository@sha256:...)."""
    port: int
    """The TCP port the container listens on; callers reach <name>.<namespace>:<port>."""
    cluster_arn: pulumi.Input[str]
    """The ECS cluster. It must have FARGATE (and FARGATE_SPOT, if the capacity strategy uses it)
    attached: pass an output that resolves once they are (ECS refuses a strategy naming a
    capacity provider the cluster lacks)."""
    namespace_id: pulumi.Input[str]
    """The Cloud Map private DNS namespace the service registers in."""
    namespace_name: pulumi.Input[str]
    """That namespace's DNS name."""
    vpc_id: pulumi.Input[str]
    """The VPC of the namespace and the subnets."""
    subnet_ids: pulumi.Input[Sequence[str]]
    """Private subnets for the tasks (they get no public address)."""
    prefix: str
    """Names the task definition family (<prefix>-<name>) and the log group
    (/ecs/<prefix>/<name>)."""
    cpu: NotRequired[int]
    """CPU units of a task: 256, 512, 1024, 2048, 4096, 8192 or 16384 (default 256)."""
    memory: NotRequired[int]
    """MiB of memory of a task, a Fargate size for its cpu (default 512)."""
    architecture: NotRequired[CpuArchitecture]
    """X86_64 (default) or ARM64."""
    desired_count: NotRequired[int]
    """Tasks the service starts with (default 1)."""
    autoscaled: NotRequired[bool]
    """True when Application Auto Scaling owns the task count: `pulumi up` then never sends
    desired_count again (default false)."""
    health_check: NotRequired[ContainerHealthCheck]
    """The container's health check; none by default (ECS then counts a running container as
    healthy)."""
    user: NotRequired[str]
    """The user (uid, uid:gid or name) the container runs as; default: the image's own USER."""
    read_only_root_filesystem: NotRequired[bool]
    """Mount the container's root filesystem read-only (default false, as in ECS)."""
    environment: NotRequired[Mapping[str, pulumi.Input[str]]]
    """Environment variables, in clear text in the task definition."""
    secrets: NotRequired[Mapping[str, pulumi.Input[str]]]
    """Environment variables ECS fills in at start from Secrets Manager or SSM Parameter Store:
    variable name -> the full ARN of a secret (optionally with :json-key:version-stage:version-id)
    or of a parameter. The service then gets an execution role of its own that may read exactly
    these and nothing else."""
    secrets_kms_key_arns: NotRequired[Sequence[pulumi.Input[str]]]
    """Customer managed KMS keys the secrets are encrypted with (none for AWS managed keys):
    the execution role may decrypt with these."""
    execution_role_arn: NotRequired[pulumi.Input[str]]
    """The role Fargate uses to pull the image and ship logs, shared by services without secrets.
    Unset: the service gets one of its own. Not allowed with secrets (a shared role would read
    every service's secrets)."""
    task_role_policy: NotRequired[pulumi.Input[str]]
    """The application's own IAM policy (JSON). Set: the tasks get a role with exactly this
    policy; unset (default): no task role, the application can call no AWS API."""
    role_path: NotRequired[str]
    """The IAM path of the roles this component creates (default "/")."""
    drain_seconds: NotRequired[int]
    """Seconds the image keeps serving after SIGTERM (default 0)."""
    service_connect: NotRequired[ServiceConnect]
    """ECS Service Connect (docs/service-connect.md): the tasks get its proxy, whose
    reservation is added to cpu and memory (rounded up to a Fargate size); with a server, the
    port mapping is named and callers reach it by its client alias. The service keeps its
    Cloud Map DNS registration. Default: none."""
    deploy_after: NotRequired[list[pulumi.Input[str]]]
    """Values the service's deployments wait for, such as other services' serviceName: with
    Service Connect, only a client's tasks started after its servers' deployment can reach
    them (ECS Developer Guide, "Service Connect components"). Default: none."""
    stop_timeout_seconds: NotRequired[int]
    """Seconds ECS waits after SIGTERM before SIGKILL, at most 120 and at least drain_seconds
    (default drain_seconds + 10)."""
    caller_dns_refresh_seconds: NotRequired[int]
    """The longest interval at which a caller re-resolves the service's name. Set, the component
    checks that drain_seconds covers Cloud Map's propagation (60 s) + dns_ttl + this."""
    dns_ttl: NotRequired[int]
    """Seconds resolvers may cache the service's records (default 0)."""
    log_retention_days: NotRequired[int]
    """Days CloudWatch keeps the container's logs (default 14)."""
    region: NotRequired[pulumi.Input[str]]
    """The region of the log group; default: the provider's region (looked up)."""
    load_balancer: NotRequired[ServiceLoadBalancer]
    """Also register the tasks in a load balancer's target group."""
    capacity: NotRequired[CapacityStrategy]
    """FARGATE / FARGATE_SPOT by weight; default: all on FARGATE."""
    deployment_alarm_names: NotRequired[Sequence[pulumi.Input[str]]]
    """CloudWatch alarms that roll a deployment back while in ALARM, beside the circuit
    breaker."""


class ServiceArgsError(ValueError):
    """Arguments that cannot work on AWS; raised before the component declares anything."""


# Integer fields, which arrive as floats through the component package (a Pulumi SDK quirk:
# ComponentProvider.map_input_properties keeps the wire's float), per nested object.
_INT_FIELDS = (
    "port",
    "cpu",
    "memory",
    "desired_count",
    "drain_seconds",
    "stop_timeout_seconds",
    "caller_dns_refresh_seconds",
    "dns_ttl",
    "log_retention_days",
)
_NESTED_INT_FIELDS = {
    "health_check": tuple(HEALTH_CHECK_BOUNDS),
    "capacity": ("on_demand_base", "on_demand_weight", "spot_weight"),
    "load_balancer": ("health_check_grace_seconds",),
}


def with_ints(args: DiscoverableServiceArgs) -> DiscoverableServiceArgs:
    """`args` with every integer field an int (8080.0 -> 8080), whatever path they came by."""
    out: dict[str, Any] = dict(args)
    for key in _INT_FIELDS:
        if key in out:
            out[key] = int(out[key])
    for key, fields in _NESTED_INT_FIELDS.items():
        if key in out:
            out[key] = {k: int(v) if k in fields else v for k, v in out[key].items()}
    return cast(DiscoverableServiceArgs, out)


def registry_settings(name: str, namespace: pulumi.Input[str]) -> pulumi.Output[str]:
    """What the Cloud Map service is, as far as a replacement goes: name, namespace, record
    type, routing policy and health config (everything else updates in place).

    The task definition carries it as a label, so whatever replaces the Cloud Map service also
    rolls the ECS service's tasks. A recreated Cloud Map service can get the same id as the one
    it replaces (terraform-provider-aws issue 46930); the ECS service would then see no change,
    and the running tasks, deregistered when the old one was deleted, would never register in
    the new one. A new task definition is a deployment, and new tasks register.
    """
    return pulumi.Output.concat(
        name,
        ".",
        namespace,
        f" {RECORD_TYPE} {ROUTING_POLICY} ",
        f"failureThreshold={CUSTOM_HEALTH_CHECK['failure_threshold']}",
    )


def stop_timeout(args: DiscoverableServiceArgs) -> int:
    """Seconds ECS waits after SIGTERM before SIGKILL."""
    return args.get("stop_timeout_seconds", args.get("drain_seconds", 0) + STOP_GRACE_SECONDS)


def discovery_drain_needed(dns_ttl: int, caller_dns_refresh_seconds: int) -> int:
    """Seconds a stopping task may still be sent requests by a caller that found it through
    DNS: Cloud Map's propagation, then the resolver's cache, then the caller's own."""
    return CLOUD_MAP_PROPAGATION_SECONDS + dns_ttl + caller_dns_refresh_seconds


def problems(name: str, args: DiscoverableServiceArgs) -> list[str]:
    """Everything wrong with `args`, each naming the argument and what is allowed."""
    problems = [
        *_size_problems(args),
        *_drain_problems(args),
        *_health_check_problems(args),
        *_secret_problems(args),
        *_service_connect_problems(args),
    ]
    return [f"DiscoverableService {name!r}: {p}" for p in problems]


def _service_connect_problems(args: DiscoverableServiceArgs) -> list[str]:
    connect = args.get("service_connect")
    if connect is None:
        return []
    try:
        check_service_connect(connect)
        task_size(args)
    except ValueError as exc:
        return [str(exc)]
    return []


def _size_problems(args: DiscoverableServiceArgs) -> list[str]:
    problems = []
    cpu, memory = args.get("cpu", 256), args.get("memory", 512)
    if cpu not in FARGATE_MEMORY:
        problems.append(f"cpu {cpu} is not a Fargate size; allowed: {sorted(FARGATE_MEMORY)}")
    elif memory not in FARGATE_MEMORY[cpu]:
        problems.append(
            f"memory {memory} is not a Fargate size for cpu {cpu}; allowed: "
            f"{list(FARGATE_MEMORY[cpu])}"
        )
    port, user = args["port"], args.get("user")
    if not 1 <= port <= 65535:
        problems.append(f"port {port} is out of range; allowed: 1 to 65535")
    elif port < UNPRIVILEGED_PORT_MIN and user is not None and not _is_root(user):
        problems.append(
            f"port {port} is privileged, which user {user!r} cannot bind on Fargate "
            f"(aws/containers-roadmap#1721); allowed: a port of {UNPRIVILEGED_PORT_MIN} or more, "
            "or a root user"
        )
    return problems


def _drain_problems(args: DiscoverableServiceArgs) -> list[str]:
    """The drain rule: a stopping task keeps serving while callers may still pick it."""
    problems = []
    drain, stop = args.get("drain_seconds", 0), stop_timeout(args)
    if not drain <= stop <= STOP_TIMEOUT_MAX:
        problems.append(
            f"stop_timeout_seconds {stop} must cover drain_seconds ({drain}) and fit Fargate's "
            f"{STOP_TIMEOUT_MAX} s; allowed: {drain} to {STOP_TIMEOUT_MAX}"
        )
    refresh = args.get("caller_dns_refresh_seconds")
    if refresh is not None:
        ttl = args.get("dns_ttl", 0)
        needed = discovery_drain_needed(ttl, refresh)
        if drain < needed:
            problems.append(
                f"drain_seconds {drain} is too short: callers may still send to a stopping task "
                f"for Cloud Map propagation ({CLOUD_MAP_PROPAGATION_SECONDS} s) + dns_ttl "
                f"({ttl} s) + caller_dns_refresh_seconds ({refresh} s) = {needed} s, and it "
                f"must keep serving that long; allowed: drain_seconds {needed} or more, with "
                f"stop_timeout_seconds at most {STOP_TIMEOUT_MAX}"
            )
    return problems


def _health_check_problems(args: DiscoverableServiceArgs) -> list[str]:
    check = args.get("health_check")
    if check is None:
        return []
    problems = []
    for key, (low, high) in HEALTH_CHECK_BOUNDS.items():
        value = cast(Mapping[str, int], check).get(key)
        if value is not None and not low <= value <= high:
            problems.append(f"health_check.{key} {value} is out of range; allowed: {low} to {high}")
    command = list(check["command"])
    if len(command) < 2 or command[0] not in _CHECK_KIND:
        problems.append(
            f"health_check.command {command} is not ECS's form; allowed: "
            '["CMD", executable, args...] or ["CMD-SHELL", "a shell command"]'
        )
    return problems


def _secret_problems(args: DiscoverableServiceArgs) -> list[str]:
    problems = []
    if args.get("secrets") and "execution_role_arn" in args:
        problems.append(
            "secrets with execution_role_arn: the role that reads this service's secrets must "
            "read nothing else, so it cannot be a shared one; leave execution_role_arn unset "
            "(the service then gets an execution role of its own)"
        )
    for variable, value_from in sorted(args.get("secrets", {}).items()):
        # Outputs are checked when they resolve (secrets_policy).
        if isinstance(value_from, str):
            try:
                secret_resource(value_from)
            except ServiceArgsError as e:
                problems.append(f"secrets[{variable!r}]: {e}")
    return problems


_CHECK_KIND = ("CMD", "CMD-SHELL")


def _is_root(user: str) -> bool:
    return user.split(":", 1)[0].strip() in ("0", "root")


def secret_resource(value_from: str) -> tuple[str, str]:
    """(IAM action, resource ARN) that reading `value_from` at task start needs.

    ECS (Amazon ECS Developer Guide, task_execution_IAM_role.html#task-execution-secrets): a
    Secrets Manager secret takes secretsmanager:GetSecretValue on the secret, whose ARN is the
    valueFrom without the optional ":json-key:version-stage:version-id" suffix; an SSM parameter
    takes ssm:GetParameters on the parameter; kms:Decrypt is needed only for a customer managed
    key. Only full ARNs are accepted (ECS also takes a bare parameter name of the same
    region), so the policy can name exactly what is read.
    """
    parts = value_from.split(":")
    service = parts[2] if len(parts) >= 6 and parts[0] == "arn" else ""
    secret = service == "secretsmanager" and len(parts) in (7, 10) and parts[5] == "secret"
    if secret and parts[6]:
        return "secretsmanager:GetSecretValue", ":".join(parts[:7])
    parameter = service == "ssm" and len(parts) == 6 and parts[5].startswith("parameter/")
    if parameter and len(parts[5]) > len("parameter/"):
        return "ssm:GetParameters", value_from
    raise ServiceArgsError(
        f"{value_from!r} is not the full ARN of a Secrets Manager secret "
        "(arn:<partition>:secretsmanager:<region>:<account>:secret:<name>[:json-key:stage:id]) "
        "or of an SSM parameter (arn:<partition>:ssm:<region>:<account>:parameter/<name>)"
    )


def secrets_policy(value_froms: Sequence[str], kms_key_arns: Sequence[str]) -> str:
    """The execution role's inline policy: read exactly these secrets, decrypt with exactly these
    customer managed keys (none for AWS managed keys, which need no grant)."""
    by_action: dict[str, set[str]] = {}
    for value_from in value_froms:
        action, resource = secret_resource(value_from)
        by_action.setdefault(action, set()).add(resource)
    if kms_key_arns:
        by_action["kms:Decrypt"] = set(kms_key_arns)
    statements = [
        {"Effect": "Allow", "Action": action, "Resource": sorted(resources)}
        for action, resources in sorted(by_action.items())
    ]
    document = json.dumps({"Version": "2012-10-17", "Statement": statements})
    if len(document) > ROLE_POLICY_SIZE_MAX:
        raise ServiceArgsError(
            f"the secrets policy is {len(document)} characters; IAM allows "
            f"{ROLE_POLICY_SIZE_MAX} for a role's inline policies: fewer secrets per service"
        )
    return document


def port_mapping(args: "DiscoverableServiceArgs") -> dict[str, Any]:
    """The container's one port, named (with its protocol) when Service Connect serves it."""
    server = args.get("service_connect", {}).get("server")
    return {
        "containerPort": args["port"],
        "hostPort": args["port"],
        "protocol": "tcp",
        **({"name": server["port_name"], "appProtocol": APP_PROTOCOL} if server else {}),
    }


def task_size(args: "DiscoverableServiceArgs") -> tuple[int, int]:
    """The task's CPU units and MiB: the application's, plus the Service Connect proxy's."""
    cpu, memory = args.get("cpu", 256), args.get("memory", 512)
    if "service_connect" in args:
        return task_size_with_proxy(cpu, memory, FARGATE_MEMORY)
    return cpu, memory


def container_definition(
    name: str,
    args: DiscoverableServiceArgs,
    log_group: pulumi.Input[str],
    region: pulumi.Input[str],
    labels: Mapping[str, pulumi.Input[str]] | None = None,
) -> dict[str, Any]:
    """The one container of the task, in ECS's JSON shape (values may still be Outputs).

    Written as DescribeTaskDefinition returns it, so a second `pulumi up` finds no difference:
    a key the caller did not set is left out rather than sent empty or false (ECS returns no
    empty map, list or false flag it was not given, and terraform-provider-aws compares what it
    reads back), lists are sorted by name, and the health check spells out every default.
    """
    environment = args.get("environment", {})
    secrets = args.get("secrets", {})
    check = args.get("health_check")
    user = args.get("user")
    return {
        "name": name,
        "image": args["image"],
        "essential": True,
        **({"user": user} if user is not None else {}),
        **({"dockerLabels": dict(labels)} if labels else {}),
        **({"readonlyRootFilesystem": True} if args.get("read_only_root_filesystem") else {}),
        "portMappings": [port_mapping(args)],
        **(
            {"environment": [{"name": k, "value": environment[k]} for k in sorted(environment)]}
            if environment
            else {}
        ),
        **(
            {"secrets": [{"name": k, "valueFrom": secrets[k]} for k in sorted(secrets)]}
            if secrets
            else {}
        ),
        **(
            {
                "healthCheck": {
                    "command": list(check["command"]),
                    "interval": check.get("interval_seconds", 10),
                    "timeout": check.get("timeout_seconds", 5),
                    "retries": check.get("retries", 3),
                    "startPeriod": check.get("start_period_seconds", 10),
                }
            }
            if check is not None
            else {}
        ),
        # ECS sends SIGTERM, then SIGKILL after this many seconds.
        "stopTimeout": stop_timeout(args),
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {
                "awslogs-group": log_group,
                "awslogs-region": region,
                "awslogs-stream-prefix": name,
                "mode": "non-blocking",
                "max-buffer-size": LOG_BUFFER,
            },
        },
    }


def capacity_provider_strategy(
    capacity: CapacityStrategy,
) -> list[aws.ecs.ServiceCapacityProviderStrategyArgs]:
    """The base on FARGATE, the rest by weight.

    FARGATE_SPOT is left out when its weight is 0: a zero-weight entry places nothing and would
    only make the strategy differ from what the caller asked for.
    """
    strategy = [
        aws.ecs.ServiceCapacityProviderStrategyArgs(
            capacity_provider="FARGATE",
            base=capacity.get("on_demand_base", 0),
            weight=capacity.get("on_demand_weight", 1),
        )
    ]
    if capacity.get("spot_weight", 0):
        strategy.append(
            aws.ecs.ServiceCapacityProviderStrategyArgs(
                capacity_provider="FARGATE_SPOT", weight=capacity.get("spot_weight", 0)
            )
        )
    return strategy


def dns_name(service: str, namespace: pulumi.Input[str]) -> pulumi.Output[str]:
    """``<service>.<namespace>``: what Cloud Map answers for the DiscoverableService named
    ``service`` (its Cloud Map service takes the component's name). For what cannot wait
    on the component's outputs: its own tasks' environment."""
    return pulumi.Output.concat(service, ".", namespace)


def _after(value: pulumi.Input[str], *resources: pulumi.Resource) -> pulumi.Output[str]:
    """`value`, handed out only once `resources` exist (so whatever takes it waits for them,
    and is deleted before them)."""
    return pulumi.Output.all(value, *(r.urn for r in resources)).apply(lambda v: str(v[0]))


class DiscoverableService(pulumi.ComponentResource):
    """A Fargate service registered in Cloud Map: callers find its tasks at
    <name>.<namespace>. Its security group admits nothing until allow_from."""

    security_group_id: pulumi.Output[str]
    """The tasks' security group."""
    service_name: pulumi.Output[str]
    """The ECS service's name."""
    log_group_name: pulumi.Output[str]
    """The CloudWatch log group of the container's output."""
    endpoint: pulumi.Output[str]
    """How callers reach it: http://<name>.<namespace>:<port>/"""
    task_role_arn: pulumi.Output[str]
    """The application's role, or "" when it has none."""
    execution_role_arn: pulumi.Output[str]
    """The role Fargate starts the tasks with (given, or the service's own)."""

    def __init__(
        self,
        name: str,
        args: DiscoverableServiceArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        args = with_ints(args)
        found = problems(name, args)
        if found:
            raise ServiceArgsError("\n".join(found))
        super().__init__("fargate-service-discovery:service:DiscoverableService", name, None, opts)
        self._name = name
        self._port = args["port"]
        child = pulumi.ResourceOptions(parent=self)

        group = aws.ec2.SecurityGroup(
            name,
            description=f"{name} tasks",
            vpc_id=args["vpc_id"],
            opts=child,
        )
        self._group = group
        # No inline rules, and the provider drops AWS's default allow-all egress rule: what a
        # task may send is exactly the egress rules below and those added by allow_from.
        #
        # Port 443 to anywhere: Fargate pulls the image from ECR (its API and the S3 layer
        # store) or another registry, fetches the task's secrets (Secrets Manager, SSM) and
        # ships logs to CloudWatch through the task's own network interface, out through the
        # NAT gateway. None of those endpoints has a fixed address range to narrow
        # this to; VPC endpoints would (see docs/infrastructure.md).
        #
        # No DNS rule: security groups cannot filter traffic to the VPC's own resolver (the
        # Route 53 Resolver at the VPC base address + 2), which is what answers for the Cloud
        # Map namespace. A rule for it would be decoration.
        https_out = aws.vpc.SecurityGroupEgressRule(
            f"{name}-https-out",
            security_group_id=group.id,
            description="HTTPS to ECR and CloudWatch Logs",
            ip_protocol="tcp",
            from_port=443,
            to_port=443,
            cidr_ipv4="0.0.0.0/0",
            opts=child,
        )

        log_group = aws.cloudwatch.LogGroup(
            name,
            name=f"/ecs/{args['prefix']}/{name}",
            retention_in_days=args.get("log_retention_days", 14),
            opts=child,
        )

        # Partition, region and account, each looked up once and only if something needs it.
        self._lookups: dict[str, pulumi.Output[str]] = {}
        region = args.get("region")
        if region is None:
            region = self._lookup("region")
        task_role_arn = self._task_role(name, args)
        execution_role_arn = args.get("execution_role_arn") or self._execution_role(name, args)

        definition = container_definition(
            name,
            args,
            log_group=log_group.name,
            region=region,
            labels={REGISTRY_LABEL: registry_settings(name, args["namespace_name"])},
        )
        task = aws.ecs.TaskDefinition(
            name,
            family=f"{args['prefix']}-{name}",
            cpu=str(task_size(args)[0]),
            memory=str(task_size(args)[1]),
            network_mode="awsvpc",
            requires_compatibilities=["FARGATE"],
            runtime_platform=aws.ecs.TaskDefinitionRuntimePlatformArgs(
                operating_system_family="LINUX",
                cpu_architecture=CpuArchitecture(
                    args.get("architecture", CpuArchitecture.X86_64)
                ).value,
            ),
            execution_role_arn=execution_role_arn,
            task_role_arn=task_role_arn,
            container_definitions=pulumi.Output.json_dumps([definition]),
            opts=child,
        )

        registry = aws.servicediscovery.Service(
            name,
            name=name,
            dns_config=aws.servicediscovery.ServiceDnsConfigArgs(
                namespace_id=args["namespace_id"],
                dns_records=[
                    aws.servicediscovery.ServiceDnsConfigDnsRecordArgs(
                        ttl=args.get("dns_ttl", 0), type=RECORD_TYPE
                    )
                ],
                # One A record per healthy task (up to eight per answer), not one picked at
                # random: the client balances across all of them itself.
                routing_policy=ROUTING_POLICY,
            ),
            # ECS reports each task's container health to Cloud Map, so an unhealthy task leaves
            # the DNS answers (about 30 s after ECS reports it; a stopping task is deregistered).
            #
            # failure_threshold is deprecated, and AWS fixes it at 1, but it must be set: the
            # provider (terraform-provider-aws, servicediscovery/service.go) sends
            # HealthCheckCustomConfig only for a non-empty block, so an empty one is dropped,
            # CreateService goes out without it, every registered task is answered whatever its
            # health, and the next `pulumi up` shows the block as a replacement (provider issue
            # 44285). AWS cannot add the setting to an existing service.
            health_check_custom_config=CUSTOM_HEALTH_CHECK,
            # Destroy must not fail on instances ECS has not deregistered yet.
            force_destroy=True,
            opts=pulumi.ResourceOptions(
                parent=self,
                # Cloud Map service names are unique in a namespace, and `name` is fixed: a
                # replacement created before the old service is deleted fails with
                # ServiceAlreadyExists. Replacements come from code changes (name, record type,
                # routing policy, health config), a new namespace, or upgrading a stack created
                # without the health config; deleting first lets each of them succeed, at the
                # cost of a gap in the records that callers ride out on their cached answers.
                # The tasks then re-register through a deployment (see registry_settings).
                delete_before_replace=True,
            ),
        )

        lb = args.get("load_balancer")
        alarm_names = list(args.get("deployment_alarm_names", ()))
        service = aws.ecs.Service(
            name,
            cluster=args["cluster_arn"],
            # A new revision deploys only once what it must follow is there (deploy_after).
            task_definition=pulumi.Output.all(task.arn, *args.get("deploy_after", [])).apply(
                lambda v: str(v[0])
            ),
            # Sent at creation only once autoscaling owns the count (ignore_changes below).
            desired_count=args.get("desired_count", 1),
            # A capacity provider strategy instead of launch_type (the two exclude each other).
            # See force_new_deployment below for what a change of it does.
            capacity_provider_strategies=capacity_provider_strategy(args.get("capacity", {})),
            # terraform-provider-aws (ecs/service.go, capacityProviderStrategyCustomizeDiff)
            # refuses to update a strategy in place unless force_new_deployment is set (older
            # releases replace the service instead), and ECS applies a new strategy only to new
            # tasks anyway. Set, a strategy change is a rolling deployment of the same service
            # (same name, same scalable target, autoscaled count kept). The price: every
            # in-place update of the service rolls its tasks (UpdateService always carries
            # forceNewDeployment), which a task definition change does anyway.
            force_new_deployment=True,
            network_configuration=aws.ecs.ServiceNetworkConfigurationArgs(
                subnets=args["subnet_ids"],
                security_groups=[group.id],
                # Private subnets only; tasks reach out through NAT and are reached through
                # Cloud Map or a load balancer, never directly.
                assign_public_ip=False,
            ),
            # Start new tasks before stopping old ones, never dropping below 75% of the count.
            deployment_maximum_percent=200,
            deployment_minimum_healthy_percent=75,
            # A deployment whose tasks keep failing rolls back to the last good one instead of
            # replacing healthy tasks with broken ones.
            deployment_circuit_breaker=aws.ecs.ServiceDeploymentCircuitBreakerArgs(
                enable=True, rollback=True
            ),
            # ... and so does one whose tasks start and pass their health checks but break the
            # service (5xx, retries, unhealthy targets): ECS watches these alarms during the
            # deployment and rolls back when one goes to ALARM.
            alarms=(
                aws.ecs.ServiceAlarmsArgs(alarm_names=alarm_names, enable=True, rollback=True)
                if alarm_names
                else None
            ),
            service_registries=aws.ecs.ServiceServiceRegistriesArgs(registry_arn=registry.arn),
            # Service Connect (docs/service-connect.md): the service keeps its DNS registration
            # too, so callers still in the DNS mode find its tasks during a switch.
            service_connect_configuration=(
                configuration(
                    args["service_connect"],
                    log_group=log_group.name,
                    region=region,
                    stream_prefix="proxy",
                )
                if "service_connect" in args
                else None
            ),
            load_balancers=(
                [
                    aws.ecs.ServiceLoadBalancerArgs(
                        target_group_arn=lb["target_group_arn"],
                        container_name=name,
                        container_port=args["port"],
                    )
                ]
                if lb
                else None
            ),
            health_check_grace_period_seconds=(
                lb.get("health_check_grace_seconds", 30) if lb else None
            ),
            propagate_tags="SERVICE",
            enable_ecs_managed_tags=True,
            # `pulumi up` returns once the tasks run healthy, or fails if the circuit breaker
            # rolled the deployment back: success means the service actually works.
            wait_for_steady_state=True,
            opts=pulumi.ResourceOptions(
                parent=self,
                # Tasks pull their image over 443 the moment they start.
                depends_on=[https_out],
                # The provider reads desiredCount back from ECS; once Application Auto Scaling
                # has changed it, sending the configured count again would undo the scaling on
                # every `pulumi up`.
                ignore_changes=["desiredCount"] if args.get("autoscaled", False) else None,
                # wait_for_steady_state's bound (DEPLOYMENT_WAIT above).
                custom_timeouts=DEPLOYMENT_WAIT,
            ),
        )

        self.security_group_id = group.id
        self.service_name = service.name
        self.log_group_name = log_group.name
        self.endpoint = pulumi.Output.concat(
            "http://", registry.name, ".", args["namespace_name"], ":", str(self._port), "/"
        )
        self.task_role_arn = pulumi.Output.from_input(task_role_arn or "")
        self.execution_role_arn = pulumi.Output.from_input(execution_role_arn)
        self.register_outputs(
            {
                "securityGroupId": self.security_group_id,
                "serviceName": self.service_name,
                "logGroupName": self.log_group_name,
                "endpoint": self.endpoint,
                "taskRoleArn": self.task_role_arn,
                "executionRoleArn": self.execution_role_arn,
            }
        )

    def _lookup(self, what: str) -> pulumi.Output[str]:
        """The provider's partition, region or account id (an invoke, made once)."""
        if what not in self._lookups:
            invoke = pulumi.InvokeOptions(parent=self)
            self._lookups[what] = {
                "partition": lambda: aws.get_partition_output(opts=invoke).partition,
                "region": lambda: aws.get_region_output(opts=invoke).region,
                "account": lambda: aws.get_caller_identity_output(opts=invoke).account_id,
            }[what]()
        return self._lookups[what]

    def _trust_policy(self) -> pulumi.Output[str]:
        """Only ECS tasks of this account and region may assume the roles made here."""
        return pulumi.Output.all(
            self._lookup("partition"), self._lookup("region"), self._lookup("account")
        ).apply(lambda v: execution_role_trust_policy(v[0], v[1], v[2]))

    def _task_role(self, name: str, args: DiscoverableServiceArgs) -> pulumi.Output[str] | None:
        """The application's role with exactly its policy, or None (no task role)."""
        policy = args.get("task_role_policy")
        if policy is None:
            return None
        child = pulumi.ResourceOptions(parent=self)
        role = aws.iam.Role(
            f"{name}-task",
            description=f"The {name} application's own AWS permissions",
            path=args.get("role_path", "/"),
            assume_role_policy=self._trust_policy(),
            opts=child,
        )
        grant = aws.iam.RolePolicy(
            f"{name}-task", role=role.name, name="application", policy=policy, opts=child
        )
        # Handed to the task definition only once the policy is on the role: no task starts
        # with a role that cannot do its job yet.
        return _after(role.arn, grant)

    def _execution_role(self, name: str, args: DiscoverableServiceArgs) -> pulumi.Output[str]:
        """The service's own execution role: pull, ship logs, and read exactly its secrets."""
        child = pulumi.ResourceOptions(parent=self)
        role = aws.iam.Role(
            f"{name}-execution",
            description=f"Lets Fargate start {name}'s tasks and read exactly their secrets",
            path=args.get("role_path", "/"),
            assume_role_policy=self._trust_policy(),
            opts=child,
        )
        partition = self._lookup("partition")
        grants: list[pulumi.Resource] = [
            aws.iam.RolePolicyAttachment(
                f"{name}-execution",
                role=role.name,
                policy_arn=pulumi.Output.concat(
                    "arn:", partition, f":iam::aws:policy/{EXECUTION_POLICY}"
                ),
                opts=child,
            )
        ]
        secrets = args.get("secrets", {})
        if secrets:
            value_froms = [secrets[k] for k in sorted(secrets)]
            keys = list(args.get("secrets_kms_key_arns", ()))
            policy = pulumi.Output.all(
                pulumi.Output.all(*value_froms), pulumi.Output.all(*keys)
            ).apply(lambda v: secrets_policy(v[0], v[1]))
            grants.append(
                aws.iam.RolePolicy(
                    f"{name}-secrets", role=role.name, name="secrets", policy=policy, opts=child
                )
            )
        return _after(role.arn, *grants)

    def allow_from(self, source: str, source_security_group_id: pulumi.Input[str]) -> None:
        """Let members of another security group open TCP connections to this service's port.

        One flow, two rules: ingress here from the source group, and egress on the source
        group to this one (no group made here allows egress it was not given). TCP and the
        one port only; IpProtocol -1 would open every port and protocol.
        """
        child = pulumi.ResourceOptions(parent=self)
        aws.vpc.SecurityGroupIngressRule(
            f"{self._name}-from-{source}",
            security_group_id=self._group.id,
            description=f"{source} to {self._name}",
            ip_protocol="tcp",
            from_port=self._port,
            to_port=self._port,
            referenced_security_group_id=source_security_group_id,
            opts=child,
        )
        aws.vpc.SecurityGroupEgressRule(
            f"{source}-to-{self._name}",
            security_group_id=source_security_group_id,
            description=f"{source} to {self._name}",
            ip_protocol="tcp",
            from_port=self._port,
            to_port=self._port,
            referenced_security_group_id=self._group.id,
            opts=child,
        )
