"""Fills in flight while a reconciliation compares positions are booked, never forced (docs/decisions/0604).

Another process trades the symbol while the run compares: the exchange's position moves at once, our
fill arrives over the private stream later. The run must find the execution on the exchange and book it,
not judge the difference "unexplained" (forced adjustment, reduce-only halt)."""

from decimal import Decimal

import pytest
from django.utils import timezone

from orders.models import Execution, OrderHold, OrderStatus, ReconciliationRun, RiskLimit, SignalOrderRelationship
from orders.reconcile import positions as reconcile_positions
from orders.reconcile import reconcile
from orders.reconcile.report import Kind
from positions.models import Position
from tests.orders.reconcile.conftest import Stream, backdate, books_differences, place

pytestmark = pytest.mark.django_db


def _trading_during_the_positions_step(monkeypatch, first, act) -> list:
    """``first`` runs right before the run lists positions (so the listing finds a difference that the
    symbol's executions explain), ``act`` once right after the symbol's backfill (before it compares)."""
    real_fetch = reconcile_positions.positions_fetch

    def trade_then_list(*args, **kwargs):
        first()
        return real_fetch(*args, **kwargs)

    monkeypatch.setattr(reconcile_positions, "positions_fetch", trade_then_list)
    real = reconcile_positions.backfill_run
    done: list = []

    def backfill_then_act(ctx):
        booked = real(ctx)
        if not done:
            done.append(act())
        return booked

    monkeypatch.setattr(reconcile_positions, "backfill_run", backfill_then_act)
    return done


def _nothing_forced(run) -> None:
    assert not Execution.objects.filter(source="adjust").exists(), "no forced trade"
    assert not RiskLimit.objects.filter(symbol="BTCUSDT").exists(), "no reduce-only halt"
    assert not run.discrepancies.filter(kind=Kind.POSITION_MISMATCH).exists()
    assert run.discrepancies.get(kind=Kind.POSITION_EXPLAINED).resolved


def test_our_other_process_trading_after_the_backfill_is_booked_not_forced(sim, monkeypatch):
    engine = sim.engine
    stream = Stream(engine)
    place(order_type="Market", qty="0.010")
    stream.stop()
    late = Stream(engine)  # the other consumer's fills: on their way, not delivered during the run
    # The other consumer trades while the run looks: once before the listing (the backfill explains it),
    # once between the run's backfill and its comparison.
    done = _trading_during_the_positions_step(monkeypatch, lambda: place(order_type="Market", qty="0.004"),
                                              lambda: place(order_type="Market", qty="0.003"))  # fmt: skip

    run = reconcile(trigger="command")

    assert done, "the hook ran"
    _nothing_forced(run)
    assert Position.objects.get(symbol="BTCUSDT").size == Decimal("0.017")
    late.pump()  # the delayed fills arrive after the run: already booked, applied once
    assert books_differences(engine) == []
    assert Position.objects.get(symbol="BTCUSDT").size == Decimal("0.017")
    assert not Execution.objects.filter(source="adjust").exists()
    assert reconcile(trigger="command").status == ReconciliationRun.Status.SUCCEEDED


