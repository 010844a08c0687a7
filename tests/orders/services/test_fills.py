"""Fill ingest: executions and order updates → Execution, Order, Position."""

from decimal import Decimal as D
from unittest import mock

import pytest
from django.db import IntegrityError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from exchange.bybit.events import parse_private_message
from exchange.bybit.types import ExecutionInfo, MalformedPayload, OrderInfo
from ordermanager.core.models import OutboxEvent
from orders.models import Execution, Order, OrderStatus
from orders.services import fills
from orders.services.fills import FillRefused, execution_apply, order_update_apply, private_message_apply
from positions.models import Position, PositionLedgerEntry
from tests.core.test_outbox_many import outbox_statements
from tests.orders.factories import OrderFactory
from tests.positions import bybit_messages as bm

pytestmark = pytest.mark.django_db


def _position(symbol="BTCUSDT", idx=0) -> Position:
    return Position.objects.get(symbol=symbol, position_idx=idx)


def test_execution_updates_order_and_position():
    order = OrderFactory(qty=D("0.010"), status=OrderStatus.NEW)
    info = bm.execution(order_link_id=order.order_link_id, order_id=order.order_id, qty="0.004", fee="0.1408")

    assert execution_apply(execution=info) is True

    order.refresh_from_db()
    assert (order.status, order.filled_qty, order.avg_fill_price, order.fees) == (
        OrderStatus.PARTIALLY_FILLED,
        D("0.004"),
        D("64000"),
        D("0.1408"),
    )
    row = Execution.objects.get(exec_id=info.exec_id)
    assert row.order == order and row.source == "ws"
    position = _position()
    assert (position.size, position.avg_entry_price, position.realized_pnl, position.fees_paid) == (
        D("0.004"),
        D("64000"),
        D("-0.1408"),
        D("0.1408"),
    )


def test_repeated_exec_id_changes_nothing():
    order = OrderFactory(qty=D("0.010"))
    info = bm.execution(order_link_id=order.order_link_id, qty="0.004")
    assert execution_apply(execution=info) is True
    assert execution_apply(execution=info) is False
    assert Execution.objects.count() == 1
    assert _position().size == D("0.004")
    order.refresh_from_db()
    assert order.filled_qty == D("0.004")


def test_same_exec_id_from_ws_then_rest_backfill_is_applied_once():
    order = OrderFactory(qty=D("0.010"))
    info = bm.execution(order_link_id=order.order_link_id, order_id=order.order_id, qty="0.010", fee="0.352")
    assert execution_apply(execution=info, source="ws") is True
    assert execution_apply(execution=info, source="rest") is False
    row = Execution.objects.get()
    assert row.source == "ws"
    position = _position()
    assert (position.size, position.fees_paid) == (D("0.010"), D("0.352"))
    assert PositionLedgerEntry.objects.count() == 1


def test_fill_before_new_event_is_kept_and_late_new_is_ignored():
    order = OrderFactory(qty=D("0.010"), status=OrderStatus.PENDING_SUBMIT, order_id="")
    fill = bm.execution(order_link_id=order.order_link_id, order_id="ex-1", qty="0.010", price="64000")
    assert execution_apply(execution=fill) is True
    order.refresh_from_db()
    assert order.status == OrderStatus.FILLED

    late_new = bm.order(order_link_id=order.order_link_id, order_id="ex-1", status="New")
    order_update_apply(info=late_new)

    order.refresh_from_db()
    assert (order.status, order.filled_qty, order.order_id) == (OrderStatus.FILLED, D("0.010"), "ex-1")
    assert _position().size == D("0.010")


def test_fill_of_unknown_order_is_stored_then_applied_when_the_order_appears():
    fill = bm.execution(order_id="ext-order-1", qty="0.5", price="100", fee="0.03", side="Sell", symbol="ETHUSDT")
    assert execution_apply(execution=fill) is True
    row = Execution.objects.get()
    assert row.order is None
    # Only the order names the position side: the fill waits for it (stored, not lost).
    assert not PositionLedgerEntry.objects.exists()

    event = bm.order(
        order_link_id="", order_id="ext-order-1", status="Filled", qty="0.5", cum_qty="0.5", cum_value="50",
        cum_fee="0.03", avg_price="100", side="Sell", symbol="ETHUSDT", order_type="Market",
    )  # fmt: skip
    assert order_update_apply(info=event) is True

    order = Order.objects.get(order_id="ext-order-1")
    row.refresh_from_db()
    assert order.is_external and row.order == order
    assert (order.status, order.filled_qty, order.fees) == (OrderStatus.FILLED, D("0.5"), D("0.03"))
    assert order.booked_qty == D("0.5")  # the fill linked to it is booked on it (docs/decisions/0336)
    assert _position("ETHUSDT").size == D("-0.5")
    assert order_update_apply(info=event) is False  # a repeat of the event applies nothing again
    assert PositionLedgerEntry.objects.count() == 1


def test_hedge_fill_of_unknown_order_waits_for_the_order_to_name_its_side():
    Position.objects.create(symbol="BTCUSDT", position_idx=1, mode="hedge")
    Position.objects.create(symbol="BTCUSDT", position_idx=2, mode="hedge")
    fill = bm.execution(order_id="ext-2", qty="0.3", price="100", side="Sell")
    outcome = private_message_apply(message=parse_private_message(bm.message("execution", [bm.execution_item(
        order_id="ext-2", qty="0.3", price="100", side="Sell", exec_id=fill.exec_id)])))  # fmt: skip

    assert outcome.deferred == [fill.exec_id]
    assert not PositionLedgerEntry.objects.exists()
    assert _position(idx=2).size == 0

    event = bm.order(
        order_link_id="", order_id="ext-2", status="Filled", qty="0.3", cum_qty="0.3", cum_value="30",
        side="Sell", order_type="Market", position_idx=2,
    )  # fmt: skip
    order_update_apply(info=event)

    short = _position(idx=2)
    assert (short.size, short.avg_entry_price) == (D("0.3"), D("100"))
    assert _position(idx=1).size == 0
    assert Execution.objects.get().position_idx == 2


