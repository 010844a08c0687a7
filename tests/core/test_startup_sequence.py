"""A process whose database goes away during its startup steps waits and starts them over; it never exits.

Chaos run 7: a consume_signals restarted after a kill -9 passed its startup wait, then PostgreSQL stopped
during its startup; ``SignalProcessor.start()`` raised OperationalError and the process exited 1, losing the
exchange-call audit rows it held in memory. Here the child runs against a private PostgreSQL
(tests/fixtures/private_pg.py; the shared server is never touched) and pauses before starting its processor
(``STARTUP_PAUSE_STEP``, after the wait and the startup reconciliation); the test stops the server there,
lets the child go on, and brings the server back. The child must still run, log that it starts over, reach
its started state (log line and a heartbeat from its processor in the database) and stop cleanly on SIGTERM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
DB = "om_startup_seq"
pytestmark = pytest.mark.django_db(transaction=True)


def _wait_for(predicate, *, timeout: float, what: str, log_path: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)  # polling a child's files and exit status: no event crosses the process boundary
    raise AssertionError(f"timed out waiting for {what}\n{log_path.read_text(errors='replace')[-4000:]}")


def _heartbeat_detail(private_pg, pid: int) -> str:
    try:
        with psycopg.connect(private_pg.url(DB), connect_timeout=2) as conn:
            row = conn.execute("SELECT detail FROM core_heartbeat WHERE component = 'consumer'").fetchone()
    except psycopg.OperationalError:
        return ""
    detail = row[0] if row else ""
    return detail if f"pid {pid} " in detail else ""


def _delete_queues(url: str, queue: str) -> None:
    from kombu import Connection

    with Connection(url) as conn:
        channel = conn.default_channel
        for name in (queue, f"{queue}.dead"):
            try:
                channel.queue_delete(name)
            except Exception:  # noqa: BLE001 - best effort cleanup of a test queue
                channel = conn.channel()


# The step each command pauses before: after its wait and its first database work (startup reconciliation,
# schedules), before a step that touches the database again.
PAUSE_AT = {"process_signals": "processor", "consume_signals": "processor", "start_ingest": "positions_validate"}


@pytest.mark.parametrize("command", ["process_signals", "consume_signals", "start_ingest"])
def test_database_lost_during_startup_steps_the_process_waits_and_starts_over(command, private_pg, simulator,
                                                                               tmp_path, request):  # fmt: skip
    private_pg.start()
    private_pg.clone_schema(source_url=connection.settings_dict, name=DB)
    queue = f"startup-seq-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "ordermanager.settings.base",
        "DATABASE_URL": private_pg.url(DB),
        "SIGNAL_BROKER_URL": "",
        "BYBIT_ENV": "simulator",
        "BYBIT_BASE_URL": simulator.url,
        "BYBIT_API_KEY": simulator.api_key,
        "BYBIT_API_SECRET": simulator.api_secret,
        "STARTUP_WAIT_MAX_DELAY": "0.5",
        "STARTUP_PAUSE_STEP": PAUSE_AT[command],
        "STARTUP_PAUSE_DIR": str(tmp_path),
        "SIGNAL_HEARTBEAT_INTERVAL": "0.2",
        "SIGNAL_PROCESSOR_THREADS": "1",
        "OUTBOX_RELAY": "false",
        "LOG_LEVEL": "info",
        "REDIS_URL": "",
        # start_ingest registers with ws-gateway: the simulator plays it.
        "SIMULATOR_HOST": urlsplit(simulator.url).hostname,
        "SIMULATOR_PORT": str(urlsplit(simulator.url).port),
    }
    if command == "consume_signals":
        env.update(SIGNAL_BROKER_URL=request.getfixturevalue("amqp_url"), SIGNAL_QUEUE=queue,
                   SIGNAL_DEAD_LETTER_QUEUE=f"{queue}.dead", ORDER_EVENTS_EXCHANGE=f"{queue}.events")
    log_path = tmp_path / f"{command}.log"
    with open(log_path, "wb") as log:
        child = subprocess.Popen([sys.executable, "manage.py", command], cwd=ROOT, env=env, stdout=log,
                                 stderr=subprocess.STDOUT)  # fmt: skip
    try:
        # Past the wait and the startup reconciliation, about to start the processor: the database goes away.
        step = PAUSE_AT[command]
        _wait_for(lambda: (tmp_path / f"{step}.paused").exists() or child.poll() is not None, timeout=40,
                  what=f"the pause before {step}", log_path=log_path)  # fmt: skip
        assert child.poll() is None, log_path.read_text()
        private_pg.stop()
        (tmp_path / f"{step}.resume").touch()

        # It notices, says so, and waits for the database again instead of exiting.
        _wait_for(lambda: log_path.read_text().count("startup_waiting") >= 1 or child.poll() is not None,
                  timeout=30, what="a wait line after the interruption", log_path=log_path)  # fmt: skip
        out = log_path.read_text()
        assert child.poll() is None, f"the process exited ({child.returncode}) when the database went away:\n{out}"
        assert "startup_interrupted" in out
        assert f"{command}_started" not in out

        private_pg.start()
        # Back: the steps start over and the process reaches its normal started state.
        _wait_for(lambda: f"{command}_started" in log_path.read_text() or child.poll() is not None, timeout=40,
                  what="the started line", log_path=log_path)  # fmt: skip
        assert child.poll() is None, log_path.read_text()
        if command != "start_ingest":  # the signal processes beat a heartbeat once their processor runs
            detail = _wait_for(lambda: (d := _heartbeat_detail(private_pg, child.pid)) and "workers" in d and d,
                               timeout=20, what="a heartbeat from the processor", log_path=log_path)  # fmt: skip
            assert "processor 1/1 workers" in detail
        out = log_path.read_text()
        assert "startup_restarting" in out and "attempts=2" in out.split(f"{command}_started", 1)[1][:400]

        child.send_signal(signal.SIGTERM)
        code = child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if command == "consume_signals":
            _delete_queues(env["SIGNAL_BROKER_URL"], queue)
    out = log_path.read_text()
    assert code == 0, out
    assert "Traceback" not in out
    assert "db_backlog_lost" not in out
