"""The scenario: one stack on loopback, then the rows, each warmed up and measured alike.

Stack: the Cloud Map stand-in (``local.dns``) on 127.0.0.1 listing ``name.internal``
as 127.0.0.2-4 for the whole run, one name replica on each of those addresses, one
hello resolving through the stand-in, and nginx proxying to the same three replicas.

Rows, in order (each after a warm-up with every replica up):

1. and 2. nginx and hello, steady, measured in interleaved slices (nginx, hello,
   nginx, hello...) and summed, so that the other work on a shared machine weighs
   on both alike;
   then the same pair paced at an equal offered load, half of hello's steady
   throughput: latency without queueing (informational);
3. hello, with name-2 SIGKILLed a few seconds into the run (DNS keeps listing it);
4. nginx, the same (after name-2 is restarted), for symmetry;
5. hello, with name-2 frozen (SIGSTOP) instead: it accepts connections (the kernel
   completes the handshake) but never answers, the closest loopback gets to a task
   whose network vanished. Informational, no aim.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from apps import ENVIRONMENT
from bench import prom, wrk
from bench.nginx import NginxSite, render
from bench.procs import Child, Children, HarnessError
from bench.report import Row, merge
from local.dns import CloudMapStandIn, Registry

NAME_ADDRESSES = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
FRONT = "127.0.0.1"  # hello, nginx and the DNS stand-in
NAMESPACE = "internal"
SERVICE = "name"
VICTIM = 1  # name-2, on 127.0.0.3: the replica killed or frozen mid-run

# Generous: two cores are shared with other work, and a replica's start costs a
# Python interpreter plus aiohttp's imports.
READY_SECONDS = 60.0
SETTLE_SECONDS = 90.0  # above hello's longest ejection (30 s) plus a refresh
POLL_SECONDS = 0.1
# Paced rows: offered load as a share of hello's steady throughput.
PACED_SHARE = 0.5

# Direct connections only: an http_proxy in the environment must not see loopback calls.
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class Options:
    duration: float = 12.0
    warmup: float = 3.0
    disrupt_after: float = 4.0
    rounds: int = 3
    paced_rows: bool = True
    """Steady rows: this many interleaved slices per target, duration / rounds each."""
    load: wrk.Load = field(default_factory=wrk.Load)
    nginx_workers: int = 1
    frozen_row: bool = True


@dataclass(frozen=True)
class Tools:
    nginx: str
    wrk: str


@dataclass(frozen=True)
class Results:
    nginx: Row
    hello: Row
    hello_killed: Row
    nginx_killed: Row
    hello_frozen: Row | None
    nginx_paced: Row | None = None
    hello_paced: Row | None = None
    paced_delay_ms: int | None = None

    def rows(self) -> list[Row]:
        ordered = [self.nginx, self.hello, self.nginx_paced, self.hello_paced]
        ordered += [self.hello_killed, self.nginx_killed, self.hello_frozen]
        return [row for row in ordered if row is not None]

    def to_json(self) -> str:
        def row(r: Row) -> dict[str, object]:
            data = asdict(r)
            data["rps"] = round(r.result.rps, 1)
            data["errors"] = r.result.errors
            data["dns_per_request"] = r.dns_per_request
            return data

        return json.dumps([row(r) for r in self.rows()], indent=2)


def free_port(hosts: Sequence[str], *, udp: bool = False) -> int:
    """A port free now for TCP (and UDP) on every one of ``hosts``."""

    def free(host: str, port: int, kind: socket.SocketKind) -> bool:
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                return False
        return True

    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((hosts[0], 0))
            port = int(sock.getsockname()[1])
        kinds = (socket.SOCK_STREAM, socket.SOCK_DGRAM) if udp else (socket.SOCK_STREAM,)
        if all(free(host, port, kind) for host in hosts for kind in kinds):
            return port
    raise HarnessError(f"no port free on all of {', '.join(hosts)}")


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    """Status and body of a GET; (0, reason) when nothing answered."""
    try:
        with HTTP.open(url, timeout=timeout) as response:
            return int(response.status), response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except (OSError, urllib.error.URLError) as exc:
        return 0, str(exc)


def served(base: str) -> int | None:
    """Requests to ``/`` a replica at ``base`` (``http://host:port``) has served, from its
    ``/metrics``; None when it does not answer."""
    status, text = http_get(f"{base}/metrics", timeout=0.5)
    if status != 200:
        return None
    return int(prom.total(prom.parse(text), "http_requests_total", route="/"))


def set_delay(base: str, seconds: float) -> None:
    """Hold back every later answer of the ``bench.slowname`` replica at ``base``."""
    request = urllib.request.Request(f"{base}/_bench/delay?seconds={seconds}", method="POST")
    with HTTP.open(request, timeout=2.0) as response:
        if response.status != 200:
            raise HarnessError(f"could not set the delay of {base}")


def run_load(
    bench: Bench,
    argv: Sequence[str],
    seconds: float,
    during: Callable[[float], None] | None = None,
    after: Callable[[], None] | None = None,
    poll: float = 0.05,
) -> dict[str, Any]:
    """Run a load generator (``argv``, given one more argument: the file it writes its JSON
    summary to) in a process of its own, calling ``during(elapsed)`` while it runs and
    ``after()`` once it ended; the summary it wrote."""
    out = bench.workdir / f"load-{time.monotonic_ns()}.json"
    program = Children.program([*argv, str(out)], signal.SIGKILL)
    child = bench.children.start("load", program, bench.env)
    started = time.monotonic()
    try:
        while child.popen.poll() is None:
            if time.monotonic() - started > seconds + 30:
                raise HarnessError("the load did not finish in time")
            if during is not None:
                during(time.monotonic() - started)
            time.sleep(poll)
    finally:
        bench.children.stop(child)
        if after is not None:
            after()
    if child.popen.returncode != 0 or not out.exists():
        raise HarnessError(f"the load ({argv[2]}) failed:\n{child.tail()}")
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def wait_until(what: str, ready: Callable[[], bool], seconds: float, child: Child | None) -> None:
    """Poll ``ready`` until true; HarnessError on timeout or if ``child`` exits first."""
    deadline = time.monotonic() + seconds
    while not ready():
        if child is not None and not child.running():
            raise HarnessError(f"{child.label} exited while waiting for {what}:\n{child.tail()}")
        if time.monotonic() > deadline:
            tail = f":\n{child.tail()}" if child is not None else ""
            raise HarnessError(f"timed out after {seconds:g}s waiting for {what}{tail}")
        time.sleep(POLL_SECONDS)


class Bench:
    def __init__(self, options: Options, tools: Tools | None, workdir: Path) -> None:
        """``tools`` None: only the DNS stand-in and children (the gray rows), no wrk rows."""
        self.options = options
        self.tools = tools
        self.workdir = workdir
        self.children = Children(workdir)
        self.registry = Registry()
        self.dns: CloudMapStandIn | None = None
        self.names: list[Child] = []
        self.name_port = 0
        self.hello_url = ""
        self.nginx_url = ""
        self._script = workdir / "done.lua"
        self._script.write_text(wrk.script())
        self.env = {k: v for k, v in os.environ.items() if k not in ENVIRONMENT}
        self._runs = 0

    def _tools(self) -> Tools:
        if self.tools is None:
            raise HarnessError("the rows beside nginx need nginx and wrk")
        return self.tools

    # -- the stack -------------------------------------------------------------

    def start(self) -> None:
        self.start_dns()
        self.name_port = free_port(NAME_ADDRESSES)
        self.names = [self._start_name(i) for i in range(len(NAME_ADDRESSES))]
        for i, child in enumerate(self.names):
            self.wait_healthy(child, f"http://{NAME_ADDRESSES[i]}:{self.name_port}/health")
        self._start_hello()
        self._start_nginx()

    def close(self) -> None:
        self.children.stop_all()
        if self.dns is not None:
            self.dns.stop()

    def start_dns(self) -> None:
        for address in NAME_ADDRESSES:
            self.registry.register(SERVICE, IPv4Address(address))
        for _ in range(5):  # the port can be taken between the probe and the bind
            dns = CloudMapStandIn(
                self.registry, namespace=NAMESPACE, host=FRONT, port=free_port([FRONT], udp=True)
            )
            try:
                dns.start()
            except OSError:
                continue
            self.dns = dns
            return
        raise HarnessError("the DNS stand-in could not bind a port on 127.0.0.1")

    def _start_name(self, index: int) -> Child:
        hostname = f"name-{index + 1}"
        env = {
            **self.env,
            "HOST": NAME_ADDRESSES[index],
            "PORT": str(self.name_port),
            # The bench stops replicas at the end only; nothing to drain for.
            "DRAIN_SECONDS": "0",
        }
        return self.children.start(hostname, Children.service("apps.name", hostname), env)

    def wait_healthy(self, child: Child, url: str) -> None:
        wait_until(f"{url} to answer 200", lambda: http_get(url)[0] == 200, READY_SECONDS, child)

    def _start_hello(self) -> None:
        assert self.dns is not None
        port = free_port([FRONT])
        env = {
            **self.env,
            "HOST": FRONT,
            "PORT": str(port),
            "NAME_SERVER": f"http://{SERVICE}.{NAMESPACE}:{self.name_port}/",
            "DNS_SERVERS": f"{self.dns.host}:{self.dns.port}",
        }
        hello = self.children.start("hello", Children.service("apps.hello", "hello"), env)
        self.hello_url = f"http://{FRONT}:{port}/"
        # "/" (not /health): proves DNS and name are reachable through hello.
        self.wait_healthy(hello, self.hello_url)

    def _start_nginx(self) -> None:
        prefix = self.workdir / "nginx"
        prefix.mkdir()
        port = free_port([FRONT])
        site = NginxSite(
            listen=f"{FRONT}:{port}",
            upstreams=[f"{address}:{self.name_port}" for address in NAME_ADDRESSES],
            prefix=prefix,
            workers=self.options.nginx_workers,
        )
        conf = prefix / "nginx.conf"
        conf.write_text(render(site))
        # -e: nginx opens its compiled-in error log before reading the config.
        argv = [self._tools().nginx, "-p", str(prefix), "-e", str(prefix / "nginx-error.log")]
        argv += ["-c", str(conf)]
        # SIGTERM if the bench dies: nginx's fast shutdown, which stops its workers too.
        nginx = self.children.start("nginx", Children.program(argv, signal.SIGTERM), self.env)
        self.nginx_url = f"http://{FRONT}:{port}/"
        self.wait_healthy(nginx, f"{self.nginx_url}health")

    # -- disruptions -----------------------------------------------------------

    def kill_victim(self) -> str:
        victim = self.names[VICTIM]
        victim.signal(signal.SIGKILL)
        return f"{victim.label} ({NAME_ADDRESSES[VICTIM]}) SIGKILLed; DNS kept listing it"

    def freeze_victim(self) -> str:
        victim = self.names[VICTIM]
        victim.signal(signal.SIGSTOP)
        return f"{victim.label} ({NAME_ADDRESSES[VICTIM]}) frozen by SIGSTOP; DNS kept listing it"

    def thaw_victim(self) -> None:
        self.names[VICTIM].signal(signal.SIGCONT)

    def restart_victim(self) -> None:
        self.children.stop(self.names[VICTIM])
        child = self._start_name(VICTIM)
        self.names[VICTIM] = child
        self.wait_healthy(child, f"http://{NAME_ADDRESSES[VICTIM]}:{self.name_port}/health")

    def settle_hello(self) -> None:
        """Wait until hello knows all three addresses and ejects none of them.

        After a disruption, hello readmits the replica once its ejection period
        (which doubled with each failed probe) ends; without this wait the next
        hello row could begin with one replica still sidelined.
        """

        def settled() -> bool:
            status, text = http_get(f"{self.hello_url}metrics")
            if status != 200:
                return False
            samples = prom.parse(text)
            records = prom.total(samples, "discovery_dns_records")
            ejected = prom.total(samples, "hello_upstream_ejected")
            return records == len(NAME_ADDRESSES) and ejected == 0

        wait_until("hello to readmit every replica", settled, SETTLE_SECONDS, None)

    # -- measuring -------------------------------------------------------------

    def _wrk(
        self,
        url: str,
        seconds: float,
        during: Callable[[], str] | None,
        script: Path | None = None,
    ) -> tuple[wrk.WrkResult, str]:
        self._runs += 1
        script = script or self._script
        argv = wrk.command(self._tools().wrk, url, seconds, self.options.load, script)
        # wrk can take SIGKILL: it holds nothing that needs an orderly stop.
        child = self.children.start(
            f"wrk-{self._runs}", Children.program(argv, signal.SIGKILL), self.env
        )
        started = time.monotonic()
        event = ""
        if during is not None:
            time.sleep(self.options.disrupt_after)
            event = f"{time.monotonic() - started:.1f} s into the run: {during()}"
        try:
            child.popen.wait(seconds + 60)
        except Exception:
            self.children.stop(child)
            raise HarnessError(f"wrk did not finish within {seconds + 60:g}s") from None
        self.children.stop(child)
        output = child.log.read_text(errors="replace")
        if child.popen.returncode != 0:
            raise HarnessError(f"wrk exited with {child.popen.returncode}:\n{output[-2000:]}")
        try:
            return wrk.parse(output, self.options.load.connections), event
        except wrk.WrkOutputError as exc:
            raise HarnessError(str(exc)) from None

    def _served(self) -> list[int | None]:
        """Requests each name replica has served on "/" so far (None: no answer)."""
        counts: list[int | None] = []
        for address in NAME_ADDRESSES:
            status, text = http_get(f"http://{address}:{self.name_port}/metrics", timeout=1.0)
            if status != 200:
                counts.append(None)
                continue
            counts.append(int(prom.total(prom.parse(text), "http_requests_total", route="/")))
        return counts

    def _hello_counters(self) -> tuple[int, int]:
        status, text = http_get(f"{self.hello_url}metrics")
        if status != 200:
            raise HarnessError(f"hello's /metrics answered {status}: {text[:200]}")
        samples = prom.parse(text)
        return (
            int(prom.total(samples, "hello_upstream_retries_total")),
            int(prom.total(samples, "hello_upstream_ejections_total")),
        )

    def _dns_queries(self) -> int:
        assert self.dns is not None
        return sum(self.dns.queries().values())

    def _warm(self, label: str, url: str, script: Path | None = None) -> None:
        warm, _ = self._wrk(url, self.options.warmup, None, script)
        if warm.errors:
            print(f"    {label} warm-up: {warm.errors} errors ({warm.error_detail()})", flush=True)

    def _measure(
        self,
        label: str,
        url: str,
        seconds: float,
        *,
        hello: bool,
        disrupt: Callable[[], str] | None = None,
        script: Path | None = None,
    ) -> Row:
        """One wrk run, with what the stand-in and the services counted meanwhile."""
        served = self._served()
        counters = self._hello_counters() if hello else (0, 0)
        queries = self._dns_queries()
        result, event = self._wrk(url, seconds, disrupt, script)
        queries = self._dns_queries() - queries
        after = self._served()
        spread = [
            None if a is None or b is None else a - b for a, b in zip(after, served, strict=True)
        ]
        retries: int | None = None
        ejections: int | None = None
        if hello:
            now = self._hello_counters()
            retries, ejections = now[0] - counters[0], now[1] - counters[1]
        return Row(
            label=label,
            result=result,
            dns_queries=queries if hello else None,
            retries=retries,
            ejections=ejections,
            spread=spread,
            event=event,
        )

    @staticmethod
    def _show(row: Row) -> None:
        r = row.result
        print(f"    {r.rps:,.0f} req/s, p99 {r.p99_us / 1000:.2f} ms", flush=True)

    def interleaved(self, kind: str, script: Path | None = None) -> tuple[Row, Row]:
        """nginx and hello, all replicas up, measured in interleaved slices and summed.

        The machine is shared: a burst of someone else's work during one long row
        would skew the ratio. Alternating short slices (nginx, hello, nginx...)
        spreads such bursts over both rows alike.
        """
        o = self.options
        targets = (
            (f"nginx, {kind}", self.nginx_url, False),
            (f"hello, {kind}", self.hello_url, True),
        )
        seconds = o.duration / o.rounds
        print(
            f"--> {kind}: warm-up {o.warmup:g} s each, then {o.rounds} x {seconds:g} s "
            "per target, interleaved",
            flush=True,
        )
        for label, url, _ in targets:
            self._warm(label, url, script)
        slices: dict[str, list[Row]] = {label: [] for label, _, _ in targets}
        for _ in range(o.rounds):
            for label, url, is_hello in targets:
                slices[label].append(
                    self._measure(label, url, seconds, hello=is_hello, script=script)
                )
        nginx, hello = (merge(label, slices[label]) for label, _, _ in targets)
        for row in (nginx, hello):
            print(f"    {row.label}:", end="")
            self._show(row)
        return nginx, hello

    def paced(self, hello_steady: Row) -> tuple[Row, Row, int]:
        """The same pair at an equal offered load well below hello's capacity.

        Every connection pauses ``delay`` ms after each response, chosen so that the
        offered load is ``PACED_SHARE`` of hello's steady throughput. Neither target
        is saturated, so latency shows the cost of the hop itself rather than
        queueing (under saturation, a closed loop's latency is connections divided
        by throughput, so the slower target's p99 follows from its req/s).
        """
        target_rps = PACED_SHARE * hello_steady.result.rps
        delay_ms = max(1, round(1000 * self.options.load.connections / max(target_rps, 1.0)))
        script = self.workdir / "paced.lua"
        script.write_text(wrk.script(delay_ms))
        nginx, hello = self.interleaved("paced", script)
        return nginx, hello, delay_ms

    def disrupted(self, label: str, url: str, *, hello: bool, disrupt: Callable[[], str]) -> Row:
        o = self.options
        print(f"--> {label}: warm-up {o.warmup:g} s, run {o.duration:g} s", flush=True)
        self._warm(label, url)
        row = self._measure(label, url, o.duration, hello=hello, disrupt=disrupt)
        self._show(row)
        return row

    def run(self) -> Results:
        hello, nginx = self.hello_url, self.nginx_url
        nginx_steady, hello_steady = self.interleaved("steady")
        paced: tuple[Row, Row, int] | None = None
        if self.options.paced_rows:
            paced = self.paced(hello_steady)
        hello_killed = self.disrupted(
            "hello, 1 of 3 killed", hello, hello=True, disrupt=self.kill_victim
        )
        self.restart_victim()
        nginx_killed = self.disrupted(
            "nginx, 1 of 3 killed", nginx, hello=False, disrupt=self.kill_victim
        )
        self.restart_victim()
        hello_frozen = None
        if self.options.frozen_row:
            self.settle_hello()
            try:
                hello_frozen = self.disrupted(
                    "hello, 1 of 3 frozen", hello, hello=True, disrupt=self.freeze_victim
                )
            finally:
                self.thaw_victim()
        return Results(
            nginx_steady,
            hello_steady,
            hello_killed,
            nginx_killed,
            hello_frozen,
            nginx_paced=paced[0] if paced else None,
            hello_paced=paced[1] if paced else None,
            paced_delay_ms=paced[2] if paced else None,
        )


def versions(tools: Tools | None) -> Mapping[str, str]:
    """What produced the figures, for the report's header."""
    import importlib.metadata as metadata  # noqa: PLC0415 - only needed here
    import subprocess  # noqa: PLC0415

    def first_line(argv: list[str]) -> str:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        text = (done.stdout + done.stderr).strip()
        return text.splitlines()[0] if text else "unknown"

    def package(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    found = {}
    if tools is not None:
        found = {
            "nginx": first_line([tools.nginx, "-v"]).removeprefix("nginx version: "),
            "wrk": first_line([tools.wrk, "--version"]).split(" [")[0],
        }
    return {
        **found,
        "python": sys.version.split()[0],
        "aiohttp": package("aiohttp"),
        "uvloop": package("uvloop"),
        "aiohttp-discovery": package("aiohttp-discovery"),
        "cpus": str(os.cpu_count()),
        "load average": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
