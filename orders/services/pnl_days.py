"""The PnL report's summed days (``positions.PositionPnlDay``): filled from the ledger, closed days only.

A day is summed once it ended ``PNL_DAY_CLOSED_MS`` ago, for one position at a time under that
position's row lock (the lock every ledger writer takes), so the sums read the ledger as the
writers left it and no writer can change it until they are stored; the row's ``pnl_days_until_ms``
says up to where days are stored. Writers delete a position's days from the day they touch on, in
their own transaction (``positions.services.ledger``), when that day is before ``pnl_days_until_ms``,
and ``position_rebuild`` deletes all of them: a day is stored, deleted, or summed again, never doubled
or stale. A day with a fill that may still be linked to its order (its strategy can change) is not
stored; the report reads it from the ledger. See docs/decisions/0515-reports-at-scale.md.
"""

from __future__ import annotations

import structlog
from django.db import transaction
from django.utils import timezone

from ordermanager.core.epoch import epoch_ms
from orders.selectors.pnl import DAY_MS, strategy_parts
from positions.models import Position, PositionLedgerEntry, PositionPnlDay
from positions.services.ledger import PNL_DAY_CLOSED_MS

log = structlog.get_logger(__name__)

CHUNK_DAYS = 7  # days summed per transaction: bounds how long one position's fills wait for its lock


def pnl_days_refresh(*, since_ms: int | None = None, rebuild: bool = False) -> int:
    """Sum every closed day not summed yet (from ``since_ms``, else from each position's first entry) of every
    position; with ``rebuild`` forget the stored days first. Returns the number of days stored."""
    if rebuild:
        PositionPnlDay.objects.all().delete()
    closed = epoch_ms(timezone.now()) - PNL_DAY_CLOSED_MS
    until = closed - closed % DAY_MS  # days before this one have ended at least PNL_DAY_CLOSED_MS ago
    stored = 0
    for position_id in Position.objects.order_by("category", "symbol", "position_idx").values_list("pk", flat=True):
        stored += _refresh_position(position_id, since_ms, until)
    log.info("pnl_days_refreshed", days=stored, rebuild=rebuild)
    return stored


def _refresh_position(position_id: int, since_ms: int | None, until: int) -> int:
    first = _first_day(position_id, since_ms)
    stored = 0
    for chunk in range(first, until, CHUNK_DAYS * DAY_MS):
        stored += _refresh_days(position_id, chunk, min(until, chunk + CHUNK_DAYS * DAY_MS))
    return stored


def _first_day(position_id: int, since_ms: int | None) -> int:
    if since_ms is None:
        since_ms = (
            PositionLedgerEntry.objects.filter(position_id=position_id)
            .order_by("exec_time_ms")
            .values_list("exec_time_ms", flat=True)
            .first()
        )
        if since_ms is None:
            return 2**62  # no entries: nothing to sum
    return since_ms - since_ms % DAY_MS


def _refresh_days(position_id: int, first: int, last: int) -> int:
    """Sum the days in [first, last) of one position that are not stored, under its row lock."""
    with transaction.atomic():
        position = Position.objects.select_for_update().get(pk=position_id)
        done = set(
            PositionPnlDay.objects.filter(
                position_id=position_id, strategy=PositionPnlDay.MARKER, day_ms__gte=first, day_ms__lt=last
            ).values_list("day_ms", flat=True)
        )
        missing = [d for d in range(first, last, DAY_MS) if d not in done]
        if not missing:
            return 0
        # One read from the first missing day to the end of the last; stored days in between are summed again
        # and skipped (equal by construction), which costs less than one statement per gap.
        parts = strategy_parts([position], missing[0], missing[-1] + DAY_MS, by_day=True)
        unsettled = {p.day_ms for p in parts if p.unsettled}
        days = [d for d in missing if d not in unsettled]
        wanted = set(days)
        rows = [PositionPnlDay(position_id=position_id, day_ms=d, strategy=PositionPnlDay.MARKER) for d in days]
        rows += [
            PositionPnlDay(
                position_id=position_id,
                day_ms=p.day_ms,
                strategy=p.row.strategy,
                realized_pnl=p.row.realized_pnl,
                fees=p.row.fees,
                funding=p.row.funding,
                volume=p.row.volume,
                trades=p.row.trades,
            )
            for p in parts
            if p.day_ms in wanted
        ]
        PositionPnlDay.objects.bulk_create(rows, batch_size=1000)
        if days and days[-1] + DAY_MS > position.pnl_days_until_ms:
            Position.objects.filter(pk=position_id).update(pnl_days_until_ms=days[-1] + DAY_MS)
    return len(days)
