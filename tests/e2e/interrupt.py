"""Interrupting the end-to-end test: the Pulumi CLI is told to cancel, and waited for.

Pulumi's Automation API (the installed pulumi/automation/_cmd.py, `PulumiCommand.run`) starts the
CLI in the caller's process group and never signals it. An interrupt that reaches the Python
process alone (GitHub's runner signals a cancelled step's entry process, not its group; `kill`)
never reaches the CLI: the interrupted `pulumi up` runs on to its end, holding the stack's lock,
while the test waits on its output pipes (Popen.__exit__ closes them, and the close waits for
the SDK's reader threads), and on GitHub the runner kills both 10 s later, lock and pending
operations left behind. tests/e2e/test_interrupt.py reproduces it with a stand-in CLI.

`ForwardingPulumiCommand` runs the CLI in a session of its own, so an interrupt reaches this
process only, whichever way it came; it forwards each one to the CLI as SIGINT (the CLI's first
SIGINT cancels gracefully, finishing the operations in flight; a second terminates at once),
waits until the CLI has exited and released its lock, and only then raises the interrupt to the
caller, whose cleanup can now take the lock (lifecycle.clean_up also cancels first).

SIGTERM: Python's default ends the process at once, skipping every `finally` and `except`.
GitHub cancels a step by sending SIGINT to its entry process, SIGTERM 7.5 s later, and killing
the process tree 2.5 s after that ("Workflow cancellation reference", docs.github.com);
`terminate_as_interrupt` makes SIGTERM raise `Terminated`, an interrupt like SIGINT's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping
from types import FrameType
from typing import IO, Any

from pulumi.automation import CommandResult, PulumiCommand
from pulumi.automation.errors import create_command_error

# The SDK's type of an output callback (pulumi.automation._cmd.OnOutput).
OnOutput = Callable[[str], Any]


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where SIGINT raises KeyboardInterrupt, so the same cleanup runs."""


def terminate_as_interrupt() -> None:
    """From now on SIGTERM raises Terminated in the main thread (call it from there)."""

    def raise_terminated(signum: int, _frame: FrameType | None) -> None:
        raise Terminated(f"{signal.Signals(signum).name} received")

    signal.signal(signal.SIGTERM, raise_terminated)


def _non_interactive(args: list[str]) -> list[str]:
    """As the SDK does: --non-interactive before any `--` separator."""
    end = args.index("--") if "--" in args else len(args)
    return args if "--non-interactive" in args[:end] else ["--non-interactive", *args]


def _consume(stream: IO[str], callback: OnOutput | None, chunks: list[str]) -> None:
    for line in iter(stream.readline, ""):
        stripped = line.rstrip()
        if callback:
            callback(stripped)
        chunks.append(stripped)
    stream.close()


def wait_forwarding_interrupts(
    process: subprocess.Popen[str], log: Callable[[str], None]
) -> BaseException | None:
    """Wait for the CLI to exit; forward each interrupt that arrives meanwhile as SIGINT.
    Returns the first interrupt (to raise once the CLI is gone), or None."""
    first: BaseException | None = None
    while True:
        try:
            process.wait()
            return first
        except KeyboardInterrupt as interrupt:
            first = first or interrupt
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                log(
                    f"e2e: {type(interrupt).__name__}: asked the Pulumi CLI (pid {process.pid}) "
                    "to cancel; waiting until it has released the stack's lock"
                )


class ForwardingPulumiCommand(PulumiCommand):
    """PulumiCommand whose CLI runs in its own session and is cancelled, then waited for, on an
    interrupt (see the module docstring)."""

    def __init__(
        self,
        root: str | None = None,
        *,
        skip_version_check: bool = False,
        log: Callable[[str], None] = print,
    ) -> None:
        super().__init__(root, skip_version_check=skip_version_check)
        self._log = log

    def run(
        self,
        args: list[str],
        cwd: str,
        additional_env: Mapping[str, str],
        on_output: OnOutput | None = None,
        on_error: OnOutput | None = None,
    ) -> CommandResult:
        env: dict[str, Any] = {**os.environ, **additional_env, "PULUMI_AUTOMATION_API": "true"}
        if os.path.isabs(self.command):
            # As the SDK does: plugins installed beside the CLI come first.
            env["PATH"] = os.pathsep.join([os.path.dirname(self.command), env.get("PATH", "")])
        stdout: list[str] = []
        stderr: list[str] = []
        process = subprocess.Popen(
            [self.command, *_non_interactive(list(args))],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=env,
            encoding="utf-8",
            # Its own session: a terminal's Ctrl-C reaches only this process, which forwards it.
            start_new_session=True,
        )
        assert process.stdout is not None
        assert process.stderr is not None
        readers = [
            threading.Thread(target=_consume, args=(process.stdout, on_output, stdout)),
            threading.Thread(target=_consume, args=(process.stderr, on_error, stderr)),
        ]
        for reader in readers:
            reader.start()
        interrupt = wait_forwarding_interrupts(process, self._log)
        for reader in readers:
            reader.join()
        if interrupt is not None:
            raise interrupt
        result = CommandResult(
            stdout="\n".join(stdout), stderr="\n".join(stderr), code=process.returncode
        )
        if result.code != 0:
            raise create_command_error(result)
        return result
