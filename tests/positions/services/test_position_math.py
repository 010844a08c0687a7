"""Unit tables for the position arithmetic: exact Decimal results, no database."""

from decimal import Decimal as D

import pytest

from positions.services.position_math import (
    EXEC_TYPE_RULES,
    FillRule,
    Flag,
    PositionState,
    apply_execution,
    apply_executions,
    fold,
    rule_for,
    unrealized_pnl,
)


def S(size="0", entry="0", realized="0", fees="0", funding="0") -> PositionState:  # noqa: N802
    return PositionState(D(size), D(entry), D(realized), D(fees), D(funding))


ONE_WAY = [
    # name, before, (exec_type, side, qty, price, fee), after, closed_pnl
    ("open long", S(), ("Trade", "Buy", "0.010", "64000", "0.352"), S("0.010", "64000", "-0.352", "0.352"), "0"),
    (
        "increase long: weighted average",
        S("0.010", "64000"),
        ("Trade", "Buy", "0.030", "66000", "0"),
        S("0.040", "65500"),
        "0",
    ),
    (
        "reduce long: entry unchanged, profit realized",
        S("0.040", "65500"),
        ("Trade", "Sell", "0.010", "67000", "0"),
        S("0.030", "65500", "15"),
        "15",
    ),
    (
        "close long at a loss: flat, entry reset",
        S("0.030", "65500", "15"),
        ("Trade", "Sell", "0.030", "65000", "0"),
        S("0", "0", "0"),
        "-15",
    ),
    (
        "flip long to short: close at a loss, rest opens at the fill price",
        S("0.010", "64000"),
        ("Trade", "Sell", "0.030", "63000", "0"),
        S("-0.020", "63000", "-10"),
        "-10",
    ),
    (
        "increase short",
        S("-0.020", "63000"),
        ("Trade", "Sell", "0.020", "61000", "0"),
        S("-0.040", "62000"),
        "0",
    ),
    (
        "reduce short in profit",
        S("-0.040", "62000"),
        ("Trade", "Buy", "0.010", "60000", "0"),
        S("-0.030", "62000", "20"),
        "20",
    ),
    (
        "flip short to long",
        S("-0.030", "62000", "20"),
        ("Trade", "Buy", "0.050", "61000", "0"),
        S("0.020", "61000", "50"),
        "30",
    ),
    (
        "fees subtracted from realized on every trade",
        S("0.020", "61000", "50", "1"),
        ("Trade", "Sell", "0.020", "61000", "0.671"),
        S("0", "0", "49.329", "1.671"),
        "0",
    ),
    (
        "maker rebate (negative fee) adds to realized",
        S(),
        ("Trade", "Buy", "1", "100", "-0.01"),
        S("1", "100", "0.01", "-0.01"),
        "0",
    ),
    (
        "average rounds half up at 18 places",
        S("1", "100"),
        ("Trade", "Buy", "2", "101", "0"),
        S("3", "100.666666666666666667"),
        "0",
    ),
    (
        "funding paid: realized only, size and entry untouched",
        S("0.040", "62000", "5", "1"),
        ("Funding", "Sell", "0.040", "60000", "0.24"),
        S("0.040", "62000", "4.76", "1", "0.24"),
        "0",
    ),
    (
        "funding received",
        S("-0.040", "62000"),
        ("Funding", "Buy", "0.040", "60000", "-0.24"),
        S("-0.040", "62000", "0.24", "0", "-0.24"),
        "0",
    ),
]


@pytest.mark.parametrize("name,before,fill,after,closed_pnl", ONE_WAY, ids=[c[0] for c in ONE_WAY])
def test_one_way_table(name, before, fill, after, closed_pnl):
    exec_type, side, qty, price, fee = fill
    step = apply_execution(before, exec_type=exec_type, side=side, qty=D(qty), price=D(price), fee=D(fee))
    assert step.state == after
    assert step.closed_pnl == D(closed_pnl)


HEDGE = [
    # name, direction, before, fill, after, flag
    ("long row opens on Buy", 1, S(), ("Buy", "1", "100"), S("1", "100"), Flag.NONE),
    ("long row reduces on Sell", 1, S("1", "100"), ("Sell", "0.4", "110"), S("0.6", "100", "4"), Flag.NONE),
    ("short row opens on Sell", -1, S(), ("Sell", "1", "100"), S("-1", "100"), Flag.NONE),
    ("short row reduces on Buy", -1, S("-1", "100"), ("Buy", "0.4", "90"), S("-0.6", "100", "4"), Flag.NONE),
    (
        "short row increases: weighted average",
        -1,
        S("-0.6", "100", "4"),
        ("Sell", "0.5", "80"),
        S("-1.1", "90.909090909090909091", "4"),
        Flag.NONE,
    ),
    (
        "hedge row never flips: the excess close is flagged",
        1,
        S("0.5", "100"),
        ("Sell", "1", "90"),
        S("0", "0", "-5"),
        Flag.OVERCLOSE,
    ),
    ("closing a flat hedge row changes nothing", 1, S(), ("Sell", "1", "90"), S(), Flag.OVERCLOSE),
]


@pytest.mark.parametrize("name,direction,before,fill,after,flag", HEDGE, ids=[c[0] for c in HEDGE])
def test_hedge_table(name, direction, before, fill, after, flag):
    side, qty, price = fill
    step = apply_execution(
        before, exec_type="Trade", side=side, qty=D(qty), price=D(price), fee=D(0), direction=direction
    )
    assert step.state == after
    assert step.flag == flag


