"""The limits the stack's settings are checked against: AWS's (documented figures, each with its
source) and the timeline the drain rules add up. Fargate's own limits live with the component that
checks them (components/service.py) and are re-exported here for the settings' messages.
"""

import ipaddress
import re

from components.service import (
    CLOUD_MAP_PROPAGATION_SECONDS,
    FARGATE_MEMORY,
    STOP_GRACE_SECONDS,
    STOP_TIMEOUT_MAX,
    UNPRIVILEGED_PORT_MIN,
)

__all__ = [
    "FARGATE_MEMORY",
    "ROUTE53_PROPAGATION_SECONDS",
    "STOP_GRACE_SECONDS",
    "STOP_TIMEOUT_MAX",
    "UNPRIVILEGED_PORT_MIN",
]


def fargate_memory_text(cpu: int) -> str:
    """The memory sizes allowed with `cpu`, as a short human sentence."""
    sizes = FARGATE_MEMORY[cpu]
    if len(sizes) <= 4:
        return ", ".join(str(m) for m in sizes)
    return f"{sizes[0]} to {sizes[-1]} in steps of {sizes[1] - sizes[0]}"


# CloudWatch Logs accepts exactly these retention periods (days). "Never expire" is left out on
# purpose: task logs that never expire are a cost that only grows.
LOG_RETENTION_DAYS = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545,
    731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
)  # fmt: skip

# Records of a stopped task stay in clients' caches for up to the TTL, which the drain must
# cover; the drain rule (drain_covers_discovery) narrows this further.

# Records of a stopped task stay in clients' caches for up to the TTL, which the drain must
# cover; the drain rule (stack/rules.py) narrows this further.
DNS_TTL_MAX = 60
# The scale-in drain (docs/infrastructure.md, "How a scale-in costs no request"): Route 53's
# documented propagation, the figure components/service.py adds up (CLOUD_MAP_PROPAGATION_SECONDS).
ROUTE53_PROPAGATION_SECONDS = CLOUD_MAP_PROPAGATION_SECONDS
# Cloud Map documents no figure for its own step (DeregisterInstance is asynchronous, before the
# Route 53 change); the default drain keeps this much beyond the documented sum for it.
DRAIN_MARGIN_SECONDS = 10
DRAIN_SECONDS_MAX = STOP_TIMEOUT_MAX - STOP_GRACE_SECONDS
# ECS's default quota of tasks per service; a larger desiredCount is a typo, not a plan.
DESIRED_COUNT_MAX = 5000
# Fargate Spot: AWS reclaims a Spot task with a two-minute warning, delivered as SIGTERM (the
# same signal as a scale-in), and stops it at the end of the warning at the latest. A task whose
# stopTimeout fits in it finishes its drain before the reclaim; stopTimeout is capped at
# STOP_TIMEOUT_MAX (below), which is why Spot needs no rule of its own for name.
SPOT_INTERRUPTION_WARNING_SECONDS = 120
# Seconds the ALB lets in-flight requests finish on a deregistering target (the target group's
# deregistration delay, components/entry.py DEREGISTRATION_DELAY_SECONDS; a test keeps the two
# equal). On a scale-in ECS waits this long before SIGTERM; on a Spot interruption SIGTERM comes
# at once, so hello on Spot must keep serving at least this long (hello.drainSeconds).
ALB_DEREGISTRATION_DELAY_SECONDS = 10
# Application Auto Scaling, target tracking (components/autoscaling.py).
# A minimum of 0 cannot work with target tracking here: with no task there is no CPU average and
# no request count per target, so the policy could never scale out again.
MIN_COUNT_MIN = 1
# Average CPU of name's tasks: below 10% the service would scale out at idle; above 90% a burst
# saturates the tasks before the next task (a minute away) takes load.
TARGET_CPU_MIN, TARGET_CPU_MAX = 10, 90
# Requests per hello task per minute (ALBRequestCountPerTarget is a one-minute sum per target).
TARGET_REQUESTS_MIN, TARGET_REQUESTS_MAX = 10, 100_000
# Capacity provider strategy limits (ECS CapacityProviderStrategyItem: base 0-100000, weight
# 0-1000; only one provider of a strategy may have a base).
CAPACITY_BASE_MAX = 100_000
CAPACITY_WEIGHT_MAX = 1000
# An e-mail address for the alarm subscription: one @, a dot in the domain, no spaces (SNS
# checks deliverability itself: the address must confirm the subscription).
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
EMAIL_MAX = 254
# awsx places one public and one private subnet per zone; the largest regions have six zones.
AZ_MIN, AZ_MAX = 2, 6
# /16 is the largest VPC AWS allows; below /22 the per-zone subnets get too small for an ALB
# (which needs a /27 with 8 free addresses) once six zones share the range.
VPC_PREFIX_MIN, VPC_PREFIX_MAX = 16, 22

RFC1918 = tuple(
    ipaddress.IPv4Network(block) for block in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
)
DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
VPC_ID = re.compile(r"^vpc-(?:[0-9a-f]{8}|[0-9a-f]{17})$")
SUBNET_ID = re.compile(r"^subnet-(?:[0-9a-f]{8}|[0-9a-f]{17})$")
CERTIFICATE_ARN = re.compile(
    r"^arn:aws(?:-cn|-us-gov)?:acm:(?P<region>[a-z]{2}(?:-[a-z]+)+-\d):\d{12}:certificate/"
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
)
# Route 53 hosted zone ids: "Z" and up to 31 more upper-case letters and digits, bare (no
# "/hostedzone/" prefix, which the provider strips and would then show as a diff).
ZONE_ID = re.compile(r"^Z[A-Z0-9]{1,31}$")

# The containers run as user 10001 (stack/args.py, CONTAINER_USER; the images' USER), which
# cannot bind a port below UNPRIVILEGED_PORT_MIN on Fargate (components/service.py).
# Ports of the image's own processes (none today) are the only other limit inside the task.
PORT_MAX = 65535

# Namespaces that would shadow names the tasks need. A Cloud Map namespace is a Route 53 private
# hosted zone associated with the VPC; inside the VPC it answers every name under it, with
# NXDOMAIN for names it does not hold (Route 53 does not fall through to public DNS).
# - AWS service endpoints: the tasks pull images from ECR (<account>.dkr.ecr.<region>.
#   amazonaws.com, S3 for the layers) and ship logs to logs.<region>.amazonaws.com.
AWS_ENDPOINT_DOMAINS = ("amazonaws.com", "amazonaws.com.cn", "api.aws")
# - The VPC's own hostnames: ip-10-0-1-2.ec2.internal (us-east-1) and
#   ip-10-0-1-2.<region>.compute.internal (every other region).
VPC_HOSTNAME_DOMAINS = ("ec2.internal", "compute.internal")
# A one-label namespace is a top-level domain: allowed only when it can never be a public one.
# RFC 6762 appendix G lists these as in private use; ICANN reserved .internal for private use
# (2024). Anything else ("com", "net", "aws", "io", ...) would shadow a whole public TLD.
PRIVATE_TLDS = ("internal", "intranet", "private", "corp", "home", "lan")
# ACM puts the first domain name in the certificate's subject CN, which X.509 caps at 64.
ACM_DOMAIN_NAME_MAX = 64
# ECS cluster names and task definition families (both start with <project>-<stack>) allow
# letters, digits, hyphens and underscores only; Pulumi stack names may also contain dots.
ECS_NAME = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
