"""Reconciliation never sends an order for a signal that is finished or has successors, nor one a live hold
owns (docs/decisions/0315): a late order for an old signal must not overtake the symbol's later signals."""

import pytest
from django.utils import timezone

from orders.models import OrderHold, OrderStatus, SignalOrderRelationship
from orders.reconcile import reconcile
from orders.reconcile.report import Kind
from signals_app.models import SignalStatus, TradingSignal
from signals_app.services.intake import signal_intake
from tests.orders.reconcile.conftest import place, sim_order
from tests.signals_app.conftest import signal_message

pytestmark = pytest.mark.django_db


def signal(asset: str, status: str) -> TradingSignal:
    result = signal_intake(payload=signal_message(asset=asset), source="api")
    TradingSignal.objects.filter(pk=result.signal.pk).update(status=status)
    result.signal.refresh_from_db()
    return result.signal


def pending_for(sig: TradingSignal, **kw):
    # Crashed 40 s ago around the request: past the in-flight grace, well inside PENDING_SUBMIT_RETRY_WINDOW.
    order = place(symbol=sig.asset, submit=False, age_seconds=40, **kw)
    SignalOrderRelationship.objects.create(signal=sig, order=order, allocation_amount=1000)
    return order


def test_pending_orders_of_finished_succeeded_or_held_signals_are_never_sent(sim, settings):
    settings.PENDING_SUBMIT_RETRY_WINDOW = 60
    settings.ORDER_EXECUTION_TIMEOUT = 30
    # Finished: the old pipeline ended such signals `failed` with the order still pending_submit.
    finished = pending_for(signal("BTCUSDT", SignalStatus.FAILED), price="60000")
    # Unfinished, but a later signal of the same symbol has been processed since.
    overtaken = pending_for(signal("ETHUSDT", SignalStatus.PROCESSING), price="3000", qty="0.10")
    successor = signal("ETHUSDT", SignalStatus.EXECUTED)
    # Held by the signal processor: its own lookups settle it.
    held_signal = signal("SOLUSDT", SignalStatus.PROCESSING)
    held = pending_for(held_signal, price="100", qty="1")
    OrderHold.objects.create(order=held, signal=held_signal, symbol="SOLUSDT", since=timezone.now(),
                             next_check_at=timezone.now())
    # Unfinished, no successor, no hold: still sent as before (same orderLinkId).
    alone = pending_for(signal("XRPUSDT", SignalStatus.PROCESSING), price="0.5", qty="100")

    run = reconcile(trigger="startup")

    for order in (finished, overtaken, held, alone):
        order.refresh_from_db()
    for order in (finished, overtaken, held):
        assert sim_order(sim.engine, order) is None, f"{order.order_link_id} must not be sent"
    assert finished.status == OrderStatus.FAILED and "its signal is finished (failed)" in finished.reject_reason
    assert overtaken.status == OrderStatus.FAILED and str(successor.signal_id) in overtaken.reject_reason
    assert held.status == OrderStatus.PENDING_SUBMIT
    assert alone.status == OrderStatus.NEW and sim_order(sim.engine, alone).order_id == alone.order_id
    kinds = dict(run.discrepancies.values_list("order_link_id", "kind"))
    assert kinds[finished.order_link_id] == kinds[overtaken.order_link_id] == Kind.PENDING_NOT_SENT
    assert held.order_link_id not in kinds
