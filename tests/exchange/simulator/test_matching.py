"""The matching model: fills, statuses, fees, positions, wallet, funding (engine in-process)."""

from decimal import Decimal as D

import pytest

from exchange.simulator.engine import SimEngine
from exchange.simulator.wire import SimError

TAKER, MAKER = D("0.00055"), D("0.0002")


@pytest.fixture
def engine():
    return SimEngine(seed=1)


def create(engine, **kw):
    params = {"category": "linear", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Limit", "qty": "0.010",
              "price": "60000.0", **kw}
    ack = engine.create_order({k: v for k, v in params.items() if v is not None})
    return engine.orders[ack["orderId"]]


def position(engine, symbol="BTCUSDT", idx=0):
    return engine.positions[(symbol, idx)]


def test_market_order_fills_at_last_price_as_taker(engine):
    order = create(engine, orderType="Market", price=None, qty="0.100")
    assert (order.status, order.cum_exec_qty, order.time_in_force) == ("Filled", D("0.100"), "IOC")
    [fill] = engine.executions
    assert (fill.exec_price, fill.is_maker, fill.exec_fee) == (D("65000.00"), False, D("6500") * TAKER)
    pos = position(engine)
    assert (pos.side, pos.size, pos.avg_price) == ("Buy", D("0.100"), D("65000"))
    assert engine.wallet_balance == D("100000") - D("6500") * TAKER


def test_market_slippage_moves_the_fill_against_the_taker(engine):
    engine.configure({"slippage": "0.001"})
    buy = create(engine, orderType="Market", price=None)
    sell = create(engine, orderType="Market", price=None, side="Sell")
    prices = [e.exec_price for e in engine.executions]
    assert prices == [D("65065.0"), D("64935.0")]
    assert buy.status == sell.status == "Filled"


def test_limit_rests_until_the_price_crosses_then_fills_as_maker(engine):
    order = create(engine, price="64000.0")
    assert order.status == "New" and not engine.executions
    engine.set_price("BTCUSDT", "64000.1")
    assert order.status == "New"
    engine.set_price("BTCUSDT", "63990")
    assert order.status == "Filled"
    [fill] = engine.executions
    assert (fill.exec_price, fill.is_maker, fill.fee_rate) == (D("64000.0"), True, MAKER)
    assert fill.exec_fee == D("640") * MAKER


def test_marketable_limit_fills_at_once_as_taker_at_the_last_price(engine):
    order = create(engine, side="Sell", price="60000.0")
    assert order.status == "Filled"
    assert (engine.executions[0].exec_price, engine.executions[0].is_maker) == (D("65000.00"), False)


def test_post_only_that_would_take_is_cancelled_not_rejected(engine):
    order = create(engine, price="65000.0", timeInForce="PostOnly")
    assert (order.status, order.reject_reason, order.cum_exec_qty) == ("Cancelled", "EC_PostOnlyWillTakeLiquidity", 0)
    resting = create(engine, price="64999.9", timeInForce="PostOnly")
    assert resting.status == "New"


def test_ioc_fills_what_it_can_and_cancels_the_rest(engine):
    engine.configure({"max_fill_qty": {"BTCUSDT": "0.004"}})
    order = create(engine, price="65100.0", timeInForce="IOC")
    assert (order.status, order.cum_exec_qty, order.leaves_qty) == ("Cancelled", D("0.004"), 0)
    far = create(engine, price="60000.0", timeInForce="IOC")
    assert (far.status, far.reject_reason, far.cum_exec_qty) == ("Cancelled", "EC_NoImmediateQtyToFill", 0)


def test_market_order_beyond_liquidity_ends_cancelled_with_fills(engine):
    engine.configure({"max_fill_qty": {"BTCUSDT": "0.003"}})
    order = create(engine, orderType="Market", price=None)
    assert (order.status, order.cum_exec_qty) == ("Cancelled", D("0.003"))


def test_partial_fills_per_price_step_then_filled(engine):
    engine.configure({"max_fill_qty": {"BTCUSDT": "0.004"}})
    order = create(engine, price="64000.0")
    engine.set_price("BTCUSDT", "63900")
    assert (order.status, order.cum_exec_qty, order.leaves_qty) == ("PartiallyFilled", D("0.004"), D("0.006"))
    engine.set_price("BTCUSDT", "63800")
    assert (order.status, order.cum_exec_qty) == ("PartiallyFilled", D("0.008"))
    engine.set_price("BTCUSDT", "63700")
    assert (order.status, order.cum_exec_qty) == ("Filled", D("0.010"))
    assert [e.leaves_qty for e in engine.executions][-1] == 0


def test_forced_fill_and_a_cancel_keep_the_filled_quantity(engine):
    order = create(engine, orderLinkId="part-1")
    engine.force_fill(order_link_id="part-1", qty="0.003")
    assert (order.status, order.cum_exec_qty) == ("PartiallyFilled", D("0.003"))
    engine.cancel_order({"category": "linear", "symbol": "BTCUSDT", "orderLinkId": "part-1"})
    assert (order.status, order.cum_exec_qty, order.cancel_type) == ("Cancelled", D("0.003"), "CancelByUser")


