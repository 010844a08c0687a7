"""The PnL report reads the positions' ledger; fills enter through the real fill path."""

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from exchange.bybit.types import ExecutionInfo
from orders.selectors.pnl import pnl_report
from orders.services.fills import execution_apply
from positions.models import Position
from tests.orders.factories import OrderFactory

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
_ids = itertools.count(1)


def fill(side, qty, price, *, minutes, strategy="alpha", symbol="BTCUSDT", fee="0", exec_type="Trade"):
    order = OrderFactory(symbol=symbol, side=side, strategy_id=strategy, qty=Decimal(qty or "1"), price=None,
                         order_type="Market", time_in_force="IOC", post_only=False)
    n = next(_ids)
    info = ExecutionInfo(
        category="linear", symbol=symbol, exec_id=f"e{n}", order_id=order.order_id, order_link_id=order.order_link_id,
        side=side, exec_type=exec_type, exec_qty=Decimal(qty), exec_price=Decimal(price),
        exec_value=Decimal(qty) * Decimal(price), exec_fee=Decimal(fee), fee_currency="USDT", is_maker=False,
        closed_size=None, leaves_qty=Decimal(0), exec_time_ms=int((T0 + timedelta(minutes=minutes)).timestamp() * 1000),
        seq=n,
    )  # fmt: skip
    assert execution_apply(execution=info) is True


def test_average_cost_realized_pnl_with_a_flip_to_short_agrees_with_the_position():
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
    assert row.net_pnl == Position.objects.get(symbol="BTCUSDT").realized_pnl


def test_attribution_to_the_strategy_whose_fill_closed_and_period_bounds():
    fill("Buy", "2", "100", minutes=1)
    fill("Sell", "1", "110", minutes=10, strategy="beta")  # +10, before the period
    fill("Sell", "1", "120", minutes=70, strategy="gamma")  # +20, inside
    report = pnl_report(start=T0 + timedelta(hours=1), end=T0 + timedelta(hours=2), group_by="strategy")
    assert [(r.strategy, r.realized_pnl) for r in report.rows] == [("gamma", Decimal("20"))]
    assert report.total.realized_pnl == Decimal("20")


def test_bad_arguments_name_the_field():
    with pytest.raises(ValidationError) as excinfo:
        pnl_report(start=T0, end=T0, group_by="desk")
    assert set(excinfo.value.message_dict) == {"group_by", "end"}


def test_by_symbol_sums_the_period_without_walking_and_agrees_with_the_walk():
    # Grouped by symbol only, the report telescopes each position's entries (last state - baseline);
    # grouped by strategy it walks every entry. Both must give the same figures to the last digit.
    fill("Buy", "2", "100", minutes=1, strategy="a", fee="0.11")
    fill("Sell", "0.5", "103.37", minutes=2, strategy="b", fee="0.07")  # inside the period from here
    fill("Buy", "1.5", "101", minutes=3, exec_type="Funding", fee="0.013")  # funding on the open long
    fill("Sell", "2.5", "99.1", minutes=4, strategy="a", fee="0.2")  # flips short
    fill("Buy", "1", "97.25", minutes=5, strategy="b", fee="0.05", symbol="ETHUSDT")
    start, end = T0 + timedelta(minutes=1, seconds=30), T0 + timedelta(minutes=10)
    by_symbol = pnl_report(start=start, end=end, group_by="symbol")
    walked = pnl_report(start=start, end=end, group_by="symbol_strategy")
    for name in ("realized_pnl", "fees", "funding", "volume", "trades"):
        assert getattr(by_symbol.total, name) == getattr(walked.total, name), name
        for symbol in ("BTCUSDT", "ETHUSDT"):
            per_symbol = sum(getattr(r, name) for r in walked.rows if r.symbol == symbol)
            assert getattr(next(r for r in by_symbol.rows if r.symbol == symbol), name) == per_symbol, (symbol, name)
    assert by_symbol.total.trades == 3 and by_symbol.total.funding == Decimal("0.013")
