"""Child processes: started in their own sessions, logged to files, always stopped.

Each child gets its own session (so a Ctrl-C in the terminal reaches only the
bench, which then stops everything in order) and is bound to the bench's life
(``local.launch`` for the services, ``bench.orphan`` for nginx and wrk), so not
even a SIGKILLed bench leaves processes behind.

A child's process group is signalled only while its leader has not been reaped:
until then the kernel cannot hand its id to another process, so the signal
cannot reach anything the bench did not start.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class HarnessError(RuntimeError):
    """The bench could not do its job (a child would not start, wrk failed...)."""


@dataclass(eq=False)
class Child:
    label: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        """True until the process exits. Does not reap it (its id stays ours)."""
        if self.popen.returncode is not None:
            return False
        try:
            info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return False
        return info is None

    def signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the process itself (not its group)."""
        if self.popen.returncode is None:
            os.kill(self.pid, sig)

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class Children:
    """Every process the bench started, stopped in reverse order by ``stop_all``."""

    def __init__(self, logs: Path) -> None:
        self._logs = logs
        self._children: list[Child] = []

    def start(self, label: str, argv: Sequence[str], env: Mapping[str, str]) -> Child:
        """Start ``argv`` with exactly ``env``, its output appended to ``<label>.log``."""
        log = self._logs / f"{label.replace(' ', '-')}.log"
        with log.open("ab") as out:
            popen = subprocess.Popen(
                list(argv),
                cwd=ROOT,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        child = Child(label, popen, log)
        self._children.append(child)
        return child

    @staticmethod
    def service(module: str, hostname: str) -> list[str]:
        """``python -m <module>`` as replica ``hostname``, dying with the bench."""
        return [sys.executable, "-m", "local.launch", str(os.getpid()), hostname, module]

    @staticmethod
    def program(argv: Sequence[str], on_bench_death: signal.Signals) -> list[str]:
        """A native program, sent ``on_bench_death`` if the bench dies."""
        return [
            sys.executable,
            "-m",
            "bench.orphan",
            str(os.getpid()),
            str(int(on_bench_death)),
            *argv,
        ]

    def stop(self, child: Child, timeout: float = 10.0) -> int | None:
        """SIGTERM the child's group, SIGKILL after ``timeout``; returns its exit code."""
        if child.popen.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                # SIGCONT first: a stopped (SIGSTOPped) process would hold SIGTERM.
                os.killpg(child.pid, signal.SIGCONT)
                os.killpg(child.pid, signal.SIGTERM)
            try:
                child.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGKILL)
                child.popen.wait()
        if child in self._children:
            self._children.remove(child)
        return child.popen.returncode

    def stop_all(self) -> None:
        for child in reversed(list(self._children)):
            self.stop(child)