def test_partial_fill_then_cancel_keeps_fills_fees_and_position():
    order = OrderFactory(qty=D("0.010"), status=OrderStatus.NEW, cancel_reason="")
    fill = bm.execution(order_link_id=order.order_link_id, order_id=order.order_id, qty="0.004", fee="0.1408")
    execution_apply(execution=fill)
    cancelled = bm.order(
        order_link_id=order.order_link_id, order_id=order.order_id, status="Cancelled", cum_qty="0.004",
        cum_value="256", cum_fee="0.1408", avg_price="64000", updated_ms=bm.BASE_MS + 10,
    )  # fmt: skip

    assert order_update_apply(info=cancelled) is True

    order.refresh_from_db()
    assert (order.status, order.filled_qty, order.fees, order.avg_fill_price) == (
        OrderStatus.CANCELLED,
        D("0.004"),
        D("0.1408"),
        D("64000"),
    )
    assert order.cancel_reason == "exchange"
    position = _position()
    assert (position.size, position.fees_paid) == (D("0.004"), D("0.1408"))


def test_pending_cancel_then_partial_fill_then_cancelled():
    order = OrderFactory(qty=D("0.010"), status=OrderStatus.PENDING_CANCEL, cancel_reason="stale")
    execution_apply(execution=bm.execution(order_link_id=order.order_link_id, qty="0.002"))
    order.refresh_from_db()
    assert order.status == OrderStatus.PENDING_CANCEL  # a partial fill does not undo our cancel request
    order_update_apply(
        info=bm.order(order_link_id=order.order_link_id, order_id=order.order_id, status="Cancelled", cum_qty="0.002")
    )
    order.refresh_from_db()
    assert (order.status, order.filled_qty, order.cancel_reason) == (OrderStatus.CANCELLED, D("0.002"), "stale")


def test_funding_row_changes_realized_pnl_only():
    order = OrderFactory(qty=D("0.010"))
    execution_apply(execution=bm.execution(order_link_id=order.order_link_id, qty="0.010", price="64000"))
    funding = bm.execution(exec_type="Funding", side="Sell", qty="0.010", price="65000", fee="0.065")

    assert execution_apply(execution=funding) is True

    position = _position()
    assert (position.size, position.avg_entry_price) == (D("0.010"), D("64000"))
    assert (position.realized_pnl, position.funding_paid, position.fees_paid) == (D("-0.065"), D("0.065"), D("0"))
    order.refresh_from_db()
    assert order.filled_qty == D("0.010")  # funding is not a fill of any order


def test_forward_only_status_and_double_filled():
    order = OrderFactory(qty=D("0.010"), status=OrderStatus.NEW)
    link, oid = order.order_link_id, order.order_id
    assert order_update_apply(info=bm.order(order_link_id=link, order_id=oid, status="Filled", cum_qty="0.010",
                                            cum_value="640", avg_price="64000", updated_ms=bm.BASE_MS + 5))  # fmt: skip
    # The cancel/fill race: a second Filled carrying the refused cancel.
    second = bm.order(order_link_id=link, order_id=oid, status="Filled", cum_qty="0.010", cum_value="640",
                      updated_ms=bm.BASE_MS + 6, cancel_type="CancelByUser",
                      reject_reason="EC_OrigClOrdIDDoesNotExist")  # fmt: skip
    assert order_update_apply(info=second) is True  # only the update time moved
    stale_partial = bm.order(order_link_id=link, order_id=oid, status="PartiallyFilled", cum_qty="0.004",
                             updated_ms=bm.BASE_MS + 1)  # fmt: skip
    assert order_update_apply(info=stale_partial) is False
    order.refresh_from_db()
    assert (order.status, order.filled_qty, order.cancel_reason) == (OrderStatus.FILLED, D("0.010"), "")


def test_order_event_ahead_of_dropped_execution_is_not_double_counted_by_the_backfill():
    order = OrderFactory(qty=D("0.010"), status=OrderStatus.NEW)
    order_update_apply(info=bm.order(order_link_id=order.order_link_id, order_id=order.order_id, status="Filled",
                                     cum_qty="0.010", cum_value="640", cum_fee="0.352", avg_price="64000"))  # fmt: skip
    assert not Position.objects.exists()  # positions move on executions only

    backfill = bm.execution(order_link_id=order.order_link_id, order_id=order.order_id, qty="0.010", fee="0.352")
    assert execution_apply(execution=backfill, source="rest") is True

    order.refresh_from_db()
    assert (order.filled_qty, order.fees, order.status) == (D("0.010"), D("0.352"), OrderStatus.FILLED)
    assert _position().size == D("0.010")


def test_post_only_cancel_is_a_rejection():
    order = OrderFactory(qty=D("0.010"), status=OrderStatus.NEW)
    order_update_apply(info=bm.order(order_link_id=order.order_link_id, order_id=order.order_id, status="Cancelled",
                                     reject_reason="EC_PostOnlyWillTakeLiquidity"))  # fmt: skip
    order.refresh_from_db()
    assert (order.status, order.reject_reason) == (OrderStatus.REJECTED, "EC_PostOnlyWillTakeLiquidity")


def test_fills_out_of_order_give_the_same_position_as_in_order():
    # A flip makes the result path dependent: buy 1@100, sell 2@110, buy 0.5@90.
    links = [OrderFactory(qty=D("5")).order_link_id for _ in range(3)]
    items = [
        bm.execution_item(side="Buy", qty="1", price="100", exec_ms=bm.BASE_MS + 1, seq=1, order_link_id=links[0]),
        bm.execution_item(side="Sell", qty="2", price="110", exec_ms=bm.BASE_MS + 2, seq=2, order_link_id=links[1]),
        bm.execution_item(side="Buy", qty="0.5", price="90", exec_ms=bm.BASE_MS + 3, seq=3, order_link_id=links[2]),
    ]
    for item in (items[2], items[0], items[1]):
        private_message_apply(message=parse_private_message(bm.message("execution", [item])))
    position = _position()
    # In order: +1@100; sell 2@110 closes 1 (+10) and opens -1@110; buy 0.5@90 closes 0.5 (+10).
    assert (position.size, position.avg_entry_price, position.realized_pnl) == (D("-0.5"), D("110"), D("20"))
    afters = list(PositionLedgerEntry.objects.order_by("exec_time_ms").values_list("size_after", flat=True))
    assert afters == [D("1"), D("-1"), D("-0.5")]


