"""The consumer was stopped while orders filled, were cancelled, or partially filled.

After one reconciliation the database equals the simulator (orders, executions,
positions), and a second run finds nothing.
"""

from decimal import Decimal

import pytest

from orders.models import Execution, Order, OrderStatus, ReconciliationRun
from orders.reconcile import reconcile
from orders.reconcile.report import Kind
from positions.models import Position
from tests.orders.reconcile.conftest import Stream, books_differences, place

pytestmark = pytest.mark.django_db


def _kinds(run):
    return sorted(run.discrepancies.values_list("kind", flat=True))


def test_orders_filled_cancelled_and_partly_filled_while_stopped(sim):
    engine = sim.engine
    stream = Stream(engine)
    filled = place(price="64000", qty="0.010")
    cancelled = place(price="60000", qty="0.020")
    partial = place(price="63000", qty="0.030")
    untouched = place(symbol="ETHUSDT", price="3000", qty="0.10")
    stream.pump()
    assert Order.objects.filter(status=OrderStatus.NEW).count() == 4
    stream.stop()

    engine.set_price("BTCUSDT", "63900")  # crosses the 64000 buy: it fills as maker
    engine.cancel_order({"category": "linear", "symbol": "BTCUSDT", "orderLinkId": cancelled.order_link_id})
    engine.force_fill(order_link_id=partial.order_link_id, qty="0.010")
    assert books_differences(engine)  # the database is behind the exchange

    run = reconcile(trigger="command")

    assert books_differences(engine) == []
    assert run.status == ReconciliationRun.Status.SUCCEEDED, run.error
    assert _kinds(run) == sorted(
        [Kind.ORDER_CLOSED, Kind.ORDER_CLOSED, Kind.ORDER_FILLS_BEHIND, Kind.EXECUTIONS_BACKFILLED]
    )
    assert run.backfilled == 2 and run.updated == 3 and run.failed == 0 and run.external == 0
    filled.refresh_from_db()
    partial.refresh_from_db()
    untouched.refresh_from_db()
    assert filled.status == OrderStatus.FILLED and filled.filled_qty == Decimal("0.010")
    assert partial.status == OrderStatus.PARTIALLY_FILLED and partial.filled_qty == Decimal("0.010")
    assert untouched.status == OrderStatus.NEW
    assert Order.objects.get(pk=cancelled.pk).status == OrderStatus.CANCELLED
    assert set(Execution.objects.values_list("source", flat=True)) == {"rest"}
    assert Position.objects.get(symbol="BTCUSDT", position_idx=0).size == Decimal("0.020")
    closed = run.discrepancies.get(order_link_id=filled.order_link_id)
    assert closed.before["status"] == "new" and closed.after["status"] == "filled" and closed.resolved

    again = reconcile(trigger="command")
    assert again.status == ReconciliationRun.Status.SUCCEEDED
    assert again.discrepancies.count() == 0 and again.updated == 0 and again.backfilled == 0


def test_a_post_only_order_that_would_have_crossed_ends_rejected_as_live(sim):
    engine = sim.engine
    order = place(price="66000", tif="PostOnly")  # above the last price: Bybit cancels it at once
    assert order.status == OrderStatus.NEW  # the ack came; the cancel event was never seen

    run = reconcile(trigger="command")

    order.refresh_from_db()
    assert order.status == OrderStatus.REJECTED
    assert run.status == ReconciliationRun.Status.SUCCEEDED and run.discrepancies.get().resolved
    assert books_differences(engine) == []
