"""The processor against the simulator: every rule ends in the right orders, on the exchange and in the DB."""

import uuid
from decimal import Decimal as D

import pytest
import structlog

from orders.models import LegRole, Order, OrderStatus, RiskLimit, SignalOrderRelationship
from orders.services.order_executor import order_link_id_for
from signals_app.models import SignalStatus, TradingSignal
from signals_app.services.intake import signal_intake
from signals_app.services.signal_processor import process_pending, signal_process
from tests.positions.factories import PositionFactory
from tests.signals_app.conftest import signal_message

pytestmark = pytest.mark.django_db


def intake(**overrides) -> TradingSignal:
    result = signal_intake(payload=signal_message(**overrides), source="api")
    assert result.created and result.rejected_reason is None, result.rejected_reason
    return result.signal


def run(signal: TradingSignal) -> TradingSignal:
    process_pending(symbol=signal.asset)
    signal.refresh_from_db()
    return signal


def sim_orders(simulator) -> dict:
    return dict(simulator.engine.orders_by_link)


def test_limit_signal_becomes_one_postonly_order_on_the_exchange(pipeline, simulator):
    pipeline.MARKET_ORDER_SPREAD_THRESHOLD = D("0")
    signal = run(intake(amount="1000.00", market_data_snapshot={"price": "64250.5", "spread": "1.5"}))
    assert signal.status == SignalStatus.EXECUTED, signal.reason
    order = Order.objects.get()
    assert order.order_link_id == order_link_id_for(signal_id=signal.signal_id, leg=0)
    assert (order.order_type, order.time_in_force, order.post_only, order.price, order.qty) == (
        "Limit", "PostOnly", True, D("64249.7"), D("0.015"))
    assert order.status == OrderStatus.NEW and order.order_id
    on_exchange = sim_orders(simulator)[order.order_link_id]
    assert on_exchange.order_id == order.order_id and on_exchange.qty == D("0.015")
    link = SignalOrderRelationship.objects.get()
    assert (link.signal_id, link.allocation_amount) == (signal.pk, D("1000"))


def test_confident_signal_becomes_a_market_ioc_order_that_fills(pipeline, simulator):
    signal = run(intake(confidence=0.95, amount="650"))
    assert signal.status == SignalStatus.EXECUTED, signal.reason
    order = Order.objects.get()
    assert (order.order_type, order.time_in_force, order.price) == ("Market", "IOC", None)
    assert sim_orders(simulator)[order.order_link_id].status == "Filled"


def test_sell_without_a_long_is_rejected_when_shorting_is_off(pipeline, simulator):
    signal = run(intake(signal_type="sell", asset="ETHUSDT", metadata={"urgency": True}))
    assert signal.status == SignalStatus.REJECTED
    assert "no long position to reduce" in signal.reason and "ALLOW_SHORT=false" in signal.reason
    assert not Order.objects.exists() and not sim_orders(simulator)


def test_sell_without_a_long_opens_a_short_when_allowed(pipeline, simulator):
    pipeline.ALLOW_SHORT = True
    signal = run(intake(signal_type="sell", asset="ETHUSDT", amount="350", metadata={"urgency": True}))
    assert signal.status == SignalStatus.EXECUTED, signal.reason
    order = Order.objects.get()
    assert (order.side, order.reduce_only, order.qty) == ("Sell", False, D("0.1"))


def test_sell_larger_than_the_long_is_capped_and_reduce_only(pipeline, simulator):
    simulator.engine.create_order({"category": "linear", "symbol": "ETHUSDT", "side": "Buy", "orderType": "Market",
                                   "qty": "0.05"})
    PositionFactory(symbol="ETHUSDT", size=D("0.05"), avg_entry_price=D("3500"))
    signal = run(intake(signal_type="sell", asset="ETHUSDT", amount="700", metadata={"urgency": True}))
    assert signal.status == SignalStatus.EXECUTED, signal.reason
    order = Order.objects.get()
    assert (order.side, order.reduce_only, order.qty) == ("Sell", True, D("0.05"))
    assert "capped to the long position" in signal.reason