def test_one_message_is_one_transaction():
    good = bm.execution_item(qty="1", price="100")
    bad = bm.execution_item(qty="-1", price="100")  # refused by the database check constraint
    with pytest.raises(IntegrityError):
        private_message_apply(message=parse_private_message(bm.message("execution", [good, bad])))
    assert not Execution.objects.exists()
    assert not Position.objects.filter(size__gt=0).exists()


def test_position_topic_sets_mark_price_and_learns_hedge_rows():
    item = {"category": "linear", "symbol": "SOLUSDT", "positionIdx": 2, "side": "", "size": "0",
            "entryPrice": "0", "markPrice": "150.5", "updatedTime": str(bm.BASE_MS), "seq": 5}  # fmt: skip
    private_message_apply(message=parse_private_message(bm.message("position", [item])))
    row = Position.objects.get(symbol="SOLUSDT", position_idx=2)
    assert (row.mode, row.mark_price) == ("hedge", D("150.5"))


def test_every_position_change_publishes_position_updated_after_commit(django_capture_on_commit_callbacks):
    order = OrderFactory(qty=D("0.010"))
    with mock.patch("ordermanager.events.EventPublisher.submit", autospec=True) as submit:
        with django_capture_on_commit_callbacks(execute=True):
            execution_apply(execution=bm.execution(order_link_id=order.order_link_id, qty="0.010", price="64000"))
    events = {call.args[1]: call.args[2] for call in submit.call_args_list}
    assert events["position.updated"]["size"] == D("0.010")
    assert events["position.updated"]["symbol"] == "BTCUSDT"
    assert events[fills.ORDER_UPDATED]["status"] == OrderStatus.FILLED


def test_an_older_position_push_does_not_overwrite_a_newer_mark_price():
    def push(mark, ms):
        item = {"category": "linear", "symbol": "SOLUSDT", "positionIdx": 0, "side": "", "size": "0",
                "entryPrice": "0", "markPrice": mark, "updatedTime": str(ms)}  # fmt: skip
        private_message_apply(message=parse_private_message(bm.message("position", [item])))

    push("151", bm.BASE_MS + 2000)
    push("149", bm.BASE_MS + 1000)  # reordered: older
    push("151", bm.BASE_MS + 2000)  # duplicate
    assert Position.objects.get(symbol="SOLUSDT").mark_price == D("151")
    push("152", bm.BASE_MS + 3000)
    assert Position.objects.get(symbol="SOLUSDT").mark_price == D("152")


def _fills_message(order, n, *, start_seq, side="Buy", qty="0.001", price="100"):
    items = [
        bm.execution_item(
            side=side, qty=qty, price=price, fee="0.01", seq=start_seq + k, order_link_id=order.order_link_id
        )
        for k in range(n)
    ]
    return parse_private_message(bm.message("execution", items))


def notifies(captured) -> int:
    """The wake-up NOTIFYs of waiting decisions a capture holds (docs/decisions/0327)."""
    return sum("pg_notify" in q["sql"] for q in captured.captured_queries)


def test_a_message_costs_the_same_statements_for_one_fill_or_fifty():
    small, large = OrderFactory(qty=D("1")), OrderFactory(qty=D("1"))
    private_message_apply(message=_fills_message(small, 1, start_seq=1))  # the position row exists from here on
    one, fifty = _fills_message(small, 1, start_seq=10), _fills_message(large, 50, start_seq=100)
    with CaptureQueriesContext(connection) as q1:
        private_message_apply(message=one)
    with CaptureQueriesContext(connection) as q50:
        private_message_apply(message=fifty)

    # Order lock, execution insert, position lock, ledger insert, position update, order totals, order
    # update (the test's own transaction adds a savepoint around the message's). Outbox rows are per event
    # (one position.updated per change set, order.updated per status change), not per fill: counted apart, as
    # is the wake-up of waiting decisions (one NOTIFY per transaction, PostgreSQL only; docs/decisions/0327).
    def statements(captured):
        return [
            q["sql"][:70]
            for q in captured.captured_queries
            if "SAVEPOINT" not in q["sql"] and "core_outbox" not in q["sql"] and "pg_notify" not in q["sql"]
        ]

    assert len(statements(q50)) == len(statements(q1)) == 7, statements(q50)
    assert notifies(q50) == notifies(q1) == (1 if connection.vendor == "postgresql" else 0)
    position = _position()
    assert (position.size, position.fees_paid) == (D("0.052"), D("0.52"))
    large.refresh_from_db()
    assert (large.filled_qty, large.status) == (D("0.050"), OrderStatus.PARTIALLY_FILLED)


def test_a_message_with_repeats_and_reordered_fills_gives_the_fold():
    order = OrderFactory(qty=D("10"))
    link = order.order_link_id
    first = [bm.execution_item(side="Buy", qty="1", price="100", seq=1, exec_ms=bm.BASE_MS + 10, order_link_id=link)]
    private_message_apply(message=parse_private_message(bm.message("execution", first)))
    later = bm.execution_item(side="Sell", qty="2", price="110", seq=3, exec_ms=bm.BASE_MS + 30, order_link_id=link)
    earlier = bm.execution_item(side="Buy", qty="1", price="90", seq=0, exec_ms=bm.BASE_MS + 5, order_link_id=link)
    # One message: a fill after the last one, one before it (replay), a repeat inside, and a repeat of the first.
    outcome = private_message_apply(
        message=parse_private_message(bm.message("execution", [later, earlier, later, first[0]]))
    )
    assert (outcome.applied, outcome.ignored) == (2, 2)
    position = _position()
    # In time order: +1@90, +1@100 → 2@95; sell 2@110 closes it: +30.
    assert (position.size, position.avg_entry_price, position.realized_pnl) == (D("0"), D("0"), D("30"))
    afters = list(PositionLedgerEntry.objects.order_by("exec_time_ms").values_list("size_after", flat=True))
    assert afters == [D("1"), D("2"), D("0")]
    order.refresh_from_db()
    assert order.filled_qty == D("4")


