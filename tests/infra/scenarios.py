"""Component-level scenarios: each component on its own, with literal inputs, under mocks.

Run by the harness (`tests.infra.scenarios:components`); the assertions live in
test_components.py. Logical names are distinct so every scenario fits in one run.
"""

from __future__ import annotations

from components.domain import PublicDomain, PublicDomainArgs
from components.entry import PublicEntry, PublicEntryArgs
from components.image import ServiceImage, ServiceImageArgs
from components.network import ExistingVpc, NatGateways, Network, NetworkArgs, NewVpc
from components.platform import AwsContext, Platform, PlatformArgs
from components.service import (
    ContainerHealthCheck,
    CpuArchitecture,
    DiscoverableService,
    DiscoverableServiceArgs,
)

VPC_ID = "vpc-0123456789abcdef0"
PUBLIC = ("subnet-0123456789abcdef1", "subnet-0123456789abcdef2")
PRIVATE = ("subnet-0123456789abcdef3", "subnet-0123456789abcdef4")
CALLER_GROUP = "sg-0123456789abcdef0"
IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/solo@sha256:" + "ab" * 32
CERTIFICATE = "arn:aws:acm:eu-west-1:123456789012:certificate/0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"
ZONE_ID = "Z0123456789ABCDEFGHIJ"
ALB_DNS = "given-1234567890.eu-west-1.elb.amazonaws.com"
ALB_ZONE = "Z32O12XQLNTSW2"
CHECK = ContainerHealthCheck(command=["CMD", "/bin/check", "--quick"])
# Secrets of both stores: a whole secret, one JSON key of another, a parameter.
SECRETS = {
    "API_TOKEN": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:keeper/token-AbCdEf",
    "DB_PASSWORD": (
        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:keeper/db-GhIjKl:password::"
    ),
    "LICENSE": "arn:aws:ssm:eu-west-1:123456789012:parameter/keeper/license",
}
KMS_KEY = "arn:aws:kms:eu-west-1:123456789012:key/0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"
TASK_POLICY = (
    '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", '
    '"Resource": "arn:aws:s3:::keeper-bucket/*"}]}'
)


def service_args(prefix: str) -> DiscoverableServiceArgs:
    return DiscoverableServiceArgs(
        image=IMAGE,
        port=8080,
        cpu=512,
        memory=1024,
        desired_count=1,
        drain_seconds=15,
        architecture=CpuArchitecture.ARM64,
        cluster_arn="arn:aws:ecs:eu-west-1:123456789012:cluster/test",
        execution_role_arn="arn:aws:iam::123456789012:role/test-execution",
        namespace_id="ns-0123456789abcdef",
        namespace_name="corp.example",
        vpc_id=VPC_ID,
        subnet_ids=list(PRIVATE),
        region="eu-west-1",
        dns_ttl=3,
        log_retention_days=14,
        prefix=prefix,
        environment={"GREETING": "hi"},
        health_check=CHECK,
        # What the policy pack asks of every container (tests/policy runs these scenarios too).
        user="1000:1000",
        read_only_root_filesystem=True,
    )


def keeper_args() -> DiscoverableServiceArgs:
    """A service with secrets and a task role, no health check, the region looked up (and the
    user and read-only root the policy pack asks of every container)."""
    return DiscoverableServiceArgs(
        image=IMAGE,
        port=9000,
        cluster_arn="arn:aws:ecs:eu-west-1:123456789012:cluster/test",
        namespace_id="ns-0123456789abcdef",
        namespace_name="corp.example",
        vpc_id=VPC_ID,
        subnet_ids=list(PRIVATE),
        prefix="test",
        secrets=SECRETS,
        secrets_kms_key_arns=[KMS_KEY],
        task_role_policy=TASK_POLICY,
        role_path="/test/",
        user="1000:1000",
        read_only_root_filesystem=True,
    )


def components() -> None:
    Network(
        "existing",
        NetworkArgs(
            existing_vpc=ExistingVpc(
                vpc_id=VPC_ID, public_subnet_ids=list(PUBLIC), private_subnet_ids=list(PRIVATE)
            )
        ),
    )
    Network(
        "fresh",
        NetworkArgs(
            new_vpc=NewVpc(
                cidr_block="10.20.0.0/20",
                availability_zones=3,
                nat_gateways=NatGateways.ONE_PER_AZ,
            )
        ),
    )
    Platform(
        "shared",
        PlatformArgs(
            vpc_id=VPC_ID,
            namespace="corp.example",
            cluster_name="test-cluster",
            aws=AwsContext(region="eu-west-1", account_id="123456789012", partition="aws"),
        ),
    )
    ServiceImage(
        "solo-image",
        ServiceImageArgs(context="apps", dockerfile="apps/solo/Dockerfile", platform="linux/arm64"),
    )
    # Alone: nobody allowed in yet.
    DiscoverableService("solo", service_args("test"))
    # With one caller allowed in.
    DiscoverableService("callee", service_args("test")).allow_from("caller", CALLER_GROUP)
    DiscoverableService("keeper", keeper_args())
    PublicEntry(
        "plain",
        PublicEntryArgs(
            vpc_id=VPC_ID, subnet_ids=list(PUBLIC), target_port=8080, health_check_path="/health"
        ),
    )
    PublicEntry(
        "tls",
        PublicEntryArgs(
            vpc_id=VPC_ID,
            subnet_ids=list(PUBLIC),
            target_port=8080,
            health_check_path="/health",
            certificate_arn=CERTIFICATE,
        ),
    )
    # A domain whose certificate ACM issues (zone by id), pointed at a load balancer ...
    PublicDomain("requested", PublicDomainArgs(name="app.example.org", zone_id=ZONE_ID)).route_to(
        ALB_DNS, ALB_ZONE
    )
    # ... and one with a certificate the platform team already has (zone looked up by name).
    PublicDomain(
        "given",
        PublicDomainArgs(
            name="www.example.net", zone_name="example.net", certificate_arn=CERTIFICATE
        ),
    )
