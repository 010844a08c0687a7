"""Report selectors: realized/unrealized PnL, fees and funding by symbol and strategy over a period.

Realized PnL is recomputed from the fills (Execution rows) by replaying each
position with the average-cost method, the way Bybit books it: a fill that
reduces a position realizes ``closed qty × (fill price − average entry)``
(sign-adjusted for shorts). Replaying from the first fill of the symbol makes
the number exact for any period and lets it be attributed to the strategy of
the order whose fill closed the position. Unrealized PnL is a property of the
open position now, so it is reported by symbol only. See
docs/decisions/0505-pnl-report-replay.md for the trade-off.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db.models import Sum

from orders.models import ExecType, Execution
from positions.models import Position

ZERO = Decimal("0")
GROUPINGS = ("symbol", "strategy", "symbol_strategy")
NO_STRATEGY = "(none)"
# Exec types that move a position; Funding only pays or receives money.
_POSITION_EXEC_TYPES = {t for t in ExecType.values if t not in (ExecType.FUNDING, ExecType.SETTLE)}


@dataclass
class PnlRow:
    symbol: str = ""
    strategy: str = ""
    realized_pnl: Decimal = ZERO
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


@dataclass
class _Book:
    size: Decimal = ZERO  # signed: long > 0, short < 0
    avg: Decimal = ZERO

    def apply(self, *, delta: Decimal, price: Decimal) -> Decimal:
        """Apply a signed fill; return the realized PnL of the part that closed."""
        if self.size == 0 or (self.size > 0) == (delta > 0):
            new_size = self.size + delta
            self.avg = (abs(self.size) * self.avg + abs(delta) * price) / abs(new_size)
            self.size = new_size
            return ZERO
        closed = min(abs(self.size), abs(delta))
        realized = closed * (price - self.avg) * (1 if self.size > 0 else -1)
        self.size += delta
        if self.size == 0:
            self.avg = ZERO
        elif (self.size > 0) == (delta > 0):  # flipped: the rest opens at the fill price
            self.avg = price
        return realized


def _key(group_by: str, symbol: str, strategy: str) -> tuple[str, str]:
    return (symbol if group_by != "strategy" else "", strategy if group_by != "symbol" else "")


def _signed(side: str, qty: Decimal) -> Decimal:
    return qty if side == "Buy" else -qty


def _executions(*, end: datetime, symbol: str | None):
    queryset = Execution.objects.filter(exec_time__lt=end).order_by("exec_time", "id")
    if symbol:
        queryset = queryset.filter(symbol=symbol)
    fields = ("category", "symbol", "position_idx", "side", "exec_type", "exec_qty", "exec_price", "exec_value",
              "exec_fee", "exec_time", "order__strategy_id")
    # iterator(): millions of fills stream through in chunks instead of being loaded at once.
    return queryset.values_list(*fields).iterator(chunk_size=5000)


def _validate(*, start: datetime, end: datetime, group_by: str) -> None:
    errors = {}
    if group_by not in GROUPINGS:
        errors["group_by"] = [f"Use one of: {', '.join(GROUPINGS)}."]
    if end <= start:
        errors["end"] = ["Must be after start."]
    if errors:
        raise ValidationError(errors)


def pnl_report(
    *, start: datetime, end: datetime, group_by: str = "symbol", symbol: str | None = None, strategy: str | None = None
) -> PnlReport:
    """PnL between ``start`` (inclusive) and ``end`` (exclusive), grouped by symbol, strategy or both."""
    _validate(start=start, end=end, group_by=group_by)
    rows: dict[tuple[str, str], PnlRow] = {}
    books: dict[tuple, _Book] = defaultdict(_Book)
    for category, sym, idx, side, exec_type, qty, price, value, fee, when, strat in _executions(end=end, symbol=symbol):
        realized = ZERO
        if exec_type in _POSITION_EXEC_TYPES and qty:
            realized = books[(category, sym, idx)].apply(delta=_signed(side, qty), price=price)
        if when < start or (strategy is not None and (strat or NO_STRATEGY) != strategy):
            continue
        key = _key(group_by, sym, strat or NO_STRATEGY)
        row = rows.setdefault(key, PnlRow(symbol=key[0], strategy=key[1]))
        if exec_type == ExecType.FUNDING:
            row.funding += fee
            continue
        row.realized_pnl += realized
        row.fees += fee
        row.volume += value or qty * price
        row.trades += 1
    report = PnlReport(start=start, end=end, group_by=group_by)
    report.rows = sorted(rows.values(), key=lambda r: (r.symbol, r.strategy))
    if group_by == "symbol" and strategy is None:
        _add_unrealized(report, symbol=symbol)
    report.total = _total(report.rows)
    return report


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
    total = PnlRow(symbol="", strategy="")
    for row in rows:
        total.realized_pnl += row.realized_pnl
        total.fees += row.fees
        total.funding += row.funding
        total.volume += row.volume
        total.trades += row.trades
        if row.unrealized_pnl is not None:
            total.unrealized_pnl = (total.unrealized_pnl or ZERO) + row.unrealized_pnl
    return total
