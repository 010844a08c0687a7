"""`make run` keeps the other processes up when one exits: every Procfile line runs under
scripts/keep_running.sh, which starts its command again (honcho alone stops everything)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "keep_running.sh"
HONCHO = Path(sys.executable).with_name("honcho")


def _wait_for(predicate, *, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)  # watching child processes and a log file: no event to wait on
    raise AssertionError(f"timed out waiting for {what}")


def _lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_every_procfile_line_runs_under_the_restart_loop():
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, command = line.split(":", 1)
            assert command.split()[0] == "scripts/keep_running.sh", name


def test_one_process_exiting_restarts_it_and_leaves_the_others_running(tmp_path):
    log = tmp_path / "starts.log"
    (tmp_path / "Procfile").write_text(
        f"crashy: {SCRIPT} sh -c 'echo crashy >> {log}; exit 3'\n"
        f"steady: {SCRIPT} sh -c 'echo steady >> {log}; echo $$ > {tmp_path}/steady.pid; exec sleep 600'\n"
    )
    honcho = subprocess.Popen([str(HONCHO), "start", "-f", str(tmp_path / "Procfile"), "-d", str(tmp_path)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for(lambda: _lines(log).count("crashy") >= 2, timeout=30, what="crashy to be started again")
        assert honcho.poll() is None  # honcho did not stop everything when crashy exited
        assert _lines(log).count("steady") == 1  # and steady was never interrupted
        honcho.send_signal(signal.SIGTERM)
        honcho.wait(timeout=30)
    finally:
        if honcho.poll() is None:
            os.killpg(honcho.pid, signal.SIGKILL)
            honcho.wait()
    out = honcho.stdout.read().decode()
    assert "exited with status 3; starting it again" in out
    # Nothing is left behind: the loop stopped and took its child with it.
    steady = int((tmp_path / "steady.pid").read_text())
    _wait_for(lambda: not Path(f"/proc/{steady}").exists(), timeout=10, what="steady's command to end")


def test_sigterm_stops_the_loop_and_its_command(tmp_path):
    marker = tmp_path / "child.pid"
    loop = subprocess.Popen([str(SCRIPT), "sh", "-c", f"echo $$ > {marker}; exec sleep 600"])
    try:
        _wait_for(lambda: marker.exists() and marker.read_text().strip(), timeout=10, what="the child")
        child = int(marker.read_text())
        loop.send_signal(signal.SIGTERM)
        assert loop.wait(timeout=10) == 0
        _wait_for(lambda: not Path(f"/proc/{child}").exists(), timeout=10, what="the child to end")
    finally:
        if loop.poll() is None:
            loop.kill()