def test_hedge_both_sides_are_independent():
    fills = [
        {"exec_type": "Trade", "side": "Buy", "qty": D("2"), "price": D("100"), "fee": D("0.1")},
        {"exec_type": "Trade", "side": "Sell", "qty": D("1"), "price": D("120"), "fee": D("0.1")},
    ]
    long_row = fold(fills[:1] + [dict(fills[1], side="Sell")], direction=1)
    short_row = fold([dict(fills[1])], direction=-1)
    assert long_row == S("1", "100", "19.8", "0.2")
    assert short_row == S("-1", "120", "-0.1", "0.1")


# Each named exec-type rule, with the reason it exists.
@pytest.mark.parametrize(
    "exec_type,expected_rule,after,flag",
    [
        # AdlTrade / BustTrade / Delivery: real position changes done by the exchange.
        ("AdlTrade", FillRule.FORCED_TRADE, S("0.6", "100", "4"), Flag.FORCED),
        ("BustTrade", FillRule.FORCED_TRADE, S("0.6", "100", "4"), Flag.FORCED),
        ("Delivery", FillRule.FORCED_TRADE, S("0.6", "100", "4"), Flag.FORCED),
        ("MovePosition", FillRule.FORCED_TRADE, S("0.6", "100", "4"), Flag.FORCED),
        ("BlockTrade", FillRule.TRADE, S("0.6", "100", "4"), Flag.NONE),
        # Settle and unknown types are recorded only: never guessed into the position.
        ("Settle", FillRule.RECORD_ONLY, S("1", "100"), Flag.RECORD_ONLY),
        ("CorporateAction", FillRule.RECORD_ONLY, S("1", "100"), Flag.RECORD_ONLY),
        ("UNKNOWN", FillRule.RECORD_ONLY, S("1", "100"), Flag.RECORD_ONLY),
        ("SomethingBybitAddsLater", FillRule.RECORD_ONLY, S("1", "100"), Flag.RECORD_ONLY),
    ],
)
def test_exec_type_rules(exec_type, expected_rule, after, flag):
    assert rule_for(exec_type) is expected_rule
    step = apply_execution(S("1", "100"), exec_type=exec_type, side="Sell", qty=D("0.4"), price=D("110"), fee=D(0))
    assert step.state == after
    assert step.flag == flag


def test_funding_row_never_changes_size_or_entry_whatever_its_qty_and_side():
    # The classic failure: counting funding rows as fills inflates positions.
    before = S("0.5", "100")
    for side in ("Buy", "Sell"):
        step = apply_execution(before, exec_type="Funding", side=side, qty=D("0.5"), price=D("90"), fee=D("0.01"))
        assert (step.state.size, step.state.avg_entry_price) == (D("0.5"), D("100"))
        assert step.state.funding_paid == D("0.01")


def test_trade_without_side_is_recorded_only():
    step = apply_execution(S("1", "100"), exec_type="Trade", side="", qty=D("1"), price=D("1"), fee=D(0))
    assert step.state == S("1", "100")
    assert step.flag == Flag.NO_SIDE


def test_every_documented_bybit_exec_type_has_a_rule():
    documented = {"Trade", "AdlTrade", "Funding", "BustTrade", "Delivery", "Settle", "BlockTrade", "MovePosition",
                  "FutureSpread", "CorporateAction", "UNKNOWN"}  # fmt: skip
    assert documented <= EXEC_TYPE_RULES.keys()


@pytest.mark.parametrize(
    "size,entry,mark,expected",
    [
        ("0.04", "65500", "66000", "20"),
        ("-0.02", "63000", "64000", "-20"),
        ("1", "100", None, "0"),
        ("0", "0", "5", "0"),
    ],
)
def test_unrealized_pnl(size, entry, mark, expected):
    mark_price = D(mark) if mark else None
    assert unrealized_pnl(size=D(size), avg_entry_price=D(entry), mark_price=mark_price) == D(expected)


def test_inputs_beyond_18_places_round_like_the_database():
    step = apply_execution(S(), exec_type="Trade", side="Buy", qty=D("1"), price=D("1.0000000000000000005"), fee=D(0))
    assert step.state.avg_entry_price == D("1.000000000000000001")


def test_weighted_average_is_rounded_once_not_first_by_the_default_context():
    # 252.047 * 64662.772445864440760062 has 29 significant digits: rounding it to the
    # default 28 first made the average end in ...141 instead of ...142.
    before = S("252.047", "64662.772445864440760062")
    step = apply_execution(before, exec_type="Trade", side="Buy", qty=D("0.228"), price=D("64966"), fee=D(0))
    assert step.state.avg_entry_price == D("64663.046495541748886142")


@pytest.mark.parametrize("direction", [0, 1, -1])
def test_a_run_of_fills_in_one_context_gives_the_steps_one_by_one(direction):
    import random
    from types import SimpleNamespace

    rng = random.Random(direction)
    fills = [
        SimpleNamespace(exec_type=rng.choice(["Trade", "Trade", "Funding", "BustTrade", "Settle"]),
                        side=rng.choice(["Buy", "Sell", ""]), qty=D(rng.randint(0, 3000)) / 1000,
                        price=D(rng.randint(1, 10**7)) / 7, fee=D(rng.randint(-50, 50)) / 1000)
        for _ in range(300)
    ]  # fmt: skip
    steps = apply_executions(S(), fills, direction=direction)
    state = S()
    for fill, step in zip(fills, steps, strict=True):
        alone = apply_execution(state, exec_type=fill.exec_type, side=fill.side, qty=fill.qty, price=fill.price,
                                fee=fill.fee, direction=direction)  # fmt: skip
        assert step == alone
        state = alone.state
    assert len(steps) == len(fills)
