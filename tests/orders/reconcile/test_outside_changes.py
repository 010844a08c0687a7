"""An order placed outside the service; a position changed outside; a symbol the exchange does not report."""

from decimal import Decimal

import pytest

from exchange.instruments import instrument_get
from ordermanager.core.models import AuditEntry
from orders.models import Execution, Order, OrderStatus, ReconciliationRun, RiskLimit
from orders.reconcile import positions as reconcile_positions
from orders.reconcile import reconcile
from orders.reconcile.report import Kind
from positions.models import Position
from tests.orders.factories import RiskLimitFactory
from tests.orders.reconcile.conftest import Stream, books_differences, place

pytestmark = pytest.mark.django_db


def _outside(engine, **params):
    """An order from the exchange's web page: no orderLinkId of ours."""
    return engine.create_order({"category": "linear", "symbol": "BTCUSDT", **params})


def test_orders_placed_outside_are_recorded_as_external_and_never_cancelled(sim):
    engine = sim.engine
    resting = _outside(engine, side="Sell", orderType="Limit", qty="0.005", price="70000")
    _outside(engine, side="Buy", orderType="Market", qty="0.030")  # filled at once: moves the position

    run = reconcile(trigger="command")

    assert books_differences(engine) == []
    external = Order.objects.filter(is_external=True)
    assert external.count() == 2 and run.external == 2
    open_one = external.get(order_id=resting["orderId"])
    assert open_one.status == OrderStatus.NEW and open_one.order_link_id.startswith("ext-")
    assert engine.orders[resting["orderId"]].status == "New", "flagged, not cancelled"
    assert Position.objects.get(symbol="BTCUSDT").size == Decimal("0.030")
    flagged = run.discrepancies.filter(kind=Kind.EXTERNAL_ORDER)
    assert flagged.count() == 2 and all("never cancelled" in d.note for d in flagged)
    assert reconcile(trigger="command").discrepancies.count() == 0


def test_a_trade_outside_is_explained_by_its_fills(sim):
    engine = sim.engine
    stream = Stream(engine)
    place(order_type="Market", qty="0.010")
    stream.stop()
    # Somebody closes part of it on the web page, long ago enough that the run's
    # regular window would have it anyway: the position differs until the fills are in.
    _outside(engine, side="Sell", orderType="Market", qty="0.004", reduceOnly=True)

    run = reconcile(trigger="command")

    assert books_differences(engine) == []
    assert Position.objects.get(symbol="BTCUSDT").size == Decimal("0.006")
    assert not RiskLimit.objects.filter(symbol="BTCUSDT").exists()
    assert run.status == ReconciliationRun.Status.SUCCEEDED


def _move_exchange_position(engine, symbol: str, idx: int, size: str, side: str, price: str) -> None:
    """Change the exchange's position with no execution to explain it (a transfer, or
    fills older than the execution history reaches)."""
    engine.set_position(symbol=symbol, position_idx=idx, size=size, side=side, avg_price=price)


def test_an_unexplained_position_puts_the_symbol_reduce_only_and_books_the_exchange(sim):
    engine = sim.engine
    stream = Stream(engine)
    RiskLimitFactory(symbol="", max_position_size=Decimal("12345"))
    place(order_type="Market", qty="0.010")
    stream.stop()
    _move_exchange_position(engine, "BTCUSDT", 0, "0.025", "Buy", "64100.5")
    instrument_get(category="linear", symbol="BTCUSDT")  # cached rules: sizes are shown at the qty step

    run = reconcile(trigger="command")

    assert run.status == ReconciliationRun.Status.UNRESOLVED
    mismatch = run.discrepancies.get(kind=Kind.POSITION_MISMATCH)
    assert not mismatch.resolved and "do not explain" in mismatch.note
    # Sizes at the instrument's step (0.001), not the column's 18 places ("ours 0.010000000000000000").
    assert "fills do not explain it: idx 0 ours 0.010 vs exchange 0.025;" in mismatch.note
    assert mismatch.before["sides"][0]["exchange"]["size"] == "0.025"
    assert mismatch.before["sides"][0]["ours"]["size"] == "0.01"  # exact, without the column's padding
    limit = RiskLimit.objects.get(symbol="BTCUSDT")
    assert limit.reduce_only and f"reconciliation #{run.pk}" in limit.halt_reason
    assert limit.max_position_size == Decimal("12345"), "the per-symbol row starts from the global limits"
    assert AuditEntry.objects.filter(target_id=str(limit.pk), source="reconciliation").exists()
    pos = Position.objects.get(symbol="BTCUSDT", position_idx=0)
    assert pos.size == Decimal("0.025") and pos.avg_entry_price == Decimal("64100.5")
    adjustments = Execution.objects.filter(source="adjust").order_by("exec_id")
    assert [e.exec_id.rsplit("-", 1)[1] for e in adjustments] == ["close", "open"]

    again = reconcile(trigger="command")
    assert again.discrepancies.count() == 0 and again.status == ReconciliationRun.Status.SUCCEEDED
    assert RiskLimit.objects.get(symbol="BTCUSDT").reduce_only, "only a person clears it"


