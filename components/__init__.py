"""The stack's building blocks, one ComponentResource per file, each with its own typed args.

network   VPC with public and private subnets (new, via awsx, or an existing one)
platform  ECS cluster, task execution role, Cloud Map private DNS namespace
image     ECR repository and the image built from apps/ and pushed to it
service   a Fargate service for any image, registered in Cloud Map (name and hello are two uses)
entry     the public Application Load Balancer in front of hello

No component imports the stack's configuration (stack/ maps the settings to these args), so the
folder can be copied into another program (tests/infra/test_copy.py does).
"""
