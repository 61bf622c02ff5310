"""``python -m bench.orphan PARENT_PID SIGNAL PROGRAM [ARGS...]``: exec PROGRAM, bound to the bench.

Asks Linux to send SIGNAL to this process when the bench dies (``PR_SET_PDEATHSIG``),
then replaces itself with PROGRAM; the setting survives ``execve`` for programs that
are not set-user-ID, such as nginx and wrk. So even a SIGKILLed bench, which runs no
cleanup, leaves no proxy or load generator behind. nginx gets SIGTERM (its fast
shutdown, which also stops its workers); wrk can take SIGKILL.

A separate module rather than ``preexec_fn``: the bench has threads (the DNS
stand-in's), and forking a threaded process to run Python code is unsafe. The
Python services use ``local.launch``, which does the same and also names the replica.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Sequence

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def bind_to_parent(signal_number: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal_number, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl(PR_SET_PDEATHSIG): {os.strerror(errno)}")


def main(argv: Sequence[str]) -> None:
    if len(argv) < 3:
        sys.exit("usage: python -m bench.orphan PARENT_PID SIGNAL PROGRAM [ARGS...]")
    parent, signal_number, program = int(argv[0]), int(argv[1]), list(argv[2:])
    if sys.platform.startswith("linux"):
        bind_to_parent(signal_number)
    if os.getppid() != parent:
        # The bench died between our fork and the prctl: the signal will never come.
        sys.exit("bench.orphan: the bench has already exited; not starting")
    os.execvp(program[0], program)


if __name__ == "__main__":
    main(sys.argv[1:])
