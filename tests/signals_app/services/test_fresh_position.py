"""Decide on a true position (docs/decisions/0316), against the simulator over real HTTP, with the private
stream played into the fill path (or dropped by the simulator's event faults)."""

from decimal import Decimal as D

import pytest
import structlog

from exchange.models import ExchangeCall
from orders.models import Order, OrderStatus
from orders.services import fresh_position
from signals_app.models import SignalStatus, TradingSignal
from signals_app.services.intake import signal_intake
from signals_app.services.signal_processor import process_pending
from tests.orders.reconcile.conftest import Stream
from tests.positions.factories import PositionFactory
from tests.signals_app.conftest import signal_message

BTC = "BTCUSDT"  # 65000 on the simulator: 650 USDT is 0.01


def run(side: str, **overrides) -> TradingSignal:
    body = {"asset": BTC, "signal_type": side, "confidence": 0.95, "amount": "650", **overrides}
    result = signal_intake(payload=signal_message(**body), source="api")
    process_pending(symbol=body["asset"])
    result.signal.refresh_from_db()
    return result.signal


def dropped_stream(simulator) -> Stream:
    """The private stream, every message of which the simulator drops."""
    stream = Stream(simulator.engine)
    simulator.state.faults.update({"drop_events": 1.0})
    simulator.engine.reseed_event_faults()
    return stream


def exchange_size(simulator, symbol: str = BTC) -> D:
    with simulator.engine.lock:
        pos = simulator.engine.positions.get((symbol, 0))
        return D(0) if pos is None else (-pos.size if pos.side == "Sell" else pos.size)


def counts() -> dict:
    return fresh_position.position_path_counts()


def delta(before: dict) -> dict:
    after = counts()
    return {k: after[k] - before[k] for k in after if after[k] != before[k]}


def position_reads() -> int:
    return ExchangeCall.objects.filter(path="/v5/position/list").count()


@pytest.mark.django_db
def test_no_short_sell_right_after_a_buy_whose_fill_events_were_dropped_sells_the_long(pipeline, simulator):
    pipeline.POSITION_FILLS_WAIT_SECONDS = 0.2
    stream = dropped_stream(simulator)
    assert run("buy").status == SignalStatus.EXECUTED
    assert stream.pump() == 0 and exchange_size(simulator) == D("0.01")  # our book never heard of the fill
    before = counts()

    with structlog.testing.capture_logs() as logs:
        sell = run("sell")

    assert sell.status == SignalStatus.EXECUTED, sell.reason  # not "no long position to reduce"
    order = Order.objects.get(signal_links__signal=sell)
    assert (order.side, order.qty, order.reduce_only) == ("Sell", D("0.01"), True)
    assert exchange_size(simulator) == 0
    assert delta(before) == {fresh_position.READ_EXCHANGE: 1}
    [source] = [e for e in logs if e["event"] == "position_source"]
    assert source["path"] == "read_exchange" and D(source["exchange"][0]) == D("0.01")


@pytest.mark.django_db
def test_a_sell_right_after_a_sell_fill_whose_events_were_dropped_is_not_refused_110017(pipeline, simulator):
    pipeline.POSITION_FILLS_WAIT_SECONDS = 0.2
    pipeline.ALLOW_SHORT = True
    simulator.engine.create_order({"category": "linear", "symbol": BTC, "side": "Buy", "orderType": "Market",
                                   "qty": "0.01"})
    PositionFactory(symbol=BTC, size=D("0.01"), avg_entry_price=D("65000"))
    stream = dropped_stream(simulator)
    first = run("sell")  # closes the long on the exchange; our book keeps it (events dropped)
    assert first.status == SignalStatus.EXECUTED and Order.objects.get().reduce_only
    assert stream.pump() == 0 and exchange_size(simulator) == 0

    second = run("sell")  # on the book: reduce-only against a long that is gone → 110017

    assert second.status == SignalStatus.EXECUTED, second.reason
    assert not Order.objects.filter(reject_code=110017).exists()
    order = Order.objects.get(signal_links__signal=second)
    assert (order.reduce_only, order.status) == (False, OrderStatus.NEW)
    assert exchange_size(simulator) == D("-0.01")


