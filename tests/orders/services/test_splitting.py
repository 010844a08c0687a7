from decimal import Decimal as D

import pytest
from django.core.exceptions import ValidationError

from orders.services.splitting import legs_plan


def plan(amount, qty, *, price="100", step="0.01", min_qty="0.01", min_notional="5", max_qty="1000",
         max_single="1000", enabled=True):
    return legs_plan(
        amount=D(amount), qty=D(qty), price=D(price), qty_step=D(step), min_order_qty=D(min_qty),
        min_notional=D(min_notional), max_order_qty=D(max_qty), max_single_order_size=D(max_single),
        splitting_enabled=enabled, symbol="ETHUSDT",
    )


@pytest.mark.parametrize(
    ("amount", "qty", "legs", "quantities"),
    [
        ("1000", "10", 1, ["10"]),  # exactly at MAX_SINGLE_ORDER_SIZE: one order
        ("1000.01", "10", 2, ["5", "5"]),  # one cent above: two legs
        ("2500", "25.01", 3, ["8.34", "8.34", "8.33"]),  # near-equal, differing by one step at most
        ("3000", "0.03", 3, ["0.01", "0.01", "0.01"]),
    ],
)
def test_amount_above_max_single_order_size_is_split_into_near_equal_valid_legs(amount, qty, legs, quantities):
    result = plan(amount, qty, min_notional="0")
    assert [leg.qty for leg in result] == [D(q) for q in quantities]
    assert [leg.leg for leg in result] == list(range(legs))
    assert sum(leg.qty for leg in result) == D(qty)
    assert sum(leg.allocation_amount for leg in result) == D(amount)
    assert all(leg.qty % D("0.01") == 0 for leg in result)


def test_legs_also_respect_the_max_order_qty():
    result = plan("500", "25", max_qty="10", min_notional="0")
    assert [leg.qty for leg in result] == [D("8.34"), D("8.33"), D("8.33")]


def test_split_that_makes_legs_too_small_is_rejected():
    with pytest.raises(ValidationError, match="below the minimum"):
        plan("3000", "0.02", min_notional="0")  # 3 legs of 0.02 at step 0.01 → a leg of 0.00


def test_without_splitting_an_amount_above_the_single_order_size_is_rejected():
    with pytest.raises(ValidationError, match="splitting is off"):
        plan("1000.01", "10", enabled=False)
    assert len(plan("1000", "10", enabled=False)) == 1


def test_without_splitting_a_qty_above_the_max_is_rejected():
    with pytest.raises(ValidationError, match="above the max order qty 5"):
        plan("100", "6", max_qty="5", enabled=False)