def test_a_difference_that_settles_while_we_compare_halts_nothing(sim, monkeypatch):
    # A second process reconciling at start-up while the first one trades: the
    # exchange's row is read while a fill is still on its way to our book.
    engine = sim.engine
    stream = Stream(engine)
    place(order_type="Market", qty="0.010")
    stream.stop()
    _move_exchange_position(engine, "BTCUSDT", 0, "0.025", "Buy", "64100.5")
    caught_up = lambda seconds: _move_exchange_position(engine, "BTCUSDT", 0, "0.010", "Buy", "64100.5")  # noqa: E731
    monkeypatch.setattr(reconcile_positions, "_settle_wait", caught_up)

    run = reconcile(trigger="command")

    assert not RiskLimit.objects.filter(symbol="BTCUSDT").exists()
    assert not Execution.objects.filter(source="adjust").exists()
    assert run.discrepancies.get(kind=Kind.POSITION_EXPLAINED).resolved


def test_a_difference_that_keeps_moving_is_not_judged(sim, monkeypatch):
    engine = sim.engine
    stream = Stream(engine)
    place(order_type="Market", qty="0.010")
    stream.stop()
    sizes = iter(["0.030", "0.040", "0.050", "0.060", "0.070"])
    _move_exchange_position(engine, "BTCUSDT", 0, next(sizes), "Buy", "64100.5")
    trading = lambda seconds: _move_exchange_position(engine, "BTCUSDT", 0, next(sizes), "Buy", "64100.5")  # noqa: E731
    monkeypatch.setattr(reconcile_positions, "_settle_wait", trading)

    run = reconcile(trigger="command")

    mismatch = run.discrepancies.get(kind=Kind.POSITION_MISMATCH)
    assert not mismatch.resolved and "not judged" in mismatch.note
    assert not RiskLimit.objects.filter(symbol="BTCUSDT").exists()
    assert Position.objects.get(symbol="BTCUSDT").size == Decimal("0.010"), "no adjustment on a moving target"


def test_no_fix_leaves_the_book_but_still_halts(sim):
    engine = sim.engine
    stream = Stream(engine)
    place(order_type="Market", qty="0.010")
    stream.stop()
    _move_exchange_position(engine, "BTCUSDT", 0, "0", "", "0")

    run = reconcile(trigger="command", fix_positions=False)

    assert Position.objects.get(symbol="BTCUSDT").size == Decimal("0.010")
    assert RiskLimit.objects.get(symbol="BTCUSDT").reduce_only
    assert run.discrepancies.get(kind=Kind.POSITION_MISMATCH).after == {"backfilled": 0, "reduce_only": True}
    assert not Execution.objects.filter(source="adjust").exists()


def test_a_symbol_the_exchange_does_not_report_is_unknown_never_flat(sim):
    engine = sim.engine
    stream = Stream(engine)
    place(order_type="Market", qty="0.010")
    stream.stop()
    _move_exchange_position(engine, "BTCUSDT", 0, "0", "", "0")  # the listing no longer shows it ...
    sim.state.faults.update({"server_error": 1.0, "paths": ["/v5/position/list"]})  # ... and the symbol query fails

    run = reconcile(trigger="command")

    unknown = run.discrepancies.get(kind=Kind.POSITION_UNKNOWN)
    assert unknown.symbol == "BTCUSDT" and not unknown.resolved and "not read as flat" in unknown.note
    assert Position.objects.get(symbol="BTCUSDT").size == Decimal("0.010")
    assert not RiskLimit.objects.filter(symbol="BTCUSDT").exists()
    assert run.status == ReconciliationRun.Status.UNRESOLVED


def test_hedge_mode_positions_are_matched_by_position_idx(sim):
    engine = sim.engine
    engine.switch_mode({"category": "linear", "symbol": "ETHUSDT", "mode": 3})
    stream = Stream(engine)
    place(symbol="ETHUSDT", order_type="Market", qty="0.30", position_idx=1)
    stream.stop()
    place(symbol="ETHUSDT", order_type="Market", side="Sell", qty="0.20", position_idx=2)
    place(symbol="ETHUSDT", order_type="Market", side="Sell", qty="0.10", position_idx=1, reduce_only=True)

    run = reconcile(trigger="command")

    assert books_differences(engine) == []
    rows = {p.position_idx: p.size for p in Position.objects.filter(symbol="ETHUSDT")}
    assert rows[1] == Decimal("0.20") and rows[2] == Decimal("0.20")
    assert run.status == ReconciliationRun.Status.SUCCEEDED
    assert reconcile(trigger="command").discrepancies.count() == 0


def test_when_executions_cannot_be_fetched_a_difference_is_not_judged(sim):
    engine = sim.engine
    stream = Stream(engine)
    order = place(price="64000", qty="0.010")
    stream.stop()
    engine.set_price("BTCUSDT", "63900")  # it fills; the fill is not in the database
    sim.state.faults.update({"server_error": 1.0, "paths": ["/v5/execution/list"]})

    run = reconcile(trigger="command")

    assert run.status == ReconciliationRun.Status.UNRESOLVED
    kinds = set(run.discrepancies.values_list("kind", flat=True))
    assert {Kind.LOOKUP_FAILED, Kind.POSITION_MISMATCH} <= kinds
    assert "not judged" in run.discrepancies.get(kind=Kind.POSITION_MISMATCH).note
    assert not RiskLimit.objects.filter(symbol="BTCUSDT").exists(), "no halt on a guess"
    assert not Execution.objects.filter(source="adjust").exists()
    order.refresh_from_db()
    # The order is not judged either: its fills could not be fetched (test_unfetched_executions.py).
    assert order.status == OrderStatus.NEW
    assert not run.discrepancies.get(order_link_id=order.order_link_id).resolved

    sim.state.faults.update({"server_error": 0.0, "paths": []})
    assert reconcile(trigger="command").status == ReconciliationRun.Status.SUCCEEDED
    assert books_differences(engine) == []
