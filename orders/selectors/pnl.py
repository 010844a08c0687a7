"""Report selectors: realized/unrealized PnL, fees and funding by symbol and strategy over a period.

The numbers come from the positions' own ledger (positions.PositionLedgerEntry):
each entry carries the position's realized PnL, fees and funding *after* that
execution, in the order the position manager applied them. The PnL of one
entry is its "after" minus the previous entry's, so the report agrees to the
last digit with ``Position.realized_pnl`` and reads only the entries of the
period (plus one baseline entry per position), never the whole history.
Each entry is attributed to the strategy of the order whose execution it is.
Unrealized PnL belongs to the open position now, so it is reported by symbol
only. See docs/decisions/0505-pnl-report-from-ledger.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import Count, F, Sum

from ordermanager.core.epoch import epoch_ms
from orders.models import ExecType, Execution, Order
from positions.models import Position
from positions.selectors import ledger_entries_of_position, position_rows, position_sql_tables
from positions.services.ledger import exec_id_ordering

ZERO = Decimal("0")
GROUPINGS = ("symbol", "strategy", "symbol_strategy")
NO_STRATEGY = "(none)"
_STATE = ("realized_after", "fees_after", "funding_after")


@dataclass
class PnlRow:
    symbol: str = ""
    strategy: str = ""
    realized_pnl: Decimal = ZERO  # gross: before fees and funding
    unrealized_pnl: Decimal | None = None
    fees: Decimal = ZERO
    funding: Decimal = ZERO
    volume: Decimal = ZERO
    trades: int = 0

    @property
    def net_pnl(self) -> Decimal:
        """Realized after fees and funding (Bybit: a positive fee or funding is paid)."""
        return self.realized_pnl - self.fees - self.funding


@dataclass
class PnlReport:
    start: datetime
    end: datetime
    group_by: str
    rows: list[PnlRow] = field(default_factory=list)
    total: PnlRow = field(default_factory=PnlRow)


def _validate(*, start: datetime, end: datetime, group_by: str) -> None:
    errors = {}
    if group_by not in GROUPINGS:
        errors["group_by"] = [f"Use one of: {', '.join(GROUPINGS)}."]
    if end <= start:
        errors["end"] = ["Must be after start."]
    if errors:
        raise ValidationError(errors)


def _key(group_by: str, symbol: str, strategy: str) -> tuple[str, str]:
    return (symbol if group_by != "strategy" else "", strategy if group_by != "symbol" else "")


def _ledger(position: Position):
    # Same order as the position manager (exec time, seq, exec_id in byte order) on its ordering index.
    return ledger_entries_of_position(position=position).annotate(eid=exec_id_ordering())


def _baseline(position: Position, start_ms: int) -> dict:
    """The position's state just before the period (its last entry before ``start``), zeros if none."""
    base = _ledger(position).filter(exec_time_ms__lt=start_ms).order_by("-exec_time_ms", "-seq", "-eid")
    return base.values(*_STATE).first() or dict.fromkeys(_STATE, ZERO)


def _position_entries(position: Position, start_ms: int, end_ms: int):
    """(baseline state before the period, entries in the period in ledger order)."""
    entries = (
        _ledger(position)
        .filter(exec_time_ms__gte=start_ms, exec_time_ms__lt=end_ms)
        .order_by("exec_time_ms", "seq", "eid")
        .values("exec_id", "exec_type", "qty", "price", *_STATE)
    )
    return _baseline(position, start_ms), entries.iterator(chunk_size=5000)


def _position_period_row(position: Position, start_ms: int, end_ms: int) -> PnlRow | None:
    """A position's row for the period without walking its entries: the deltas of consecutive
    entries telescope, so the period's sum is (last entry's state - baseline); volume and trades
    are one aggregate over the same index range. Equal to the walk of ``_add`` (same arithmetic)."""
    period = _ledger(position).filter(exec_time_ms__gte=start_ms, exec_time_ms__lt=end_ms)
    last = period.order_by("-exec_time_ms", "-seq", "-eid").values(*_STATE).first()
    if last is None:
        return None
    base = _baseline(position, start_ms)
    trades = period.exclude(exec_type=ExecType.FUNDING).exclude(qty=0)
    totals = trades.aggregate(volume=Sum(F("qty") * F("price")), trades=Count("id"))
    row = PnlRow(symbol=position.symbol)
    row.fees = last["fees_after"] - base["fees_after"]
    row.funding = last["funding_after"] - base["funding_after"]
    row.realized_pnl = last["realized_after"] - base["realized_after"] + row.fees + row.funding
    row.volume = totals["volume"] or ZERO
    row.trades = totals["trades"]
    return row