def test_quantity_below_the_minimum_is_rejected_with_the_numbers(pipeline, simulator):
    signal = run(intake(amount="50", market_data_snapshot={"price": "65000"}))  # 0.00077 BTC → 0.000
    assert signal.status == SignalStatus.REJECTED
    assert "amount 50 / price 65000" in signal.reason and "minimum order qty 0.001" in signal.reason
    assert not sim_orders(simulator)


def test_ticker_price_is_used_when_the_snapshot_is_missing(pipeline, simulator):
    signal = run(intake(amount="650", confidence=0.95))  # no snapshot: the simulator's 65000
    assert Order.objects.get(signal_links__signal=signal).qty == D("0.01")


def test_global_trading_halt_rejects_before_touching_the_exchange(pipeline, simulator):
    RiskLimit.objects.create(symbol="", max_position_size=1, max_exposure=1, max_order_size_ratio=1,
                             trading_halted=True, halt_reason="incident 42")
    signal = run(intake())
    assert signal.status == SignalStatus.REJECTED and "halted globally (incident 42)" in signal.reason
    assert not sim_orders(simulator)


def test_per_symbol_risk_limit_overrides_the_global_one(pipeline, simulator):
    RiskLimit.objects.create(symbol="BTCUSDT", max_position_value=D("500"), max_exposure=D("1000000"),
                             max_order_size_ratio=D("1"))
    signal = run(intake(amount="1000", confidence=0.95))
    assert signal.status == SignalStatus.REJECTED
    assert "MAX_POSITION_VALUE" in signal.reason and "above the limit 500.00 USDT" in signal.reason
    assert run(intake(amount="400", confidence=0.95)).status == SignalStatus.EXECUTED


def test_symbol_in_reduce_only_mode_refuses_a_buy(pipeline, simulator):
    RiskLimit.objects.create(symbol="BTCUSDT", max_position_size=D("1e6"), max_exposure=D("1e6"),
                             max_order_size_ratio=D("1"), reduce_only=True, halt_reason="position mismatch")
    signal = run(intake(confidence=0.95))
    assert signal.status == SignalStatus.REJECTED and "reduce-only mode for BTCUSDT" in signal.reason


def test_large_amount_is_split_into_legs_with_allocations(pipeline, simulator):
    pipeline.ENABLE_ORDER_SPLITTING = True
    pipeline.MAX_SINGLE_ORDER_SIZE = D("1000")
    signal = run(intake(amount="2600", confidence=0.95))
    assert signal.status == SignalStatus.EXECUTED, signal.reason
    orders = list(Order.objects.order_by("leg"))
    assert [o.qty for o in orders] == [D("0.014"), D("0.013"), D("0.013")]  # 0.04 BTC at 65000
    assert [o.order_link_id for o in orders] == [order_link_id_for(signal_id=signal.signal_id, leg=i)
                                                  for i in range(3)]
    assert sum(link.allocation_amount for link in SignalOrderRelationship.objects.all()) == D("2600")
    assert set(sim_orders(simulator)) == {o.order_link_id for o in orders}


def _links(signal) -> list[tuple]:
    links = SignalOrderRelationship.objects.filter(signal=signal).select_related("order").order_by("order__leg")
    return [(x.order.qty, x.allocation_amount, x.role) for x in links]


def test_a_capped_sell_is_allocated_and_split_from_what_is_sent(pipeline, simulator):
    pipeline.ENABLE_ORDER_SPLITTING = True
    pipeline.MAX_SINGLE_ORDER_SIZE = D("1000")
    simulator.engine.create_order({"category": "linear", "symbol": "ETHUSDT", "side": "Buy", "orderType": "Market",
                                   "qty": "0.5"})
    PositionFactory(symbol="ETHUSDT", size=D("0.5"), avg_entry_price=D("3500"))
    # 3500 USDT asks for 1.0 ETH; ALLOW_SHORT=false caps it to the 0.5 long: 1750 USDT sent, 2 legs, not 4.
    signal = run(intake(signal_type="sell", asset="ETHUSDT", amount="3500", metadata={"urgency": True}))
    assert signal.status == SignalStatus.EXECUTED, signal.reason
    assert _links(signal) == [(D("0.25"), D("875"), LegRole.CLOSE), (D("0.25"), D("875"), LegRole.CLOSE)]
    assert "in 2 legs" in signal.reason and "capped to the long position: 0.5" in signal.reason
    assert simulator.engine.positions[("ETHUSDT", 0)].size == 0


