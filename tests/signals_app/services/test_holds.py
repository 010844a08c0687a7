"""Holds (docs/decisions/0315) against the simulator over real HTTP: a create whose outcome stays unknown keeps
its symbol until the order is found or given up; a given-up order the exchange has is adopted later."""

from datetime import timedelta
from decimal import Decimal as D

import httpx
import pytest
from django.utils import timezone

from orders.models import Order, OrderHold, OrderStatus
from orders.services.order_executor import order_link_id_for
from signals_app.models import SignalStatus, TradingSignal
from signals_app.services.intake import signal_intake
from signals_app.services.signal_processor import SignalProcessor, process_pending
from tests.signals_app.conftest import signal_message

pytestmark = pytest.mark.django_db

BTC = "BTCUSDT"
# The create is processed but its answer lost (504), and every lookup by orderLinkId answers 504 too:
# the client cannot tell whether the order exists.
BLIND = {"drop_response": 1.0, "paths": ["/v5/order/create", "/v5/order/realtime", "/v5/order/history"]}


def faults(simulator, **body) -> None:
    httpx.post(f"{simulator.url}/sim/faults", json=body).raise_for_status()


def intake(**overrides) -> TradingSignal:
    body = {"asset": BTC, "confidence": 0.95, "amount": "650", **overrides}
    result = signal_intake(payload=signal_message(**body), source="api")
    assert result.created, result.rejected_reason
    return result.signal


def fresh(signal: TradingSignal) -> TradingSignal:
    signal.refresh_from_db()
    return signal


def due_now(**extra) -> None:
    """The hold's next lookup is due (instead of waiting out its backoff)."""
    OrderHold.objects.update(next_check_at=timezone.now() - timedelta(seconds=1), **extra)


def links_on_exchange(simulator) -> list[str]:
    with simulator.engine.lock:
        return [o.order_link_id for o in simulator.engine.orders.values()]  # in creation order


def test_an_unknown_create_holds_the_symbol_until_the_order_is_found_and_fifo_holds(pipeline, simulator):
    first, second = intake(), intake()
    other = intake(asset="ETHUSDT", amount="350")  # another symbol is not held
    faults(simulator, **BLIND)

    process_pending(symbol=BTC)

    link = order_link_id_for(signal_id=first.signal_id, leg=0)
    assert links_on_exchange(simulator) == [link]  # placed, but we could not hear it
    assert fresh(first).status == SignalStatus.PROCESSING
    assert Order.objects.get(order_link_id=link).status == OrderStatus.PENDING_SUBMIT
    assert fresh(second).status == SignalStatus.RECEIVED  # waits behind the unknown outcome
    hold = OrderHold.objects.get()
    assert (hold.symbol, hold.state, hold.order.order_link_id) == (BTC, OrderHold.State.HELD, link)
    faults(simulator, drop_response=0.0, paths=[])
    process_pending()  # the hold is not due for its next lookup: only the other symbol moves
    assert fresh(other).status == SignalStatus.EXECUTED, other.reason
    assert fresh(second).status == SignalStatus.RECEIVED

    # Visible while held: the dashboard/health API component and the consumer heartbeat's processor detail.
    from ordermanager.dashboard.selectors import health_components

    component = {c.name: c for c in health_components()}["order_holds"]
    assert component.status == "stale" and BTC in component.detail and link in component.detail
    assert f"held: {BTC} held" in SignalProcessor(threads=1).health()[1]

    # Not due yet (backoff): nothing is asked, nothing moves.
    process_pending()
    assert fresh(second).status == SignalStatus.RECEIVED and links_on_exchange(simulator)[:1] == [link]

    # Still blind when due: one more lookup that cannot tell, the hold backs off.
    faults(simulator, **BLIND)
    due_now()
    process_pending()
    assert fresh(second).status == SignalStatus.RECEIVED
    assert OrderHold.objects.get().attempts == 2

    # The exchange answers again: the order is found by its orderLinkId, then the next signal runs.
    faults(simulator, drop_response=0.0, paths=[])
    due_now()
    process_pending()
    assert fresh(first).status == SignalStatus.EXECUTED, first.reason
    assert "held" in first.reason and "until the create's outcome was known" in first.reason
    assert fresh(second).status == SignalStatus.EXECUTED, second.reason
    btc = [x for x in links_on_exchange(simulator) if x.endswith("-0") and x != order_link_id_for(
        signal_id=other.signal_id, leg=0)]
    assert btc == [link, order_link_id_for(signal_id=second.signal_id, leg=0)]  # FIFO on the exchange
    assert not OrderHold.objects.exists()
    assert Order.objects.get(order_link_id=link).order_id == simulator.engine.orders_by_link[link].order_id


def test_a_hold_past_its_bound_gives_the_order_up_and_a_later_reconciliation_adopts_it(pipeline, simulator):
    from orders.reconcile import reconcile

    pipeline.ORDER_HOLD_MAX_SECONDS = 5
    pipeline.RECONCILE_SETTLE_SECONDS = 0
    first, second = intake(), intake()
    faults(simulator, **BLIND)
    process_pending()
    assert fresh(second).status == SignalStatus.RECEIVED

    # Past the bound and the lookups still cannot tell (creates work again): given up, the symbol goes on.
    faults(simulator, drop_response=1.0, paths=["/v5/order/realtime", "/v5/order/history"])
    due_now(since=timezone.now() - timedelta(seconds=6))
    process_pending()
    link = order_link_id_for(signal_id=first.signal_id, leg=0)
    order = Order.objects.get(order_link_id=link)
    assert order.status == OrderStatus.FAILED and "given up" in order.reject_reason
    assert fresh(first).status == SignalStatus.FAILED
    assert OrderHold.objects.get().state == OrderHold.State.GIVEN_UP
    assert fresh(second).status == SignalStatus.EXECUTED, second.reason
    faults(simulator, drop_response=0.0, paths=[])

    # The exchange did have it (a market order, filled): reconciliation adopts it and the signal follows.
    run = reconcile(trigger="command")
    order.refresh_from_db()
    assert (order.status, order.filled_qty) == (OrderStatus.FILLED, D("0.01"))
    assert order.executions.count() == 1
    assert fresh(first).status == SignalStatus.EXECUTED
    assert "adopted by reconciliation" in first.reason and link in first.reason
    assert OrderHold.objects.get().state == OrderHold.State.ADOPTED
    assert run.discrepancies.filter(kind="given_up_order_adopted", order_link_id=link).exists()
    assert not TradingSignal.objects.filter(status=SignalStatus.FAILED).exists()
    assert len(links_on_exchange(simulator)) == 2  # nothing was sent again
