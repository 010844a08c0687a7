"""Incremental validation: only the symbols with rows written since the previous run could see (0515)."""

from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.utils import timezone

from orders.models import Execution
from orders.services import position_validation
from orders.services.position_validation import positions_validate_against_fills
from positions.models import Position, PositionDiscrepancy, PositionValidationRun
from tests.orders.services.test_position_validation import _apply, _book

pytestmark = pytest.mark.django_db


def _runs_minutes_ago(*minutes):
    """The finished runs so far, moved back in time (oldest first): as if they ran on a schedule."""
    runs = list(PositionValidationRun.objects.order_by("started_at"))
    assert len(runs) == len(minutes)
    for run, ago in zip(runs, minutes, strict=True):
        at = timezone.now() - timedelta(minutes=ago)
        PositionValidationRun.objects.filter(pk=run.pk).update(started_at=at, finished_at=at)


def _two_earlier_runs():
    assert positions_validate_against_fills(incremental=True) == []  # no earlier run: full
    assert positions_validate_against_fills(incremental=True) == []  # no run a margin before it: full
    _runs_minutes_ago(30, 5)
    assert PositionValidationRun.objects.filter(full=True).count() == 2


def test_an_incremental_run_checks_only_changed_symbols_and_catches_what_changed():
    _book("BTCUSDT")
    _book("ETHUSDT")
    _book("SOLUSDT")
    _two_earlier_runs()
    # Since then: a fill on ETHUSDT (its row is now tampered with too), and an execution of XRPUSDT that never
    # reached the ledger; BTCUSDT is tampered with by hand, writing no execution or ledger row.
    _apply(symbol="ETHUSDT", side="Buy", qty="0.5", price="118", fee="0.01")
    Position.objects.filter(symbol="ETHUSDT").update(realized_pnl=D("12345"))
    Position.objects.filter(symbol="BTCUSDT").update(fees_paid=D("777"))
    Execution.objects.create(
        exec_id="never-applied", symbol="XRPUSDT", side="Buy", exec_qty=D("2"), exec_price=D("0.5"),
        exec_fee=D("0"), exec_time=timezone.now(), seq=None,
    )  # fmt: skip

    found = positions_validate_against_fills(incremental=True, repair=False)

    assert sorted(r.symbol for r in found) == ["ETHUSDT", "XRPUSDT"]
    run = PositionValidationRun.objects.order_by("-started_at").first()
    assert (run.full, run.symbols, run.differences) == (False, 2, 2)
    # The hand edit wrote nothing the marks see: the full run (schedule, admin action) finds it.
    assert sorted(r.symbol for r in positions_validate_against_fills(repair=False)) == [
        "BTCUSDT", "ETHUSDT", "XRPUSDT",
    ]  # fmt: skip


def test_nothing_changed_checks_no_symbol():
    _book("BTCUSDT")
    _two_earlier_runs()
    Position.objects.filter(symbol="BTCUSDT").update(fees_paid=D("777"))  # by hand: left to the full run
    assert positions_validate_against_fills(incremental=True) == []
    assert PositionValidationRun.objects.order_by("-started_at").first().symbols == 0


def test_rows_the_previous_run_may_not_have_seen_are_checked_again():
    # The marks come from a run a margin before the previous one, not from the previous one: a transaction in
    # flight when the previous run started holds ids below its marks and commits after it.
    _book("BTCUSDT")
    _book("ETHUSDT")
    assert positions_validate_against_fills() == []
    _runs_minutes_ago(30)
    _apply(symbol="ETHUSDT", side="Sell", qty="0.5", price="121", fee="0.01")  # after the old run's marks
    assert positions_validate_against_fills() == []  # the previous run (it saw the fill)
    _runs_minutes_ago(30, 5)
    Position.objects.filter(symbol="ETHUSDT").update(size=D("42"))
    [record] = positions_validate_against_fills(incremental=True)
    assert record.symbol == "ETHUSDT" and record.repaired
    assert PositionDiscrepancy.objects.count() == 1


def test_incremental_is_full_when_no_run_is_a_margin_older(monkeypatch):
    _book("BTCUSDT")
    assert positions_validate_against_fills(incremental=True) == []
    monkeypatch.setattr(position_validation, "INCREMENTAL_MARGIN", timedelta(hours=1))
    _runs_minutes_ago(30)
    Position.objects.filter(symbol="BTCUSDT").update(fees_paid=D("777"))
    [record] = positions_validate_against_fills(incremental=True, repair=False)
    assert record.symbol == "BTCUSDT"
    assert PositionValidationRun.objects.order_by("-started_at").first().full
