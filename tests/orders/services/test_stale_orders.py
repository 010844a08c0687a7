"""The stale-order sweep, through the real cancel path against the simulator."""

from datetime import timedelta
from decimal import Decimal as D

import httpx
import pytest
from django.utils import timezone

from exchange.bybit.client import get_client
from orders.models import Order, OrderStatus
from orders.services.stale_orders import orders_stale, orders_sweep_stale
from tests.orders.factories import OrderFactory

pytestmark = pytest.mark.django_db


def _resting(link: str, *, age: timedelta, **fields) -> Order:
    ack = get_client().create_order(
        category="linear", symbol="BTCUSDT", side="Buy", order_type="Limit", qty=D("0.010"), price=D("50000"),
        time_in_force="GTC", order_link_id=link,
    )  # fmt: skip
    return OrderFactory(order_link_id=link, order_id=ack.order_id, price=D("50000"), time_in_force="GTC",
                        post_only=False, submitted_at=timezone.now() - age, **fields)  # fmt: skip


def _exchange_status(link: str) -> str:
    return get_client().get_order(category="linear", symbol="BTCUSDT", order_link_id=link).order_status


def test_sweep_cancels_old_open_orders_with_reason_stale(bybit_settings, simulator, settings):
    settings.CANCEL_STALE_ORDER_TIMEOUT = 600
    settings.CANCEL_PARTIALLY_FILLED_ORDERS = True
    old = _resting("stale-old", age=timedelta(minutes=11))
    partial = _resting("stale-partial", age=timedelta(hours=2))
    httpx.post(simulator.url + "/sim/fill", json={"orderLinkId": "stale-partial", "qty": "0.004"}).raise_for_status()
    Order.objects.filter(pk=partial.pk).update(status=OrderStatus.PARTIALLY_FILLED, filled_qty=D("0.004"))
    fresh = _resting("stale-fresh", age=timedelta(minutes=5))
    external = OrderFactory(is_external=True, submitted_at=timezone.now() - timedelta(days=1))

    result = orders_sweep_stale()

    assert (result.checked, result.cancelled) == (2, 2)
    for order in (old, partial):
        order.refresh_from_db()
        assert (order.status, order.cancel_reason) == (OrderStatus.PENDING_CANCEL, "stale")
        assert _exchange_status(order.order_link_id) == "Cancelled"
    partial.refresh_from_db()
    assert partial.filled_qty == D("0.004")  # the fills stay with the order
    fresh.refresh_from_db()
    external.refresh_from_db()
    assert fresh.status == OrderStatus.NEW and _exchange_status("stale-fresh") == "New"
    assert external.status == OrderStatus.NEW


def test_sweep_keeps_partially_filled_orders_unless_configured(bybit_settings, simulator, settings):
    # Design notes: partially filled orders are not cancelled unless CANCEL_PARTIALLY_FILLED_ORDERS.
    settings.CANCEL_STALE_ORDER_TIMEOUT = 600
    settings.CANCEL_PARTIALLY_FILLED_ORDERS = False
    old = _resting("keep-old", age=timedelta(minutes=11))
    partial = _resting("keep-partial", age=timedelta(hours=2))
    httpx.post(simulator.url + "/sim/fill", json={"orderLinkId": "keep-partial", "qty": "0.004"}).raise_for_status()
    Order.objects.filter(pk=partial.pk).update(status=OrderStatus.PARTIALLY_FILLED, filled_qty=D("0.004"))
    assert list(orders_stale()) == [old]

    result = orders_sweep_stale()

    assert (result.checked, result.cancelled) == (1, 1)
    old.refresh_from_db()
    partial.refresh_from_db()
    assert (old.status, old.cancel_reason) == (OrderStatus.PENDING_CANCEL, "stale")
    assert (partial.status, partial.cancel_reason) == (OrderStatus.PARTIALLY_FILLED, "")
    assert _exchange_status("keep-partial") == "PartiallyFilled"


def test_age_counts_from_creation_when_never_submitted(settings):
    settings.CANCEL_STALE_ORDER_TIMEOUT = 60
    order = OrderFactory(status=OrderStatus.NEW, submitted_at=None)
    Order.objects.filter(pk=order.pk).update(created_at=timezone.now() - timedelta(minutes=2))
    assert list(orders_stale()) == [order]
    assert list(orders_stale(timeout_seconds=3600)) == []
