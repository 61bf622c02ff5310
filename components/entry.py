"""The public entry: an internet-facing Application Load Balancer in front of hello.

Open to the world on TCP 80, and on 443 when a certificate is given (80 then only redirects to
443). The ALB's security group gets no egress here: the target service grants it exactly one flow
with `DiscoverableService.allow_from` (TCP to hello's port), which also carries the ALB's health
checks.

Only what a visitor needs reaches hello: the path `/` (any query string). Every other path gets a
fixed 404 from the load balancer itself, so hello's `/metrics` (the private address of every name
task, failure counters) and `/health` stay inside the VPC. An allow-list rather than a rule that
blocks `/metrics`: aiohttp also routes `/%6Detrics` (percent-encoded letters) and absolute-form
targets (`GET http://host/metrics`) to the metrics handler, and AWS documents path patterns as
case-sensitive wildcards with no word on percent-decoding, so a deny rule cannot be shown to
catch every spelling; `/` alone can (tests/infra/test_public_paths.py).
"""

from collections.abc import Sequence
from typing import NotRequired, TypedDict

import pulumi
import pulumi_aws as aws

# TLS 1.3 with 1.2 as the floor: AWS's recommended policy for ALBs.
SSL_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
# Kept below hello's idle keep-alive (60 s: KEEPALIVE_TIMEOUT_SECONDS in apps/common/server.py;
# tests/apps/test_hygiene.py checks the order), so the ALB, never the target, closes idle
# connections: otherwise a request can race a close and get a 502.
IDLE_TIMEOUT_SECONDS = 30
# The only path the internet may reach on hello (its greeting). ALB path patterns match the path
# without its query string, case-sensitively; without * or ? they match exactly.
PUBLIC_PATHS = ("/",)
# Priority of the rule that forwards PUBLIC_PATHS (1 to 50,000; the default rule comes last).
FORWARD_RULE_PRIORITY = 1
# What every other path gets, from the load balancer itself.
NOT_FOUND_BODY = "not found\n"

# Seconds the ALB keeps a deregistering target for requests already in flight. Hello answers in
# at most a few seconds (its request timeout is 2 s per attempt), so ten is plenty, and a
# deployment does not wait the default 300 s per task.
DEREGISTRATION_DELAY_SECONDS = 10


class PublicEntryArgs(TypedDict):
    vpc_id: pulumi.Input[str]
    subnet_ids: pulumi.Input[Sequence[pulumi.Input[str]]]
    """Public subnets, in at least two availability zones."""
    target_port: int
    """The port the targets (the tasks behind the load balancer) listen on."""
    health_check_path: str
    """The path the load balancer checks on each target; 200 means healthy."""
    certificate_arn: NotRequired[pulumi.Input[str] | None]
    """Serve HTTPS with this certificate (its name must be the one visitors use, see
    PublicDomain); unset: plain HTTP on the load balancer's own name."""


