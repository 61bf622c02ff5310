"""The local stack: the whole system on one machine, with no AWS account.

``python -m local`` (``./dev up``) starts a Cloud Map stand-in (DNS), the services as
real processes on their own loopback addresses (the local ECS), and a front on
127.0.0.1 in the role of the ALB. ``python -m local.control`` drives it while it runs.
See docs/local.md.
"""