def test_one_position_updated_event_per_position_per_message(django_capture_on_commit_callbacks):
    order = OrderFactory(qty=D("1"))
    with mock.patch("ordermanager.events.EventPublisher.submit", autospec=True) as submit:
        with django_capture_on_commit_callbacks(execute=True):
            private_message_apply(message=_fills_message(order, 20, start_seq=1))
    updates = [c.args[2] for c in submit.call_args_list if c.args[1] == "position.updated"]
    assert len(updates) == 1
    assert (updates[0]["size"], updates[0]["executions"]) == (D("0.020"), 20)


def test_funding_waits_while_the_symbol_mode_is_unknown_then_goes_to_its_side():
    # A hedge symbol's funding row arrives before anything that tells the mode (reordered stream).
    funding = bm.execution_item(symbol="ETHUSDT", exec_type="Funding", side="Sell", qty="0.5", price="100",
                                fee="-0.02", exec_ms=bm.BASE_MS + 50, seq=9)  # fmt: skip
    outcome = private_message_apply(message=parse_private_message(bm.message("execution", [funding])))
    assert outcome.deferred == [funding["execId"]]
    assert not Position.objects.exists()  # not guessed onto a one-way row

    # The short's opening order (placed elsewhere) and its fill come after.
    fill = bm.execution_item(symbol="ETHUSDT", order_id="ext-9", side="Sell", qty="0.5", price="100",
                             exec_ms=bm.BASE_MS + 10, seq=1)  # fmt: skip
    private_message_apply(message=parse_private_message(bm.message("execution", [fill])))
    event = bm.order(order_link_id="", order_id="ext-9", status="Filled", qty="0.5", cum_qty="0.5",
                     cum_value="50", side="Sell", symbol="ETHUSDT", order_type="Market", position_idx=2)  # fmt: skip
    order_update_apply(info=event)

    short = _position("ETHUSDT", idx=2)
    assert (short.size, short.funding_paid, short.realized_pnl) == (D("0.5"), D("-0.02"), D("0.02"))
    assert not Position.objects.filter(symbol="ETHUSDT", position_idx=0).exists()
    assert Execution.objects.get(exec_id=funding["execId"]).position_idx == 2
    assert PositionLedgerEntry.objects.count() == 2


def test_funding_goes_to_the_side_our_orders_name_when_no_row_exists_yet():
    OrderFactory(symbol="ETHUSDT", qty=D("1"), position_idx=1)
    funding = bm.execution_item(symbol="ETHUSDT", exec_type="Funding", side="Buy", qty="1", price="100", fee="0.01")
    private_message_apply(message=parse_private_message(bm.message("execution", [funding])))
    assert _position("ETHUSDT", idx=1).funding_paid == D("0.01")


# --- complete or refused (issue 12) -----------------------------------------------------------------


def _apply_items(*items):
    return private_message_apply(message=parse_private_message(bm.message("execution", list(items))))


@pytest.mark.parametrize("field", ["execQty", "execPrice", "execTime"])
@pytest.mark.parametrize("absent", ["missing", "empty", "null"])
def test_an_execution_without_qty_price_or_time_refuses_its_message(field, absent):
    order = OrderFactory(qty=D("1"))
    good = bm.execution_item(order_link_id=order.order_link_id, qty="0.5", price="100")
    bad = bm.execution_item(order_link_id=order.order_link_id, qty="0.5", price="100")
    if absent == "missing":
        del bad[field]
    else:
        bad[field] = "" if absent == "empty" else None
    with pytest.raises(MalformedPayload) as exc:
        _apply_items(good, bad)
    # Today: price 0 (a buy at 0) or time 0 (1970, replaying the ledger) were stored and applied.
    assert str(exc.value) == f"execution message: data[1]: {field} is missing"
    assert not Execution.objects.exists() and not PositionLedgerEntry.objects.exists()


@pytest.mark.parametrize("exec_type", ["Trade", "BustTrade", "AdlTrade"])
@pytest.mark.parametrize("side", ["", "buy", None])
def test_a_trade_without_a_side_refuses_its_message(exec_type, side):
    order = OrderFactory(qty=D("1"))
    good = bm.execution_item(order_link_id=order.order_link_id, qty="0.5", price="100")
    bad = bm.execution_item(order_link_id=order.order_link_id, qty="0.5", price="100", exec_type=exec_type)
    bad["side"] = side
    with pytest.raises(FillRefused) as exc:
        _apply_items(good, bad)
    what = "is missing" if not side else "is 'buy', not Buy or Sell"
    assert str(exc.value) == (
        f"execution message: data[1] (execId {bad['execId']!r}): side {what}: a {exec_type} execution needs it "
        "to move the position; nothing of the message applied"
    )
    assert not Execution.objects.exists() and not PositionLedgerEntry.objects.exists()
    order.refresh_from_db()
    assert order.filled_qty == 0


def test_a_funding_row_without_a_side_is_still_taken():
    Position.objects.create(symbol="BTCUSDT", position_idx=0, size=D("1"), avg_entry_price=D("100"))
    item = bm.execution_item(exec_type="Funding", qty="1", price="100", fee="0.01")
    item["side"] = ""
    assert _apply_items(item).applied == 1


def _long_id(tail: str) -> str:
    return "x" * 64 + tail  # two such ids share their first 64 characters


def test_execution_ids_longer_than_the_column_are_refused_never_cut_and_merged():
    order = OrderFactory(qty=D("1"))
    first = bm.execution_item(order_link_id=order.order_link_id, qty="0.5", price="100", exec_id=_long_id("-a"))
    second = bm.execution_item(order_link_id=order.order_link_id, qty="0.5", price="100", exec_id=_long_id("-b"))
    for item in (first, second):
        with pytest.raises(FillRefused) as exc:
            _apply_items(item)
        assert f"execId {item['execId']!r}): execId is 66 characters, longer than the 64 we can store" in str(exc.value)
        with pytest.raises(FillRefused, match="execId is 66 characters"):
            execution_apply(execution=ExecutionInfo.from_api(item))  # the backfill's path
    # Today the array cast cut both to the same 64 characters: the first was stored, the second skipped.
    assert not Execution.objects.exists()
    exact = bm.execution_item(order_link_id=order.order_link_id, qty="0.5", price="100", exec_id="y" * 64)
    assert _apply_items(exact).applied == 1
    assert Execution.objects.get().exec_id == "y" * 64


