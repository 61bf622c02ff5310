"""``python -m bench.cpu LABEL=TREE[,VAR=VALUE...] ...``: hello's CPU per request, side by side.

For comparing implementations of hello (another checkout, a variant of a module)
on a shared, noisy machine, where requests per second move with whatever else
runs. Each variant is a hello process started from its own source tree (given
as ``TREE``, with optional extra environment), all in front of the same three
name replicas (this tree's). Each round loads every variant *at the same time*
(``wrk -t1 -c8`` each, 8 s), so background work weighs on all alike, and reads
each hello's user+system CPU time from ``/proc``. The figure is CPU microseconds
per request; at saturation, requests/s per core is its inverse.

Example (prometheus-client against the hand-written registry it replaced)::

    python -m bench.cpu new=. hand=/tmp/hand-tree before=/tmp/old-tree,MAX_HEDGES=0
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from apps import ENVIRONMENT
from bench.procs import ROOT

NAMES = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
ROUNDS = 6
SECONDS = 8


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main(argv: Sequence[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    base = {k: v for k, v in os.environ.items() if k not in ENVIRONMENT}
    procs: list[subprocess.Popen[bytes]] = []

    def start(tree: str, env: dict[str, str], module: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", module],
            cwd=tree,
            env={**base, **env, "PYTHONPATH": tree},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(proc)
        return proc

    try:
        port = free_port()
        for ip in NAMES:
            start(str(ROOT), {"HOST": ip, "PORT": str(port), "DRAIN_SECONDS": "0"}, "apps.name")
        hellos: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
        for item in argv:
            label, _, spec = item.partition("=")
            tree, *pairs = spec.split(",")
            env = dict(pair.split("=", 1) for pair in pairs)
            hello_port = free_port()
            env |= {
                "HOST": "127.0.0.1",
                "PORT": str(hello_port),
                "NAME_SERVER": f"http://{NAMES[0]}:{port}/",
            }
            url = f"http://127.0.0.1:{hello_port}/"
            hellos[label] = (start(str(Path(tree).resolve()), env, "apps.hello"), url)
        for _, url in hellos.values():
            for _ in range(300):
                try:
                    urllib.request.urlopen(url, timeout=1).read()
                    break
                except OSError:
                    time.sleep(0.1)
        cpu_used = dict.fromkeys(hellos, 0.0)
        served = dict.fromkeys(hellos, 0)
        for round_ in range(ROUNDS):
            before = {label: cpu_seconds(p.pid) for label, (p, _) in hellos.items()}
            runs = {
                label: subprocess.Popen(
                    ["wrk", "-t1", "-c8", f"-d{SECONDS}s", url], stdout=subprocess.PIPE, text=True
                )
                for label, (_, url) in hellos.items()
            }
            outputs = {label: run.communicate()[0] for label, run in runs.items()}
            for label, (proc, _) in hellos.items():
                used = cpu_seconds(proc.pid) - before[label]
                found = re.search(r"(\d+) requests in", outputs[label])
                requests = int(found.group(1)) if found else 0
                cpu_used[label] += used
                served[label] += requests
                per = 1e6 * used / max(requests, 1)
                print(f"round {round_ + 1} {label:>12}: {requests:7,} requests, {per:6.1f} us each")
        print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        for label, used in cpu_used.items():
            per = 1e6 * used / max(served[label], 1)
            print(f"total {label:>12}: {served[label]:7,} requests, {per:6.1f} us CPU each")
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
