"""A service's container image: an ECR repository and the image built from apps/ into it.

The task definition takes `image_uri`, which awsx returns pinned by digest
(`<repository>@sha256:...`): a task always runs the exact bytes that were built, and a changed
image means a changed task definition, hence a deployment. A tag could be moved under a running
service; a digest cannot.
"""

import json
from typing import TypedDict

import pulumi
import pulumi_aws as aws
import pulumi_awsx as awsx

# Each `pulumi up` that changes an image moves the repository's single tag to the new image and
# leaves the old one untagged. Keep the last few: a circuit-breaker rollback, or a manual one to
# an older task definition, needs its image still there.
UNTAGGED_IMAGES_KEPT = 10


def lifecycle_policy(keep_untagged: int) -> str:
    return json.dumps(
        {
            "rules": [
                {
                    "rulePriority": 1,
                    "description": f"Keep the {keep_untagged} most recent untagged images",
                    "selection": {
                        "tagStatus": "untagged",
                        "countType": "imageCountMoreThan",
                        "countNumber": keep_untagged,
                    },
                    "action": {"type": "expire"},
                }
            ]
        }
    )


class ServiceImageArgs(TypedDict):
    context: str
    """The build context, relative to the directory Pulumi runs the program in. Relative on
    purpose: awsx derives the image's tag from these strings, so an absolute path would retag
    the image on every machine that deploys."""
    dockerfile: str
    """The Dockerfile, relative like `context`."""
    platform: str
    """Docker platform, e.g. linux/amd64. Always set: left out, Docker builds for the machine
    that runs `pulumi up`, and an Apple Silicon laptop would ship arm64 images to x86_64 tasks."""


class ServiceImage(pulumi.ComponentResource):
    """An ECR repository (scanned on push, untagged images expire) and an image built with
    Docker and pushed to it, pinned by digest."""

    repository_url: pulumi.Output[str]
    image_uri: pulumi.Output[str]
    """`<repository>@sha256:...`: a task runs exactly the bytes built."""

    def __init__(
        self, name: str, args: ServiceImageArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("fargate-service-discovery:image:ServiceImage", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        repository = aws.ecr.Repository(
            name,
            name=f"{pulumi.get_project()}-{pulumi.get_stack()}/{name}".lower(),  # CI scopes by it
            # `pulumi destroy` must not stop at a repository that still holds images.
            force_delete=True,
            image_scanning_configuration=aws.ecr.RepositoryImageScanningConfigurationArgs(
                scan_on_push=True
            ),
            # Mutable because awsx pushes every build under the same tag; deployments never
            # read the tag (they use the digest), so its mutability costs nothing.
            image_tag_mutability="MUTABLE",
            opts=child,
        )
        aws.ecr.LifecyclePolicy(
            name,
            repository=repository.name,
            policy=lifecycle_policy(UNTAGGED_IMAGES_KEPT),
            # Every field forces a replacement; create-then-delete would delete the new policy.
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
        )
        image = awsx.ecr.Image(
            name,
            repository_url=repository.repository_url,
            context=args["context"],
            dockerfile=args["dockerfile"],
            platform=args["platform"],
            opts=child,
        )

        self.repository_url = repository.repository_url
        self.image_uri = image.image_uri
        self.register_outputs({"repositoryUrl": self.repository_url, "imageUri": self.image_uri})
