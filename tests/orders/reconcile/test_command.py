"""manage.py reconcile: summary table, --json, exit codes, progress bar on a terminal."""

import io
import json

import pytest
from django.core.management import CommandError, call_command

from orders.models import ReconciliationRun
from orders.reconcile.lock import LockBusy
from tests.orders.reconcile.conftest import Stream, place

pytestmark = pytest.mark.django_db


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _run(*args, stderr=None):
    out, err = io.StringIO(), stderr or io.StringIO()
    try:
        call_command("reconcile", *args, stdout=out, stderr=err)
    except CommandError as exc:
        return exc.returncode, out.getvalue(), err.getvalue() + str(exc)
    return 0, out.getvalue(), err.getvalue()


def test_clean_books_exit_0_with_a_summary_table(sim):
    code, out, _ = _run()
    assert code == 0
    assert "Reconciliation #" in out and "succeeded" in out
    assert "checked  updated  backfilled  external  failed  discrepancies  unresolved" in out
    assert "No discrepancies" in out


def test_json_prints_the_run_and_resolved_differences_exit_0(sim):
    stream = Stream(sim.engine)
    order = place(price="64000")
    stream.stop()
    sim.engine.set_price("BTCUSDT", "63900")

    code, out, _ = _run("--json")

    body = json.loads(out)
    assert code == 0 and body["status"] == "succeeded" and body["trigger"] == "command"
    assert order.order_link_id in {d["order_link_id"] for d in body["discrepancies"]}
    assert body["counts"]["unresolved"] == 0


def test_unresolved_discrepancies_exit_2_and_are_listed(sim):
    place(price="64000")
    sim.engine.set_price("BTCUSDT", "63900")

    code, out, err = _run("--dry-run")

    assert code == 2 and "unresolved" in err
    assert "order_closed_on_exchange" in out and "NO" in out


def test_a_failed_run_exits_1_with_the_reason(sim):
    sim.state.faults.update({"server_error": 1.0})
    code, _, err = _run("--symbol", "BTCUSDT")
    assert code == 1 and "failed" in err and "exchange unavailable" in err
    assert ReconciliationRun.objects.get().symbol == "BTCUSDT"


def test_busy_exits_3_and_bad_symbol_exits_64(sim, monkeypatch):
    import orders.reconcile as reconciliation

    def busy(*, wait):
        raise LockBusy("held")

    monkeypatch.setattr(reconciliation, "reconcile_lock", busy)
    assert _run()[0] == 3
    code, _, err = _run("--symbol", "BTC/USDT")
    assert code == 64 and "not a symbol" in err


def test_the_progress_bar_is_drawn_on_a_terminal_only(sim):
    place(price="60000")
    _, _, plain = _run()
    assert "[" not in plain

    tty = Tty()
    _run(stderr=tty)
    drawn = tty.getvalue()
    assert "\r" in drawn and "orders" in drawn and "positions" in drawn and "#" in drawn