class _Strategies:
    """exec_id -> strategy of its order, for one position over the period.

    Read as one range over the fills' (symbol, position_idx, exec_time) index, whose
    rows sit together on disk because fills arrive in time order: about 30x cheaper
    at scale than one lookup per ledger entry in the exec_id index, whose keys are
    random (bench/admin_scale.py). A fill the range misses (its time differs from
    the ledger's) is looked up by exec_id, so attribution never depends on the range.
    """

    def __init__(self, position: Position, start: datetime, end: datetime):
        rows = Execution.objects.filter(
            symbol=position.symbol, position_idx=position.position_idx, exec_time__gte=start, exec_time__lt=end
        ).values_list("exec_id", "order__strategy_id")
        self._known = dict(rows.iterator(chunk_size=5000))

    def __call__(self, exec_id: str) -> str:
        if exec_id not in self._known:
            row = Execution.objects.filter(exec_id=exec_id).values_list("order__strategy_id", flat=True).first()
            self._known[exec_id] = row
        return self._known[exec_id] or NO_STRATEGY


def _strategy_walk(
    positions: list[Position], start_ms: int, end_ms: int, start: datetime, end: datetime
) -> list[PnlRow]:
    """One row per (position, strategy) by walking the period's entries in Python (SQLite; the reference
    ``_strategy_sums`` is checked against)."""
    out = []
    for position in positions:
        rows: dict[str, PnlRow] = {}
        previous, entries = _position_entries(position, start_ms, end_ms)
        strategy_of = _Strategies(position, start, end)
        for entry in entries:
            name = strategy_of(entry["exec_id"])
            _add(rows.setdefault(name, PnlRow(position.symbol, name)), entry, previous)
            previous = entry
        out.extend(rows.values())
    return out


def _strategy_sums(
    positions: list[Position], start_ms: int, end_ms: int, start: datetime, end: datetime
) -> list[PnlRow]:
    """PostgreSQL: ``_strategy_walk`` as one statement, one row per (position, strategy).

    Each entry's delta is its state minus the previous entry's (a window ``LAG`` in the ledger's
    index order; the period's first entry takes the baseline, the last entry before ``start``),
    summed per strategy in exact numeric. The strategy comes from the period's fills read as one
    range per position (as ``_Strategies``); a fill the range misses is looked up by exec_id.
    See docs/decisions/0515-reports-at-scale.md.
    """
    if not positions:
        return []
    t_ledger = position_sql_tables()["ledger"]
    t_exec, t_order = Execution._meta.db_table, Order._meta.db_table
    order = 'l.exec_time_ms, l.seq, l.exec_id COLLATE "C"'
    sql = f"""
WITH pos AS (
    SELECT * FROM unnest(%(ids)s::bigint[], %(symbols)s::text[], %(idxs)s::int[]) AS p(id, symbol, position_idx)
),
base AS (
    SELECT p.id AS position_id, COALESCE(b.realized_after, 0) AS r0, COALESCE(b.fees_after, 0) AS f0,
        COALESCE(b.funding_after, 0) AS u0
    FROM pos p LEFT JOIN LATERAL (
        SELECT l.realized_after, l.fees_after, l.funding_after FROM {t_ledger} l
        WHERE l.position_id = p.id AND l.exec_time_ms < %(start_ms)s
        ORDER BY l.exec_time_ms DESC, l.seq DESC, l.exec_id COLLATE "C" DESC LIMIT 1
    ) b ON TRUE
),
steps AS (
    SELECT l.position_id, l.exec_id, l.exec_type, l.qty, l.price, l.realized_after, l.fees_after, l.funding_after,
        LAG(l.realized_after) OVER w AS r_prev, LAG(l.fees_after) OVER w AS f_prev,
        LAG(l.funding_after) OVER w AS u_prev
    FROM {t_ledger} l
    WHERE l.position_id = ANY(%(ids)s::bigint[]) AND l.exec_time_ms >= %(start_ms)s AND l.exec_time_ms < %(end_ms)s
    WINDOW w AS (PARTITION BY l.position_id ORDER BY {order})
),
fills AS (
    SELECT x.exec_id, o.strategy_id
    FROM pos p JOIN {t_exec} x
        ON x.symbol = p.symbol AND x.position_idx = p.position_idx
        AND x.exec_time >= %(start)s AND x.exec_time < %(end)s
        LEFT JOIN {t_order} o ON o.id = x.order_id
),
deltas AS (
    SELECT s.position_id, s.exec_type, s.qty, s.price,
        CASE WHEN f.exec_id IS NOT NULL THEN f.strategy_id ELSE (
            SELECT o2.strategy_id FROM {t_exec} x2 JOIN {t_order} o2 ON o2.id = x2.order_id
            WHERE x2.exec_id = s.exec_id) END AS strategy,
        s.fees_after - COALESCE(s.f_prev, b.f0) AS d_fees,
        s.funding_after - COALESCE(s.u_prev, b.u0) AS d_funding,
        s.realized_after - COALESCE(s.r_prev, b.r0) AS d_realized
    FROM steps s JOIN base b ON b.position_id = s.position_id
        LEFT JOIN fills f ON f.exec_id = s.exec_id
)
SELECT d.position_id, COALESCE(NULLIF(d.strategy, ''), %(none)s) AS strategy,
    SUM(d.d_realized + d.d_fees + d.d_funding), SUM(d.d_fees), SUM(d.d_funding),
    SUM(CASE WHEN d.exec_type <> %(funding)s AND d.qty <> 0 THEN d.qty * d.price ELSE 0 END),
    COUNT(*) FILTER (WHERE d.exec_type <> %(funding)s AND d.qty <> 0)
FROM deltas d
GROUP BY 1, 2
"""
    params = {
        "ids": [p.pk for p in positions],
        "symbols": [p.symbol for p in positions],
        "idxs": [p.position_idx for p in positions],
        "start_ms": start_ms,
        "end_ms": end_ms,
        "start": start,
        "end": end,
        "none": NO_STRATEGY,
        "funding": ExecType.FUNDING,
    }
    symbol_of = {p.pk: p.symbol for p in positions}
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        result = cursor.fetchall()
    return [
        PnlRow(
            symbol=symbol_of[position_id],
            strategy=name,
            realized_pnl=realized,
            fees=fees,
            funding=funding,
            volume=volume,
            trades=trades,
        )
        for position_id, name, realized, fees, funding, volume, trades in result
    ]


