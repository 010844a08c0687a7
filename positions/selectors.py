"""Read selectors for positions and their snapshots."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import django_filters
from django.db.models import Q, QuerySet

from ordermanager.core.exceptions import NotFound
from ordermanager.core.filtering import StrictBooleanFilter, UpperCharFilter, UtcIsoDateTimeFilter, apply_filters
from positions.models import Position, PositionLedgerEntry, PositionSnapshot


class PositionFilter(django_filters.FilterSet):
    symbol = UpperCharFilter(field_name="symbol", label="Symbol, e.g. BTCUSDT.")
    category = django_filters.CharFilter(field_name="category", label="linear or spot.")
    open = StrictBooleanFilter(method="_open", label="Only open (true) or only flat (false) positions.")

    class Meta:
        model = Position
        fields: list[str] = []

    def _open(self, qs, name, value):
        flat = Q(size=0)
        return qs.exclude(flat) if value else qs.filter(flat)


def position_list(*, filters: dict | None = None) -> QuerySet[Position]:
    return apply_filters(filterset_class=PositionFilter, data=filters, queryset=Position.objects.order_by("symbol"))


def position_get(*, position_id: int) -> Position:
    position = Position.objects.filter(pk=position_id).first()
    if position is None:
        raise NotFound(f"No position with id {position_id}.")
    return position


class SnapshotFilter(django_filters.FilterSet):
    taken_after = UtcIsoDateTimeFilter(field_name="taken_at", lookup_expr="gte", label="ISO 8601.")
    taken_before = UtcIsoDateTimeFilter(field_name="taken_at", lookup_expr="lt", label="ISO 8601.")

    class Meta:
        model = PositionSnapshot
        fields: list[str] = []


def position_snapshot_list(*, position: Position, filters: dict | None = None) -> QuerySet[PositionSnapshot]:
    queryset = PositionSnapshot.objects.filter(position=position).order_by("-id")
    return apply_filters(filterset_class=SnapshotFilter, data=filters, queryset=queryset)


def position_snapshot_series(*, position: Position, limit: int = 500) -> list[PositionSnapshot]:
    """The latest ``limit`` snapshots, oldest first (for a chart); uses the (position, -taken_at) index."""
    latest = list(PositionSnapshot.objects.filter(position=position).order_by("-taken_at")[:limit])
    return latest[::-1]


@dataclass(frozen=True)
class PnlPoint:
    at: datetime
    realized: Decimal
    unrealized: Decimal

    @property
    def total(self) -> Decimal:
        return self.realized + self.unrealized


def pnl_series(*, start: datetime, end: datetime, symbol: str | None = None, max_points: int = 200) -> list[PnlPoint]:
    """Book PnL over time from snapshots: per time bucket, the sum over positions of
    each one's latest snapshot so far (a position without a new snapshot keeps its last value)."""
    rows = PositionSnapshot.objects.filter(taken_at__gte=start, taken_at__lt=end)
    if symbol:
        rows = rows.filter(position__symbol=symbol)
    rows = rows.order_by("taken_at").values_list("position_id", "taken_at", "realized_pnl", "unrealized_pnl")
    width = max((end - start) / max_points, timedelta(seconds=1))
    latest: dict[int, tuple[Decimal, Decimal]] = {}
    points: list[PnlPoint] = []
    bucket_end = None
    for position_id, taken_at, realized, unrealized in rows.iterator(chunk_size=5000):
        if bucket_end is not None and taken_at >= bucket_end:
            points.append(_point(bucket_end, latest))
        if bucket_end is None or taken_at >= bucket_end:
            bucket_end = start + width * ((taken_at - start) // width + 1)
        latest[position_id] = (realized, unrealized)
    if latest:
        points.append(_point(min(bucket_end, end), latest))
    return points


def _point(at: datetime, latest: dict) -> PnlPoint:
    return PnlPoint(
        at=at,
        realized=sum((r for r, _ in latest.values()), Decimal(0)),
        unrealized=sum((u for _, u in latest.values()), Decimal(0)),
    )


def position_idxs_of(*, category: str, symbol: str, open_only: bool = False) -> set[int]:
    """The positionIdx of every row the book holds for the symbol (only non-flat rows with ``open_only``).

    The facts behind "which position mode is the symbol in?"; the answer is drawn from them in
    ``orders.services.position_mode.position_mode_in_book``."""
    rows = Position.objects.filter(category=category, symbol=symbol)
    if open_only:
        rows = rows.exclude(size=0)
    return set(rows.values_list("position_idx", flat=True))


# Reads other apps (orders, signals_app) make of positions' tables go through these, so the tables' shape
# stays positions' business (issue #16, decision 0421). Querysets are returned where the caller composes them
# into its own statement (values, distinct, a subquery): the statement, and its count, stay the caller's.


def position_rows(*, category: str | None = None, symbol: str | None = None) -> QuerySet[Position]:
    """Position rows (flat ones included), narrowed to a category and/or a symbol when given."""
    queryset = Position.objects.all()
    if category is not None:
        queryset = queryset.filter(category=category)
    if symbol is not None:
        queryset = queryset.filter(symbol=symbol)
    return queryset


def position_open_rows(*, category: str | None = None) -> QuerySet[Position]:
    """Rows holding a position (size ≠ 0), in one category when given."""
    return position_rows(category=category).exclude(size=0)


def position_size_get(*, category: str, symbol: str, position_idx: int = 0) -> Decimal:
    """The stored size of one row (signed for one-way, positionIdx 0); zero when there is no row."""
    row = Position.objects.filter(category=category, symbol=symbol, position_idx=position_idx)
    return next(iter(row.values_list("size", flat=True)), Decimal(0))


def ledger_exec_ids_applied(*, exec_ids: Iterable[str]) -> set[str]:
    """Those of ``exec_ids`` already applied to a position (one ledger entry per applied execution)."""
    return set(PositionLedgerEntry.objects.filter(exec_id__in=list(exec_ids)).values_list("exec_id", flat=True))


def ledger_entries_of_exec(*, exec_id) -> QuerySet[PositionLedgerEntry]:
    """Ledger entries of one execution id; ``exec_id`` may be an ``OuterRef`` (an ``Exists`` subquery)."""
    return PositionLedgerEntry.objects.filter(exec_id=exec_id)


def ledger_entries_of_position(*, position: Position) -> QuerySet[PositionLedgerEntry]:
    return PositionLedgerEntry.objects.filter(position=position)


def position_sql_tables() -> dict[str, str]:
    """Table names for a hand-written statement that joins positions into another app's read (kept as one
    round trip on a hot path): ``position`` and ``ledger``."""
    return {"position": Position._meta.db_table, "ledger": PositionLedgerEntry._meta.db_table}
