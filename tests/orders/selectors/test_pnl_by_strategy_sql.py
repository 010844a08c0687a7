"""PostgreSQL sums the strategy report in one statement; it must equal the Python walk to the last digit (0515)."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection

from orders.models import Execution
from orders.selectors import pnl
from positions.models import Position
from tests.orders.selectors.test_pnl import T0, fill

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the one-statement sums are PostgreSQL's"),
]


def _both(start, end):
    positions = list(Position.objects.order_by("symbol", "position_idx"))
    args = (positions, pnl.epoch_ms(start), pnl.epoch_ms(end), start, end)
    key = lambda r: (r.symbol, r.strategy)  # noqa: E731
    return sorted(pnl._strategy_sums(*args), key=key), sorted(pnl._strategy_walk(*args), key=key)


def _as_tuples(rows):
    return [(r.symbol, r.strategy, r.realized_pnl, r.fees, r.funding, r.volume, r.trades) for r in rows]


def test_sums_equal_the_walk_with_baseline_funding_flips_late_fills_and_no_strategy():
    fill("Buy", "2", "100", minutes=1, strategy="a", fee="0.11")  # before the period: the baseline
    fill("Sell", "0.5", "103.37", minutes=5, strategy="b", fee="0.07")
    fill("Buy", "1.5", "101", minutes=6, exec_type="Funding", fee="0.013")
    fill("Sell", "2.5", "99.1", minutes=8, strategy="a", fee="0.2")  # flips short
    fill("Buy", "0.25", "98.5", minutes=7, strategy="", fee="0.01")  # late: replays the flip; no strategy
    fill("Buy", "1", "97.25", minutes=9, strategy="b", fee="0.05", symbol="ETHUSDT")
    fill("Sell", "0.4", "99.5", minutes=12, strategy="c", fee="0.02", symbol="ETHUSDT")
    fill("Sell", "0.1", "96", minutes=30, strategy="a", fee="0.02")  # after the period
    start, end = T0 + timedelta(minutes=3), T0 + timedelta(minutes=20)
    sums, walk = _both(start, end)
    assert _as_tuples(sums) == _as_tuples(walk)
    assert {(r.symbol, r.strategy) for r in sums} == {
        ("BTCUSDT", "a"), ("BTCUSDT", "alpha"), ("BTCUSDT", "b"), ("BTCUSDT", "(none)"), ("ETHUSDT", "b"),
        ("ETHUSDT", "c"),
    }  # fmt: skip
    assert sum(r.trades for r in sums) == 5 and sum(r.funding for r in sums) == Decimal("0.013")
    # And the report built on them agrees with the symbol report (telescoped, no attribution).
    by_strategy = pnl.pnl_report(start=start, end=end, group_by="symbol_strategy")
    by_symbol = pnl.pnl_report(start=start, end=end, group_by="symbol")
    for name in ("realized_pnl", "fees", "funding", "volume", "trades"):
        assert getattr(by_strategy.total, name) == getattr(by_symbol.total, name), name


def test_a_fill_outside_the_range_is_attributed_by_exec_id():
    fill("Buy", "1", "100", minutes=1, strategy="gamma")
    fill("Sell", "1", "104", minutes=2, strategy="delta")
    # The fill's own time differs from its ledger entry's: the range read misses it.
    moved = Execution.objects.filter(side="Sell").update(exec_time=T0 - timedelta(days=3))
    assert moved == 1
    sums, walk = _both(T0, T0 + timedelta(hours=1))
    assert _as_tuples(sums) == _as_tuples(walk)
    assert [(r.strategy, r.realized_pnl) for r in sums] == [("delta", Decimal("4")), ("gamma", Decimal("0"))]
    report = pnl.pnl_report(start=T0, end=T0 + timedelta(hours=1), group_by="strategy", strategy="delta")
    assert [(r.strategy, r.realized_pnl, r.trades) for r in report.rows] == [("delta", Decimal("4"), 1)]
