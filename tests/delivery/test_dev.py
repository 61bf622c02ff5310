"""``./dev`` behaves like a command-line tool: help, unknown commands, quiet --help, Ctrl-C.

The help and error paths run the real script (they touch no .venv); the Ctrl-C test runs a copy
of it beside a stand-in uv that starts processes of its own and never finishes, as a slow
install would.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.uvtool import ROOT, pinned_version

DEV = ROOT / "dev"


def dev(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(cwd / "dev"), *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def commands() -> list[str]:
    """The commands the script dispatches on (its case statement), in the order listed."""
    text = DEV.read_text()
    found = re.search(r"^COMMANDS=\((.*)\)$", text, re.MULTILINE)
    assert found, "dev has no COMMANDS list"
    return found.group(1).split()


def test_every_listed_command_is_dispatched_and_every_dispatched_command_listed() -> None:
    text = DEV.read_text()
    cases = set(re.findall(r"^  ([a-z]+)(?: \|[^)]*)?\)$", text, re.MULTILINE))
    assert cases == set(commands())


@pytest.mark.parametrize("spelling", ["help", "--help", "-h"])
def test_help_lists_every_command_on_one_line_and_exits_0(spelling: str) -> None:
    result = dev(spelling)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0] == "usage: ./dev <command> [arguments]"
    for command in commands():
        described = [line for line in lines if line.split()[:1] == [command]]
        assert len(described) == 1, (command, result.stdout)
        assert len(described[0].split()) > 2, f"{command} has no description"


def test_no_command_prints_the_list_and_exits_2() -> None:
    result = dev()
    assert result.returncode == 2
    assert result.stdout == ""
    assert "usage: ./dev <command>" in result.stderr
    assert "  test " in result.stderr


@pytest.mark.parametrize(
    ("typed", "meant"),
    [("tset", "test"), ("bnech", "bench"), ("chek", "check"), ("setpu", "setup"), ("upp", "up")],
)
def test_an_unknown_command_is_named_and_the_nearest_suggested(typed: str, meant: str) -> None:
    result = dev(typed)
    assert result.returncode == 2
    assert result.stdout == ""
    first = result.stderr.splitlines()[0]
    assert first == f"dev: unknown command '{typed}'; did you mean '{meant}'?"


def test_a_command_nothing_is_near_gets_no_suggestion() -> None:
    result = dev("deploy-everything")
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == "dev: unknown command 'deploy-everything'"
    assert "./dev help lists the commands: up test" in result.stderr


def test_a_commands_help_comes_first_without_installer_progress() -> None:
    # The .venv is in step (the suite runs in it): uv would still print "Resolved ...",
    # "Bytecode compiled ..." before the help without --quiet.
    result = dev("up", "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m local ")
    assert result.stderr == ""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) is gone for our purpose.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


FAKE_UV = """#!/bin/sh
# A stand-in for uv: reports the pinned version; the environment is never in step (sync
# --check fails), and `sync` prints its progress unless --quiet. With $PIDS set, `sync`
# starts two processes of its own (as uv's bytecode compilers are) and never finishes.
case "$1" in
  --version) echo "uv {version}" ;;
  sync)
    case " $* " in *" --check "*) exit 1 ;; esac
    if [ -n "$PIDS" ]; then
      sleep 300 & echo $! >> "$PIDS"
      sh -c 'sleep 300' & echo $! >> "$PIDS"
      echo $$ >> "$PIDS"
      echo ready >> "$PIDS"
      wait
    fi
    case " $* " in *" --quiet "*) ;; *) echo "Installed 69 packages in 2.1s" >&2 ;; esac
    ;;
esac
"""


def fake_tree(root: Path) -> Path:
    """A copy of ./dev with the stand-in uv and a .venv whose python echoes its arguments."""
    shutil.copy2(DEV, root / "dev")
    (root / "tools" / "uv").mkdir(parents=True)
    shutil.copy2(ROOT / "tools" / "uv" / "requirements.txt", root / "tools" / "uv")
    for path, text in [
        (root / ".uv" / "bin" / "uv", FAKE_UV.format(version=pinned_version())),
        (root / ".venv" / "bin" / "python", '#!/bin/sh\necho "python $*"\n'),
    ]:
        path.parent.mkdir(parents=True)
        path.write_text(text)
        path.chmod(0o755)
    return root


@pytest.mark.parametrize("command", ["up", "test", "bench", "check"])
def test_help_is_not_preceded_by_installer_progress_even_when_installing(
    tmp_path: Path, command: str
) -> None:
    result = dev(command, "--help", cwd=fake_tree(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith("python -m ")
    assert result.stdout.rstrip().endswith(" --help")


def test_an_install_that_does_work_shows_its_progress(tmp_path: Path) -> None:
    result = dev("setup", cwd=fake_tree(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "Installed 69 packages" in result.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupting_setup_stops_every_process_it_started(
    tmp_path: Path, sig: signal.Signals
) -> None:
    fake_tree(tmp_path)
    pids = tmp_path / "pids"
    pids.touch()
    # Its own session, so the signal goes to ./dev alone, the hardest case: a terminal's
    # Ctrl-C also reaches ./dev's process group, never the installer's.
    process = subprocess.Popen(
        [str(tmp_path / "dev"), "setup"],
        cwd=tmp_path,
        env=os.environ | {"PIDS": str(pids)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 20
    while "ready" not in pids.read_text():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the stand-in uv never started"
        time.sleep(0.05)
    started = [int(line) for line in pids.read_text().split() if line.isdigit()]
    assert len(started) == 3
    process.send_signal(sig)
    try:
        _, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130
    assert "dev: interrupted; every process it started is stopped" in err
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in started) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = [pid for pid in started if alive(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, "processes left running after the interrupt"


@pytest.mark.parametrize("module", ["bench.__main__", "local.config", "tools.check"])
def test_command_help_speaks_of_the_tool_not_of_its_history(
    module: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`./dev bench --help` (and the others) describe options, not the issues that added them."""
    loaded = importlib.import_module(module)
    parse = getattr(loaded, "parse_args", None) or getattr(loaded, "from_args", None)
    if parse is None:
        parse = loaded.main
    with pytest.raises(SystemExit) as exited:
        parse(["--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: ")
    assert not re.search(r"\bissues? #?\d+", text, re.IGNORECASE), text
