"""A process started while PostgreSQL is down waits for it (log line, backoff) and then does its work.

The database is a private PostgreSQL server (tests/fixtures/private_pg.py) that is started only
after the command is already waiting; the shared server is never touched.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db(transaction=True)


def _wait_for(predicate, *, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)  # polling a child's log file and exit status: no event to wait on
    raise AssertionError(f"timed out waiting for {what}")


def _child_env(private_pg, simulator) -> dict:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "ordermanager.settings.base",
        "DATABASE_URL": private_pg.url("om_startup") if private_pg else "",
        "SIGNAL_BROKER_URL": "",
        "BYBIT_ENV": "simulator",
        "BYBIT_BASE_URL": simulator.url,
        "BYBIT_API_KEY": simulator.api_key,
        "BYBIT_API_SECRET": simulator.api_secret,
        "STARTUP_WAIT_MAX_DELAY": "1",
        "LOG_LEVEL": "info",
        "REDIS_URL": "",
    }


def test_process_signals_started_while_the_database_is_down_waits_then_runs(private_pg, simulator, tmp_path):
    log_path = tmp_path / "process_signals.log"
    with open(log_path, "wb") as log:
        child = subprocess.Popen([sys.executable, "manage.py", "process_signals", "--once"], cwd=ROOT,
                                 env=_child_env(private_pg, simulator), stdout=log, stderr=subprocess.STDOUT)
    try:
        # Down: the command says so and keeps trying (it does not exit).
        _wait_for(lambda: log_path.read_text().count("startup_waiting") >= 2, timeout=60, what="two wait lines")
        assert child.poll() is None, log_path.read_text()

        private_pg.start()
        private_pg.clone_schema(source_url=connection.settings_dict, name="om_startup")

        code = _wait_for(lambda: child.poll() is not None and (child.returncode,), timeout=120, what="exit")[0]
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    out = log_path.read_text()
    assert code == 0, out
    assert "Traceback" not in out
    assert "startup_service_ready" in out and "processed 0 signal(s)" in out
    assert "database" in out.split("startup_waiting", 1)[1][:400]  # the wait line names what it waits for


def test_wait_for_services_command_returns_once_the_database_answers(private_pg, simulator, tmp_path):
    """The Procfile/systemd guard in front of the web server and qcluster."""
    log_path = tmp_path / "wait.log"
    with open(log_path, "wb") as log:
        child = subprocess.Popen([sys.executable, "manage.py", "wait_for_services", "--no-broker"], cwd=ROOT,
                                 env=_child_env(private_pg, simulator), stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_for(lambda: "startup_waiting" in log_path.read_text(), timeout=60, what="a wait line")
        assert child.poll() is None
        private_pg.start()
        private_pg.ensure_database("om_startup")
        code = _wait_for(lambda: child.poll() is not None and (child.returncode,), timeout=60, what="exit")[0]
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert code == 0, log_path.read_text()
    assert "services ready" in log_path.read_text()


@pytest.mark.postgres  # the child process reaches the test database by URL: a PostgreSQL one
def test_consume_signals_waits_for_the_broker_before_anything_else_and_stops_on_sigterm(simulator, tmp_path):
    import signal
    import socket

    from orders.models import ReconciliationRun
    from tests.signals_app.e2e.harness import database_url

    with socket.socket() as s:  # a port nobody listens on: the broker is "down"
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**_child_env(None, simulator), "DATABASE_URL": database_url(),
           "SIGNAL_BROKER_URL": f"amqp://guest:guest@127.0.0.1:{port}//"}  # fmt: skip
    log_path = tmp_path / "consume.log"
    with open(log_path, "wb") as log:
        child = subprocess.Popen([sys.executable, "manage.py", "consume_signals"], cwd=ROOT, env=env, stdout=log,
                                 stderr=subprocess.STDOUT)  # fmt: skip
    try:
        _wait_for(lambda: "service=broker" in log_path.read_text(), timeout=60, what="a broker wait line")
        assert child.poll() is None
        child.send_signal(signal.SIGTERM)
        code = child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    out = log_path.read_text()
    assert code == 0, out
    assert "Traceback" not in out
    assert not ReconciliationRun.objects.exists()  # nothing was decided or reconciled while it waited
