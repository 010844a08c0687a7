"""Symbols marked for a targeted backfill, and who marks them.

A mark says "private events of this symbol may have been missed": the ws-gateway
connection came back after a loss, a message could not be stored, or the
in-memory backlog kept during a database outage overflowed. Continuous
reconciliation (``orders.reconcile.continuous``) runs a symbol-scoped reconciliation
for each mark and removes the marks that were there when the run started.

``ALL_ACTIVE`` ("*") stands for every symbol the desk has working orders or an
open position in, resolved when the pass runs (a reconnect does not know which
symbols it missed, and may happen while the database is down).
"""

from __future__ import annotations

from collections.abc import Iterable

import structlog
from django.conf import settings
from django.utils import timezone

from orders.models import ACTIVE_STATUSES, BackfillMark, Order
from positions.selectors import position_open_rows

log = structlog.get_logger(__name__)

ALL_ACTIVE = "*"
_REASON_MAX = BackfillMark._meta.get_field("reason").max_length


def backfill_mark(symbols: Iterable[tuple[str, str]], *, reason: str) -> int:
    """Upsert one mark per (category, symbol); an existing mark gets the newer time and reason.
    Raises the database's error when it cannot be written (callers that must not lose it keep it)."""
    now = timezone.now()
    rows = [BackfillMark(category=c or settings.BYBIT_CATEGORY, symbol=s, reason=reason[:_REASON_MAX],
                         requested_at=now) for c, s in sorted(set(symbols)) if s]  # fmt: skip
    if not rows:
        return 0
    BackfillMark.objects.bulk_create(rows, update_conflicts=True, unique_fields=["category", "symbol"],
                                     update_fields=["reason", "requested_at"])  # fmt: skip
    log.warning("backfill_marked", symbols=[f"{r.category}:{r.symbol}" for r in rows], reason=reason)
    return len(rows)


def active_symbols() -> set[tuple[str, str]]:
    """(category, symbol) of every working order and every open position."""
    found = set(Order.objects.filter(status__in=ACTIVE_STATUSES).values_list("category", "symbol").distinct())
    found |= set(position_open_rows().values_list("category", "symbol").distinct())
    return found


def marks_due() -> dict[tuple[str, str], str]:
    """The marked symbols with a reason each; a ``*`` mark is first replaced by one mark per
    active symbol (same time and reason), so that symbols left for a later pass keep theirs."""
    for star in BackfillMark.objects.filter(symbol=ALL_ACTIVE):
        rows = [BackfillMark(category=c, symbol=s, reason=star.reason, requested_at=star.requested_at)
                for c, s in sorted(active_symbols())]  # fmt: skip
        if rows:
            BackfillMark.objects.bulk_create(rows, update_conflicts=True, unique_fields=["category", "symbol"],
                                             update_fields=["reason"])  # fmt: skip
        star.delete()
    return {(m.category, m.symbol): m.reason for m in BackfillMark.objects.order_by("requested_at", "symbol")}


def marks_clear(*, category: str, symbol: str, read_before) -> None:
    """Remove the mark of ``symbol`` if it was requested before ``read_before``: a mark added while
    the run was going may concern events the run did not see."""
    BackfillMark.objects.filter(category=category, symbol=symbol, requested_at__lte=read_before).delete()