@pytest.mark.parametrize(("held", "signal_type"), [("Sell", "buy"), ("Buy", "sell")])
def test_one_way_a_signal_beyond_the_position_flips_it_in_one_order(pipeline, simulator, held, signal_type):
    pipeline.ALLOW_SHORT = True
    simulator.engine.create_order({"category": "linear", "symbol": "ETHUSDT", "side": held, "orderType": "Market",
                                   "qty": "0.1"})
    PositionFactory(symbol="ETHUSDT", size=D("-0.1") if held == "Sell" else D("0.1"), avg_entry_price=D("3500"))
    signal = run(intake(signal_type=signal_type, asset="ETHUSDT", amount="700", metadata={"urgency": True}))
    assert signal.status == SignalStatus.EXECUTED, signal.reason
    order = Order.objects.get()
    assert (order.qty, order.reduce_only, order.position_idx) == (D("0.2"), False, 0)
    assert _links(signal) == [(D("0.2"), D("700"), LegRole.FLIP)]
    position = simulator.engine.positions[("ETHUSDT", 0)]
    assert position.size == D("0.1") and position.side == ("Buy" if signal_type == "buy" else "Sell")


def test_dry_run_records_orders_and_sends_nothing(pipeline, simulator):
    pipeline.ENABLE_DRY_RUN = True
    with structlog.testing.capture_logs() as logs:
        signal = run(intake(confidence=0.95))
    assert signal.status == SignalStatus.DRY_RUN
    order = Order.objects.get()
    assert order.status == OrderStatus.DRY_RUN and order.is_dry_run
    assert not sim_orders(simulator)
    assert any(entry["event"].startswith("[DRY-RUN]") for entry in logs)


def test_exchange_rejection_is_stored_with_retcode(pipeline, simulator):
    # Our book says long, the exchange has nothing: the reduce-only sell is refused by Bybit.
    PositionFactory(symbol="ETHUSDT", size=D("1"), avg_entry_price=D("3500"))
    signal = run(intake(signal_type="sell", asset="ETHUSDT", amount="350", metadata={"urgency": True}))
    order = Order.objects.get()
    assert order.status == OrderStatus.REJECTED and order.reject_code == 110017 and order.reject_reason
    assert signal.status == SignalStatus.REJECTED and "retCode 110017" in signal.reason


def test_unknown_symbol_is_rejected(pipeline, simulator):
    signal = run(intake(asset="NOPEUSDT"))
    assert signal.status == SignalStatus.REJECTED and "NOPEUSDT is not listed" in signal.reason


def test_new_signal_cancels_the_open_orders_first(pipeline, simulator):
    pipeline.MARKET_ORDER_SPREAD_THRESHOLD = D("0")
    first = run(intake(market_data_snapshot={"price": "64000", "spread": "2"}))
    second = run(intake(market_data_snapshot={"price": "64000", "spread": "2"}))
    old, new = (Order.objects.get(signal_links__signal=s) for s in (first, second))
    assert (old.status, old.cancel_reason) == (OrderStatus.PENDING_CANCEL, "new_signal")
    assert simulator.engine.orders_by_link[old.order_link_id].status == "Cancelled"
    assert new.status == OrderStatus.NEW


def test_opposite_only_keeps_same_side_limits_but_a_market_signal_cancels_them(pipeline, simulator):
    pipeline.MARKET_ORDER_SPREAD_THRESHOLD = D("0")
    pipeline.CANCEL_OPPOSITE_ORDERS_ONLY = True
    first = run(intake(market_data_snapshot={"price": "64000", "spread": "2"}))
    run(intake(market_data_snapshot={"price": "64000", "spread": "2"}))
    assert Order.objects.get(signal_links__signal=first).status == OrderStatus.NEW
    run(intake(confidence=0.95, amount="100"))
    assert set(Order.objects.filter(order_type="Limit").values_list("status", flat=True)) == {"pending_cancel"}


