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

By strategy, whole closed UTC days are read from ``positions.PositionPnlDay`` (summed
from the same ledger by ``orders.services.pnl_days``) and only the rest of the period
from the ledger, in one statement on PostgreSQL (docs/decisions/0515-reports-at-scale.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Count, F, Sum

from ordermanager.core.epoch import epoch_ms, from_epoch_ms
from orders.models import ExecType, Execution, Order
from positions.models import Position, PositionPnlDay
from positions.selectors import ledger_entries_of_position, position_rows, position_sql_tables
from positions.services.ledger import DAY_MS, exec_id_ordering

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
        .values("exec_id", "exec_type", "exec_time_ms", "qty", "price", *_STATE)
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
    ``unsettled`` tells a fill whose order is not linked yet but may be (see ``_UNSETTLED``).
    """

    _FIELDS = ("exec_id", "order__strategy_id", "order_id", "exchange_order_id", "order_link_id")

    def __init__(self, position: Position, start: datetime, end: datetime):
        rows = Execution.objects.filter(
            symbol=position.symbol, position_idx=position.position_idx, exec_time__gte=start, exec_time__lt=end
        ).values_list(*self._FIELDS)
        self._known: dict[str, str | None] = {}
        self._unsettled: set[str] = set()
        for row in rows.iterator(chunk_size=5000):
            self._note(row)

    def _note(self, row: tuple) -> None:
        exec_id, strategy, order_id, exchange_order_id, order_link_id = row
        self._known[exec_id] = strategy
        if order_id is None and (exchange_order_id or order_link_id):
            self._unsettled.add(exec_id)

    def _look_up(self, exec_id: str) -> None:
        if exec_id not in self._known:
            row = Execution.objects.filter(exec_id=exec_id).values_list(*self._FIELDS).first()
            self._note(row) if row else self._known.setdefault(exec_id, None)

    def __call__(self, exec_id: str) -> str:
        self._look_up(exec_id)
        return self._known[exec_id] or NO_STRATEGY

    def unsettled(self, exec_id: str) -> bool:
        self._look_up(exec_id)
        return exec_id in self._unsettled



@dataclass
class StrategyPart:
    """Sums of one position for one strategy over a range (or over one UTC day of it, ``day_ms``).
    ``unsettled``: a fill of the day may still be linked to its order (its strategy can change)."""

    position_id: int
    day_ms: int | None
    row: PnlRow
    unsettled: bool = False


def strategy_parts(positions: list[Position], start_ms: int, end_ms: int, *, by_day: bool = False):
    """The period's PnL of each position per strategy (and per UTC day with ``by_day``), summed from the ledger:
    one statement on PostgreSQL, a walk of the entries elsewhere (equal to the last digit)."""
    if not positions or end_ms <= start_ms:
        return []
    parts = _strategy_sums if connection.vendor == "postgresql" else _strategy_walk
    return parts(positions, start_ms, end_ms, by_day=by_day)


def _strategy_walk(positions: list[Position], start_ms: int, end_ms: int, *, by_day: bool) -> list[StrategyPart]:
    """The reference: each entry minus the previous one (``_add``), attributed by ``_Strategies``."""
    out = []
    start, end = from_epoch_ms(start_ms), from_epoch_ms(end_ms)
    for position in positions:
        parts: dict[tuple[int | None, str], StrategyPart] = {}
        unsettled_days: set[int | None] = set()
        previous, entries = _position_entries(position, start_ms, end_ms)
        strategy_of = _Strategies(position, start, end)
        for entry in entries:
            name = strategy_of(entry["exec_id"])
            day = entry["exec_time_ms"] - entry["exec_time_ms"] % DAY_MS if by_day else None
            part = parts.get((day, name))
            if part is None:
                part = parts[(day, name)] = StrategyPart(position.pk, day, PnlRow(position.symbol, name))
            _add(part.row, entry, previous)
            if by_day and strategy_of.unsettled(entry["exec_id"]):
                unsettled_days.add(day)
            previous = entry
        for part in parts.values():  # a day is unsettled as a whole
            part.unsettled = part.day_ms in unsettled_days
        out.extend(parts.values())
    return out


def _strategy_sums(positions: list[Position], start_ms: int, end_ms: int, *, by_day: bool) -> list[StrategyPart]:
    """PostgreSQL: ``_strategy_walk`` as one statement.

    Each entry's delta is its state minus the previous entry's (a window ``LAG`` in the ledger's
    index order; the period's first entry takes the baseline, the last entry before ``start``),
    summed in exact numeric per order first (a few fills per order, so orders are looked up a few
    times fewer), then per strategy. The strategy comes from the period's fills read as one range
    per position (as ``_Strategies``); a fill the range misses is looked up by exec_id.
    See docs/decisions/0515-reports-at-scale.md.
    """
    t_ledger = position_sql_tables()["ledger"]
    t_exec, t_order = Execution._meta.db_table, Order._meta.db_table
    order = 'l.exec_time_ms, l.seq, l.exec_id COLLATE "C"'
    day = f"l.exec_time_ms - mod(l.exec_time_ms, {DAY_MS})" if by_day else "NULL::bigint"
    unsettled = "{x}.order_id IS NULL AND ({x}.exchange_order_id <> '' OR {x}.order_link_id <> '')"
    sql = f"""
WITH pos AS (
    SELECT * FROM unnest(%(ids)s::bigint[], %(symbols)s::text[], %(idxs)s::int[]) AS p(id, symbol, position_idx)
),
steps AS (
    -- Each entry minus the previous one of its position; the period's first entry has none (0 here):
    -- the baseline is subtracted once per position at the end, so these rows keep the index order.
    SELECT l.position_id, l.exec_id, l.exec_type, l.qty, l.price, {day} AS day_ms,
        l.realized_after - COALESCE(LAG(l.realized_after) OVER w, 0) AS d_realized,
        l.fees_after - COALESCE(LAG(l.fees_after) OVER w, 0) AS d_fees,
        l.funding_after - COALESCE(LAG(l.funding_after) OVER w, 0) AS d_funding,
        ROW_NUMBER() OVER w = 1 AS first
    FROM {t_ledger} l
    WHERE l.position_id = ANY(%(ids)s::bigint[]) AND l.exec_time_ms >= %(start_ms)s AND l.exec_time_ms < %(end_ms)s
    WINDOW w AS (PARTITION BY l.position_id ORDER BY {order})
),
fills AS (
    SELECT x.exec_id, x.order_id, {unsettled.format(x="x")} AS unsettled
    FROM pos p JOIN {t_exec} x
        ON x.symbol = p.symbol AND x.position_idx = p.position_idx
        AND x.exec_time >= %(start)s AND x.exec_time < %(end)s
),
per_order AS MATERIALIZED (
    SELECT s.position_id, s.day_ms,
        CASE WHEN f.exec_id IS NOT NULL THEN f.order_id
             ELSE (SELECT x2.order_id FROM {t_exec} x2 WHERE x2.exec_id = s.exec_id) END AS order_id,
        bool_or(CASE WHEN f.exec_id IS NOT NULL THEN f.unsettled ELSE EXISTS (
            SELECT 1 FROM {t_exec} x3 WHERE x3.exec_id = s.exec_id AND {unsettled.format(x="x3")}) END) AS unsettled,
        bool_or(s.first) AS first, SUM(s.d_realized) AS d_realized, SUM(s.d_fees) AS d_fees,
        SUM(s.d_funding) AS d_funding,
        SUM(CASE WHEN s.exec_type <> %(funding)s AND s.qty <> 0 THEN s.qty * s.price ELSE 0 END) AS volume,
        COUNT(*) FILTER (WHERE s.exec_type <> %(funding)s AND s.qty <> 0) AS trades
    FROM steps s LEFT JOIN fills f ON f.exec_id = s.exec_id
    GROUP BY 1, 2, 3
),
base AS (
    -- The state before the period: the position's last entry before ``start`` (zeros if none).
    SELECT p.id AS position_id, COALESCE(b.realized_after, 0) AS r0, COALESCE(b.fees_after, 0) AS f0,
        COALESCE(b.funding_after, 0) AS u0
    FROM pos p LEFT JOIN LATERAL (
        SELECT l.realized_after, l.fees_after, l.funding_after FROM {t_ledger} l
        WHERE l.position_id = p.id AND l.exec_time_ms < %(start_ms)s
        ORDER BY l.exec_time_ms DESC, l.seq DESC, l.exec_id COLLATE "C" DESC LIMIT 1
    ) b ON TRUE
),
deltas AS (
    SELECT t.position_id, t.day_ms, COALESCE(NULLIF(o.strategy_id, ''), %(none)s) AS strategy, t.volume,
        t.trades, t.unsettled,
        t.d_fees - CASE WHEN t.first THEN b.f0 ELSE 0 END AS fees,
        t.d_funding - CASE WHEN t.first THEN b.u0 ELSE 0 END AS funding,
        t.d_realized - CASE WHEN t.first THEN b.r0 ELSE 0 END AS realized
    FROM per_order t JOIN base b ON b.position_id = t.position_id
        LEFT JOIN LATERAL (SELECT o1.strategy_id FROM {t_order} o1 WHERE o1.id = t.order_id) o ON TRUE
)
SELECT d.position_id, d.day_ms, d.strategy, SUM(d.realized + d.fees + d.funding), SUM(d.fees), SUM(d.funding),
    SUM(d.volume), SUM(d.trades)::bigint, bool_or(bool_or(d.unsettled)) OVER (PARTITION BY d.position_id, d.day_ms)
FROM deltas d
GROUP BY 1, 2, 3
"""
    params = {
        "ids": [p.pk for p in positions],
        "symbols": [p.symbol for p in positions],
        "idxs": [p.position_idx for p in positions],
        "start_ms": start_ms,
        "end_ms": end_ms,
        "start": from_epoch_ms(start_ms),
        "end": from_epoch_ms(end_ms),
        "none": NO_STRATEGY,
        "funding": ExecType.FUNDING,
    }
    symbol_of = {p.pk: p.symbol for p in positions}
    with transaction.atomic(), connection.cursor() as cursor:
        # JIT compiles this one statement for longer than it runs (seconds, at 100,000 entries); the hash of
        # the period's fills and the sort by order fit in memory (about 20 MB at 100,000 fills), not on disk.
        cursor.execute("SET LOCAL jit = off")
        cursor.execute("SET LOCAL work_mem = '64MB'")
        cursor.execute(sql, params)
        result = cursor.fetchall()
    return [
        StrategyPart(position_id, day_ms, PnlRow(symbol_of[position_id], name, realized, None, fees, funding,
                                                 volume, trades), unsettled)  # fmt: skip
        for position_id, day_ms, name, realized, fees, funding, volume, trades, unsettled in result
    ]


def _strategy_totals(positions: list[Position], start_ms: int, end_ms: int) -> list[PnlRow]:
    """The period per (position, strategy): whole UTC days from ``PositionPnlDay`` where summed, the rest (the
    period's first and last part days, days not summed yet) from the ledger. Deltas of entries do not depend
    on how the period is cut, so the parts add up to the walk of the whole period exactly."""
    first, last = -(-start_ms // DAY_MS) * DAY_MS, end_ms - end_ms % DAY_MS
    if last <= first:
        return [part.row for part in strategy_parts(positions, start_ms, end_ms)]
    symbol_of = {p.pk: p.symbol for p in positions}
    summed: dict[int, set[int]] = {p.pk: set() for p in positions}
    rows = []
    stored = PositionPnlDay.objects.filter(position_id__in=list(summed), day_ms__gte=first, day_ms__lt=last)
    for day in stored.values("position_id", "day_ms", "strategy", *_DAY_SUMS):
        if day["strategy"] == PositionPnlDay.MARKER:
            summed[day["position_id"]].add(day["day_ms"])
        else:
            rows.append(PnlRow(symbol_of[day["position_id"]], day["strategy"], **{k: day[k] for k in _DAY_SUMS}))
    ranges: dict[tuple[int, int], list[Position]] = {}
    for position in positions:
        for span in _unsummed(summed[position.pk], start_ms, end_ms, first, last):
            ranges.setdefault(span, []).append(position)
    for (a, b), some in ranges.items():
        rows += [part.row for part in strategy_parts(some, a, b)]
    return rows


_DAY_SUMS = ("realized_pnl", "fees", "funding", "volume", "trades")


def _unsummed(days: set[int], start_ms: int, end_ms: int, first: int, last: int) -> list[tuple[int, int]]:
    """[start, end) without the summed whole days, as few ranges as possible."""
    spans: list[list[int]] = []
    cuts = [(start_ms, first)] + [(d, d + DAY_MS) for d in range(first, last, DAY_MS) if d not in days]
    for a, b in [*cuts, (last, end_ms)]:
        if a >= b:
            continue
        if spans and spans[-1][1] == a:
            spans[-1][1] = b
        else:
            spans.append([a, b])
    return [(a, b) for a, b in spans]


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
        for total in _strategy_totals(active, start_ms, end_ms):
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
