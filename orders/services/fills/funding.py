"""Funding rows that arrive before the symbol's position mode is known (docs/decisions/0410).

A funding row names the side of the position it settles, but not the row: in one-way mode it is
idx 0, in hedge mode 1 (Buy) or 2 (Sell). While the book cannot tell the mode the row is stored
unapplied; the first thing that tells it (a new position row, the symbol's first order) places
every row that waited.
"""

from __future__ import annotations

import structlog
from django.db.models import Exists, OuterRef

from orders.models import Execution
from orders.services.fills.fill_values import fill_of_execution
from orders.services.position_mode import HEDGE, position_mode_in_book
from positions.selectors import ledger_entries_of_exec
from positions.services.ledger import FillValues, positions_apply_fills

log = structlog.get_logger(__name__)


def funding_idx(side: str, *, mode: str | None) -> int | None:
    """The position row a funding row of ``side`` settles; None while the mode is unknown."""
    # Bybit (and the simulator) give a funding row the side of the position it settles.
    if mode is None:
        return None
    return (1 if side == "Buy" else 2) if mode == HEDGE else 0


def fills_to_positions(fills: dict[tuple[str, str, int], list[FillValues]]) -> None:
    """Apply fills keyed by (category, symbol, positionIdx) to the book, then the funding they unblock."""
    if not fills:
        return
    applied = positions_apply_fills(fills=fills)
    # A new position row tells the symbol's mode: funding that waited for it can now be placed.
    for category, symbol in sorted({(c, s) for c, s, _ in applied.created}):
        funding_waiting_apply(category=category, symbol=symbol)


def funding_waiting_apply(*, category: str, symbol: str) -> int:
    """Apply the symbol's funding rows that arrived while its position mode was unknown."""
    applied = ledger_entries_of_exec(exec_id=OuterRef("exec_id"))
    waiting = list(
        Execution.objects.filter(category=category, symbol=symbol, exec_type="Funding", order__isnull=True)
        .filter(~Exists(applied))
        .order_by("exec_time", "seq", "exec_id")
    )
    mode = position_mode_in_book(category=category, symbol=symbol) if waiting else None
    if mode is None:
        return 0
    fills: dict[tuple[str, str, int], list[FillValues]] = {}
    for execution in waiting:
        execution.position_idx = funding_idx(execution.side, mode=mode)
        fills.setdefault((category, symbol, execution.position_idx), []).append(fill_of_execution(execution))
    Execution.objects.bulk_update(waiting, ["position_idx"])
    positions_apply_fills(fills=fills)
    log.info("funding_applied_after_mode_known", symbol=symbol, count=len(waiting), hedge=mode == HEDGE)
    return len(waiting)
