"""A group of stream messages applied by topic in one transaction (docs/decisions/0339).

The group applies every order event, then every execution, then every position push. These tests hold it to
what the messages applied one by one in arrival order leave, over many arrival orders of one mixed stream,
and to a number of statements that does not grow with the group's fills.
"""

import random
from decimal import Decimal as D

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from exchange.bybit.events import parse_private_message
from ordermanager.core.models import OutboxEvent
from orders.models import Execution, Order, OrderStatus
from orders.services.fills import ORDER_UPDATED, private_message_apply, private_messages_apply
from positions.models import Position, PositionLedgerEntry
from tests.orders.factories import OrderFactory
from tests.positions import bybit_messages as bm

pytestmark = pytest.mark.django_db

T = bm.BASE_MS


def _msg(topic, *items):
    return parse_private_message(bm.message(topic, list(items)))


def _push(symbol, idx, mark, ms, *, side="", size="0"):
    item = {"category": "linear", "symbol": symbol, "positionIdx": idx, "side": side, "size": size,
            "entryPrice": "0", "markPrice": mark, "updatedTime": str(ms)}  # fmt: skip
    return _msg("position", item)


def _stream() -> list:
    """One desk's mixed stream: our market and limit orders with partial fills, a repeat, a stale event, a
    cancel, an order placed elsewhere whose fill can come before its event, a fill of ours that can come
    before the row knows its orderId, funding on a symbol whose mode only a position push tells, and pushes
    of one row out of time order."""
    a = OrderFactory(qty=D("0.030"), status=OrderStatus.NEW, order_id="", order_type="Market")
    b = OrderFactory(qty=D("0.010"), status=OrderStatus.NEW, order_id="", side="Sell")
    c = OrderFactory(qty=D("0.020"), status=OrderStatus.NEW, order_id="ex-c")
    d = OrderFactory(qty=D("0.100"), status=OrderStatus.NEW, order_id="", symbol="ETHUSDT", price=D("3000"))

    def event(order, order_id, status, cum="0", value="0", fee="0", ms=T, **kw):
        return _msg("order", bm.order_item(order_link_id=order.order_link_id if order else "", order_id=order_id,
                    status=status, qty=kw.pop("qty", str(order.qty) if order else "0.005"), cum_qty=cum,
                    cum_value=value, cum_fee=fee, updated_ms=ms, side=kw.pop("side", order.side if order else "Buy"),
                    **kw))  # fmt: skip

    def fill(order, order_id, exec_id, qty, price, seq, side=None, symbol="BTCUSDT"):
        return bm.execution_item(order_link_id=order.order_link_id if order else "", order_id=order_id,
                                 exec_id=exec_id, qty=qty, price=price, fee="0.1", seq=seq,
                                 side=side or order.side, symbol=symbol)  # fmt: skip

    a1 = fill(a, "ex-a", "e-a1", "0.010", "64000", 1)
    return [
        event(a, "ex-a", "New", ms=T + 1),
        event(a, "ex-a", "PartiallyFilled", "0.010", "640", "0.1", ms=T + 2),
        _msg("execution", a1),
        event(a, "ex-a", "Filled", "0.030", "1922", "0.3", ms=T + 4),
        _msg("execution", fill(a, "ex-a", "e-a2", "0.020", "64100", 3), {**a1}),  # one new, one repeat
        _msg("execution", {**a1}),
        event(b, "ex-b", "New", ms=T + 5),
        _msg("execution", fill(b, "ex-b", "e-b1", "0.010", "64200", 5)),
        event(b, "ex-b", "Filled", "0.010", "642", "0.1", ms=T + 6),
        event(b, "ex-b", "New", ms=T + 3),  # stale: after Filled it changes nothing
        event(c, "ex-c", "Cancelled", ms=T + 7),
        _msg("execution", fill(None, "ex-x", "e-x1", "0.005", "63900", 7, side="Buy")),  # an order placed elsewhere
        # Ours, its fill without our link before the row knows the exchange's orderId: it waits for the event.
        _msg("execution", fill(None, "ex-d", "e-d1", "0.100", "3000", 9, side="Buy", symbol="ETHUSDT")),
        event(d, "ex-d", "Filled", "0.100", "300", "0.1", ms=T + 11, symbol="ETHUSDT", price="3000"),
        event(None, "ex-x", "Filled", "0.005", "319.5", "0.1", ms=T + 8, order_type="Market"),
        _msg(
            "execution",
            bm.execution_item(
                symbol="SOLUSDT",
                exec_type="Funding",
                side="Buy",
                qty="2",
                price="150",
                fee="0.02",
                exec_id="f-sol",
                seq=8,
            ),
        ),  # fmt: skip
        _push("SOLUSDT", 1, "150.5", T + 9, side="Buy", size="2"),  # hedge: the funding's row is idx 1
        _push("BTCUSDT", 0, "64050", T + 20),
        _push("BTCUSDT", 0, "63000", T + 10),  # older than the push before it
        _push("BTCUSDT", 0, "64300", T + 30),
    ]


def _state() -> dict:
    orders = Order.objects.values_list(
        "order_link_id", "order_id", "status", "qty", "filled_qty", "booked_qty", "cum_exec_value", "fees",
        "avg_fill_price", "is_external", "position_idx", "cancel_reason", "exchange_updated_ms")  # fmt: skip
    executions = Execution.objects.values_list("exec_id", "order__order_link_id", "position_idx", "exec_qty")
    positions = Position.objects.values_list(
        "category", "symbol", "position_idx", "mode", "size", "avg_entry_price", "realized_pnl", "fees_paid",
        "funding_paid", "unrealized_pnl", "mark_price", "mark_price_updated_at", "last_exec_id")  # fmt: skip
    ledger = PositionLedgerEntry.objects.values_list(
        "exec_id", "position__symbol", "position_idx", "size_after", "avg_entry_after", "realized_after", "flag"
    )
    last_event = {}
    for link, status in (
        OutboxEvent.objects.filter(routing_key=ORDER_UPDATED)
        .order_by("id")
        .values_list("aggregate_id", "payload__status")
    ):
        last_event[link] = status
    return {
        "orders": _rows(orders),
        "executions": _rows(executions),
        "positions": _rows(positions),
        "ledger": _rows(ledger),
        "last order.updated": last_event,
    }


