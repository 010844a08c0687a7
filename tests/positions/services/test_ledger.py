"""The position ledger on the database: fills in exec order, late fills replayed, rebuild."""

from decimal import Decimal as D

import pytest

from positions.models import PositionLedgerEntry
from positions.services.ledger import position_apply_fill, position_rebuild
from tests.positions import bybit_messages as bm

pytestmark = pytest.mark.django_db


def fill(side, qty, price, *, ms, fee="0", idx=0, exec_type="Trade", symbol="BTCUSDT"):
    return position_apply_fill(
        category="linear", symbol=symbol, position_idx=idx, side=side, qty=D(qty), price=D(price), fee=D(fee),
        exec_type=exec_type, exec_time=bm.BASE_MS + ms, exec_id=f"x-{symbol}-{ms}", seq=ms,
    )  # fmt: skip


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