class PublicEntry(pulumi.ComponentResource):
    """An internet-facing Application Load Balancer that forwards only the path `/` to one
    target group (IP targets); every other path gets a 404 from the load balancer itself."""

    security_group_id: pulumi.Output[str]
    """The load balancer's security group: allow it into the targets (it has no egress)."""
    target_group_arn: pulumi.Output[str]
    """Known once the forwarding rule exists: ECS refuses a service whose target group has no
    load balancer yet, so a service that takes this ARN waits for the rule."""
    dns_name: pulumi.Output[str]
    zone_id: pulumi.Output[str]
    """The load balancer's canonical hosted zone, for alias records."""
    url: pulumi.Output[str]
    load_balancer_arn_suffix: pulumi.Output[str]
    """CloudWatch's name for the load balancer (`app/<name>/<id>`): the LoadBalancer metric
    dimension, and with the target group's the resource label of ALBRequestCountPerTarget."""
    target_group_arn_suffix: pulumi.Output[str]
    """CloudWatch's name for the target group (`targetgroup/<name>/<id>`)."""

    def __init__(
        self, name: str, args: PublicEntryArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("fargate-service-discovery:entry:PublicEntry", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        certificate_arn = args.get("certificate_arn")
        tls = certificate_arn is not None
        # Integers reach a component through the package as floats (Pulumi's provider SDK).
        target_port = int(args["target_port"])

        group = aws.ec2.SecurityGroup(
            name,
            description="Public load balancer",
            vpc_id=args["vpc_id"],
            opts=child,
        )
        for port in (80, 443) if tls else (80,):
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-world-{port}",
                security_group_id=group.id,
                description=f"Anyone on the internet, HTTP{'S' if port == 443 else ''}",
                ip_protocol="tcp",
                from_port=port,
                to_port=port,
                cidr_ipv4="0.0.0.0/0",
                opts=child,
            )

        balancer = aws.lb.LoadBalancer(
            name,
            load_balancer_type="application",
            internal=False,
            subnets=args["subnet_ids"],
            security_groups=[group.id],
            # Requests with malformed headers are dropped here instead of reaching hello.
            drop_invalid_header_fields=True,
            idle_timeout=IDLE_TIMEOUT_SECONDS,
            opts=child,
        )

        target_group = aws.lb.TargetGroup(
            name,
            # awsvpc tasks are registered by IP address, not by instance.
            target_type="ip",
            port=target_port,
            protocol="HTTP",
            vpc_id=args["vpc_id"],
            deregistration_delay=DEREGISTRATION_DELAY_SECONDS,
            health_check=aws.lb.TargetGroupHealthCheckArgs(
                path=args["health_check_path"],
                protocol="HTTP",
                matcher="200",
                interval=10,
                timeout=5,
                healthy_threshold=2,
                unhealthy_threshold=3,
            ),
            opts=child,
        )
        # Whatever no rule allows: a 404 answered by the load balancer; hello never sees it.
        not_found = [
            aws.lb.ListenerDefaultActionArgs(
                type="fixed-response",
                fixed_response=aws.lb.ListenerDefaultActionFixedResponseArgs(
                    content_type="text/plain", message_body=NOT_FOUND_BODY, status_code="404"
                ),
            )
        ]

        # The listener that serves visitors (HTTPS with a certificate, else HTTP). It and the
        # rule are attributes for this program, not schema outputs (a resource there would
        # write pulumi-aws's version into the package's schema).
        self.listener: aws.lb.Listener
        if tls:
            self.listener = aws.lb.Listener(
                f"{name}-https",
                load_balancer_arn=balancer.arn,
                port=443,
                protocol="HTTPS",
                ssl_policy=SSL_POLICY,
                certificate_arn=certificate_arn,
                default_actions=not_found,
                opts=child,
            )
            aws.lb.Listener(
                f"{name}-http",
                load_balancer_arn=balancer.arn,
                port=80,
                protocol="HTTP",
                default_actions=[
                    aws.lb.ListenerDefaultActionArgs(
                        type="redirect",
                        redirect=aws.lb.ListenerDefaultActionRedirectArgs(
                            protocol="HTTPS", port="443", status_code="HTTP_301"
                        ),
                    )
                ],
                opts=child,
            )
        else:
            self.listener = aws.lb.Listener(
                f"{name}-http",
                load_balancer_arn=balancer.arn,
                port=80,
                protocol="HTTP",
                default_actions=not_found,
                opts=child,
            )
        # The rule that ties the target group to the load balancer (it forwards PUBLIC_PATHS):
        # ECS refuses a service whose target group has no load balancer yet, so hello waits for
        # it (target_group_arn below carries the same dependency, for package consumers).
        self.forwarding: aws.lb.ListenerRule = aws.lb.ListenerRule(
            f"{name}-public",
            listener_arn=self.listener.arn,
            # Explicit: unset, the provider takes the next free priority at create time, so a
            # rule's place among any others would depend on the order they were created in.
            priority=FORWARD_RULE_PRIORITY,
            conditions=[
                aws.lb.ListenerRuleConditionArgs(
                    path_pattern=aws.lb.ListenerRuleConditionPathPatternArgs(
                        values=list(PUBLIC_PATHS)
                    )
                )
            ],
            actions=[
                aws.lb.ListenerRuleActionArgs(type="forward", target_group_arn=target_group.arn)
            ],
            opts=child,
        )

        self.security_group_id = group.id
        self.target_group_arn = pulumi.Output.all(target_group.arn, self.forwarding.arn).apply(
            lambda v: v[0]
        )
        self.dns_name = balancer.dns_name
        self.zone_id = balancer.zone_id
        self.load_balancer_arn_suffix = balancer.arn_suffix
        self.target_group_arn_suffix = target_group.arn_suffix
        # The load balancer's own name is only ever served over plain HTTP: no certificate can
        # match *.elb.amazonaws.com (stack/parse.py refuses certificateArn without a domain).
        self.url = pulumi.Output.concat("http://", balancer.dns_name)
        self.register_outputs(
            {
                "securityGroupId": self.security_group_id,
                "targetGroupArn": self.target_group_arn,
                "dnsName": self.dns_name,
                "zoneId": self.zone_id,
                "url": self.url,
                "loadBalancerArnSuffix": self.load_balancer_arn_suffix,
                "targetGroupArnSuffix": self.target_group_arn_suffix,
            }
        )