@pytest.mark.parametrize(
    ("overrides", "field", "limit"),
    [
        ({"order_id": "o" * 65}, "orderId", 64),
        ({"order_link_id": "l" * 37}, "orderLinkId", 36),
        ({"symbol": "S" * 31}, "symbol", None),
    ],
)
def test_other_execution_texts_longer_than_their_column_are_refused(overrides, field, limit):
    item = bm.execution_item(qty="0.5", price="100", **overrides)
    with pytest.raises(FillRefused) as exc:
        _apply_items(item)
    limit = limit or Execution._meta.get_field("symbol").max_length
    assert f"): {field} is {len(item[field])} characters, longer than the {limit} we can store" in str(exc.value)
    assert not Execution.objects.exists()


def test_order_ids_longer_than_their_column_are_refused():
    long_id = bm.order_item(order_link_id="", order_id=_long_id("-1"), status="Filled", qty="1", cum_qty="1")
    long_link = bm.order_item(order_link_id="L" * 37, order_id="ok-1", status="New")
    for item, field in ((long_id, "orderId is 66 characters, longer than the 64"),
                        (long_link, "orderLinkId is 37 characters, longer than the 36")):  # fmt: skip
        with pytest.raises(FillRefused, match=field):
            private_message_apply(message=parse_private_message(bm.message("order", [item])))
        with pytest.raises(FillRefused, match=field):
            order_update_apply(info=OrderInfo.from_api(item))
    assert not Order.objects.exists()


def test_fill_of_unknown_order_on_an_open_one_way_position_moves_it_at_once():
    Position.objects.create(symbol="ETHUSDT", position_idx=0, size=D("2"), avg_entry_price=D("100"))
    # A gateway that forwards only executions: no order event ever comes for this order.
    outcome = _apply_items(bm.execution_item(order_id="ext-manual-1", qty="0.5", price="110", side="Sell",
                                             symbol="ETHUSDT"))  # fmt: skip
    assert (outcome.applied, outcome.deferred) == (1, [])
    position = _position("ETHUSDT")
    assert (position.size, position.realized_pnl) == (D("1.5"), D("5"))
    # When the order event does come, it links the fill and applies nothing twice.
    order_update_apply(info=bm.order(order_link_id="", order_id="ext-manual-1", status="Filled", qty="0.5",
                                     cum_qty="0.5", cum_value="55", side="Sell", symbol="ETHUSDT",
                                     order_type="Market"))  # fmt: skip
    assert Execution.objects.get().order.order_id == "ext-manual-1"
    assert _position("ETHUSDT").size == D("1.5") and PositionLedgerEntry.objects.count() == 1


@pytest.mark.parametrize(
    "rows",
    [[], [(0, "0")], [(1, "1"), (2, "0")], [(1, "0"), (2, "0")]],
    ids=["no row", "flat one-way row", "open hedge row", "flat hedge rows"],
)
def test_fill_of_unknown_order_still_waits_where_the_row_is_not_certain(rows):
    for idx, size in rows:
        Position.objects.create(symbol="ETHUSDT", position_idx=idx, size=D(size), avg_entry_price=D("100"),
                                mode="one_way" if idx == 0 else "hedge")  # fmt: skip
    item = bm.execution_item(order_id="ext-manual-2", qty="0.5", price="110", side="Sell", symbol="ETHUSDT")
    outcome = _apply_items(item)
    assert outcome.deferred == [item["execId"]]
    assert not PositionLedgerEntry.objects.exists()


# --- group commit (docs/decisions/0419) -----------------------------------------------------------------


@pytest.mark.postgres  # the group's order update is one UPDATE ... FROM unnest on PostgreSQL; SQLite updates each order
def test_a_group_of_messages_costs_the_statements_of_one_message():
    orders = [OrderFactory(qty=D("1")) for _ in range(21)]
    private_message_apply(message=_fills_message(orders[0], 1, start_seq=1))  # the position row exists from here on
    one = _fills_message(orders[1], 1, start_seq=10)
    group = [_fills_message(order, 1, start_seq=100 + k) for k, order in enumerate(orders[2:])]
    with CaptureQueriesContext(connection) as q1:
        private_message_apply(message=one)
    with CaptureQueriesContext(connection) as q19:
        outcomes = fills.private_messages_apply(messages=group)

    def statements(captured):  # as in the test above: outbox rows and the wake-up NOTIFY counted apart
        return [
            q["sql"][:70]
            for q in captured.captured_queries
            if "SAVEPOINT" not in q["sql"] and "core_outbox" not in q["sql"] and "pg_notify" not in q["sql"]
        ]

    assert len(statements(q19)) == len(statements(q1)) == 7, statements(q19)
    assert notifies(q19) == notifies(q1) == (1 if connection.vendor == "postgresql" else 0)
    assert [(o.applied, o.ignored) for o in outcomes] == [(1, 0)] * 19
    assert _position().size == D("0.021")
    assert set(Order.objects.filter(pk__in=[o.pk for o in orders[2:]]).values_list("status", "filled_qty")) == {
        (OrderStatus.PARTIALLY_FILLED, D("0.001"))
    }


