"""Which open orders a new signal cancels (design notes §8); the requests themselves are tested against the
simulator in tests/signals_app/services/test_signal_processor.py."""

import pytest

from orders.services.cancellation import orders_to_cancel_for_signal
from tests.orders.factories import OrderFactory

pytestmark = pytest.mark.django_db


def chosen(**kwargs) -> set[str]:
    return {o.order_link_id for o in orders_to_cancel_for_signal(symbol="BTCUSDT", **kwargs)}


def test_orders_placed_outside_the_order_manager_are_never_cancelled_by_a_signal():
    ours = OrderFactory(order_link_id="ours")
    OrderFactory(order_link_id="theirs", is_external=True)
    assert chosen(side="Buy", order_type="Limit") == {ours.order_link_id}
    assert chosen(side="Sell", order_type="Market") == {ours.order_link_id}


@pytest.mark.parametrize(("opposite_only", "partially", "side", "order_type", "expected"), [
    (False, False, "Buy", "Limit", {"buy-new", "sell-new"}),
    (True, False, "Buy", "Limit", {"sell-new"}),
    (True, False, "Buy", "Market", {"buy-new", "sell-new"}),  # a market signal cancels every resting limit
    (False, True, "Buy", "Limit", {"buy-new", "sell-new", "buy-partial"}),
])
def test_the_rules_by_side_type_and_partial_fills(settings, opposite_only, partially, side, order_type, expected):
    settings.CANCEL_OPPOSITE_ORDERS_ONLY = opposite_only
    settings.CANCEL_PARTIALLY_FILLED_ORDERS = partially
    OrderFactory(order_link_id="buy-new", side="Buy")
    OrderFactory(order_link_id="sell-new", side="Sell")
    OrderFactory(order_link_id="buy-partial", side="Buy", status="partially_filled")
    OrderFactory(order_link_id="buy-ioc", side="Buy", order_type="Market", time_in_force="IOC", price=None)
    OrderFactory(order_link_id="buy-filled", side="Buy", status="filled")
    OrderFactory(order_link_id="eth", side="Buy", symbol="ETHUSDT")
    assert chosen(side=side, order_type=order_type) == expected
