from decimal import Decimal as D

import pytest
from django.core.exceptions import ValidationError

from orders.services.quantity_calculator import (
    floor_to_step,
    quantity_calculate,
    quantity_cap_to_position,
    reference_price_select,
)


def calc(amount, price="100", order_price=None, step="0.001", min_qty="0.001", min_notional="5", symbol="BTCUSDT"):
    return quantity_calculate(
        amount=D(amount),
        reference_price=D(price),
        order_price=D(order_price or price),
        qty_step=D(step),
        min_order_qty=D(min_qty),
        min_notional=D(min_notional),
        symbol=symbol,
    )


@pytest.mark.parametrize(
    ("amount", "price", "step", "expected"),
    [
        ("1000.00", "64250.5", "0.001", D("0.015")),  # 0.015564… floored, never rounded up
        ("100", "3", "1", D("33")),
        ("250", "3120.25", "0.01", D("0.08")),
        ("0.1", "0.1", "0.001", D("1")),
    ],
)
def test_quantity_is_floored_to_the_step(amount, price, step, expected):
    result = calc(amount, price, step=step, min_qty=step, min_notional="0")
    assert result.qty == expected
    assert result.qty % D(step) == 0
    assert result.qty <= D(amount) / D(price)


def test_quantity_exactly_at_the_minimum_is_accepted():
    # 0.001 BTC at 5000 = 5 USDT: exactly the minimum qty and the minimum notional.
    result = calc("5", "5000", min_qty="0.001", min_notional="5")
    assert result.qty == D("0.001") and result.notional == D("5")


def test_quantity_one_step_below_the_minimum_is_rejected_with_the_numbers():
    with pytest.raises(ValidationError) as exc:
        calc("9.99", "5000", min_qty="0.002", min_notional="0")  # 0.001998 → 0.001 < 0.002
    message = exc.value.messages[0]
    assert "below the minimum order qty 0.002" in message
    assert "9.99" in message and "5000" in message and "0.001" in message


def test_notional_below_the_minimum_is_rejected_with_the_numbers():
    with pytest.raises(ValidationError) as exc:
        calc("4.99", "1", step="0.01", min_qty="0.01", min_notional="5")
    assert "4.99 USDT, below the minimum notional 5 USDT" in exc.value.messages[0]


def test_notional_uses_the_order_price():
    # Enough at the reference price, too little at a lower limit price.
    with pytest.raises(ValidationError, match="minimum notional"):
        calc("5", "1", order_price="0.99", step="1", min_qty="1", min_notional="5")


def test_snapshot_price_is_preferred_and_a_large_deviation_is_measured():
    ref = reference_price_select(snapshot_price=D("106"), ticker_price=D("100"))
    assert (ref.price, ref.source, ref.deviation_pct) == (D("106"), "snapshot", D("6"))


def test_ticker_price_stands_in_for_a_missing_snapshot():
    ref = reference_price_select(snapshot_price=None, ticker_price=D("100"))
    assert (ref.price, ref.source) == (D("100"), "ticker")


def test_no_price_at_all_is_rejected():
    with pytest.raises(ValidationError, match="no price"):
        reference_price_select(snapshot_price=None, ticker_price=None)


def test_deviation_warning_is_logged_above_five_percent_only(caplog):
    import structlog

    with structlog.testing.capture_logs() as logs:
        reference_price_select(snapshot_price=D("105"), ticker_price=D("100"))  # exactly 5%: no warning
        reference_price_select(snapshot_price=D("105.01"), ticker_price=D("100"))
    assert [entry["event"] for entry in logs] == ["snapshot_price_deviates"]


def test_cap_to_position_and_floor():
    assert quantity_cap_to_position(qty=D("0.5"), long_size=D("0.1234"), qty_step=D("0.01")) == D("0.12")
    assert quantity_cap_to_position(qty=D("0.05"), long_size=D("0.1234"), qty_step=D("0.01")) == D("0.05")
    assert floor_to_step(D("0.0199999"), D("0.01")) == D("0.01")