def test_a_groups_events_cost_a_fixed_number_of_outbox_statements():
    orders = [OrderFactory(qty=D("1")) for _ in range(23)]
    private_message_apply(message=_fills_message(orders[0], 1, start_seq=1))  # the position row exists from here on
    small = [_fills_message(order, 1, start_seq=10 + k) for k, order in enumerate(orders[1:3])]
    large = [_fills_message(order, 1, start_seq=100 + k) for k, order in enumerate(orders[3:])]
    with CaptureQueriesContext(connection) as q2:
        fills.private_messages_apply(messages=small)
    with CaptureQueriesContext(connection) as q20:
        fills.private_messages_apply(messages=large)

    def outbox(captured):
        return [q["sql"][:60] for q in captured.captured_queries if "core_outbox" in q["sql"]]

    # One sequence upsert and one insert for the group's order.updated (one per order) and position.updated
    # (one statement for both on PostgreSQL).
    assert len(outbox(q20)) == len(outbox(q2)) == outbox_statements(), outbox(q20)
    rows = list(
        OutboxEvent.objects.filter(routing_key="order.updated").order_by("id").values_list("aggregate_id", "sequence")
    )
    assert sorted(a for a, _ in rows[-20:]) == sorted(o.order_link_id for o in orders[3:])
    assert {s for _, s in rows[-20:]} == {1}  # each order's first event
    position = OutboxEvent.objects.filter(routing_key="position.updated").order_by("id")
    assert list(position.values_list("sequence", flat=True)) == [1, 2, 3]  # one per group, contiguous


def test_a_group_tells_each_message_its_own_outcome_and_ends_as_the_messages_one_by_one():
    order, other = OrderFactory(qty=D("10")), OrderFactory(qty=D("10"))
    first = bm.execution_item(side="Buy", qty="1", price="100", seq=3, order_link_id=order.order_link_id)
    second = bm.execution_item(side="Sell", qty="2", price="110", seq=1, order_link_id=order.order_link_id)
    waiting = bm.execution_item(side="Buy", qty="1", price="90", seq=2, order_id="not-ours-yet")
    repeat_of_first = {**first}
    cancelled = bm.order_item(order_link_id=other.order_link_id, order_id=other.order_id, status="Cancelled")
    messages = [
        parse_private_message(bm.message("execution", [first, second])),
        parse_private_message(bm.message("execution", [repeat_of_first, waiting])),  # one repeat, one orphan
        parse_private_message(bm.message("order", [cancelled])),
        parse_private_message(bm.message("execution", [repeat_of_first])),
    ]

    outcomes = fills.private_messages_apply(messages=messages)

    summary = [(o.topic, o.applied, o.ignored, o.deferred) for o in outcomes]
    assert summary == [
        ("execution", 2, 0, []),
        ("execution", 1, 1, [waiting["execId"]]),
        ("order", 1, 0, []),
        ("execution", 0, 1, []),
    ]
    # The fold of the fills in exec order, whatever the arrival: sell 2@110 (seq 1), then buy 1@100 (seq 3).
    position = _position()
    assert (position.size, position.avg_entry_price, position.realized_pnl) == (D("-1"), D("110"), D("10"))
    other.refresh_from_db()
    assert other.status == OrderStatus.CANCELLED
    assert Execution.objects.count() == 3


def test_an_order_keeps_the_sum_of_its_booked_executions_and_is_unsettled_while_fills_are_missing():
    """``booked_qty`` follows the executions stored, also when an order event reported more (its fills on the
    way): the decision's freshness check reads it instead of summing executions per order (0336)."""
    from orders.services.fresh_position import unsettled_orders

    order = OrderFactory(qty=D("0.030"), status=OrderStatus.NEW, order_id="", is_dry_run=False)
    private_message_apply(message=_order_frame(
        order, order_id="ex-b", status="Filled", qty="0.030", cum_qty="0.030", cum_value="1920", cum_fee="0.9",
        avg_price="64000"))  # fmt: skip

    def fill(qty, seq):
        item = bm.execution_item(order_link_id=order.order_link_id, order_id="ex-b", qty=qty, price="64000",
                                 fee="0.3", seq=seq, exec_id=f"b-{seq}")  # fmt: skip
        private_message_apply(message=parse_private_message(bm.message("execution", [item])))
        order.refresh_from_db()
        unsettled = [link for link, _ in unsettled_orders(category="linear", symbol=order.symbol)]
        assert order.may_be_unsettled == bool(unsettled)  # the database's column agrees with the check
        return order.booked_qty, order.filled_qty, unsettled

    assert fill("0.010", 1) == (D("0.010"), D("0.030"), [order.order_link_id])  # two fills still to come
    assert fill("0.010", 1) == (D("0.010"), D("0.030"), [order.order_link_id])  # a repeat books nothing
    assert fill("0.020", 2) == (D("0.030"), D("0.030"), [])  # all booked: settled
    assert order.booked_qty == sum(Execution.objects.filter(order=order).values_list("exec_qty", flat=True))


def test_the_database_marks_the_rows_a_freshness_check_must_look_at():
    """``may_be_unsettled`` (computed by the database, with a partial index) holds while the stream has not
    spoken of an acknowledged order, while fills it reported are not booked, or while a market order has
    nothing booked; never for a dry run, an external order, or one not acknowledged (0336)."""
    def marked(**fields) -> bool:
        return Order.objects.get(pk=OrderFactory(**fields).pk).may_be_unsettled

    acked = {"order_id": "ex-1", "submitted_at": timezone.now(), "qty": D("1")}
    assert marked(status=OrderStatus.NEW, exchange_updated_ms=0, **acked)  # the stream never spoke of it
    assert not marked(status=OrderStatus.NEW, exchange_updated_ms=5, order_type="Limit", price=D("1"), **acked)
    assert marked(status=OrderStatus.FILLED, exchange_updated_ms=5, filled_qty=D("1"), booked_qty=D("0.4"), **acked)
    assert not marked(status=OrderStatus.FILLED, exchange_updated_ms=5, filled_qty=D("1"), booked_qty=D("1"),
                      **acked)  # fmt: skip
    assert marked(status=OrderStatus.NEW, exchange_updated_ms=5, order_type="Market", **acked)  # nothing booked
    assert not marked(status=OrderStatus.CANCELLED, exchange_updated_ms=5, order_type="Market", **acked)
    assert not marked(status=OrderStatus.PENDING_SUBMIT, order_id="", qty=D("1"))
    assert not marked(status=OrderStatus.NEW, exchange_updated_ms=0, is_dry_run=True, **acked)
    assert not marked(status=OrderStatus.NEW, exchange_updated_ms=0, is_external=True, **acked)

    order = OrderFactory(status=OrderStatus.NEW, exchange_updated_ms=0, **acked)
    Order.objects.filter(pk=order.pk).update(exchange_updated_ms=7, order_type="Limit", price=D("1"))
    order.refresh_from_db()
    assert not order.may_be_unsettled  # computed again on every write


