"""The strategy report: PostgreSQL sums the ledger in one statement, equal to the Python walk to the last digit,
and whole closed days come from PositionPnlDay, kept equal to a recompute from the ledger (0515)."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection

from orders.models import Execution
from orders.selectors import pnl
from orders.selectors.validation import position_executions
from orders.services.pnl_days import pnl_days_refresh
from positions.models import Position, PositionPnlDay
from positions.services.ledger import position_rebuild
from tests.orders.selectors.test_pnl import T0, fill

pytestmark = pytest.mark.django_db
DAY = timedelta(days=1)
pg_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="the one-statement sums are PostgreSQL's")


def _key(part):
    return (part.position_id, part.day_ms or 0, part.row.strategy)


def _tuples(parts):
    return [
        (p.position_id, p.day_ms, p.row.strategy, p.row.realized_pnl, p.row.fees, p.row.funding, p.row.volume,
         p.row.trades, p.unsettled)
        for p in sorted(parts, key=_key)
    ]  # fmt: skip


def _both(start, end, *, by_day=False):
    positions = list(Position.objects.order_by("symbol", "position_idx"))
    args = (positions, pnl.epoch_ms(start), pnl.epoch_ms(end))
    return _tuples(pnl._strategy_sums(*args, by_day=by_day)), _tuples(pnl._strategy_walk(*args, by_day=by_day))


def _stored():
    rows = PositionPnlDay.objects.exclude(strategy=PositionPnlDay.MARKER)
    return sorted(
        (r.position_id, r.day_ms, r.strategy, r.realized_pnl, r.fees, r.funding, r.volume, r.trades) for r in rows
    )


def _recomputed(start, end):
    positions = list(Position.objects.order_by("symbol", "position_idx"))
    parts = pnl.strategy_parts(positions, pnl.epoch_ms(start), pnl.epoch_ms(end), by_day=True)
    return sorted(t[:-1] for t in _tuples(parts))


def _report(start, end):
    report = pnl.pnl_report(start=start, end=end, group_by="symbol_strategy")
    return [(r.symbol, r.strategy, r.realized_pnl, r.fees, r.funding, r.volume, r.trades) for r in report.rows]


def _live_report(start, end):
    kept = list(PositionPnlDay.objects.all())
    PositionPnlDay.objects.all().delete()
    try:
        return _report(start, end)
    finally:
        PositionPnlDay.objects.bulk_create(kept)


def _days_fills():
    fill("Buy", "2", "100", minutes=-60, strategy="a", fee="0.11")  # before the period: the baseline
    fill("Sell", "0.5", "103.37", minutes=5, strategy="b", fee="0.07")
    fill("Buy", "1.5", "101", minutes=6, exec_type="Funding", fee="0.013")
    fill("Sell", "2.5", "99.1", minutes=24 * 60 + 8, strategy="a", fee="0.2")  # next day: flips short
    fill("Buy", "1", "97.25", minutes=24 * 60 + 9, strategy="b", fee="0.05", symbol="ETHUSDT")
    fill("Sell", "0.4", "99.5", minutes=3 * 24 * 60, strategy="c", fee="0.02", symbol="ETHUSDT")
    fill("Buy", "0.3", "98", minutes=3 * 24 * 60 + 1, strategy="", fee="0.01")  # no strategy


@pg_only
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
    assert sums == walk
    btc = Position.objects.get(symbol="BTCUSDT").pk
    assert {(t[0], t[2]) for t in sums} >= {(btc, "a"), (btc, "b"), (btc, "(none)"), (btc, "alpha")}
    assert sum(t[7] for t in sums) == 5 and sum(t[5] for t in sums) == Decimal("0.013")
    # And the report built on them agrees with the symbol report (telescoped, no attribution).
    by_strategy = pnl.pnl_report(start=start, end=end, group_by="symbol_strategy")
    by_symbol = pnl.pnl_report(start=start, end=end, group_by="symbol")
    for name in ("realized_pnl", "fees", "funding", "volume", "trades"):
        assert getattr(by_strategy.total, name) == getattr(by_symbol.total, name), name


@pg_only
def test_by_day_sums_equal_the_walk():
    _days_fills()
    assert _both(T0 - DAY, T0 + 5 * DAY, by_day=True)[0] == _both(T0 - DAY, T0 + 5 * DAY, by_day=True)[1]
    sums = _both(T0, T0 + 5 * DAY, by_day=True)[0]
    assert len({t[1] for t in sums}) == 3  # three UTC days with fills


@pg_only
def test_a_fill_outside_the_range_is_attributed_by_exec_id():
    fill("Buy", "1", "100", minutes=1, strategy="gamma")
    fill("Sell", "1", "104", minutes=2, strategy="delta")
    # The fill's own time differs from its ledger entry's: the range read misses it.
    moved = Execution.objects.filter(side="Sell").update(exec_time=T0 - timedelta(days=3))
    assert moved == 1
    sums, walk = _both(T0, T0 + timedelta(hours=1))
    assert sums == walk
    assert [(t[2], t[3]) for t in sums] == [("delta", Decimal("4")), ("gamma", Decimal("0"))]
    report = pnl.pnl_report(start=T0, end=T0 + timedelta(hours=1), group_by="strategy", strategy="delta")
    assert [(r.strategy, r.realized_pnl, r.trades) for r in report.rows] == [("delta", Decimal("4"), 1)]


def test_summed_days_equal_a_recompute_and_the_report_reads_them():
    _days_fills()
    start, end = T0 - timedelta(hours=3), T0 + 4 * DAY + timedelta(hours=5)
    live = _report(start, end)
    assert pnl_days_refresh() > 0
    first_day = pnl.epoch_ms(T0 - DAY) - pnl.epoch_ms(T0 - DAY) % pnl.DAY_MS
    assert _stored() == _recomputed(pnl.from_epoch_ms(first_day), T0 + 5 * DAY)
    assert _stored(), "the days with fills are stored"
    assert _report(start, end) == live
    assert pnl_days_refresh() == 0  # nothing twice
    # The report reads the stored days: a changed row shows (and only the whole days are read from there).
    row = PositionPnlDay.objects.exclude(strategy=PositionPnlDay.MARKER).order_by("day_ms").last()
    PositionPnlDay.objects.filter(pk=row.pk).update(trades=row.trades + 1000)
    assert sum(r[-1] for r in _report(start, end)) == sum(r[-1] for r in live) + 1000


def test_a_late_fill_for_an_earlier_day_forgets_that_day_and_later_in_its_transaction():
    _days_fills()
    pnl_days_refresh()
    btc = Position.objects.get(symbol="BTCUSDT")
    eth_days = PositionPnlDay.objects.exclude(position=btc).count()
    fill("Sell", "0.2", "120", minutes=24 * 60 + 2, strategy="late", fee="0.03")  # day 2 of BTCUSDT, replayed
    day2 = pnl.epoch_ms(T0 + DAY) - pnl.epoch_ms(T0 + DAY) % pnl.DAY_MS
    assert not PositionPnlDay.objects.filter(position=btc, day_ms__gte=day2).exists()
    assert PositionPnlDay.objects.filter(position=btc, day_ms__lt=day2).exists()
    assert PositionPnlDay.objects.exclude(position=btc).count() == eth_days  # other positions keep theirs
    start, end = T0 - DAY, T0 + 5 * DAY
    assert _report(start, end) == _live_report(start, end)
    assert ("BTCUSDT", "late") in {r[:2] for r in _report(start, end)}
    pnl_days_refresh()
    assert _stored() == _recomputed(pnl.from_epoch_ms(pnl.epoch_ms(start) // pnl.DAY_MS * pnl.DAY_MS), end)


def test_a_rebuild_forgets_the_positions_days_and_they_sum_again_equal():
    _days_fills()
    pnl_days_refresh()
    btc = Position.objects.get(symbol="BTCUSDT")
    before = _stored()
    executions = position_executions(category="linear", symbol="BTCUSDT", position_idx=0)
    position_rebuild(category="linear", symbol="BTCUSDT", position_idx=0, executions=executions)
    assert not PositionPnlDay.objects.filter(position=btc).exists()
    pnl_days_refresh()
    assert _stored() == before


def test_a_day_with_a_fill_that_may_still_be_linked_to_its_order_is_not_stored():
    _days_fills()
    # As a fill of an unknown order applied at once (0417): its order, hence its strategy, may come later.
    Execution.objects.filter(exec_id=Execution.objects.filter(symbol="ETHUSDT").order_by("exec_time")[0].exec_id
                             ).update(order=None)  # fmt: skip
    pnl_days_refresh()
    eth = Position.objects.get(symbol="ETHUSDT")
    day = pnl.epoch_ms(T0 + DAY) - pnl.epoch_ms(T0 + DAY) % pnl.DAY_MS
    assert not PositionPnlDay.objects.filter(position=eth, day_ms=day).exists()
    assert PositionPnlDay.objects.filter(position=eth, day_ms=day + 2 * pnl.DAY_MS).exists()
    start, end = T0 - DAY, T0 + 5 * DAY
    assert _report(start, end) == _live_report(start, end)
