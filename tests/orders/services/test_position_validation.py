"""Validation: every position equals the fold of its executions; differences recorded and repaired."""

import random
from decimal import Decimal as D

import pytest

from orders.models import Execution
from orders.selectors.validation import positions_recompute_differences
from orders.services.fills import execution_apply
from orders.services.position_validation import positions_validate_against_fills
from positions.models import Position, PositionDiscrepancy, PositionLedgerEntry
from positions.services.position_math import PositionState, direction_for, fold
from tests.orders.factories import OrderFactory
from tests.positions import bybit_messages as bm

pytestmark = pytest.mark.django_db


def _apply(**kwargs):
    if kwargs.get("exec_type", "Trade") != "Funding" and "order_id" not in kwargs:
        order = OrderFactory(symbol=kwargs.get("symbol", "BTCUSDT"), side=kwargs.get("side", "Buy"), qty=D("1000"))
        kwargs["order_link_id"] = order.order_link_id
    assert execution_apply(execution=bm.execution(**kwargs))


def _book(symbol="BTCUSDT"):
    _apply(symbol=symbol, side="Buy", qty="1", price="100", fee="0.06")
    _apply(symbol=symbol, side="Buy", qty="1", price="110", fee="0.066")
    _apply(symbol=symbol, side="Sell", qty="3", price="120", fee="0.2")  # flips short
    _apply(symbol=symbol, exec_type="Funding", side="Buy", qty="1", price="119", fee="-0.05")


def _state(position: Position) -> PositionState:
    return PositionState(
        position.signed_size, position.avg_entry_price, position.realized_pnl, position.fees_paid, position.funding_paid
    )


def test_positions_that_equal_their_fills_give_no_discrepancy():
    _book("BTCUSDT")
    _book("ETHUSDT")
    assert positions_validate_against_fills() == []
    assert not PositionDiscrepancy.objects.exists()


def test_tampered_position_row_is_recorded_and_repaired():
    _book()
    good = _state(Position.objects.get())
    Position.objects.update(size=D("5"), realized_pnl=D("999"))

    [record] = positions_validate_against_fills()

    assert record.kind == PositionDiscrepancy.Kind.STATE and record.repaired
    assert "stored_vs_ledger" in record.note
    assert record.stored["size"].startswith("5") and D(record.expected["size"]) == good.size
    assert _state(Position.objects.get()) == good
    assert positions_validate_against_fills() == []


def test_broken_ledger_step_is_found_and_repaired():
    _book()
    good = _state(Position.objects.get())
    second = PositionLedgerEntry.objects.order_by("exec_time_ms")[1]
    PositionLedgerEntry.objects.filter(pk=second.pk).update(avg_entry_after=D("104"))

    [record] = positions_validate_against_fills()

    assert "ledger_steps" in record.note and record.expected["bad_steps"] >= 1
    assert PositionLedgerEntry.objects.get(exec_id=second.exec_id).avg_entry_after == D("105")
    assert _state(Position.objects.get()) == good


def test_execution_never_applied_to_the_position_is_applied_by_the_repair():
    _book()
    Execution.objects.create(
        exec_id="sneaked-in", order=OrderFactory(qty=D("2")), symbol="BTCUSDT", side="Buy", exec_qty=D("2"),
        exec_price=D("100"),
        exec_fee=D("0"), exec_time=Execution.objects.order_by("-exec_time").first().exec_time, seq=None,
    )  # fmt: skip

    [record] = positions_validate_against_fills()

    assert record.kind == PositionDiscrepancy.Kind.LEDGER and record.repaired
    position = Position.objects.get()
    assert position.size == D("1")  # -1 + 2
    assert PositionLedgerEntry.objects.filter(exec_id="sneaked-in").exists()


def test_position_without_executions_is_reset_to_flat():
    Position.objects.create(symbol="XRPUSDT", size=D("10"), avg_entry_price=D("0.5"))
    [record] = positions_validate_against_fills()
    assert record.repaired
    position = Position.objects.get(symbol="XRPUSDT")
    assert (position.size, position.avg_entry_price) == (0, 0)


def test_without_repair_only_records():
    _book()
    Position.objects.update(fees_paid=D("0"))
    [record] = positions_validate_against_fills(repair=False)
    assert not record.repaired
    assert Position.objects.get().fees_paid == 0


def test_fills_waiting_for_their_order_are_reported_not_guessed():
    _apply(order_id="unknown-order", side="Sell", qty="0.5", price="100")  # position side unknown → waits

    [record] = positions_validate_against_fills()

    assert record.kind == PositionDiscrepancy.Kind.UNAPPLIED and not record.repaired
    assert not PositionLedgerEntry.objects.exists()
    assert not Position.objects.filter(size__gt=0).exists()


@pytest.mark.postgres
def test_exact_on_postgres_for_random_paths_with_flips_and_repeating_averages():
    rng = random.Random(7)
    for symbol in ("BTCUSDT", "ETHUSDT"):
        for n in range(300):
            _apply(
                symbol=symbol, side=rng.choice(["Buy", "Sell"]), qty=str(D(rng.randint(1, 900)) / 1000),
                price=str(D(rng.randint(6_000_000, 7_000_000)) / 100), fee=str(D(rng.randint(-50, 500)) / 10000),
                exec_ms=bm.BASE_MS + n * 7 + rng.randint(0, 6),
            )  # fmt: skip
    assert positions_validate_against_fills() == []
    for position in Position.objects.all():
        entries = PositionLedgerEntry.objects.filter(position=position).order_by("exec_time_ms", "seq", "exec_id")
        rows = [{"exec_type": e.exec_type, "side": e.side, "qty": e.qty, "price": e.price, "fee": e.fee}
                for e in entries]  # fmt: skip
        assert _state(position) == fold(rows, direction=direction_for(position.position_idx))


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_parallel_slices_cover_every_symbol():
    symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT"]
    for symbol in symbols:
        _book(symbol)
    Position.objects.filter(symbol__in=["ETHUSDT", "DOGEUSDT"]).update(avg_entry_price=D("1"))

    found = positions_recompute_differences(workers=3)

    assert [(d.symbol, d.problems) for d in found] == [("DOGEUSDT", ("stored_vs_ledger",)),
                                                       ("ETHUSDT", ("stored_vs_ledger",))]  # fmt: skip
    assert positions_recompute_differences(workers=1) == found


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda e: {"exec_time_ms": e.exec_time_ms + 1}, id="time"),
        pytest.param(lambda e: {"exec_id": e.exec_id + "x"}, id="exec_id"),
        pytest.param(lambda e: {"qty": e.price, "price": e.qty}, id="qty_price_swapped"),
    ],
)
def test_ledger_inputs_that_differ_from_the_executions_are_found(tamper):
    """The per-position fingerprint ties each ledger entry to its execution: id, time and amounts."""
    _book()
    first = PositionLedgerEntry.objects.order_by("exec_time_ms", "seq")[0]
    PositionLedgerEntry.objects.filter(pk=first.pk).update(**tamper(first))

    [difference] = positions_recompute_differences()

    assert "ledger_vs_executions" in difference.problems
