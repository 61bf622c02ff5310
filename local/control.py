"""``python -m local.control``: drive a running local stack through its control endpoint.

    python -m local.control status [--json]
    python -m local.control scale name 5 [--wait]
    python -m local.control kill name [127.0.1.3]
    python -m local.control dns stop [--mode drop|servfail|closed]
    python -m local.control dns start
    python -m local.control zone local-1a down [--service name]   # and: zone local-1a up
    python -m local.control rebalancing name off    # ECS's AZ rebalancing (on by default)
    python -m local.control deploy name [--env KEY=VALUE ...] [--wait [SECONDS]]

``--url`` (or ``LOCAL_CONTROL_URL``) picks the stack; the default is the one ``./dev up``
starts. Standard library only, so it answers instantly.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8081"


class ControlError(RuntimeError):
    pass


class Client:
    def __init__(self, url: str, timeout: float = 10.0) -> None:
        if not url.startswith(("http://127.", "http://localhost")):
            raise ControlError(f"the control endpoint is on loopback; got {url}")
        self.url = url.rstrip("/")
        self.timeout = timeout

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - http on loopback, checked above
            f"{self.url}/control/{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"} if method == "POST" else {},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return json.load(response)
        except urllib.error.HTTPError as error:
            try:
                message = json.load(error).get("error", error.reason)
            except ValueError:
                message = error.reason
            raise ControlError(f"{method} {path}: {error.code} {message}") from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise ControlError(f"no stack answering at {self.url} ({reason})") from None

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", "status")
        return result

    def scale(self, service: str, count: int) -> Any:
        return self.request("POST", f"scale/{service}", {"count": count})

    def kill(self, service: str, address: str | None = None) -> Any:
        return self.request(
            "POST", f"kill/{service}", {} if address is None else {"address": address}
        )

    def dns(self, action: str, mode: str | None = None) -> Any:
        return self.request("POST", f"dns/{action}", {} if mode is None else {"mode": mode})

    def rebalancing(self, service: str, enabled: bool) -> Any:
        return self.request("POST", f"rebalancing/{service}", {"enabled": enabled})

    def zone(self, zone: str, action: str, service: str | None = None) -> Any:
        return self.request(
            "POST", f"zone/{zone}/{action}", {} if service is None else {"service": service}
        )

    def deploy(self, service: str, env: dict[str, str] | None = None) -> dict[str, Any]:
        """Start a rolling deployment; returns the deployment as the stack describes it."""
        result = self.request("POST", f"deploy/{service}", {"env": env or {}})
        deployment: dict[str, Any] = result["deployment"]
        return deployment

    def wait_deployed(self, service: str, deployment: int, timeout: float) -> list[dict[str, Any]]:
        """Poll status until deployment ``deployment`` has completed, or has failed and its
        rollback (if any) has ended; returns the service's deployments from that one on."""
        deadline = time.monotonic() + timeout
        while True:
            deployments = [
                d
                for d in self.status()["services"][service]["deployments"]
                if d["id"] >= deployment
            ]
            if deployments and deployments[-1]["state"] != "in progress":
                return deployments
            if time.monotonic() > deadline:
                raise ControlError(
                    f"{service}: deployment {deployment} not over after {timeout:.0f}s"
                )
            time.sleep(0.2)

    def wait_settled(self, service: str, timeout: float) -> dict[str, Any]:
        """Poll status until ``service`` runs exactly its desired count, all registered."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.status()
            if status["services"][service]["settled"]:
                return status
            if time.monotonic() > deadline:
                raise ControlError(f"{service} not settled after {timeout:.0f}s")
            time.sleep(0.2)


def _replica_row(r: dict[str, Any], last: str) -> str:
    """One replica, running or stopped: address, zone, revision, pid, state, health, then
    `last`."""
    revision = f" rev {r['revision']:<3}" if "revision" in r else ""
    return (
        f"  {r['address'] + ':' + str(r['port']):<21} {r.get('zone') or '-':<9}{revision}"
        f" pid {r['pid'] or '-':<8} {r['state']:<9}"
        f" health {r.get('health', '-'):<8} {last}"
    )


def deployment_line(d: dict[str, Any]) -> str:
    """One deployment: what it changed, how it ended (or how far it is)."""
    if d["rollback_of"] is not None:
        what = f"rollback of deployment {d['rollback_of']} to revision {d['revision']}"
    else:
        changes = " ".join(f"{k}={v}" for k, v in d["changes"].items()) or "no change"
        what = f"revision {d['revision']} ({changes})"
    took = f" after {d['ended_at'] - d['started_at']:.1f}s" if d["ended_at"] else ""
    progress = (
        f"{d['started']} started, {d['stopped']} stopped,"
        f" circuit breaker {d['failures']} of {d['threshold']}"
    )
    return f"  deployment {d['id']}: {what}: {d['state']}{took}; {progress}" + (
        f"; {d['reason']}" if d["reason"] else ""
    )


def render(status: dict[str, Any]) -> str:
    lines = [f"front {status['front']['url']}"]
    for target in status["front"]["targets"]:
        lines.append(
            f"  target {target['target']:<21} {target['state']:<9}"
            f" {target['requests']} requests, {target['in_flight']} in flight"
        )
    for zone, info in status.get("zones", {}).items():
        down = f"down ({', '.join(info['down'])})" if info["down"] else "up"
        lines.append(f"zone {zone:<9} {down:<17} subnets {', '.join(info['subnets'])}")
    dns = status["dns"]
    lines.append(f"Cloud Map stand-in {dns['address']} ({dns['state']})")
    for name, records in dns["records"].items():
        addresses = ", ".join(r["address"] for r in records) or "(none: NXDOMAIN)"
        lines.append(f"  {name} A {addresses}")
    for name, svc in status["services"].items():
        settled = "settled" if svc["settled"] else "changing"
        revision = f", revision {svc['revision']}" if "revision" in svc else ""
        stalled = (
            " (stalled: no completed deployment to roll back to)" if svc.get("stalled") else ""
        )
        lines.append(f"{name}: desired {svc['desired']}, {settled}{revision}{stalled}")
        lines.extend(deployment_line(d) for d in list(svc.get("deployments", []))[-2:])
        for r in svc["replicas"]:
            registered = "registered" if r["registered"] else "not registered"
            lines.append(_replica_row(r, registered))
        # Stopped replicas in the same columns (no health check runs on them): the last
        # column says how each ended.
        for r in list(svc["finished"])[-3:]:
            lines.append(_replica_row(r, f"exit {r['returncode']}"))
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m local.control", description=__doc__.split("\n")[0])
    p.add_argument(
        "--url",
        default=os.environ.get("LOCAL_CONTROL_URL", DEFAULT_URL),
        help="the stack's control endpoint (env LOCAL_CONTROL_URL)",
    )
    sub = p.add_subparsers(dest="command", required=True)
    status = sub.add_parser("status", help="replicas, health, DNS records, front targets")
    status.add_argument("--json", action="store_true", help="the raw JSON")
    scale = sub.add_parser("scale", help="set a service's desired count")
    scale.add_argument("service", choices=["name", "hello"])
    scale.add_argument("count", type=int)
    scale.add_argument(
        "--wait",
        nargs="?",
        type=float,
        const=60.0,
        metavar="SECONDS",
        help="return once the service has settled (default 60 s)",
    )
    kill = sub.add_parser("kill", help="SIGKILL a replica without deregistering it (a crash)")
    kill.add_argument("service", choices=["name", "hello"])
    kill.add_argument("address", nargs="?", help="which replica (default: the first running)")
    dns = sub.add_parser("dns", help="take the Cloud Map stand-in off the air, or back")
    dns.add_argument("action", choices=["stop", "start"])
    dns.add_argument(
        "--mode",
        choices=["drop", "servfail", "closed"],
        help="stop: drop queries (default: clients time out), answer SERVFAIL, or close the port",
    )
    zone = sub.add_parser("zone", help="take an emulated availability zone down, or back")
    zone.add_argument("zone", help="e.g. local-1a (see status)")
    zone.add_argument("action", choices=["down", "up"])
    zone.add_argument(
        "--service",
        choices=["name", "hello"],
        help="only this service's replicas (default: every service's)",
    )
    rebalancing = sub.add_parser(
        "rebalancing", help="ECS's availability zone rebalancing of a service, on or off"
    )
    rebalancing.add_argument("service", choices=["name", "hello"])
    rebalancing.add_argument("state", choices=["on", "off"])
    deploy = sub.add_parser(
        "deploy",
        help="a rolling deployment of a new revision (200/75, circuit breaker with rollback)",
    )
    deploy.add_argument("service", choices=["name", "hello"])
    deploy.add_argument(
        "--env",
        type=env_pair,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="the new revision's environment changes, repeatable (none: the same revision"
        " again, as --force-new-deployment)",
    )
    deploy.add_argument(
        "--wait",
        nargs="?",
        type=float,
        const=300.0,
        metavar="SECONDS",
        help="return once it has completed (exit 0) or failed and rolled back (exit 1);"
        " default 300 s",
    )
    return p


def env_pair(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` from the command line (argparse type)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _deploy(client: Client, service: str, env: dict[str, str], wait: float | None) -> int:
    started = client.deploy(service, env)
    print(deployment_line(started).strip())
    if wait is None:
        return 0
    deployments = client.wait_deployed(service, started["id"], wait)
    for deployment in deployments:
        print(deployment_line(deployment).strip())
    return 0 if deployments[0]["state"] == "completed" else 1


def main(argv: Sequence[str]) -> int:
    args = parser().parse_args(argv)
    try:
        client = Client(args.url)
        if args.command == "status":
            status = client.status()
            print(json.dumps(status, indent=2) if args.json else render(status))
        elif args.command == "scale":
            result = client.scale(args.service, args.count)
            print(f"{result['service']}: desired {result['desired']}")
            if args.wait is not None:
                client.wait_settled(args.service, args.wait)
                print(f"{args.service}: settled")
        elif args.command == "kill":
            killed = client.kill(args.service, args.address)["killed"]
            print(
                f"killed {killed['service']} {killed['address']} (pid {killed['pid']});"
                " DNS still lists it until the runner notices"
            )
        elif args.command == "rebalancing":
            result = client.rebalancing(args.service, args.state == "on")
            state = "on" if result["az_rebalancing"] else "off"
            print(f"{result['service']}: availability zone rebalancing {state}")
        elif args.command == "deploy":
            return _deploy(client, args.service, dict(args.env), args.wait)
        elif args.command == "zone":
            result = client.zone(args.zone, args.action, args.service)
            killed = ", ".join(r["address"] for r in result.get("killed", []))
            print(f"zone {args.zone}: {result['state']}" + (f"; killed {killed}" if killed else ""))
        else:
            if args.mode and args.action == "start":
                raise ControlError("--mode applies to dns stop")
            print(f"dns: {client.dns(args.action, args.mode)['dns']}")
    except ControlError as error:
        print(f"local.control: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