def test_resume_finds_the_order_on_the_exchange_instead_of_sending_it_again(pipeline, simulator):
    from exchange.bybit.client import get_client

    signal = intake(confidence=0.95, amount="650")
    link_id = order_link_id_for(signal_id=signal.signal_id, leg=0)
    # A crash between the request and recording its answer: the row is pending, the order exists.
    TradingSignal.objects.filter(pk=signal.pk).update(status=SignalStatus.PROCESSING)
    order = Order.objects.create(order_link_id=link_id, symbol="BTCUSDT", side="Buy", order_type="Market",
                                 time_in_force="IOC", qty=D("0.01"), status=OrderStatus.PENDING_SUBMIT)
    SignalOrderRelationship.objects.create(signal=signal, order=order, allocation_amount=D("650"))
    get_client().create_order(category="linear", symbol="BTCUSDT", side="Buy", order_type="Market",
                              qty=D("0.01"), order_link_id=link_id)
    signal = run(signal)
    assert signal.status == SignalStatus.EXECUTED and "resumed" in signal.reason
    assert len(simulator.engine.orders_by_link) == 1 and len(simulator.engine.orders) == 1
    order.refresh_from_db()
    assert order.order_id == simulator.engine.orders_by_link[link_id].order_id


def test_resume_sends_a_pending_order_that_never_left(pipeline, simulator):
    signal = intake(confidence=0.95, amount="650")
    TradingSignal.objects.filter(pk=signal.pk).update(status=SignalStatus.PROCESSING)
    order = Order.objects.create(order_link_id=order_link_id_for(signal_id=signal.signal_id, leg=0),
                                 symbol="BTCUSDT", side="Buy", order_type="Market", time_in_force="IOC",
                                 qty=D("0.01"), status=OrderStatus.PENDING_SUBMIT)
    SignalOrderRelationship.objects.create(signal=signal, order=order, allocation_amount=D("650"))
    assert run(signal).status == SignalStatus.EXECUTED
    assert list(simulator.engine.orders_by_link) == [order.order_link_id]


def test_lost_response_is_resolved_by_orderlinkid_not_resent(pipeline, simulator):
    import httpx

    httpx.post(f"{simulator.url}/sim/faults", json={"drop_response": 1.0, "paths": ["/v5/order/create"]})
    pipeline.BYBIT_HTTP_TIMEOUT = 1.0
    from exchange.bybit.client import get_client

    get_client.cache_clear()
    signal = run(intake(confidence=0.95, amount="650"))
    assert len(simulator.engine.orders) == 1, signal.reason
    order = Order.objects.get()
    assert order.order_id == next(iter(simulator.engine.orders.values())).order_id
    assert signal.status == SignalStatus.EXECUTED
    # The answer was lost: the client had to look the order up by its orderLinkId.
    from exchange.models import ExchangeCall

    assert ExchangeCall.objects.filter(path="/v5/order/create", http_status__isnull=True).exists() or \
        ExchangeCall.objects.filter(path="/v5/order/realtime", order_link_id=order.order_link_id).exists()


def test_each_symbol_is_processed_in_arrival_order(pipeline, simulator):
    pipeline.MARKET_ORDER_SPREAD_THRESHOLD = D("0")
    signals = [intake(asset=asset, market_data_snapshot={"price": "100", "spread": "1"}, amount="10")
               for asset in ("SOLUSDT", "XRPUSDT", "SOLUSDT", "XRPUSDT", "SOLUSDT")]
    assert process_pending() == 5
    for asset in ("SOLUSDT", "XRPUSDT"):
        ids = [s.pk for s in signals if s.asset == asset]
        finished = list(TradingSignal.objects.filter(asset=asset).order_by("processed_at", "id")
                        .values_list("id", flat=True))
        assert finished == ids


def test_clock_skew_is_logged(pipeline, simulator):
    pipeline.SIGNAL_MAX_CLOCK_SKEW = 30
    with structlog.testing.capture_logs() as logs:
        run(intake(timestamp="2020-01-01T00:00:00Z", confidence=0.95, amount="650"))
    skew = [entry for entry in logs if entry["event"] == "signal_clock_skew"]
    assert len(skew) == 1 and skew[0]["max_skew_seconds"] == 30


