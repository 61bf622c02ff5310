"""The two services of the pattern and the discovery client they share.

- ``apps.name``: the backend, answers ``<Name> (from <hostname>)``.
- ``apps.hello``: the front, finds name's tasks through DNS (Cloud Map) and
  answers ``Hello (from <hostname>) <name's answer>``.
- ``apps.discovery``: the reusable client-side discovery and load-balancing
  library (DNS cache, power-of-two-choices balancer, retry budget, upstream client).
- ``apps.common``: the services' runtime (env parsing, JSON logs, drain on SIGTERM).
- ``apps.healthcheck``: a tiny probe for the ECS container health check.
"""
