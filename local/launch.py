"""Start one replica as a task would run: its own hostname, and no life beyond the runner.

``python -m local.launch RUNNER_PID HOSTNAME MODULE`` does three things, then runs
``MODULE`` exactly as ``python -m MODULE`` would (``runpy``, same process):

1. Asks Linux to SIGKILL this process when the thread that forked it dies
   (``prctl(PR_SET_PDEATHSIG)``), then checks that the runner did not die before that
   took effect. This covers the runner being SIGKILLed or crashing; on an orderly stop
   the runner stops each replica itself (SIGTERM to its process group, SIGKILL after the
   stop timeout). SIGKILL because once the runner is gone, so are the DNS stand-in and the
   front: nobody can reach the replica and there is nothing left to drain. Without
   ``prctl`` (macOS) this step is skipped.
2. Gives the replica its own hostname. Each Fargate task has one (``ip-10-0-138-3...``),
   and both services print it in their answers, which is how a reply shows which task
   served it; replicas on one machine would all print the machine's. A UTS namespace
   per replica would need privileges, so ``socket.gethostname`` answers the replica's
   name instead (and ``HOSTNAME`` is set, as a container runtime sets it).
3. Does this in a small separate module rather than ``preexec_fn`` because the runner
   has threads (the DNS stand-in's) and ``preexec_fn`` is unsafe after a threaded fork.
"""

from __future__ import annotations

import ctypes
import os
import runpy
import signal
import socket
import sys
from collections.abc import Sequence

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl(PR_SET_PDEATHSIG): {os.strerror(errno)}")


def set_hostname(hostname: str) -> None:
    os.environ["HOSTNAME"] = hostname
    socket.gethostname = lambda: hostname


def main(argv: Sequence[str]) -> None:
    if len(argv) != 3:
        sys.exit("usage: python -m local.launch RUNNER_PID HOSTNAME MODULE")
    runner, hostname, module = int(argv[0]), argv[1], argv[2]
    if sys.platform.startswith("linux"):
        die_with_parent()
    if os.getppid() != runner:
        # The runner died between our fork and the prctl: the signal will never come.
        sys.exit("local.launch: the runner has already exited; not starting")
    set_hostname(hostname)
    sys.argv = [sys.argv[0]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
