"""The stack's public name: a certificate browsers accept for it, and its record in Route 53.

With a domain, visitors reach the load balancer as `https://<domain>/`. This component owns the
name's side of that: an ACM certificate for the name, validated through DNS in the name's public
hosted zone (or a certificate the platform team already has), and the alias record that points
the name at the load balancer (`route_to`, called once the load balancer exists, the way
`DiscoverableService.allow_from` adds a flow once both ends exist).

Order on AWS, which the dependencies enforce: certificate -> validation record ->
CertificateValidation (waits until ACM has issued the certificate) -> HTTPS listener (takes the
certificate's ARN from the validation, so it never attaches a certificate still pending).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NotRequired, TypedDict

import pulumi
import pulumi_aws as aws

# The validation CNAME only has to be seen by ACM (now and at each renewal); five minutes is
# Route 53's usual TTL for records that rarely change.
VALIDATION_RECORD_TTL = 300


class PublicDomainArgs(TypedDict):
    name: str
    """The DNS name visitors use, e.g. hello.example.com."""
    zone_id: NotRequired[str | None]
    """The Route 53 public hosted zone that holds `name` (this or zone_name)."""
    zone_name: NotRequired[str | None]
    """The public hosted zone's name, to look its ID up (when zone_id is unset)."""
    certificate_arn: NotRequired[str | None]
    """A certificate for `name` in the stack's region; unset: request one from ACM."""


@dataclass(frozen=True)
class ValidationRecord:
    """The CNAME that proves to ACM that we control the name."""

    name: str
    type: str
    value: str


def validation_record(
    options: Sequence[aws.acm.outputs.CertificateDomainValidationOption],
) -> ValidationRecord:
    """The one validation record of a single-name certificate, as Route 53 wants it.

    ACM answers with a trailing dot on the name; the provider stores record names without one.
    """
    if len(options) != 1:
        raise ValueError(f"expected one domain validation option, got {len(options)}")
    (option,) = options
    name, type_, value = (
        option.resource_record_name,
        option.resource_record_type,
        option.resource_record_value,
    )
    if not (name and type_ and value):
        raise ValueError(f"incomplete domain validation option for {option.domain_name}")
    return ValidationRecord(name=name.rstrip("."), type=type_, value=value)


class PublicDomain(pulumi.ComponentResource):
    """A public name for a load balancer: an ACM certificate for it, validated through DNS in
    its Route 53 public hosted zone (or a certificate given). The alias record pointing the
    name at the load balancer is the method `route_to` (Python programs only: the component
    package serves no methods)."""

    certificate_arn: pulumi.Output[str]
    """The certificate an HTTPS listener serves, known only once ACM has issued it."""
    zone_id: pulumi.Output[str]
    url: pulumi.Output[str]

    def __init__(
        self, name: str, args: PublicDomainArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("fargate-service-discovery:domain:PublicDomain", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self._name = name
        self._domain = args["name"]
        zone_id, zone_name = args.get("zone_id"), args.get("zone_name")
        certificate_arn = args.get("certificate_arn")

        if zone_id is not None:
            self.zone_id = pulumi.Output.from_input(zone_id)
        elif zone_name is not None:
            # Public zones only: ACM validates through public DNS, and visitors resolve there.
            zone = aws.route53.get_zone_output(
                name=zone_name,
                private_zone=False,
                opts=pulumi.InvokeOutputOptions(parent=self),
            )
            self.zone_id = zone.zone_id
        else:
            raise ValueError("PublicDomainArgs needs zone_id or zone_name")

        if certificate_arn is not None:
            self.certificate_arn = pulumi.Output.from_input(certificate_arn)
        else:
            certificate = aws.acm.Certificate(
                name,
                domain_name=self._domain,
                validation_method="DNS",
                opts=child,
            )
            wanted = certificate.domain_validation_options.apply(validation_record)
            record = aws.route53.Record(
                f"{name}-validation",
                zone_id=self.zone_id,
                name=wanted.apply(lambda r: r.name),
                type=wanted.apply(lambda r: r.type),
                records=[wanted.apply(lambda r: r.value)],
                ttl=VALIDATION_RECORD_TTL,
                # ACM derives the validation record from the account and the name, so every
                # certificate for this name in this account needs the same record: a replacement
                # certificate, or one requested earlier by hand, finds it already there. UPSERT
                # instead of CREATE, so that case does not fail; the value written is the same.
                allow_overwrite=True,
                opts=child,
            )
            validation = aws.acm.CertificateValidation(
                name,
                certificate_arn=certificate.arn,
                validation_record_fqdns=[record.fqdn],
                opts=child,
            )
            self.certificate_arn = validation.certificate_arn

        self.url = pulumi.Output.from_input(f"https://{self._domain}/")
        self.register_outputs(
            {"certificateArn": self.certificate_arn, "zoneId": self.zone_id, "url": self.url}
        )

    def route_to(
        self, dns_name: pulumi.Input[str], zone_id: pulumi.Input[str]
    ) -> aws.route53.Record:
        """Point the name at a load balancer: an alias A record (no TTL, no query charge)."""
        return aws.route53.Record(
            f"{self._name}-alias",
            zone_id=self.zone_id,
            name=self._domain,
            type="A",
            aliases=[
                aws.route53.RecordAliasArgs(
                    name=dns_name,
                    zone_id=zone_id,
                    # One record and nowhere else to send visitors: answering by health would
                    # only turn an outage into a DNS failure.
                    evaluate_target_health=False,
                )
            ],
            # CREATE, not UPSERT: a record someone already has at this name (the old site) makes
            # `pulumi up` fail instead of being taken over silently.
            allow_overwrite=False,
            opts=pulumi.ResourceOptions(parent=self),
        )