def pnl_report(
    *, start: datetime, end: datetime, group_by: str = "symbol", symbol: str | None = None, strategy: str | None = None
) -> PnlReport:
    """PnL between ``start`` (inclusive) and ``end`` (exclusive), grouped by symbol, strategy or both."""
    _validate(start=start, end=end, group_by=group_by)
    start_ms, end_ms = epoch_ms(start), epoch_ms(end)
    positions = position_rows(symbol=symbol or None)
    rows: dict[tuple[str, str], PnlRow] = {}
    active = list(positions.filter(last_exec_ms__gte=start_ms).order_by("symbol", "position_idx"))
    if group_by == "symbol" and strategy is None:  # the dashboard's "today": no attribution needed
        for position in active:
            if (total := _position_period_row(position, start_ms, end_ms)) is not None:
                _merge(rows.setdefault((position.symbol, ""), PnlRow(position.symbol)), total)
    else:
        by_strategy = _strategy_sums if connection.vendor == "postgresql" else _strategy_walk
        for total in by_strategy(active, start_ms, end_ms, start, end):
            if strategy is None or total.strategy == strategy:
                key = _key(group_by, total.symbol, total.strategy)
                _merge(rows.setdefault(key, PnlRow(*key)), total)
    report = PnlReport(start=start, end=end, group_by=group_by)
    report.rows = sorted(rows.values(), key=lambda r: (r.symbol, r.strategy))
    if group_by == "symbol" and strategy is None:
        _add_unrealized(report, symbol=symbol)
    report.total = _total(report.rows)
    return report


def _add(row: PnlRow, entry: dict, previous: dict) -> None:
    fees = entry["fees_after"] - previous["fees_after"]
    funding = entry["funding_after"] - previous["funding_after"]
    row.fees += fees
    row.funding += funding
    # The ledger's realized PnL is net of fees and funding; the report shows the gross part apart.
    row.realized_pnl += entry["realized_after"] - previous["realized_after"] + fees + funding
    if entry["exec_type"] != ExecType.FUNDING and entry["qty"]:
        row.volume += entry["qty"] * entry["price"]
        row.trades += 1


def _merge(row: PnlRow, other: PnlRow) -> None:
    """Hedge mode: both sides of a symbol add up to the symbol's row."""
    row.realized_pnl += other.realized_pnl
    row.fees += other.fees
    row.funding += other.funding
    row.volume += other.volume
    row.trades += other.trades


def _add_unrealized(report: PnlReport, *, symbol: str | None) -> None:
    positions = position_rows().values("symbol").annotate(unrealized=Sum("unrealized_pnl"))
    if symbol:
        positions = positions.filter(symbol=symbol)
    by_symbol = {row.symbol: row for row in report.rows}
    for item in positions:
        row = by_symbol.get(item["symbol"])
        if row is None:
            if not item["unrealized"]:
                continue  # flat and untraded in the period: nothing to show
            row = by_symbol[item["symbol"]] = PnlRow(symbol=item["symbol"])
            report.rows.append(row)
        row.unrealized_pnl = item["unrealized"] or ZERO
    report.rows.sort(key=lambda r: (r.symbol, r.strategy))


def _total(rows: list[PnlRow]) -> PnlRow:
    total = PnlRow()
    for row in rows:
        total.realized_pnl += row.realized_pnl
        total.fees += row.fees
        total.funding += row.funding
        total.volume += row.volume
        total.trades += row.trades
        if row.unrealized_pnl is not None:
            total.unrealized_pnl = (total.unrealized_pnl or ZERO) + row.unrealized_pnl
    return total