def test_the_migration_books_the_executions_stored_before_it():
    """The backfill of ``booked_qty`` (migration 0010): each order takes the sum of its stored executions."""
    from importlib import import_module

    backfill = import_module("orders.migrations.0010_order_booked_qty").BACKFILL
    order, untouched = OrderFactory(qty=D("1")), OrderFactory(qty=D("1"))
    for seq, qty in enumerate(("0.25", "0.5")):
        execution_apply(execution=bm.execution(order_link_id=order.order_link_id, order_id=order.order_id, qty=qty,
                                               price="100", seq=seq))  # fmt: skip
    Order.objects.update(booked_qty=0)  # as the rows were before the column
    with connection.cursor() as cursor:
        cursor.execute(backfill)
    assert dict(Order.objects.values_list("pk", "booked_qty")) == {order.pk: D("0.75"), untouched.pk: D("0")}


def test_a_group_is_all_or_nothing():
    good = parse_private_message(bm.message("execution", [bm.execution_item(qty="1", price="100")]))
    bad = parse_private_message(bm.message("execution", [bm.execution_item(qty="-1", price="100")]))  # check constraint
    with pytest.raises(IntegrityError):
        fills.private_messages_apply(messages=[good, bad])
    assert not Execution.objects.exists()


# --- single frames at a fixed price (docs/decisions/0424) --------------------------------------------------


def _statements(captured) -> list[str]:
    """Statements of the fill path proper: the test's savepoint, outbox rows and the wake-up NOTIFY apart."""
    apart = ("SAVEPOINT", "core_outbox", "pg_notify")
    return [q["sql"][:80] for q in captured.captured_queries if not any(a in q["sql"] for a in apart)]


@pytest.fixture
def compiled():
    """The models whose queries Django compiled while the test ran (the fill path writes its own SQL)."""
    from django.db.models.sql.compiler import SQLCompiler

    seen: list = []
    real = SQLCompiler.as_sql

    def as_sql(self, *args, **kwargs):
        seen.append(self.query.model)
        return real(self, *args, **kwargs)

    with mock.patch.object(SQLCompiler, "as_sql", as_sql):
        yield seen


FILL_MODELS = {Order, Execution, Position, PositionLedgerEntry}


def _order_frame(order, **kwargs):
    return parse_private_message(bm.message("order", [bm.order_item(order_link_id=order.order_link_id, **kwargs)]))


def test_an_order_frame_costs_its_lock_and_its_update_and_compiles_no_query(compiled):
    order = OrderFactory(qty=D("0.010"), status=OrderStatus.NEW, order_id="")
    frame = _order_frame(
        order, order_id="ex-9", status="Filled", qty="0.010", cum_qty="0.010", cum_value="640", cum_fee="0.35",
        avg_price="64000", updated_ms=bm.BASE_MS + 5,
    )  # fmt: skip
    with CaptureQueriesContext(connection) as captured:
        outcome = private_message_apply(message=frame)

    # The row locked (with the test for executions waiting for it in the same statement), then updated: the
    # ORM path read the orphans in a query of its own and compiled all three.
    assert len(_statements(captured)) == 2, _statements(captured)
    assert notifies(captured) == (1 if connection.vendor == "postgresql" else 0)
    assert not FILL_MODELS & set(compiled), compiled
    assert (outcome.applied, outcome.ignored) == (1, 0)
    order.refresh_from_db()
    assert (order.status, order.order_id, order.filled_qty, order.cum_exec_value, order.fees, order.avg_fill_price) == (
        OrderStatus.FILLED, "ex-9", D("0.010"), D("640"), D("0.35"), D("64000")
    )  # fmt: skip
    assert order.exchange_updated_ms == bm.BASE_MS + 5
    assert OutboxEvent.objects.filter(routing_key=fills.ORDER_UPDATED).count() == 1


def test_an_older_order_frame_is_ignored_and_costs_only_its_lock():
    order = OrderFactory(qty=D("0.010"), status=OrderStatus.NEW, order_id="ex-3")
    filled = _order_frame(order, order_id="ex-3", status="Filled", cum_qty="0.010", cum_value="640",
                          updated_ms=bm.BASE_MS + 9)  # fmt: skip
    private_message_apply(message=filled)
    late = _order_frame(order, order_id="ex-3", status="PartiallyFilled", cum_qty="0.004", cum_value="256",
                        updated_ms=bm.BASE_MS + 1)  # fmt: skip
    with CaptureQueriesContext(connection) as captured:
        outcome = private_message_apply(message=late)

    assert len(_statements(captured)) == 1, _statements(captured)
    assert (outcome.applied, outcome.ignored) == (0, 1)
    order.refresh_from_db()
    assert (order.status, order.filled_qty, order.exchange_updated_ms) == (
        OrderStatus.FILLED, D("0.010"), bm.BASE_MS + 9
    )  # fmt: skip
    assert OutboxEvent.objects.filter(routing_key=fills.ORDER_UPDATED).count() == 1


def test_an_order_frame_links_fills_that_came_by_exchange_order_id_before_the_row_knew_it():
    # Our row has no orderId yet (the create response was lost); a fill names only the exchange's orderId.
    order = OrderFactory(qty=D("0.010"), status=OrderStatus.PENDING_SUBMIT, order_id="")
    fill = bm.execution_item(order_link_id="", order_id="ex-late", qty="0.010", price="64000", fee="0.35")
    outcome = private_message_apply(message=parse_private_message(bm.message("execution", [fill])))
    assert outcome.deferred == [fill["execId"]]
    assert Execution.objects.get().order is None

    private_message_apply(message=_order_frame(
        order, order_id="ex-late", status="Filled", cum_qty="0.010", cum_value="640", cum_fee="0.35"))  # fmt: skip

    assert Execution.objects.get().order == order
    assert _position().size == D("0.010")
    order.refresh_from_db()
    assert (order.status, order.order_id, order.filled_qty, order.fees) == (
        OrderStatus.FILLED, "ex-late", D("0.010"), D("0.35")
    )  # fmt: skip


