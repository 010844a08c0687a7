"""Hedge mode against the simulator switched with /v5/position/switch-mode: each rule of docs/decisions/0313."""

from decimal import Decimal as D

import pytest

from exchange.models import ExchangeCall
from orders.models import LegRole, Order, RiskLimit, SignalOrderRelationship
from signals_app.models import SignalStatus, TradingSignal
from signals_app.services.intake import signal_intake
from signals_app.services.signal_processor import process_pending
from tests.positions.factories import PositionFactory
from tests.signals_app.conftest import signal_message

pytestmark = pytest.mark.django_db

ETH = "ETHUSDT"  # 3500 on the simulator, qty step 0.01


def hedge(symbol: str = ETH) -> None:
    from exchange.bybit.client import get_client

    get_client().switch_position_mode(category="linear", symbol=symbol, mode=3)


def run(side: str, amount: str, symbol: str = ETH) -> TradingSignal:
    result = signal_intake(payload=signal_message(signal_type=side, asset=symbol, amount=amount,
                                                  metadata={"urgency": True}), source="api")
    process_pending(symbol=symbol)
    result.signal.refresh_from_db()
    return result.signal


def holding(simulator, side: str, qty: str, symbol: str = ETH) -> None:
    """A position on the exchange and in our book (as the fills pipeline would have booked it)."""
    idx = 1 if side == "Buy" else 2
    simulator.engine.create_order({"category": "linear", "symbol": symbol, "side": side, "orderType": "Market",
                                   "qty": qty, "positionIdx": idx})
    PositionFactory(symbol=symbol, position_idx=idx, mode="hedge", size=D(qty), avg_entry_price=D("3500"))


def on_exchange(simulator, idx: int, symbol: str = ETH) -> D:
    return simulator.engine.positions[(symbol, idx)].size


def the_order(signal) -> Order:
    return Order.objects.get(signal_links__signal=signal)


def test_a_buy_opens_the_long_on_position_idx_1(pipeline, simulator):
    hedge()
    signal = run("buy", "350")
    assert signal.status == SignalStatus.EXECUTED, signal.reason
    order = the_order(signal)
    assert (order.side, order.position_idx, order.reduce_only, order.qty) == ("Buy", 1, False, D("0.1"))
    assert simulator.engine.orders_by_link[order.order_link_id].position_idx == 1
    assert on_exchange(simulator, 1) == D("0.1") and on_exchange(simulator, 2) == 0
    assert "hedge positionIdx 1" in signal.reason


def test_a_sell_with_a_long_closes_part_of_it_reduce_only_on_idx_1(pipeline, simulator):
    hedge()
    holding(simulator, "Buy", "0.05")
    signal = run("sell", "105")  # 0.03
    order = the_order(signal)
    assert signal.status == SignalStatus.EXECUTED, signal.reason
    assert (order.side, order.position_idx, order.reduce_only, order.qty) == ("Sell", 1, True, D("0.03"))
    assert on_exchange(simulator, 1) == D("0.02") and on_exchange(simulator, 2) == 0


def legs_of(signal) -> list[tuple]:
    """(side, positionIdx, reduce-only, qty, allocation, role) of each order of the signal, in leg order."""
    links = SignalOrderRelationship.objects.filter(signal=signal).select_related("order").order_by("order__leg")
    return [(x.order.side, x.order.position_idx, x.order.reduce_only, x.order.qty, x.allocation_amount, x.role)
            for x in links]  # fmt: skip


def test_a_sell_larger_than_the_long_closes_it_and_opens_no_short_when_shorting_is_off(pipeline, simulator):
    hedge()
    holding(simulator, "Buy", "0.05")
    signal = run("sell", "700")  # 0.2
    assert signal.status == SignalStatus.EXECUTED, signal.reason
    # Allocated from what is sent: 0.05 of the 0.2 the 700 USDT asked for.
    assert legs_of(signal) == [("Sell", 1, True, D("0.05"), D("175"), LegRole.CLOSE)]
    assert "capped to the long position: 0.05" in signal.reason and "the remaining 0.15 is not sent" in signal.reason
    assert "ALLOW_SHORT=false" in signal.reason
    assert on_exchange(simulator, 1) == 0 and on_exchange(simulator, 2) == 0


def test_a_sell_larger_than_the_long_closes_it_then_opens_the_short_when_allowed(pipeline, simulator):
    pipeline.ALLOW_SHORT = True
    hedge()
    holding(simulator, "Buy", "0.05")
    signal = run("sell", "700")  # 0.2: 0.05 closes the long, 0.15 opens the short
    assert signal.status == SignalStatus.EXECUTED, signal.reason
    assert legs_of(signal) == [
        ("Sell", 1, True, D("0.05"), D("175"), LegRole.CLOSE),
        ("Sell", 2, False, D("0.15"), D("525"), LegRole.OPEN),
    ]
    assert "sell of 0.2 sent as two orders, 0.05 closing the long (positionIdx 1) and 0.15 opening the short " \
           "(positionIdx 2)" in signal.reason
    assert "capped" not in signal.reason
    assert on_exchange(simulator, 1) == 0 and on_exchange(simulator, 2) == D("0.15")
    assert simulator.engine.positions[(ETH, 2)].side == "Sell"


