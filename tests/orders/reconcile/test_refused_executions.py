"""Executions the exchange answers that cannot be booked as they are: the backfill refuses each
such row with an unresolved discrepancy and books the others; nothing is booked at price 0,
in 1970, or under an id cut to fit."""


import pytest

from orders.models import Execution, ReconciliationRun
from orders.reconcile import reconcile
from orders.reconcile.executions import exec_window_start
from orders.reconcile.report import Kind
from positions.models import PositionLedgerEntry
from tests.orders.reconcile.conftest import place

pytestmark = pytest.mark.django_db


def _answers_without(engine, monkeypatch, exec_id: str, change) -> None:
    """The exchange's execution list with one row changed (the edge under test is Bybit's answer)."""
    listed = engine.execution_list

    def execution_list(params):
        rows, cursor = listed(params)
        return [change(dict(row)) if row["execId"] == exec_id else row for row in rows], cursor

    monkeypatch.setattr(engine, "execution_list", execution_list)


def _fills_while_stopped(engine):
    # No consumer listens: both fills happen on the exchange only, the backfill must bring them.
    good = place(order_type="Market", qty="0.010")
    bad = place(symbol="ETHUSDT", order_type="Market", qty="0.10")
    with engine.lock:
        by_link = {e.order_link_id: e.exec_id for e in engine.executions}
    return good, bad, by_link[good.order_link_id], by_link[bad.order_link_id]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda row: {k: v for k, v in row.items() if k != "execPrice"}, "execPrice is missing"),
        (lambda row: {**row, "execTime": ""}, "execTime is missing"),
        (lambda row: {**row, "execQty": "1_0"}, "execQty: '1_0' is not a decimal number"),
        (lambda row: {**row, "side": ""}, "side is missing: a Trade execution needs it to move the position"),
        (lambda row: {**row, "execId": row["execId"] + "-" + "x" * 40},
         "execId is 77 characters, longer than the 64 we can store"),
    ],
    ids=["no price", "no time", "loose decimal", "no side", "long id"],
)
def test_an_execution_the_exchange_sends_incomplete_is_refused_and_the_others_booked(sim, monkeypatch, change,
                                                                                    reason):
    engine = sim.engine
    good, bad, good_exec, bad_exec = _fills_while_stopped(engine)
    _answers_without(engine, monkeypatch, bad_exec, change)

    run = reconcile(trigger="command")

    assert run.status == ReconciliationRun.Status.UNRESOLVED, run.error
    refused = run.discrepancies.filter(kind=Kind.EXECUTION_REFUSED)
    assert refused.count() >= 1 and {d.symbol for d in refused} == {"ETHUSDT"}
    first = refused.order_by("pk").first()
    assert not first.resolved and reason in first.note and first.note.startswith("execution from the exchange")
    assert bad_exec in first.before["exec_id"]
    # The good row is booked; the bad one is not, in any form (no price 0, no 1970, no cut id). The
    # position differs from the exchange: that is repaired by an explicit adjustment, as any unexplained gap.
    assert set(Execution.objects.exclude(source="adjust").values_list("exec_id", flat=True)) == {good_exec}
    assert not PositionLedgerEntry.objects.filter(exec_id__startswith=bad_exec[:36]).exists()
    assert not Execution.objects.filter(exec_price=0).exists()
    assert not Execution.objects.filter(exec_time__year__lt=2000).exists()
    # The run did not take every execution in: the next one looks again from before it.
    start = exec_window_start(category="linear", symbol=None, now=run.finished_at)
    assert start < int(run.started_at.timestamp() * 1000) - 60 * 60 * 1000


def test_a_dry_run_names_the_refused_execution_too(sim, monkeypatch):
    engine = sim.engine
    _, _, _, bad_exec = _fills_while_stopped(engine)
    _answers_without(engine, monkeypatch, bad_exec, lambda row: {**row, "side": "sell"})

    run = reconcile(trigger="command", dry_run=True)

    refused = run.discrepancies.get(kind=Kind.EXECUTION_REFUSED)
    assert "side is 'sell', not Buy or Sell" in refused.note and not Execution.objects.exists()
    assert run.discrepancies.get(kind=Kind.EXECUTIONS_BACKFILLED).before["missing"] == 1
