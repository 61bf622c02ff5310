"""An interrupted `pulumi up` must have released the stack's lock before the cleanup destroys.

A stand-in `pulumi` (a script) plays the CLI: `up` takes the stack's lock (a file), runs 3 s,
and on SIGINT cancels slowly, as the real CLI finishes the resource operations in flight before it
exits; `destroy` fails with Pulumi Cloud's 409 while the lock is there. A driver process, in a
process group of its own like a terminal's foreground job, runs `up`, is interrupted (the group
gets SIGINT as on Ctrl-C, or the driver alone gets SIGTERM as from GitHub's runner), then
destroys, as lifecycle.cleaned_up does. Everything on loopback, bounded by timeouts.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WAIT = 30.0  # upper bound for any one thing below; the runs take about a second

STAND_IN = """\
import os, signal, sys, time
from pathlib import Path
state = Path(os.environ["STAND_IN_STATE"])
args = [a for a in sys.argv[1:] if a != "--non-interactive"]
lock = state / "lock"
if args[:1] == ["version"]:
    print("v3.272.0")
elif args[:1] == ["up"]:
    lock.write_text(str(os.getpid()))
    def cancel(signum, frame):
        print("cancelling: waiting for the operations in flight", flush=True)
        time.sleep(1.0)
        (state / "up-cancelled").touch()
        lock.unlink()
        sys.exit(255)
    signal.signal(signal.SIGINT, cancel)
    (state / "up-started").touch()
    time.sleep(3)
    (state / "up-completed").touch()
    lock.unlink()
elif args[:1] == ["destroy"]:
    if lock.exists():
        print("error: [409] Conflict: Another update is currently in progress.", file=sys.stderr)
        sys.exit(255)
    print("destroyed")
"""

DRIVER = """\
import json, sys
from pulumi.automation import PulumiCommand
from tests.e2e.interrupt import ForwardingPulumiCommand, terminate_as_interrupt
kind, root, cwd = sys.argv[1:4]
env = {}
if kind == "sdk":
    command = PulumiCommand(root, skip_version_check=True)
else:
    command = ForwardingPulumiCommand(root, skip_version_check=True, log=lambda _: None)
if kind == "forwarding+sigterm":
    terminate_as_interrupt()
try:
    command.run(["up", "--yes"], cwd, env)
except KeyboardInterrupt as interrupt:
    outcome = {"interrupt": type(interrupt).__name__}
try:
    command.run(["destroy", "--yes"], cwd, env)
    outcome["destroy"] = "ok"
except Exception as error:
    outcome["destroy"] = str(error)
print(json.dumps(outcome), flush=True)
"""


def stand_in(tmp_path: Path) -> tuple[Path, Path]:
    """(root with bin/pulumi, the directory where it keeps its lock)."""
    root, state = tmp_path / "cli", tmp_path / "state"
    (root / "bin").mkdir(parents=True)
    state.mkdir()
    cli = root / "bin" / "pulumi"
    cli.write_text(f"#!{sys.executable}\n{STAND_IN}")
    cli.chmod(0o755)
    return root, state


def interrupted_run(
    tmp_path: Path, kind: str, signum: signal.Signals, *, group: bool = False
) -> dict[str, str]:
    """The driver's outcome after `signum` arrives while its `up` runs: to its process group
    (`group`: Ctrl-C in a terminal), or to the driver alone (GitHub's runner signals a step's
    entry process; `kill`). Also how the stand-in's `up` ended: cancelled or completed."""
    root, state = stand_in(tmp_path)
    driver = tmp_path / "driver.py"
    driver.write_text(textwrap.dedent(DRIVER))
    env = {**os.environ, "STAND_IN_STATE": str(state), "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, str(driver), kind, str(root), str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        # A process group of its own, like a terminal's foreground job: killpg reaches the
        # driver and, unless it runs the CLI in a session of its own, the CLI too.
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + WAIT
        while not (state / "up-started").exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the stand-in's up never started"
            time.sleep(0.02)
        (os.killpg if group else os.kill)(process.pid, signum)
        out, err = process.communicate(timeout=WAIT)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        lock = state / "lock"
        if lock.exists():  # a driver that died left its CLI running: end it
            os.kill(int(lock.read_text()), signal.SIGKILL)
    lines = out.strip().splitlines()
    outcome = dict(json.loads(lines[-1])) if lines else {"stderr": err}
    outcome["code"] = str(process.returncode)
    outcome["up"] = next(
        (end for end in ("cancelled", "completed") if (state / f"up-{end}").exists()), "killed"
    )
    return outcome


def test_an_interrupt_to_the_test_alone_never_reaches_the_sdks_cli(tmp_path: Path) -> None:
    """The defect, reproduced: GitHub's runner signals the step's process only, and the SDK
    runs the CLI without passing the interrupt on; the update runs on to its end while the
    test waits for it (on GitHub, until the runner kills both 10 s later, lock and all)."""
    outcome = interrupted_run(tmp_path, "sdk", signal.SIGINT)
    assert outcome["interrupt"] == "KeyboardInterrupt"
    assert outcome["up"] == "completed"


def test_an_interrupt_to_the_test_cancels_the_cli_then_destroys(tmp_path: Path) -> None:
    outcome = interrupted_run(tmp_path, "forwarding", signal.SIGINT)
    assert outcome["interrupt"] == "KeyboardInterrupt"
    assert outcome["up"] == "cancelled"
    # The destroy ran after the cancelled up had released its lock (no 409).
    assert outcome["destroy"] == "ok"


def test_ctrl_c_in_a_terminal_cancels_once_then_destroys(tmp_path: Path) -> None:
    """The CLI runs in a session of its own: it gets the forwarded SIGINT only, once (a second
    SIGINT makes the real CLI stop at once instead of finishing what is in flight)."""
    outcome = interrupted_run(tmp_path, "forwarding", signal.SIGINT, group=True)
    assert outcome["up"] == "cancelled"
    assert outcome["destroy"] == "ok"


def test_sigterm_runs_the_same_cleanup_as_ctrl_c(tmp_path: Path) -> None:
    outcome = interrupted_run(tmp_path, "forwarding+sigterm", signal.SIGTERM)
    assert outcome["interrupt"] == "Terminated"
    assert outcome["up"] == "cancelled"
    assert outcome["destroy"] == "ok"


def test_without_the_handler_sigterm_skips_the_cleanup(tmp_path: Path) -> None:
    """Python's default for SIGTERM: the process ends at once, no `except`, no cleanup."""
    outcome = interrupted_run(tmp_path, "forwarding", signal.SIGTERM)
    assert outcome["code"] == str(-signal.SIGTERM)
    assert "destroy" not in outcome


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["up", "--yes"], ["--non-interactive", "up", "--yes"]),
        (["--non-interactive", "up"], ["--non-interactive", "up"]),
        (["up", "--", "--non-interactive"], ["--non-interactive", "up", "--", "--non-interactive"]),
    ],
)
def test_the_cli_runs_non_interactive_as_the_sdk_runs_it(
    args: list[str], expected: list[str]
) -> None:
    from tests.e2e.interrupt import _non_interactive  # noqa: PLC0415

    assert _non_interactive(args) == expected
