"""A crash between pending_submit and the request, and between the request and the answer."""

from datetime import timedelta

import pytest
from django.utils import timezone

from orders.models import Order, OrderStatus, ReconciliationRun
from orders.reconcile import reconcile
from orders.reconcile.report import Kind
from positions.models import Position
from signals_app.models import TradingSignal
from tests.orders.factories import SignalOrderRelationshipFactory
from tests.orders.reconcile.conftest import books_differences, place, sim_order

pytestmark = pytest.mark.django_db


def test_never_sent_orders_are_resubmitted_when_fresh_failed_when_old_and_left_when_in_flight(sim, settings):
    settings.PENDING_SUBMIT_RETRY_WINDOW = 60
    settings.ORDER_EXECUTION_TIMEOUT = 30
    fresh = place(price="60000", submit=False, age_seconds=40)  # crashed 40 s ago, before the request
    old = place(price="60100", submit=False, age_seconds=120)
    in_flight = place(price="60200", submit=False, age_seconds=5)  # another process may be sending it now
    old_signal = place(price="60300", submit=False, age_seconds=40)
    link = SignalOrderRelationshipFactory(order=old_signal)
    TradingSignal.objects.filter(pk=link.signal_id).update(received_at=timezone.now() - timedelta(seconds=300))

    run = reconcile(trigger="startup")

    for order in (fresh, old, in_flight, old_signal):
        order.refresh_from_db()
    assert fresh.status == OrderStatus.NEW and sim_order(sim.engine, fresh).order_id == fresh.order_id
    assert old.status == OrderStatus.FAILED and "PENDING_SUBMIT_RETRY_WINDOW" in old.reject_reason
    assert old_signal.status == OrderStatus.FAILED, "the signal's age counts, not only the row's"
    assert in_flight.status == OrderStatus.PENDING_SUBMIT
    for order in (old, in_flight, old_signal):
        assert sim_order(sim.engine, order) is None, "never sent twice, never sent late"
    kinds = dict(run.discrepancies.values_list("order_link_id", "kind"))
    assert kinds == {
        fresh.order_link_id: Kind.PENDING_RESUBMITTED,
        old.order_link_id: Kind.PENDING_FAILED,
        old_signal.order_link_id: Kind.PENDING_FAILED,
    }
    assert run.failed == 2 and run.status == ReconciliationRun.Status.SUCCEEDED
    assert reconcile(trigger="command").discrepancies.count() == 0


def test_the_answer_was_lost_the_order_is_adopted_with_its_fills(sim):
    # Every answer of the create and of the client's lookups is lost: the order reached
    # the exchange (and filled, being a market order), but the row stays pending_submit.
    sim.state.faults.update({"drop_response": 1.0, "paths": ["/v5/order/create", "/v5/order/realtime",
                                                             "/v5/order/history"]})  # fmt: skip
    lost = place(order_type="Market", qty="0.020")
    resting = place(symbol="ETHUSDT", price="3000", qty="0.30")
    assert lost.status == resting.status == OrderStatus.PENDING_SUBMIT
    assert sim_order(sim.engine, lost).status == "Filled" and sim_order(sim.engine, resting).status == "New"
    sim.state.faults.update({"drop_response": 0.0, "paths": []})
    Order.objects.filter(pk__in=[lost.pk, resting.pk]).update(created_at=timezone.now() - timedelta(seconds=45))

    run = reconcile(trigger="startup")

    assert books_differences(sim.engine) == []
    lost.refresh_from_db()
    resting.refresh_from_db()
    assert lost.status == OrderStatus.FILLED and lost.order_id == sim_order(sim.engine, lost).order_id
    assert resting.status == OrderStatus.NEW and resting.order_id
    assert Position.objects.get(symbol="BTCUSDT").size == lost.qty
    assert sorted(run.discrepancies.exclude(kind=Kind.EXECUTIONS_BACKFILLED).values_list("kind", flat=True)) == [
        Kind.PENDING_ADOPTED, Kind.PENDING_ADOPTED
    ]
    assert len(sim.engine.orders) == 2, "adopted, not sent again"
    assert reconcile(trigger="command").discrepancies.count() == 0
