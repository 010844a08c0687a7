"""The audit spool: rows handed to a per-process file are written by a thread, each exactly once, and the rows
of a process killed with SIGKILL right after its calls are written by the next process (real subprocesses,
real simulator over HTTP, real PostgreSQL)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import structlog
from django.db import connection
from django.utils import timezone

from exchange import audit_spool
from exchange.audit import exchange_call_record
from exchange.models import ExchangeCall

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def spool_settings(settings, tmp_path):
    """The spool on, under this test's directory; the process's spool closed (its thread stopped) after."""
    settings.EXCHANGE_AUDIT_SPOOL_DIR = str(tmp_path / "spool")
    yield settings
    if audit_spool._SPOOL is not None:
        audit_spool._SPOOL.close(timeout=10)
    audit_spool._SPOOL = audit_spool._SPOOL_KEY = None


def _record(i: int, **kw) -> None:
    exchange_call_record(method="POST", path="/v5/order/create", params={"orderLinkId": f"link-{i}", "api_key": "k"},
                         http_status=200, ret_code=0, ret_msg="OK", latency_ms=3, attempt=1,
                         order_link_id=f"link-{i}", response_body='{"retCode":0}', response_bytes=13, **kw)  # fmt: skip


def _spool_files(directory: Path) -> list[Path]:
    return sorted(directory.rglob(f"*{audit_spool.SPOOL_SUFFIX}"))


def test_rows_go_through_the_spool_and_flush_waits_for_them(spool_settings, tmp_path):
    before = timezone.now()
    for i in range(25):
        _record(i)
    spool = audit_spool.current()

    assert spool is not None and _spool_files(tmp_path / "spool") == [spool.path]
    assert audit_spool.flush(timeout=20), "the writer did not write the spooled rows in time"
    rows = list(ExchangeCall.objects.order_by("created_at"))
    assert [r.order_link_id for r in rows] == [f"link-{i}" for i in range(25)]
    assert spool.rows_written == 25 and spool.pending_bytes == 0
    assert len({r.call_id for r in rows}) == 25 and all(r.call_id for r in rows)
    assert all(before <= r.created_at <= timezone.now() for r in rows)  # the time of the call
    assert rows[0].params["api_key"] == "***" and rows[0].response_body == '{"retCode":0}'


def test_a_row_handed_over_twice_is_written_once(spool_settings, tmp_path):
    """A process killed after an insert but before its checkpoint: the next drain sees those lines again."""
    spool = audit_spool.AuditSpool(tmp_path / "dead", start_writer=False)
    lines = [audit_spool.row_line(_row(i)) for i in range(6)]
    for line in lines:
        spool.append(line)
    assert spool.flush(timeout=10)  # no writer thread: written here; checkpoint at the end
    audit_spool._ckpt_save(spool._ckpt_fd, 0)  # as if the checkpoint had not moved
    spool._forget_in_child()  # the "process" dies: its descriptors (and its lock) are gone, the file stays

    assert audit_spool.drain_orphans(tmp_path / "dead") == 0  # all six were there already
    assert ExchangeCall.objects.count() == 6
    assert _spool_files(tmp_path / "dead") == []


def test_a_live_processs_file_is_left_alone_and_a_torn_tail_is_skipped(spool_settings, tmp_path):
    live = audit_spool.AuditSpool(tmp_path / "d", start_writer=False)
    live.append(audit_spool.row_line(_row(1)))
    assert audit_spool.drain_orphans(tmp_path / "d") == 0  # its lock is held: the process is alive
    assert _spool_files(tmp_path / "d") == [live.path] and not ExchangeCall.objects.exists()

    os.write(live._fd, audit_spool.row_line(_row(2))[:40])  # dies in the middle of appending row 2
    live._forget_in_child()
    with structlog.testing.capture_logs() as logs:
        assert audit_spool.drain_orphans(tmp_path / "d") == 1
    assert list(ExchangeCall.objects.values_list("order_link_id", flat=True)) == ["link-1"]
    assert any(e["event"] == "exchange_audit_spool_torn_tail" for e in logs)


def test_a_bad_row_is_logged_and_does_not_hold_back_the_others(spool_settings, tmp_path):
    spool = audit_spool.AuditSpool(tmp_path / "b", start_writer=False)
    spool.append(audit_spool.row_line(_row(1)))
    spool.append(audit_spool.row_line({**_row(2), "attempt": 0}))  # violates exchangecall_attempt_positive
    spool.append(audit_spool.row_line(_row(3)))
    with structlog.testing.capture_logs() as logs:
        assert spool.flush(timeout=10)
    assert sorted(ExchangeCall.objects.values_list("order_link_id", flat=True)) == ["link-1", "link-3"]
    assert any(e["event"] == "exchange_call_audit_failed" and "link-2" in e["row"] for e in logs)
    spool.close()


def _row(i: int) -> dict:
    return dict(call_id=audit_spool.CALL_IDS.next(), created_at=timezone.now().isoformat(), method="GET",
                path="/v5/order/realtime", params={}, http_status=200, ret_code=0, ret_msg="OK", latency_ms=1,
                attempt=1, trace_id="", order_link_id=f"link-{i}", error="", dry_run=False, response_body="",
                response_bytes=0, response_truncated=False)  # fmt: skip


# ------------------------------------------------------------------ kill -9 on a real process

CALLER = r"""
import os, sys, time
from decimal import Decimal
import django
django.setup()
from exchange import audit_spool
audit_spool.LINGER_SECONDS = 3600  # the writer waits: the rows are only in the spool when we are killed
from exchange.bybit.client import BybitClient
client = BybitClient(base_url=sys.argv[1], api_key="sim-key", api_secret="sim-secret")
links = [f"kill9-{os.getpid()}-{i}" for i in range(int(sys.argv[2]))]
for link in links:
    client.create_order(category="linear", symbol="BTCUSDT", side="Buy", order_type="Limit", qty=Decimal("0.001"),
                        price=Decimal("10000.0"), time_in_force="PostOnly", order_link_id=link)
