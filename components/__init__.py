"""The stack's building blocks, one ComponentResource per file.

network   VPC with public and private subnets (new, via awsx, or an existing one)
platform  ECS cluster, task execution role, Cloud Map private DNS namespace
image     ECR repository and the image built from apps/ and pushed to it
service   a Fargate service registered in Cloud Map (used for both name and hello)
entry     the public Application Load Balancer in front of hello
"""
