from decimal import Decimal as D

import pytest
from django.core.exceptions import ValidationError

from orders.services.order_type_selector import TypeRules, order_type_select, round_to_tick

RULES = TypeRules(confidence_threshold=D("0.9"), spread_threshold_pct=D("0.1"), limit_offset_ratio=D("0.5"))


def select(*, side="Buy", confidence="0.5", urgency=False, price="100", spread="1", tick="0.01", rules=RULES):
    return order_type_select(
        side=side,
        confidence=D(confidence),
        urgency=urgency,
        price=D(price),
        spread=None if spread is None else D(spread),
        tick_size=D(tick),
        rules=rules,
    )


@pytest.mark.parametrize(
    ("confidence", "urgency", "price", "spread", "expected"),
    [
        ("0.9", False, "100", "1", "Limit"),  # exactly at the confidence threshold: not above it
        ("0.9000000001", False, "100", "1", "Market"),  # one step above
        ("1", False, "100", "1", "Market"),
        ("0.1", True, "100", "1", "Market"),  # urgency wins whatever the confidence
        ("0.5", False, "100", "0.1", "Limit"),  # spread exactly 0.1% of price: not below the threshold
        ("0.5", False, "100", "0.0999", "Market"),  # just below
        ("0.5", False, "100", "0", "Market"),  # zero spread
        ("0.5", False, "100", None, "Limit"),  # unknown spread: the tight-book rule cannot fire
    ],
)
def test_order_type_rules_at_their_boundaries(confidence, urgency, price, spread, expected):
    assert select(confidence=confidence, urgency=urgency, price=price, spread=spread).order_type == expected


def test_the_contract_limit_example_is_a_market_order_under_default_settings():
    # limit_buy.json: spread 1.5 on 64250.5 is 0.0023% of the price, below the default 0.1%.
    assert select(price="64250.5", spread="1.5", tick="0.1", confidence="0.72").order_type == "Market"


def test_market_orders_are_ioc_without_price():
    decision = select(confidence="0.95")
    assert (decision.time_in_force, decision.post_only, decision.price) == ("IOC", False, None)


@pytest.mark.parametrize(
    ("side", "price", "spread", "tick", "expected"),
    [
        ("Buy", "64250.5", "1.5", "0.1", D("64249.7")),  # 64249.75 floored: a buy never pays more
        ("Sell", "64250.5", "1.5", "0.1", D("64251.3")),  # 64251.25 ceiled: a sell never asks less
        ("Buy", "100", "1", "0.01", D("99.50")),  # already on a tick
        ("Sell", "100", "1", "0.01", D("100.50")),
        ("Buy", "3120.25", "0.05", "0.01", D("3120.22")),  # 3120.225 → 3120.22
        ("Sell", "3120.25", "0.05", "0.01", D("3120.28")),  # 3120.275 → 3120.28
        ("Buy", "100", None, "0.01", D("100")),  # no spread: at the price
    ],
)
def test_limit_price_is_offset_into_the_spread_and_rounded_safely(side, price, spread, tick, expected):
    # Threshold 0: these books are tight enough that the default 0.1% would choose market.
    rules = TypeRules(confidence_threshold=D("0.9"), spread_threshold_pct=D("0"), limit_offset_ratio=D("0.5"))
    decision = select(side=side, price=price, spread=spread, tick=tick, rules=rules)
    assert decision.order_type == "Limit"
    assert decision.price == expected
    assert (decision.time_in_force, decision.post_only) == ("PostOnly", True)
    assert decision.price % D(tick) == 0


def test_limit_buy_that_rounds_to_zero_is_refused():
    rules = TypeRules(confidence_threshold=D("0.9"), spread_threshold_pct=D("0"), limit_offset_ratio=D("1"))
    with pytest.raises(ValidationError, match="no valid buy price"):
        select(price="0.5", spread="0.5", tick="0.1", rules=rules)


@pytest.mark.parametrize(
    ("price", "tick", "side", "expected"),
    [("1.05", "0.1", "Buy", "1.0"), ("1.05", "0.1", "Sell", "1.1"), ("1.1", "0.1", "Sell", "1.1")],
)
def test_round_to_tick(price, tick, side, expected):
    assert round_to_tick(D(price), tick=D(tick), side=side) == D(expected)