def test_reduce_only_closes_realises_pnl_and_never_flips(engine):
    create(engine, orderType="Market", price=None, qty="0.020")
    engine.set_price("BTCUSDT", "66000")
    close = create(engine, orderType="Market", price=None, side="Sell", qty="0.050", reduceOnly=True)
    assert (close.status, close.cum_exec_qty) == ("Cancelled", D("0.020"))  # capped at the position size
    pos = position(engine)
    assert (pos.size, pos.side) == (0, "")
    gross = (D("66000") - D("65000")) * D("0.020")
    fees = D("1300") * TAKER + D("1320") * TAKER
    assert engine.executions[-1].exec_pnl == gross
    assert engine.wallet_balance == D("100000") + gross - fees
    with pytest.raises(SimError) as err:
        create(engine, orderType="Market", price=None, side="Sell", reduceOnly=True)
    assert err.value.ret_code == 110017


def test_resting_reduce_only_is_cancelled_when_the_position_is_gone(engine):
    create(engine, orderType="Market", price=None, qty="0.010")
    take_profit = create(engine, side="Sell", price="66000.0", reduceOnly=True)
    create(engine, orderType="Market", price=None, side="Sell", qty="0.010")
    engine.set_price("BTCUSDT", "66000")
    assert (take_profit.status, take_profit.cancel_type) == ("Cancelled", "CancelByReduceOnly")


def test_one_way_fill_through_zero_flips_the_position(engine):
    create(engine, orderType="Market", price=None, qty="0.010")
    create(engine, orderType="Market", price=None, side="Sell", qty="0.030")
    pos = position(engine)
    assert (pos.side, pos.size, pos.avg_price) == ("Sell", D("0.020"), D("65000"))


def test_hedge_mode_keeps_two_positions_and_closes_by_position_idx(engine):
    engine.switch_mode({"category": "linear", "symbol": "BTCUSDT", "mode": 3})
    create(engine, orderType="Market", price=None, qty="0.010", positionIdx=1)
    create(engine, orderType="Market", price=None, side="Sell", qty="0.020", positionIdx=2)
    long, short = position(engine, idx=1), position(engine, idx=2)
    assert (long.side, long.size, short.side, short.size) == ("Buy", D("0.010"), "Sell", D("0.020"))
    create(engine, orderType="Market", price=None, side="Sell", qty="0.010", positionIdx=1, reduceOnly=True)
    assert (long.size, short.size) == (0, D("0.020"))
    with pytest.raises(SimError) as err:  # Sell + idx 2 + reduceOnly would grow the short: refused
        create(engine, orderType="Market", price=None, side="Sell", positionIdx=2, reduceOnly=True)
    assert err.value.ret_code == 110017


def test_funding_settles_on_open_positions(engine):
    create(engine, orderType="Market", price=None, qty="0.100")
    before = engine.wallet_balance
    [row] = engine.settle_funding(symbol="BTCUSDT", rate="0.0001")
    assert (row["execType"], row["execFee"], row["orderType"]) == ("Funding", "0.65", "UNKNOWN")
    assert engine.wallet_balance == before - D("0.65")
    create(engine, orderType="Market", price=None, side="Sell", qty="0.200")
    [row] = engine.settle_funding(symbol="BTCUSDT", rate="0.0001")
    assert row["execFee"] == "-0.65" and row["side"] == "Sell"  # shorts receive a positive rate


def test_wallet_reserves_margin_for_orders_and_positions(engine):
    create(engine, price="60000.0", qty="1.000")
    assert engine.available_balance() == D("100000") - D("6000")
    create(engine, orderType="Market", price=None, qty="1.000")
    engine.set_price("BTCUSDT", "64000")  # the resting buy at 60000 is not crossed
    wallet = engine.wallet({"accountType": "UNIFIED"})[0]
    assert D(wallet["totalPerpUPL"]) == D("-1000")
    assert D(wallet["coin"][0]["totalOrderIM"]) == D("6000")
    assert D(wallet["coin"][0]["totalPositionIM"]) == D("6500")


def test_random_walk_is_seeded(engine):
    other = SimEngine(seed=1)
    assert engine.tick(steps=20) == other.tick(steps=20)
    assert SimEngine(seed=2).tick(steps=20) != SimEngine(seed=1).tick(steps=20)
    for symbol, price in engine.prices.items():
        assert price % {"BTCUSDT": D("0.1"), "ETHUSDT": D("0.01"), "SOLUSDT": D("0.01"), "XRPUSDT": D("0.0001"),
                        "DOGEUSDT": D("0.00001")}[symbol] == 0


def test_reset_returns_to_the_start(engine):
    create(engine, orderType="Market", price=None)
    engine.set_price("BTCUSDT", "1000")
    engine.reset()
    assert engine.orders == {} and engine.executions == []
    assert engine.wallet_balance == D("100000") and engine.prices["BTCUSDT"] == D("65000.00")
