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
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db.models import OuterRef, Subquery, Sum

from orders.models import ExecType, Execution
from positions.models import Position, PositionLedgerEntry
from positions.services.position_manager import exec_id_ordering

ZERO = Decimal("0")
GROUPINGS = ("symbol", "strategy", "symbol_strategy")
NO_STRATEGY = "(none)"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
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


def _ms(when: datetime) -> int:
    return (when - _EPOCH) // timedelta(milliseconds=1)


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


def _position_entries(position: Position, start_ms: int, end_ms: int):
    """(baseline state before the period, entries in the period in ledger order with their strategy)."""
    # Same order as the position manager (exec time, seq, exec_id in byte order) on its ordering index.
    ledger = PositionLedgerEntry.objects.filter(position=position).annotate(eid=exec_id_ordering())
    base = ledger.filter(exec_time_ms__lt=start_ms).order_by("-exec_time_ms", "-seq", "-eid").values(*_STATE).first()
    strategy = Execution.objects.filter(exec_id=OuterRef("exec_id")).values("order__strategy_id")[:1]
    entries = (
        ledger.filter(exec_time_ms__gte=start_ms, exec_time_ms__lt=end_ms)
        .annotate(strategy=Subquery(strategy))
        .order_by("exec_time_ms", "seq", "eid")
        .values("exec_type", "qty", "price", "strategy", *_STATE)
    )
    return base or dict.fromkeys(_STATE, ZERO), entries.iterator(chunk_size=5000)


def pnl_report(
    *, start: datetime, end: datetime, group_by: str = "symbol", symbol: str | None = None, strategy: str | None = None
) -> PnlReport:
    """PnL between ``start`` (inclusive) and ``end`` (exclusive), grouped by symbol, strategy or both."""
    _validate(start=start, end=end, group_by=group_by)
    start_ms, end_ms = _ms(start), _ms(end)
    positions = Position.objects.filter(symbol=symbol) if symbol else Position.objects.all()
    rows: dict[tuple[str, str], PnlRow] = {}
    for position in positions.filter(last_exec_ms__gte=start_ms).order_by("symbol", "position_idx"):
        previous, entries = _position_entries(position, start_ms, end_ms)
        for entry in entries:
            name = entry["strategy"] or NO_STRATEGY
            if strategy is None or name == strategy:
                key = _key(group_by, position.symbol, name)
                row = rows.setdefault(key, PnlRow(*key))
                _add(row, entry, previous)
            previous = entry
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


def _add_unrealized(report: PnlReport, *, symbol: str | None) -> None:
    positions = Position.objects.values("symbol").annotate(unrealized=Sum("unrealized_pnl"))
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