def test_an_order_frame_leaves_fills_of_another_order_waiting():
    order = OrderFactory(qty=D("0.010"), status=OrderStatus.NEW, order_id="ex-a")
    fill = bm.execution_item(order_link_id="", order_id="ex-other", qty="0.010", price="64000")
    private_message_apply(message=parse_private_message(bm.message("execution", [fill])))
    private_message_apply(message=_order_frame(order, order_id="ex-a", status="Cancelled"))

    assert Execution.objects.get().order is None
    assert not PositionLedgerEntry.objects.exists()


def _position_frame(symbol="SOLUSDT", idx=0, mark="150", ms=bm.BASE_MS):
    item = {"category": "linear", "symbol": symbol, "positionIdx": idx, "side": "", "size": "0",
            "entryPrice": "0", "markPrice": mark, "updatedTime": str(ms)}  # fmt: skip
    return parse_private_message(bm.message("position", [item]))


def test_a_position_frame_costs_its_lock_and_its_update_and_compiles_no_query(compiled):
    private_message_apply(message=_position_frame(mark="150", ms=bm.BASE_MS))  # creates the row
    Position.objects.filter(symbol="SOLUSDT").update(size=D("2"), avg_entry_price=D("140"))
    compiled.clear()
    with CaptureQueriesContext(connection) as captured:
        private_message_apply(message=_position_frame(mark="155", ms=bm.BASE_MS + 1000))

    assert len(_statements(captured)) == 2, _statements(captured)
    # A mark moves no fill and no order state: no decision waiting for the symbol's fills is woken (0327).
    assert notifies(captured) == 0
    assert not FILL_MODELS & set(compiled), compiled
    row = Position.objects.get(symbol="SOLUSDT")
    assert (row.mark_price, row.unrealized_pnl) == (D("155"), D("30"))
    assert row.mark_price_updated_at.timestamp() * 1000 == bm.BASE_MS + 1000


def test_a_position_frame_for_a_new_row_creates_it_and_places_funding_that_waited():
    funding = bm.execution_item(symbol="SOLUSDT", exec_type="Funding", side="Buy", qty="1", price="150", fee="0.02")
    private_message_apply(message=parse_private_message(bm.message("execution", [funding])))
    assert not PositionLedgerEntry.objects.exists()  # the symbol's mode is unknown: it waits

    private_message_apply(message=_position_frame(symbol="SOLUSDT", idx=1, mark="150"))

    assert set(Position.objects.filter(symbol="SOLUSDT").values_list("position_idx", "mode")) >= {(1, "hedge")}
    assert Execution.objects.get().position_idx == 1
    assert PositionLedgerEntry.objects.get().exec_id == funding["execId"]


def test_an_execution_message_compiles_no_query_of_the_fill_tables(compiled):
    order = OrderFactory(qty=D("1"))
    private_message_apply(message=_fills_message(order, 1, start_seq=1))  # the position row exists from here on
    compiled.clear()
    private_message_apply(message=_fills_message(order, 3, start_seq=10))

    assert not FILL_MODELS & set(compiled), compiled
    order.refresh_from_db()
    assert (order.filled_qty, order.cum_exec_value, order.fees) == (D("0.004"), D("0.400"), D("0.04"))


def test_a_message_on_several_positions_locks_them_in_one_statement():
    btc, eth = OrderFactory(qty=D("1"), symbol="BTCUSDT"), OrderFactory(qty=D("1"), symbol="ETHUSDT")
    items = [bm.execution_item(symbol=o.symbol, order_link_id=o.order_link_id, qty="0.1", price="100", seq=k)
             for k, o in enumerate((btc, eth))]  # fmt: skip
    private_message_apply(message=parse_private_message(bm.message("execution", items)))  # both rows created
    items = [bm.execution_item(symbol=o.symbol, order_link_id=o.order_link_id, qty="0.2", price="110", seq=10 + k)
             for k, o in enumerate((btc, eth))]  # fmt: skip
    with CaptureQueriesContext(connection) as captured:
        private_message_apply(message=parse_private_message(bm.message("execution", items)))

    table = Position._meta.db_table
    locks = [q for q in captured.captured_queries if q["sql"].startswith("SELECT") and f'FROM "{table}"' in q["sql"]]
    assert len(locks) == 1, _statements(captured)
    assert (_position("BTCUSDT").size, _position("ETHUSDT").size) == (D("0.3"), D("0.3"))


def test_an_execution_message_after_its_order_event_leaves_the_order_row_alone():
    # A market order as the exchange pushes it: the order event (Filled, its totals), then the fill.
    order = OrderFactory(qty=D("0.010"), status=OrderStatus.NEW, order_id="")
    private_message_apply(message=_order_frame(
        order, order_id="ex-m", status="Filled", qty="0.010", cum_qty="0.010", cum_value="640", cum_fee="0.35",
        avg_price="64000"))  # fmt: skip
    private_message_apply(message=_fills_message(OrderFactory(qty=D("1")), 1, start_seq=1))  # the position row
    fill = bm.execution_item(order_link_id=order.order_link_id, order_id="ex-m", qty="0.010", price="64000",
                             fee="0.35", seq=50)  # fmt: skip
    with CaptureQueriesContext(connection) as captured:
        private_message_apply(message=parse_private_message(bm.message("execution", [fill])))

    # Order lock, execution insert, position lock, ledger insert, position update, order totals: the order's
    # update is left out when the totals are what the event already wrote (on PostgreSQL the totals' statement
    # stores the booked sum; docs/decisions/0336).
    assert len(_statements(captured)) == 6 + (connection.vendor != "postgresql"), _statements(captured)
    order.refresh_from_db()
    assert (order.status, order.filled_qty, order.cum_exec_value, order.fees, order.avg_fill_price) == (
        OrderStatus.FILLED, D("0.010"), D("640"), D("0.35"), D("64000")
    )  # fmt: skip
    assert order.booked_qty == D("0.010")
    events = OutboxEvent.objects.filter(routing_key=fills.ORDER_UPDATED, payload__order_link_id=order.order_link_id)
    assert events.count() == 1
