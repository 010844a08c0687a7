"""Risk limits count what is already at stake: resting orders, minus the ones the signal cancels first (0317).

Against the simulator: limit signals leave PostOnly buys resting on the exchange, and every limit is checked
with those orders' open quantity added to the position the new order would build.
"""

from decimal import Decimal as D

import pytest

from orders.models import Order, OrderStatus, RiskLimit
from signals_app.models import SignalStatus
from signals_app.services.intake import signal_intake
from signals_app.services.signal_processor import process_pending
from tests.signals_app.conftest import signal_message

pytestmark = pytest.mark.django_db

LIMIT = {"market_data_snapshot": {"price": "64250.5", "spread": "1.5"}}  # PostOnly buy at 64249.7: rests


@pytest.fixture(autouse=True)
def _big_orders(pipeline):
    pipeline.MAX_SINGLE_ORDER_SIZE = D("100000")  # one order per signal (no splitting involved)


def run(**overrides):
    result = signal_intake(payload=signal_message(**overrides), source="api")
    assert result.created, result.rejected_reason
    process_pending(symbol=result.signal.asset)
    result.signal.refresh_from_db()
    return result.signal


def resting_on_exchange(simulator) -> list:
    return [o for o in simulator.engine.orders_by_link.values() if o.status in ("New", "PartiallyFilled")]


def test_resting_buys_count_towards_max_exposure(pipeline, simulator):
    """8 resting buys of 30,000 USDT each no longer pass a 200,000 USDT MAX_EXPOSURE: the 7th is refused."""
    pipeline.MARKET_ORDER_SPREAD_THRESHOLD = D("0")
    pipeline.CANCEL_OPPOSITE_ORDERS_ONLY = True  # same-side orders stay on the book
    RiskLimit.objects.create(symbol="", max_position_value=None, max_exposure=D("200000"), max_order_size_ratio=1)
    signals = [run(amount="30000", **LIMIT) for _ in range(8)]
    assert [s.status for s in signals] == [SignalStatus.EXECUTED] * 6 + [SignalStatus.REJECTED] * 2, [
        s.reason for s in signals]
    assert signals[6].reason.startswith("risk limit MAX_EXPOSURE: total exposure after the order (positions and "
                                        "resting orders) is 209582.52 USDT")  # 7 × 0.466 BTC at 64249.7
    assert "above the limit 200000.00 USDT" in signals[6].reason
    assert len(resting_on_exchange(simulator)) == 6
    assert Order.objects.filter(status=OrderStatus.NEW).count() == 6


def test_a_resting_buy_counts_towards_the_per_symbol_value_limit(pipeline, simulator):
    """CANCEL_OPPOSITE_ORDERS_ONLY: a 45,000 resting buy plus a 9,000 buy breaks a 50,000 MAX_POSITION_VALUE."""
    pipeline.MARKET_ORDER_SPREAD_THRESHOLD = D("0")
    pipeline.CANCEL_OPPOSITE_ORDERS_ONLY = True
    RiskLimit.objects.create(symbol="BTCUSDT", max_position_value=D("50000"), max_exposure=D("1e6"),
                             max_order_size_ratio=1)
    assert run(amount="45000", **LIMIT).status == SignalStatus.EXECUTED  # 0.7 BTC resting
    second = run(amount="9000", **LIMIT)  # 0.14 BTC: 0.84 × 64249.7 = 53969.75
    assert second.status == SignalStatus.REJECTED
    assert second.reason == (
        "risk limit MAX_POSITION_VALUE: position value of BTCUSDT after the order and the resting Buy orders (0.7) "
        "is 53969.75 USDT, above the limit 50000.00 USDT by 3969.75 USDT"
    )
    assert len(resting_on_exchange(simulator)) == 1


def test_orders_the_signal_cancels_first_are_not_counted(pipeline, simulator):
    """The same two buys pass when the second signal replaces the first (default rules)."""
    pipeline.MARKET_ORDER_SPREAD_THRESHOLD = D("0")
    pipeline.CANCEL_OPPOSITE_ORDERS_ONLY = False  # a new signal cancels the symbol's open orders
    RiskLimit.objects.create(symbol="BTCUSDT", max_position_value=D("50000"), max_exposure=D("1e6"),
                             max_order_size_ratio=1)
    first = run(amount="45000", **LIMIT)
    second = run(amount="9000", **LIMIT)
    assert second.status == SignalStatus.EXECUTED, second.reason
    assert Order.objects.get(signal_links__signal=first).status in (OrderStatus.PENDING_CANCEL, OrderStatus.CANCELLED)


def test_a_market_signal_cancels_resting_limit_buys_first_even_with_opposite_only(pipeline, simulator):
    """CANCEL_OPPOSITE_ORDERS_ONLY keeps same-side orders, except that a market signal cancels limit orders."""
    pipeline.MARKET_ORDER_SPREAD_THRESHOLD = D("0")
    pipeline.CANCEL_OPPOSITE_ORDERS_ONLY = True
    RiskLimit.objects.create(symbol="BTCUSDT", max_position_value=D("50000"), max_exposure=D("1e6"),
                             max_order_size_ratio=1)
    first = run(amount="45000", **LIMIT)
    market = run(amount="9000", confidence=0.95)
    assert market.status == SignalStatus.EXECUTED, market.reason
    assert Order.objects.get(signal_links__signal=market).order_type == "Market"
    assert Order.objects.get(signal_links__signal=first).status in (OrderStatus.PENDING_CANCEL, OrderStatus.CANCELLED)


def test_an_external_resting_order_is_counted_and_never_cancelled(pipeline, simulator):
    """An order placed outside the order manager (recorded by reconciliation) stays, so it counts."""
    from tests.orders.factories import OrderFactory

    pipeline.MARKET_ORDER_SPREAD_THRESHOLD = D("0")
    RiskLimit.objects.create(symbol="BTCUSDT", max_position_value=D("50000"), max_exposure=D("1e6"),
                             max_order_size_ratio=1)
    OrderFactory(symbol="BTCUSDT", side="Buy", order_type="Limit", price=D("60000"), qty=D("0.7"),
                 status=OrderStatus.NEW, is_external=True)
    signal = run(amount="9000", **LIMIT)
    assert signal.status == SignalStatus.REJECTED
    assert "MAX_POSITION_VALUE" in signal.reason and "resting Buy orders (0.7)" in signal.reason