def test_terminal_signals_are_left_alone(pipeline, simulator):
    signal = intake()
    TradingSignal.objects.filter(pk=signal.pk).update(status=SignalStatus.FAILED, reason="x")
    signal.refresh_from_db()
    assert signal_process(signal=signal).reason == "x"
    assert not Order.objects.exists()


def test_unexpected_error_fails_the_signal_and_processing_carries_on(pipeline, simulator, monkeypatch):
    from orders.services import signal_orders

    real = signal_orders.order_plan
    boom = intake(asset="SOLUSDT")

    def flaky(*, signal):
        if signal.pk == boom.pk:
            raise KeyError("surprise")
        return real(signal=signal)

    monkeypatch.setattr(signal_orders, "order_plan", flaky)
    after = intake(asset="SOLUSDT", confidence=0.95, amount="100")
    process_pending()
    boom.refresh_from_db()
    after.refresh_from_db()
    assert boom.status == SignalStatus.FAILED and "KeyError" in boom.reason
    assert after.status == SignalStatus.EXECUTED


def test_unknown_uuid_helper():
    assert len(order_link_id_for(signal_id=uuid.uuid4(), leg=999)) == 36
    with pytest.raises(ValueError):
        order_link_id_for(signal_id=uuid.uuid4(), leg=1000)


def test_a_signal_with_its_own_price_and_spread_does_not_wait_for_a_fresh_ticker(pipeline, simulator):
    from exchange import market_data
    from exchange.models import ExchangeCall

    def ticker_calls() -> int:
        return ExchangeCall.objects.filter(path="/v5/market/tickers").count()

    def age_ticker_cache(seconds: float) -> None:
        with market_data._tickers._lock:
            for key, (fetched, value) in list(market_data._tickers._data.items()):
                market_data._tickers._data[key] = (fetched - seconds, value)

    snapshot = {"price": "65000", "spread": "1"}
    run(intake(confidence=0.95, amount="650", market_data_snapshot=snapshot))
    assert ticker_calls() == 1
    age_ticker_cache(2)  # past the 1 s TTL, within the 10 s allowed for the deviation warning
    assert run(intake(confidence=0.95, amount="650", market_data_snapshot=snapshot)).status == SignalStatus.EXECUTED
    assert ticker_calls() == 1
    run(intake(confidence=0.95, amount="650"))  # no snapshot: the ticker is the price, so it must be fresh
    assert ticker_calls() == 2


def test_the_reason_shows_qty_and_price_as_the_exchange_does(pipeline, simulator):
    # XRPUSDT's qty step is 1: the floored qty was Decimal("2.0E+2") and the reason read "Market Buy 2.0E+2 XRPUSDT".
    signal = run(intake(asset="XRPUSDT", amount="120", confidence=0.95, market_data_snapshot={"price": "0.6000"}))
    assert signal.status == SignalStatus.EXECUTED, signal.reason
    assert signal.reason.startswith("Market Buy 200 XRPUSDT"), signal.reason
    assert "E+" not in signal.reason and "E-" not in signal.reason


def test_a_capped_sell_names_the_position_at_the_qty_step(pipeline, simulator, caplog):
    simulator.engine.create_order({"category": "linear", "symbol": "ETHUSDT", "side": "Buy", "orderType": "Market",
                                   "qty": "0.05"})
    PositionFactory(symbol="ETHUSDT", size=D("0.05"), avg_entry_price=D("3500"))  # read back with 18 places
    signal = run(intake(signal_type="sell", asset="ETHUSDT", amount="700", metadata={"urgency": True}))
    assert signal.status == SignalStatus.EXECUTED, signal.reason
    assert "sell of 0.20 capped to the long position: 0.05 (ALLOW_SHORT=false)" in signal.reason, signal.reason
    assert "000000" not in signal.reason
    # Logs too: decimals as plain text, not the column's 0.050000000000000000 or a Decimal repr.
    [logged] = [r.msg for r in caplog.records
                if isinstance(r.msg, dict) and r.msg["event"] == "sell_capped_to_position"]  # fmt: skip
    assert (logged["requested_qty"], logged["capped_qty"], logged["position"]) == ("0.2", "0.05", "0.05")
