"""The benchmark: hello's discovery client beside an nginx keep-alive proxy, and more.

``./dev bench`` (``python -m bench``) starts, on loopback, a Cloud Map stand-in
(``local.dns``), three name replicas, one hello and one nginx proxying to the same
three replicas, loads each with wrk and prints requests/s, p50/p99 latency, errors
and DNS queries per request, then hello's ratios to nginx against the issue's aims.

Modules:

- ``wrk``: the wrk command, its Lua ``done`` hook and the parser of what it prints;
- ``nginx``: the reference proxy's configuration;
- ``prom``: reading counters out of the services' ``/metrics``;
- ``report``: rows, the table and the aims;
- ``procs``: starting and always stopping child processes;
- ``orphan``: makes a child die with the bench, even when the bench is SIGKILLed;
- ``run``: the scenario, row by row;
- ``openloop``: the open-loop load of the gray and the zone rows;
- ``gray``, ``slowname``: the gray-failure rows (a replica frozen, slow, or all down);
- ``zones``: discovery at scale and by zone on the real local stack, the stacks and
  rows; ``zonestats``: those rows' figures and aims, pure functions of the calls.

docs/bench.md has the method and the figures.
"""