print("returned", " ".join(links), flush=True)
time.sleep(600)
"""


NEXT = """
import django
django.setup()
from exchange import audit_spool
from exchange.audit import exchange_call_record
exchange_call_record(method="GET", path="/v5/next", params={}, http_status=200, ret_code=0, ret_msg="OK",
                     latency_ms=1, attempt=1)
assert audit_spool.flush(30)
print("ok")
"""


def _process_env(spool_dir: Path) -> dict:
    db = connection.settings_dict
    return {**os.environ, "DJANGO_SETTINGS_MODULE": "ordermanager.settings.base", "LOG_LEVEL": "warning",
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
            "EXCHANGE_AUDIT_SPOOL_DIR": str(spool_dir), "REDIS_URL": ""}  # fmt: skip


def _read_line(proc: subprocess.Popen, deadline: float) -> str:
    line = proc.stdout.readline()  # the child prints one line, then sleeps; a dead child gives EOF
    assert line and time.monotonic() < deadline, f"the caller did not report: {proc.stderr.read()[-2000:]}"
    return line


@pytest.mark.postgres
def test_rows_of_a_process_killed_right_after_its_calls_are_written_by_the_next(simulator, tmp_path):
    spool_dir = tmp_path / "spool"
    env = _process_env(spool_dir)
    proc = subprocess.Popen([sys.executable, "-c", CALLER, simulator.url, "5"], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        links = _read_line(proc, time.monotonic() + 60).split()[1:]
        os.kill(proc.pid, signal.SIGKILL)  # right after the calls returned
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL and len(links) == 5
    assert not ExchangeCall.objects.filter(order_link_id__in=links).exists()  # none was in the database yet
    [left] = _spool_files(spool_dir)
    assert len(left.read_bytes().splitlines()) >= 5  # time sync + 5 creates

    # The next process with a spool on this database takes the dead one's file over when it opens its own
    # (before writing its own rows, so once its flush returned, the dead one's rows are in).
    nxt = subprocess.run([sys.executable, "-c", NEXT], cwd=ROOT, env=env, text=True, capture_output=True, timeout=120)
    assert nxt.returncode == 0 and "ok" in nxt.stdout, nxt.stderr[-2000:]
    creates = ExchangeCall.objects.filter(path="/v5/order/create", order_link_id__in=links)
    rows = list(creates.order_by("created_at"))
    assert [r.order_link_id for r in rows] == links  # each exactly once, in call order
    assert all(r.http_status == 200 and r.ret_code == 0 and json.loads(r.response_body)["retCode"] == 0
               for r in rows)  # fmt: skip
    assert ExchangeCall.objects.filter(path="/v5/next").count() == 1
    assert _spool_files(spool_dir) == []  # the dead process's file is gone, and the next one closed cleanly

    assert ExchangeCall.objects.filter(path="/v5/market/time").count() == 1  # the dead process's time sync
    assert audit_spool.drain_orphans(next(spool_dir.iterdir())) == 0
    assert creates.count() == 5