@pytest.mark.django_db
def test_a_110017_refusal_reads_the_exchange_and_replans_once(pipeline, simulator):
    pipeline.ALLOW_SHORT = True
    PositionFactory(symbol=BTC, size=D("0.01"), avg_entry_price=D("65000"))  # our book: long; the exchange: flat
    before = counts()

    signal = run("sell")

    refused, placed = Order.objects.order_by("leg")
    assert (refused.leg, refused.status, refused.reject_code, refused.reduce_only) == (
        0, OrderStatus.REJECTED, 110017, True)
    assert (placed.leg, placed.status, placed.reduce_only, placed.qty) == (1, OrderStatus.NEW, False, D("0.01"))
    assert signal.status == SignalStatus.EXECUTED, signal.reason
    assert "retCode 110017" in signal.reason and "re-planned on the exchange's position" in signal.reason
    assert exchange_size(simulator) == D("-0.01")
    assert delta(before) == {fresh_position.BOOK_CURRENT: 1, fresh_position.REPLANNED: 1}


@pytest.mark.django_db
def test_no_short_sell_with_the_long_only_on_the_exchange_is_not_refused(pipeline, simulator):
    # A long our book does not show and no recent order of ours explains (its events lost long ago).
    simulator.engine.create_order({"category": "linear", "symbol": BTC, "side": "Buy", "orderType": "Market",
                                   "qty": "0.01"})
    before = counts()

    signal = run("sell", amount="1300")  # 0.02 asked, 0.01 held: capped to the exchange's long

    assert signal.status == SignalStatus.EXECUTED, signal.reason
    order = Order.objects.get()
    assert (order.qty, order.reduce_only) == (D("0.01"), True) and "capped to the long position" in signal.reason
    assert exchange_size(simulator) == 0
    assert delta(before) == {fresh_position.BOOK_CURRENT: 1, fresh_position.REPLANNED: 1}
    assert position_reads() == 1  # the mode lookup of this very plan answered the re-plan too


@pytest.mark.django_db(transaction=True)
def test_fills_that_arrive_while_the_decision_waits_are_used_without_asking_the_exchange(pipeline, simulator):
    pipeline.POSITION_FILLS_WAIT_SECONDS = 10.0  # the fills come long before that
    stream = Stream(simulator.engine)  # no faults: delivered, but only when pumped
    assert run("buy").status == SignalStatus.EXECUTED
    reads, before = position_reads(), counts()

    sell = stream.pumped_during(0.3, lambda: run("sell"))

    assert sell.status == SignalStatus.EXECUTED, sell.reason
    order = Order.objects.get(signal_links__signal=sell)
    assert (order.qty, order.reduce_only) == (D("0.01"), True)
    assert delta(before) == {fresh_position.WAITED: 1}
    assert position_reads() == reads  # decided on our (now complete) book


@pytest.mark.django_db
def test_fills_missing_from_an_older_order_send_the_decision_to_the_exchange_without_waiting(pipeline, simulator):
    from datetime import timedelta

    from django.utils import timezone

    pipeline.POSITION_FILLS_WAIT_SECONDS = 30.0  # would be felt if it were waited out
    dropped_stream(simulator)
    assert run("buy").status == SignalStatus.EXECUTED
    Order.objects.update(updated_at=timezone.now() - timedelta(seconds=90))  # its events are long overdue

    with structlog.testing.capture_logs() as logs:
        sell = run("sell")

    assert sell.status == SignalStatus.EXECUTED, sell.reason
    [source] = [e for e in logs if e["event"] == "position_source"]
    assert source["path"] == "read_exchange" and source["waited_ms"] < 5000


# --- The book cannot know it is current (0316, "When the book cannot know"): each case below decided on the book
# before (book flat, "no long position" → re-planned, or a 110017) and now reads the exchange at once.


def long_only_on_the_exchange(simulator) -> None:
    simulator.engine.create_order({"category": "linear", "symbol": BTC, "side": "Buy", "orderType": "Market",
                                   "qty": "0.01"})  # fmt: skip


def decided_on_the_exchange(signal: TradingSignal, logs: list, before: dict) -> dict:
    assert signal.status == SignalStatus.EXECUTED, signal.reason
    order = Order.objects.get(signal_links__signal=signal)
    assert (order.side, order.qty, order.reduce_only) == ("Sell", D("0.01"), True)
    assert "re-planned" not in signal.reason and not Order.objects.filter(status=OrderStatus.REJECTED).exists()
    assert delta(before) == {fresh_position.READ_EXCHANGE: 1}
    [source] = [e for e in logs if e["event"] == "position_source"]
    assert source["path"] == "read_exchange" and D(source["exchange"][0]) == D("0.01")
    return source


