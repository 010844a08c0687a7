"""position_manager on the database: ledger, replay, rebuild, marks, loss warnings, snapshots."""

from decimal import Decimal as D
from unittest import mock

import pytest

from positions.models import Position, PositionLedgerEntry, PositionSnapshot
from positions.services.position_manager import (
    POSITION_LOSS_WARNING,
    position_apply_fill,
    position_rebuild,
    position_set_mark_price,
    position_snapshot_all,
    positions_check_loss_warnings,
)
from tests.positions import bybit_messages as bm

pytestmark = pytest.mark.django_db


def fill(side, qty, price, *, ms, fee="0", idx=0, exec_type="Trade", symbol="BTCUSDT"):
    return position_apply_fill(
        category="linear", symbol=symbol, position_idx=idx, side=side, qty=D(qty), price=D(price), fee=D(fee),
        exec_type=exec_type, exec_time=bm.BASE_MS + ms, exec_id=f"x-{symbol}-{ms}", seq=ms,
    )  # fmt: skip


@pytest.fixture
def events():
    # The boundary: what the service hands to the publisher (which sends after commit).
    with mock.patch("positions.services.position_manager.publish_event_on_commit", autospec=True) as publish:
        yield publish


def _keys(publish) -> list[str]:
    return [call.kwargs["routing_key"] for call in publish.call_args_list]


@pytest.mark.postgres  # 18-place averages: more digits than SQLite keeps
def test_ledger_keeps_the_state_after_each_fill_and_a_late_fill_replays_only_what_follows():
    fill("Buy", "1", "100", ms=1)
    fill("Buy", "1", "120", ms=3)
    fill("Sell", "1", "130", ms=4)
    position = fill("Buy", "2", "90", ms=2)  # arrives last, belongs second

    # In time order: +1@100; +2@90 → 93.33…; +1@120 → 399.99…9/4 rounds to 100; -1@130 → +30.
    assert (position.size, position.avg_entry_price, position.realized_pnl) == (D("3"), D("100"), D("30"))
    afters = list(PositionLedgerEntry.objects.order_by("exec_time_ms").values_list("size_after", "avg_entry_after"))
    assert afters == [(D("1"), D("100")), (D("3"), D("93.333333333333333333")), (D("4"), D("100")), (D("3"), D("100"))]
    assert position.last_exec_id == "x-BTCUSDT-4"


def test_hedge_short_row_is_stored_unsigned():
    position = fill("Sell", "2", "100", ms=1, idx=2)
    assert (position.size, position.signed_size, position.side, position.mode) == (D("2"), D("-2"), "Sell", "hedge")


def test_rebuild_replaces_ledger_and_state():
    fill("Buy", "1", "100", ms=1)
    position = position_rebuild(
        category="linear", symbol="BTCUSDT", position_idx=0,
        executions=[{"exec_id": "r1", "exec_type": "Trade", "exec_time_ms": 5, "seq": 1, "side": "Sell",
                     "qty": D("2"), "price": D("50"), "fee": D("0.1")}],
    )  # fmt: skip
    assert (position.size, position.avg_entry_price, position.fees_paid) == (D("-2"), D("50"), D("0.1"))
    assert list(PositionLedgerEntry.objects.values_list("exec_id", flat=True)) == ["r1"]


def test_mark_price_sets_unrealized_and_loss_warning_fires_once_per_crossing(settings, events):
    settings.UNREALIZED_LOSS_WARNING_THRESHOLD = D("10")
    fill("Buy", "1", "100", ms=1)

    position_set_mark_price(category="linear", symbol="BTCUSDT", mark_price=D("85"))  # -15 %
    position_set_mark_price(category="linear", symbol="BTCUSDT", mark_price=D("80"))  # still beyond: no repeat
    position = Position.objects.get()
    assert (position.unrealized_pnl, position.loss_warning_active) == (D("-20"), True)
    assert _keys(events).count(POSITION_LOSS_WARNING) == 1

    position_set_mark_price(category="linear", symbol="BTCUSDT", mark_price=D("95"))  # recovers: re-armed
    position_set_mark_price(category="linear", symbol="BTCUSDT", mark_price=D("89"))  # -11 %: warns again
    assert _keys(events).count(POSITION_LOSS_WARNING) == 2
    warning = [c.kwargs["payload"] for c in events.call_args_list if c.kwargs["routing_key"] == POSITION_LOSS_WARNING][
        -1
    ]
    assert (warning["loss_percent"], warning["symbol"], warning["unrealized_pnl"]) == ("11.00", "BTCUSDT", D("-11"))


def test_short_loss_and_the_scheduled_check(settings, events):
    settings.UNREALIZED_LOSS_WARNING_THRESHOLD = D("5")
    fill("Sell", "2", "100", ms=1)
    Position.objects.update(mark_price=D("110"), unrealized_pnl=D("-20"))  # as left by an earlier mark update
    assert positions_check_loss_warnings() == 1
    assert positions_check_loss_warnings() == 0


def test_snapshot_of_every_position():
    fill("Buy", "1", "100", ms=1)
    fill("Sell", "1", "100", ms=2, symbol="ETHUSDT")
    assert position_snapshot_all() == 2
    snap = PositionSnapshot.objects.get(position__symbol="BTCUSDT")
    assert (snap.size, snap.avg_entry_price) == (D("1"), D("100"))
