"""An order whose executions cannot be fetched is not judged: it stays unresolved in the run, unchanged."""

from decimal import Decimal

import pytest

from orders.models import Execution, OrderStatus, ReconciliationRun
from orders.reconcile import reconcile
from orders.reconcile.report import Kind
from positions.models import Position
from tests.orders.reconcile.conftest import Stream, books_differences, place

pytestmark = pytest.mark.django_db


def _executions_fail(sim, share: float) -> None:
    sim.state.faults.update({"server_error": share, "paths": ["/v5/execution/list"] if share else []})


def test_order_whose_executions_cannot_be_fetched_stays_unresolved_and_unchanged(sim):
    engine = sim.engine
    stream = Stream(engine)
    order = place(price="64000", qty="0.010")
    other = place(price="60000", qty="0.010")  # rests: agrees with the exchange, needs nothing
    stream.stop()
    engine.set_price("BTCUSDT", "63900")  # the first one fills; neither the fill nor the order event arrives
    _executions_fail(sim, 1.0)

    run = reconcile(trigger="command")

    assert run.status == ReconciliationRun.Status.UNRESOLVED
    judged = run.discrepancies.get(order_link_id=order.order_link_id)
    assert judged.kind == Kind.ORDER_CLOSED
    assert judged.resolved is False
    assert "executions could not be fetched" in judged.note
    assert judged.before["exchange"]["status"] == OrderStatus.FILLED  # what the exchange said is kept
    order.refresh_from_db()
    # Nothing applied from the order lookup alone: a filled_qty taken from cumExecQty without its fills
    # would make the next run agree with the exchange and never fetch them.
    assert (order.status, order.filled_qty) == (OrderStatus.NEW, Decimal(0))
    assert not Execution.objects.exists()
    other.refresh_from_db()
    assert other.status == OrderStatus.NEW

    _executions_fail(sim, 0.0)
    again = reconcile(trigger="command")

    assert again.status == ReconciliationRun.Status.SUCCEEDED
    assert again.discrepancies.get(order_link_id=order.order_link_id).resolved is True
    order.refresh_from_db()
    assert (order.status, order.filled_qty) == (OrderStatus.FILLED, Decimal("0.010"))
    assert Position.objects.get(symbol="BTCUSDT").size == Decimal("0.010")
    assert books_differences(engine) == []


def test_order_placed_outside_with_unfetchable_fills_is_not_recorded_yet(sim):
    engine = sim.engine
    outside = engine.create_order({"category": "linear", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Limit",
                                   "qty": "0.010", "price": "64000"})  # fmt: skip
    engine.force_fill(order_id=outside["orderId"], qty="0.004")
    _executions_fail(sim, 1.0)

    run = reconcile(trigger="command")

    flagged = run.discrepancies.get(kind=Kind.EXTERNAL_ORDER)
    assert flagged.resolved is False and "executions could not be fetched" in flagged.note
    assert not Position.objects.filter(symbol="BTCUSDT").exclude(size=0).exists()

    _executions_fail(sim, 0.0)
    reconcile(trigger="command")
    assert books_differences(engine) == []
