"""What every service on the cluster shares: the ECS cluster, the role Fargate uses to start
tasks, and the Cloud Map namespace the services register in.
"""

import json
from typing import NotRequired, TypedDict

import pulumi
import pulumi_aws as aws


class AwsContext(TypedDict):
    """Region, account and partition, looked up once per stack and passed where needed."""

    region: pulumi.Input[str]
    """The stack's region, e.g. eu-west-1."""
    account_id: pulumi.Input[str]
    """The stack's AWS account ID."""
    partition: pulumi.Input[str]
    """The account's partition: aws, aws-cn or aws-us-gov."""


def execution_role_trust_policy(partition: str, region: str, account_id: str) -> str:
    """Only ECS tasks of this account and region may assume the role.

    The conditions close the confused-deputy hole: without them, ECS acting for any account
    could be talked into using this role.
    """
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "ecs-tasks.amazonaws.com"},
                    "Action": "sts:AssumeRole",
                    "Condition": {
                        "ArnLike": {
                            "aws:SourceArn": f"arn:{partition}:ecs:{region}:{account_id}:*"
                        },
                        "StringEquals": {"aws:SourceAccount": account_id},
                    },
                }
            ],
        }
    )


class PlatformArgs(TypedDict):
    vpc_id: pulumi.Input[str]
    """The VPC the Cloud Map namespace's private hosted zone is attached to."""
    namespace: str
    """The namespace's DNS name; services become <service>.<namespace>."""
    cluster_name: str
    """The cluster's name, as operators see it in the console and CLI."""
    aws: AwsContext
    """Region, account and partition: the execution role trusts only this account's tasks."""
    service_connect: NotRequired[bool]
    """Also an HTTP Cloud Map namespace, `<cluster_name>-connect`, set as the cluster's Service
    Connect default (docs/service-connect.md); default false."""


# The providers the services' capacity provider strategies may name (config.Capacity). Both are
# attached whatever the stack's strategy: attaching costs nothing, and a strategy change then
# never has to wait for (or be ordered against) a change of the cluster.
CAPACITY_PROVIDERS = ("FARGATE", "FARGATE_SPOT")


class Platform(pulumi.ComponentResource):
    """What every service on a cluster shares: the ECS cluster (FARGATE and FARGATE_SPOT
    attached), the task execution role, and the Cloud Map private DNS namespace."""

    cluster_arn: pulumi.Output[str]
    """The cluster's ARN, known once its capacity providers are attached (see __init__)."""
    cluster_name: pulumi.Output[str]
    execution_role_arn: pulumi.Output[str]
    """The role Fargate starts tasks with, known once its managed policy is attached."""
    namespace_id: pulumi.Output[str]
    namespace_name: pulumi.Output[str]
    service_connect_namespace_arn: pulumi.Output[str]
    """The Service Connect namespace's ARN, or "" without service_connect."""

    def __init__(
        self, name: str, args: PlatformArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("fargate-service-discovery:platform:Platform", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        # Service Connect's namespace: HTTP (API discovery only), apart from the DNS namespace
        # whose `name` record the DNS mode keeps during a switch. The cluster's default takes
        # its ARN (the provider validates an ARN; terraform-provider-aws ecs/cluster.go), and
        # once set it stays set: removing the block sends nothing, so AWS keeps it and every
        # later read shows a diff (provider notes).
        connect = (
            aws.servicediscovery.HttpNamespace(
                f"{name}-connect",
                name=f"{args['cluster_name']}-connect",
                description="Service Connect endpoints of this stack's services",
                opts=child,
            )
            if args.get("service_connect", False)
            else None
        )
        cluster = aws.ecs.Cluster(
            name,
            name=args["cluster_name"],
            # Per-task and per-service CPU, memory and network metrics in CloudWatch.
            settings=[aws.ecs.ClusterSettingArgs(name="containerInsights", value="enabled")],
            service_connect_defaults=(
                aws.ecs.ClusterServiceConnectDefaultsArgs(namespace=connect.arn)
                if connect is not None
                else None
            ),
            opts=child,
        )

        # Its own resource, not the cluster's deprecated capacity_providers argument (the two
        # would fight). The provider sends PutClusterCapacityProviders with the whole list on
        # create and update, waits for the cluster to be ACTIVE, retries ResourceInUse and
        # UpdateInProgress; delete sends empty lists. No default strategy: each service names
        # its own, so nothing depends on the cluster default.
        capacity_providers = aws.ecs.ClusterCapacityProviders(
            name,
            cluster_name=cluster.name,
            capacity_providers=list(CAPACITY_PROVIDERS),
            opts=child,
        )
        # A service that names a capacity provider in its strategy must be created after this
        # (ECS refuses a strategy naming a provider the cluster lacks) and deleted before it
        # (PutClusterCapacityProviders fails with ResourceInUse while a service uses one).
        # Not a schema output (a resource there would write pulumi-aws's version into the
        # package's schema): cluster_arn carries the same dependency, for package consumers.
        self.capacity_providers: aws.ecs.ClusterCapacityProviders = capacity_providers

        # The role the Fargate agent (not the application) uses to pull images from ECR and
        # write container logs. The tasks themselves get no role: the services call no AWS API.
        role = aws.iam.Role(
            f"{name}-task-execution",
            description="Lets Fargate pull this stack's images and ship its task logs",
            path="/fargate-service-discovery/",  # the CI deploy role manages roles under it only
            assume_role_policy=pulumi.Output.all(
                args["aws"]["partition"], args["aws"]["region"], args["aws"]["account_id"]
            ).apply(lambda v: execution_role_trust_policy(v[0], v[1], v[2])),
            opts=child,
        )
        attachment = aws.iam.RolePolicyAttachment(
            f"{name}-task-execution",
            role=role.name,
            policy_arn=pulumi.Output.concat(
                "arn:",
                args["aws"]["partition"],
                ":iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy",
            ),
            opts=child,
        )

        namespace = aws.servicediscovery.PrivateDnsNamespace(
            name,
            name=args["namespace"],
            description="Service discovery for the tasks of this stack",
            vpc=args["vpc_id"],
            opts=child,
        )

        # Handed out only once the capacity providers are attached, so whatever runs on the
        # cluster (through this program or the component package, where no resource can be
        # passed) is created after them and deleted before them.
        self.cluster_arn = pulumi.Output.all(cluster.arn, capacity_providers.id).apply(
            lambda v: v[0]
        )
        self.cluster_name = cluster.name
        # The ARN is handed out only once the policy is attached: task definitions (and so the
        # ECS services) then depend on the attachment, so no task launches with a role that
        # cannot pull its image or write its logs yet, and `pulumi destroy` detaches the policy
        # only after the services (and their draining tasks, which still ship logs) are gone.
        # Without this, both run in parallel with the attachment.
        self.execution_role_arn = pulumi.Output.all(role.arn, attachment.id).apply(lambda v: v[0])
        self.namespace_id = namespace.id
        self.namespace_name = namespace.name
        self.service_connect_namespace_arn = (
            connect.arn if connect is not None else pulumi.Output.from_input("")
        )
        self.register_outputs(
            {
                "serviceConnectNamespaceArn": self.service_connect_namespace_arn,
                "clusterArn": self.cluster_arn,
                "clusterName": self.cluster_name,
                "executionRoleArn": self.execution_role_arn,
                "namespaceId": self.namespace_id,
                "namespaceName": self.namespace_name,
            }
        )