@pytest.mark.parametrize("marked", [BTC, "*"])
@pytest.mark.django_db
def test_a_symbol_marked_for_backfill_is_decided_on_the_exchange(pipeline, simulator, marked):
    from orders.reconcile.backfill_marks import backfill_mark

    long_only_on_the_exchange(simulator)  # e.g. its fills are in the web process's outage backlog
    backfill_mark([("linear", marked)], reason="ws-gateway messages kept during a database outage")
    before = counts()

    with structlog.testing.capture_logs() as logs:
        sell = run("sell")

    assert decided_on_the_exchange(sell, logs, before)["doubts"] == ["backfill mark"]


@pytest.mark.parametrize("status", [OrderStatus.PENDING_SUBMIT, OrderStatus.PENDING_CANCEL])
@pytest.mark.django_db
def test_an_order_whose_outcome_is_unknown_sends_the_decision_to_the_exchange(pipeline, simulator, status):
    from tests.orders.factories import OrderFactory

    pipeline.POSITION_FILLS_WAIT_SECONDS = 30.0  # a doubt is not waited for
    long_only_on_the_exchange(simulator)  # the consumer that sent it was killed before the acknowledgement
    OrderFactory(symbol=BTC, status=status, order_id="", order_type="Market", time_in_force="IOC",
                 post_only=False, price=None, exchange_updated_ms=1)  # fmt: skip
    before = counts()

    with structlog.testing.capture_logs() as logs:
        sell = run("sell")

    source = decided_on_the_exchange(sell, logs, before)
    assert source["doubts"] == ["order outcome unknown"] and source["waited_ms"] < 5000


@pytest.mark.django_db
def test_a_market_order_acknowledged_after_the_position_changed_with_nothing_booked_is_not_trusted(
        pipeline, simulator):  # fmt: skip
    pipeline.POSITION_FILLS_WAIT_SECONDS = 0.2
    PositionFactory(symbol=BTC, size=D(0), avg_entry_price=D(0))  # the row, last changed before the buy
    dropped_stream(simulator)
    assert run("buy").status == SignalStatus.EXECUTED
    # Its order event came (so it is no longer "acknowledged, no event since"), its fill did not.
    Order.objects.update(exchange_updated_ms=1_700_000_000_000, filled_qty=0)
    before = counts()

    with structlog.testing.capture_logs() as logs:
        sell = run("sell")

    source = decided_on_the_exchange(sell, logs, before)
    assert source["doubts"] == [] and len(source["orders"]) == 1


@pytest.mark.django_db(transaction=True)  # the backlog closes the connection it saw fail
def test_right_after_this_process_saw_the_database_unreachable_the_exchange_is_read(pipeline, simulator):
    from django.db import OperationalError

    from ordermanager.core.services.db_backlog import WriteBacklog

    failures = [OperationalError("server closed the connection unexpectedly")]

    def write(item):
        if failures:
            raise failures.pop()

    backlog = WriteBacklog("test", write=write, symbols_of=lambda item: [], describe=lambda item: {},
                           mark=lambda keys, reason: None)  # fmt: skip
    assert backlog.submit("an audit row") == "kept" and backlog.wait_empty(10)
    long_only_on_the_exchange(simulator)
    before = counts()

    with structlog.testing.capture_logs() as logs:
        sell = run("sell")

    assert decided_on_the_exchange(sell, logs, before)["doubts"] == ["database unreachable"]


@pytest.mark.postgres  # a server restart is a PostgreSQL fact; the embedded SQLite has no server
@pytest.mark.django_db
def test_right_after_the_database_server_restarted_the_exchange_is_read(pipeline, simulator, monkeypatch):
    # The shared server started long ago; a window longer than its uptime makes it "restarted moments ago".
    monkeypatch.setattr(fresh_position, "OUTAGE_DOUBT_SECONDS", 100 * 365 * 86400.0)
    long_only_on_the_exchange(simulator)
    before = counts()

    with structlog.testing.capture_logs() as logs:
        sell = run("sell")

    assert decided_on_the_exchange(sell, logs, before)["doubts"] == ["database restarted"]


@pytest.mark.django_db
def test_a_book_that_is_current_is_decided_on_without_reading_the_exchange(pipeline, simulator):
    # The ordinary case: the buy's fill is booked (position row changed after its acknowledgement), no mark, no
    # order with an unknown outcome, no outage. Guards the new doubts against firing on a current book.
    stream = Stream(simulator.engine)
    assert run("buy").status == SignalStatus.EXECUTED
    assert stream.pump() > 0
    reads, before = position_reads(), counts()

    sell = run("sell")

    assert sell.status == SignalStatus.EXECUTED, sell.reason
    order = Order.objects.get(signal_links__signal=sell)
    assert (order.qty, order.reduce_only) == (D("0.01"), True)
    assert delta(before) == {fresh_position.BOOK_CURRENT: 1}
    assert position_reads() == reads
