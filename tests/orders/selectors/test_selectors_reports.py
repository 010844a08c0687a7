from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from orders.selectors_reports import pnl_report
from tests.orders.factories import ExecutionFactory, OrderFactory
from tests.positions.factories import PositionFactory

pytestmark = pytest.mark.django_db
T0 = timezone.now().replace(microsecond=0) - timedelta(days=2)


def fill(side, qty, price, *, minutes, strategy="alpha", symbol="BTCUSDT", fee="0", exec_type="Trade"):
    order = OrderFactory(symbol=symbol, side=side, strategy_id=strategy, qty=Decimal(qty)) if Decimal(qty) else None
    return ExecutionFactory(
        order=order, symbol=symbol, side=side, exec_qty=Decimal(qty), exec_price=Decimal(price), exec_fee=Decimal(fee),
        exec_value=Decimal(qty) * Decimal(price), exec_type=exec_type, exec_time=T0 + timedelta(minutes=minutes),
    )


def test_average_cost_realized_pnl_with_a_flip_to_short():
    fill("Buy", "1", "100", minutes=1, fee="0.1")
    fill("Buy", "1", "110", minutes=2, fee="0.1")  # long 2 @ 105
    fill("Sell", "1.5", "120", minutes=3, strategy="beta", fee="0.2")  # realizes 1.5 × 15 = 22.5
    fill("Sell", "1", "90", minutes=4, strategy="beta")  # closes 0.5 × (90-105) = -7.5, short 0.5 @ 90
    fill("Buy", "0.5", "80", minutes=5, strategy="alpha")  # short closes: 0.5 × (90-80) = +5
    report = pnl_report(start=T0, end=T0 + timedelta(hours=1), group_by="symbol")
    (row,) = report.rows
    assert row.realized_pnl == Decimal("20")
    assert row.fees == Decimal("0.4")
    assert row.net_pnl == Decimal("19.6")
    assert row.trades == 5


def test_attribution_to_the_strategy_whose_fill_closed_and_period_bounds():
    fill("Buy", "2", "100", minutes=1)
    fill("Sell", "1", "110", minutes=10, strategy="beta")  # +10, before the period
    fill("Sell", "1", "120", minutes=70, strategy="gamma")  # +20, inside
    report = pnl_report(start=T0 + timedelta(hours=1), end=T0 + timedelta(hours=2), group_by="strategy")
    assert [(r.strategy, r.realized_pnl) for r in report.rows] == [("gamma", Decimal("20"))]
    assert report.total.realized_pnl == Decimal("20")


def test_funding_is_reported_apart_and_unrealized_comes_from_open_positions():
    PositionFactory(symbol="BTCUSDT", unrealized_pnl=Decimal("-3.5"))
    fill("Buy", "1", "100", minutes=1)
    fill("Buy", "0", "100", minutes=2, fee="0.25", exec_type="Funding")
    (row,) = pnl_report(start=T0, end=T0 + timedelta(hours=1)).rows
    assert row.funding == Decimal("0.25") and row.trades == 1
    assert row.unrealized_pnl == Decimal("-3.5")


def test_bad_arguments_name_the_field():
    with pytest.raises(ValidationError) as excinfo:
        pnl_report(start=T0, end=T0, group_by="desk")
    assert set(excinfo.value.message_dict) == {"group_by", "end"}
