"""Cancels and amends we sent whose answer never came are settled from the exchange's state."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from orders.models import Order, OrderStatus
from orders.reconcile import reconcile
from orders.reconcile.report import Kind
from tests.orders.reconcile.conftest import Stream, books_differences, place

pytestmark = pytest.mark.django_db


def _sent_before_the_run(order: Order, **values) -> None:
    # Rows changed after the run's snapshot are left to the next run; these changed before it.
    Order.objects.filter(pk=order.pk).update(updated_at=timezone.now() - timedelta(seconds=5), **values)


def test_a_cancel_that_happened_is_settled_and_one_that_did_not_is_undone(sim):
    engine = sim.engine
    stream = Stream(engine)
    done = place(price="60000")
    not_done = place(price="60100")
    stream.stop()
    engine.cancel_order({"category": "linear", "symbol": "BTCUSDT", "orderLinkId": done.order_link_id})
    for order in (done, not_done):  # order_cancel marked them; the answers never came
        _sent_before_the_run(order, status=OrderStatus.PENDING_CANCEL, cancel_reason="stale")

    run = reconcile(trigger="command")

    done.refresh_from_db()
    not_done.refresh_from_db()
    assert done.status == OrderStatus.CANCELLED
    assert not_done.status == OrderStatus.NEW and "cancel not confirmed" in not_done.cancel_note
    assert engine.orders_by_link[not_done.order_link_id].status == "New", "not re-sent blindly"
    assert dict(run.discrepancies.values_list("order_link_id", "kind")) == {
        done.order_link_id: Kind.CANCEL_SETTLED,
        not_done.order_link_id: Kind.CANCEL_NOT_DONE,
    }
    assert books_differences(engine) == []
    assert reconcile(trigger="command").discrepancies.count() == 0


def test_an_amend_whose_answer_was_lost_takes_the_exchange_values(sim):
    engine = sim.engine
    stream = Stream(engine)
    order = place(price="60000", qty="0.010")
    stream.stop()
    engine.amend_order({"category": "linear", "symbol": "BTCUSDT", "orderLinkId": order.order_link_id,
                        "qty": "0.020", "price": "60500"})  # fmt: skip
    _sent_before_the_run(order)

    run = reconcile(trigger="command")

    order.refresh_from_db()
    assert (order.qty, order.price, order.status) == (Decimal("0.020"), Decimal("60500"), OrderStatus.NEW)
    assert run.discrepancies.get().kind == Kind.ORDER_AMENDED
    assert reconcile(trigger="command").discrepancies.count() == 0


def test_a_row_changed_after_the_snapshot_is_left_for_the_next_run(sim):
    engine = sim.engine
    order = place(price="60000")
    engine.cancel_order({"category": "linear", "symbol": "BTCUSDT", "orderLinkId": order.order_link_id})
    future = timezone.now() + timedelta(minutes=1)  # a live event touched it "after" the snapshot
    Order.objects.filter(pk=order.pk).update(updated_at=future)

    run = reconcile(trigger="command")

    order.refresh_from_db()
    assert order.status == OrderStatus.NEW and run.discrepancies.count() == 0


def test_a_row_written_off_while_the_exchange_has_it_open_is_revived(sim):
    # e.g. failed by a process that gave up while its request was still on the way
    order = place(price="60000")
    _sent_before_the_run(order, status=OrderStatus.FAILED, reject_reason="gave up")

    run = reconcile(trigger="command")

    order.refresh_from_db()
    assert order.status == OrderStatus.NEW and "open on the exchange" in order.cancel_note
    found = run.discrepancies.get()
    assert (found.kind, found.before["status"], found.after["status"]) == (Kind.ORDER_REOPENED, "failed", "new")
    assert reconcile(trigger="command").discrepancies.count() == 0