def _rows(rows) -> list[tuple]:
    if connection.vendor != "sqlite":
        return sorted(rows)

    # SQLite keeps a decimal column to about 15 significant digits, so a fold continued from a stored state
    # (one by one) and one continued in memory (a group) part in the last of them: compared to 1e-9.
    def value(v):
        return v.quantize(D("1e-9")) if isinstance(v, D) else v

    return sorted(tuple(value(v) for v in row) for row in rows)


@pytest.mark.parametrize("seed", range(20))
def test_a_group_leaves_what_its_messages_one_by_one_leave_in_any_arrival_order(seed):
    """The stream in a random order; its first messages (none to half of them) applied one by one before, so
    the group also meets fills stored before their order was known and rows its messages did not create."""
    rng = random.Random(seed)
    messages = _stream()
    rng.shuffle(messages)
    before = rng.randrange(len(messages) // 2)
    with transaction.atomic():
        for message in messages:
            private_message_apply(message=message)
        one_by_one = _state()
        transaction.set_rollback(True)

    for message in messages[:before]:
        private_message_apply(message=message)
    private_messages_apply(messages=messages[before:])

    grouped = _state()
    assert grouped == one_by_one
    # The stream's facts, so that two equal but wrong states cannot pass.
    orders = {row[0]: row for row in grouped["orders"]}
    assert len(orders) == 5  # ours and the one placed elsewhere, recorded once
    assert {row[2] for row in grouped["orders"]} == {OrderStatus.FILLED, OrderStatus.CANCELLED}
    assert all(row[5] == row[4] for row in grouped["orders"])  # every fill booked
    assert len(grouped["executions"]) == 6 and all(row[1] for row in grouped["executions"] if row[0] != "f-sol")
    positions = {(row[1], row[2]): row for row in grouped["positions"]}
    assert positions[("BTCUSDT", 0)][4] == D("0.025")  # 0.030 + 0.005 bought, 0.010 sold
    assert positions[("BTCUSDT", 0)][10] == D("64300")  # the newest push
    assert positions[("ETHUSDT", 0)][4] == D("0.100")
    assert positions[("SOLUSDT", 1)][3] == "hedge" and positions[("SOLUSDT", 1)][8] != 0  # the funding placed
    assert {link: status for link, status in grouped["last order.updated"].items()} == {
        row[0]: row[2] for row in grouped["orders"] if row[0] in grouped["last order.updated"]
    }


def _market_fills(orders, start_ms):
    """Per order the three messages of a market fill, as the simulator pushes them: order, execution, position."""
    messages = []
    for k, order in enumerate(orders):
        ms, exchange_id = start_ms + k, f"ex-{order.order_link_id}"
        messages += [
            _msg("order", bm.order_item(order_link_id=order.order_link_id, order_id=exchange_id, status="Filled",
                 qty="0.001", cum_qty="0.001", cum_value="64", cum_fee="0.01", avg_price="64000", updated_ms=ms)),
            _msg("execution", bm.execution_item(order_link_id=order.order_link_id, order_id=exchange_id,
                 qty="0.001", price="64000", fee="0.01", seq=ms - bm.BASE_MS, exec_ms=ms)),
            _push("BTCUSDT", 0, str(64000 + k), ms),
        ]  # fmt: skip
    return messages


def test_a_group_of_market_fills_costs_the_statements_of_one_whatever_its_size():
    orders = [OrderFactory(qty=D("0.001"), status=OrderStatus.NEW, order_id="", order_type="Market")
              for _ in range(16)]  # fmt: skip
    private_messages_apply(messages=_market_fills(orders[:1], T))  # the position row exists from here on
    one, small, large = (_market_fills(orders[1:2], T + 50), _market_fills(orders[2:4], T + 100),
                         _market_fills(orders[4:], T + 200))  # fmt: skip

    def statements(messages):
        with CaptureQueriesContext(connection) as captured:
            private_messages_apply(messages=messages)
        apart = ("SAVEPOINT", "core_outbox", "pg_notify")
        return [q["sql"][:80] for q in captured.captured_queries if not any(a in q["sql"] for a in apart)]

    single, two, twelve = statements(one), statements(small), statements(large)

    # PostgreSQL: the orders' lock, the executions awaited, the orders' update, the 6 of the executions' batch,
    # the position's lock and update. SQLite updates one order per statement, twice (the event's fields, the
    # booked sum), in place of the orders' update. A lone order event: its lock (which tells whether
    # executions wait) and its update, as alone.
    if connection.vendor == "postgresql":
        assert len(twelve) == len(two) == 11, twelve
        assert len(single) == 10, single
    else:
        assert (len(single), len(two), len(twelve)) == (11, 10 + 2 * 2, 10 + 2 * 12), twelve
    assert set(Order.objects.values_list("status", "filled_qty", "booked_qty")) == {
        (OrderStatus.FILLED, D("0.001"), D("0.001"))
    }
    position = Position.objects.get(symbol="BTCUSDT", position_idx=0)
    assert (position.size, position.mark_price) == (D("0.016"), D("64011"))
    assert PositionLedgerEntry.objects.count() == Execution.objects.count() == 16