def test_a_fill_of_an_order_we_have_no_row_for_after_the_backfill_is_booked_not_forced(sim, monkeypatch):
    # No order row to say "in flight": only the executions on the exchange can explain the difference.
    engine = sim.engine
    stream = Stream(engine)
    place(order_type="Market", qty="0.010")
    stream.stop()
    outside = {"category": "linear", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Market", "qty": "0.002"}
    done = _trading_during_the_positions_step(monkeypatch, lambda: place(order_type="Market", qty="0.004"),
                                              lambda: engine.create_order(outside))  # fmt: skip

    run = reconcile(trigger="command")

    assert done
    _nothing_forced(run)
    assert Position.objects.get(symbol="BTCUSDT").size == Decimal("0.016")
    assert books_differences(engine) == []


def test_a_fill_landing_while_we_wait_to_compare_again_is_booked_not_forced(sim, monkeypatch):
    # The same race one step later: the fill happens during the pause between two comparisons.
    engine = sim.engine
    stream = Stream(engine)
    place(order_type="Market", qty="0.010")
    stream.stop()
    late = Stream(engine)
    calls: list = []
    outside = {"category": "linear", "symbol": "BTCUSDT", "side": "Sell", "orderType": "Market", "qty": "0.005"}
    done = _trading_during_the_positions_step(monkeypatch, lambda: place(order_type="Market", qty="0.004"),
                                              lambda: engine.create_order(outside))  # fmt: skip

    def trade_meanwhile(seconds):
        if not calls:
            calls.append(place(order_type="Market", qty="0.001"))

    monkeypatch.setattr(reconcile_positions, "_settle_wait", trade_meanwhile)

    run = reconcile(trigger="command")

    assert done and calls
    _nothing_forced(run)
    late.pump()
    assert books_differences(engine) == []
    assert Position.objects.get(symbol="BTCUSDT").size == Decimal("0.010")


def test_a_change_with_no_execution_is_still_judged_and_repaired(sim):
    engine = sim.engine
    stream = Stream(engine)
    place(order_type="Market", qty="0.010")
    stream.stop()
    engine.set_position(symbol="BTCUSDT", position_idx=0, size="0.025", side="Buy", avg_price="64100.5")

    run = reconcile(trigger="command")

    mismatch = run.discrepancies.get(kind=Kind.POSITION_MISMATCH)
    assert not mismatch.resolved and "do not explain" in mismatch.note
    assert RiskLimit.objects.get(symbol="BTCUSDT").reduce_only
    assert Position.objects.get(symbol="BTCUSDT").size == Decimal("0.025")
    assert Execution.objects.filter(source="adjust").count() == 2


def test_an_order_just_acknowledged_with_no_fill_leaves_the_difference_for_the_next_pass(sim):
    engine = sim.engine
    stream = Stream(engine)
    place(order_type="Market", qty="0.010")
    resting = place(price="60000", qty="0.001")  # a limit below the market: acknowledged, no fill yet
    stream.stop()
    engine.set_position(symbol="BTCUSDT", position_idx=0, size="0.025", side="Buy", avg_price="64100.5")

    run = reconcile(trigger="command")

    mismatch = run.discrepancies.get(kind=Kind.POSITION_MISMATCH)
    assert not mismatch.resolved and "in flight" in mismatch.note
    assert resting.order_link_id in mismatch.note
    assert not RiskLimit.objects.filter(symbol="BTCUSDT").exists()
    assert not Execution.objects.filter(source="adjust").exists()
    assert Position.objects.get(symbol="BTCUSDT").size == Decimal("0.010")

    backdate(resting, 3600)  # no longer recent: the next pass judges it
    resting.refresh_from_db()
    assert resting.status == OrderStatus.NEW
    again = reconcile(trigger="command")
    assert "do not explain" in again.discrepancies.get(kind=Kind.POSITION_MISMATCH).note
    assert Position.objects.get(symbol="BTCUSDT").size == Decimal("0.025")


def test_an_order_held_in_pending_submit_leaves_the_difference_for_the_next_pass(sim):
    # A create whose outcome is unknown, kept by a live hold: it may have filled; its fill is not ours yet.
    from tests.orders.reconcile.test_pending_after_a_hold import signal

    engine = sim.engine
    stream = Stream(engine)
    place(order_type="Market", qty="0.010")
    stream.stop()
    sig = signal("BTCUSDT", "processing")
    pending = place(order_type="Market", qty="0.015", submit=False, age_seconds=40)
    SignalOrderRelationship.objects.create(signal=sig, order=pending, allocation_amount=1000)
    OrderHold.objects.create(order=pending, signal=sig, symbol="BTCUSDT", since=timezone.now(),
                             next_check_at=timezone.now())  # fmt: skip
    engine.set_position(symbol="BTCUSDT", position_idx=0, size="0.025", side="Buy", avg_price="64100.5")

    run = reconcile(trigger="command")

    pending.refresh_from_db()
    assert pending.status == OrderStatus.PENDING_SUBMIT
    mismatch = run.discrepancies.get(kind=Kind.POSITION_MISMATCH)
    assert not mismatch.resolved and "in flight" in mismatch.note and pending.order_link_id in mismatch.note
    assert not RiskLimit.objects.filter(symbol="BTCUSDT").exists()
    assert not Execution.objects.filter(source="adjust").exists()
