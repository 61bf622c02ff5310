"""Component-level scenarios: each component on its own, with literal inputs, under mocks.

Run by the harness (`tests.infra.scenarios:components`); the assertions live in
test_components.py. Logical names are distinct so every scenario fits in one run.
"""

from __future__ import annotations

from components.domain import PublicDomain, PublicDomainArgs
from components.entry import PublicEntry, PublicEntryArgs
from components.image import ServiceImage, ServiceImageArgs
from components.network import Network, NetworkArgs
from components.platform import AwsContext, Platform, PlatformArgs
from components.service import DiscoverableService, DiscoverableServiceArgs
from config import ExistingVpc, NewVpc, ServiceSettings

VPC_ID = "vpc-0123456789abcdef0"
PUBLIC = ("subnet-0123456789abcdef1", "subnet-0123456789abcdef2")
PRIVATE = ("subnet-0123456789abcdef3", "subnet-0123456789abcdef4")
CALLER_GROUP = "sg-0123456789abcdef0"
IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/solo@sha256:" + "ab" * 32
CERTIFICATE = "arn:aws:acm:eu-west-1:123456789012:certificate/0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"
ZONE_ID = "Z0123456789ABCDEFGHIJ"
ALB_DNS = "given-1234567890.eu-west-1.elb.amazonaws.com"
ALB_ZONE = "Z32O12XQLNTSW2"
SOLO = ServiceSettings(cpu=512, memory=1024, desired_count=1, port=8080, drain_seconds=15)


def service_args(prefix: str, settings: ServiceSettings) -> DiscoverableServiceArgs:
    return DiscoverableServiceArgs(
        settings=settings,
        architecture="ARM64",
        image_uri=IMAGE,
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
    )


def components() -> None:
    Network("existing", NetworkArgs(vpc=ExistingVpc(VPC_ID, PUBLIC, PRIVATE)))
    Network("fresh", NetworkArgs(vpc=NewVpc("10.20.0.0/20", 3, "OnePerAz")))
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
    DiscoverableService("solo", service_args("test", SOLO))
    # With one caller allowed in.
    DiscoverableService("callee", service_args("test", SOLO)).allow_from("caller", CALLER_GROUP)
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