def test_a_buy_larger_than_the_short_closes_it_then_opens_the_long(pipeline, simulator):
    hedge()  # ALLOW_SHORT=false: it only governs opening a short
    holding(simulator, "Sell", "0.1")
    signal = run("buy", "700")  # 0.2: 0.1 closes the short, 0.1 opens the long
    assert signal.status == SignalStatus.EXECUTED, signal.reason
    assert legs_of(signal) == [
        ("Buy", 2, True, D("0.1"), D("350"), LegRole.CLOSE),
        ("Buy", 1, False, D("0.1"), D("350"), LegRole.OPEN),
    ]
    closing, opening = Order.objects.filter(signal_links__signal=signal).order_by("leg")
    sent = simulator.engine.orders_by_link
    assert (sent[closing.order_link_id].position_idx, sent[closing.order_link_id].reduce_only) == (2, True)
    assert (sent[opening.order_link_id].position_idx, sent[opening.order_link_id].reduce_only) == (1, False)
    assert on_exchange(simulator, 2) == 0 and on_exchange(simulator, 1) == D("0.1")
    assert "hedge positionIdx 2" in signal.reason and "hedge positionIdx 1" in signal.reason
    assert "2 order(s) placed" in signal.reason


def test_the_remainder_is_not_sent_when_a_risk_limit_refuses_the_opening_order(pipeline, simulator):
    hedge()
    holding(simulator, "Sell", "0.1")
    RiskLimit.objects.create(symbol=ETH, max_position_size=D("1e6"), max_exposure=D("1e6"),
                             max_order_size_ratio=D("0.000001"))  # a 350 USDT order is far above this share
    signal = run("buy", "700")
    assert signal.status == SignalStatus.EXECUTED, signal.reason
    assert legs_of(signal) == [("Buy", 2, True, D("0.1"), D("350"), LegRole.CLOSE)]
    assert "capped to the short position: 0.1" in signal.reason
    refused = "the remaining 0.1 is not sent: opening the long is refused (risk limit MAX_ORDER_SIZE_RATIO"
    assert refused in signal.reason
    assert on_exchange(simulator, 2) == 0 and on_exchange(simulator, 1) == 0


def test_a_sell_without_a_long_is_refused_unless_shorting_is_allowed(pipeline, simulator):
    hedge()
    refused = run("sell", "350")
    assert refused.status == SignalStatus.REJECTED
    assert "no long position to reduce (hedge mode, long 0, short 0)" in refused.reason
    assert "ALLOW_SHORT=false" in refused.reason and not Order.objects.exists()

    pipeline.ALLOW_SHORT = True
    opened = run("sell", "350")
    order = the_order(opened)
    assert opened.status == SignalStatus.EXECUTED, opened.reason
    assert (order.side, order.position_idx, order.reduce_only, order.qty) == ("Sell", 2, False, D("0.1"))
    assert on_exchange(simulator, 2) == D("0.1") and simulator.engine.positions[(ETH, 2)].side == "Sell"


def test_a_buy_with_a_short_closes_the_short_first(pipeline, simulator):
    hedge()
    holding(simulator, "Sell", "0.2")
    signal = run("buy", "350")  # 0.1 of the 0.2 short
    order = the_order(signal)
    assert signal.status == SignalStatus.EXECUTED, signal.reason
    assert (order.side, order.position_idx, order.reduce_only, order.qty) == ("Buy", 2, True, D("0.1"))
    assert on_exchange(simulator, 2) == D("0.1") and on_exchange(simulator, 1) == 0


def test_risk_limits_read_the_hedge_rows(pipeline, simulator):
    hedge()
    holding(simulator, "Buy", "0.05")  # 175 USDT long
    RiskLimit.objects.create(symbol=ETH, max_position_value=D("500"), max_exposure=D("1e6"), max_order_size_ratio=1)
    signal = run("buy", "350")  # 0.15 after: 525 USDT
    assert signal.status == SignalStatus.REJECTED
    assert "MAX_POSITION_VALUE: position value of ETHUSDT after the order is 525.00 USDT" in signal.reason
    assert run("buy", "315").status == SignalStatus.EXECUTED  # 0.14 after: 490 USDT


def test_the_mode_is_read_once_per_symbol_and_forgotten_when_the_exchange_says_it_changed(pipeline, simulator):
    one_way = run("sell", "350")  # one-way and flat: refused by our rules, but the mode is now cached
    assert one_way.status == SignalStatus.REJECTED and "hedge" not in one_way.reason
    hedge()  # switched by a person while flat
    stale = run("buy", "350")  # still decided as one-way: the exchange refuses positionIdx 0
    order = the_order(stale)
    assert (order.position_idx, order.status, order.reject_code) == (0, "rejected", 10001)
    assert stale.status == SignalStatus.REJECTED and "position idx not match position mode" in stale.reason
    fresh = run("buy", "350")
    assert fresh.status == SignalStatus.EXECUTED, fresh.reason
    assert the_order(fresh).position_idx == 1 and on_exchange(simulator, 1) == D("0.1")
    assert ExchangeCall.objects.filter(path="/v5/position/list").count() == 2  # once, then after the refusal
