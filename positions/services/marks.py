"""Mark prices, unrealized PnL, snapshots and loss warnings of positions.

Marks come from two places: the exchange's ``position`` topic (through
``ledger.positions_observe``, which owns row creation and locking) and the
periodic ticker refresh. Each new mark recomputes unrealized PnL and
re-evaluates the loss warning, which fires once per crossing of
``UNREALIZED_LOSS_WARNING_THRESHOLD`` (docs/decisions/0406). This module never
touches the ledger; the ledger calls ``position_loss_warning_evaluate`` and
``position_payload`` after each change.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

import structlog
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from exchange.bybit import client as bybit_client  # the module: tests replace get_client
from ordermanager.core.epoch import from_epoch_ms
from ordermanager.core.prebuilt_sql import instance_update
from ordermanager.events import POSITION_LOSS_WARNING, publish_event_on_commit
from positions.models import Position, PositionSnapshot
from positions.services.position_math import ZERO, q18, unrealized_pnl

log = structlog.get_logger(__name__)


def position_marks_observed(position: Position, marks: Sequence[tuple[Decimal | None, int]]) -> None:
    """Set the marks the exchange pushed, each ``(mark price, its time in ms or 0 unknown)``, in their order on a
    row the caller holds locked: a push older than the mark stored (or than a push before it) changes nothing.

    The row is written once, with the mark the pushes applied one by one would leave (a group of stream
    messages carries many pushes of one row, docs/decisions/0339); the loss warning is evaluated on it."""
    chosen: tuple[Decimal, datetime | None] | None = None
    current = position.mark_price_updated_at
    for mark_price, updated_ms in marks:
        if mark_price is None or mark_price <= 0:
            continue
        at = from_epoch_ms(updated_ms) if updated_ms else None
        # The stream reorders and repeats: an older push must not overwrite a newer mark (from a later push or
        # from the ticker refresh). A push of unknown time is stamped now, as ``_set_mark`` stamps it.
        if at is None or current is None or at > current:
            chosen, current = (mark_price, at), at or timezone.now()
    if chosen is not None:
        _set_mark(position, chosen[0], at=chosen[1])


def position_set_mark_price(*, category: str, symbol: str, mark_price: Decimal) -> int:
    """Set the mark price on every row of ``symbol`` and recompute unrealized PnL. Returns rows changed."""
    if mark_price <= 0:
        return 0
    with transaction.atomic():
        rows = list(Position.objects.select_for_update().filter(category=category, symbol=symbol).order_by("pk"))
        for position in rows:
            _set_mark(position, mark_price)
    return len(rows)


def positions_refresh_mark_prices() -> int:
    """Mark prices from the exchange's tickers for every symbol with an open position (one call per category).

    The HTTP call happens before, and outside, the short per-symbol transactions.
    """
    open_rows = Position.objects.exclude(size=0).values_list("category", "symbol").distinct()
    wanted: dict[str, set[str]] = {}
    for category, symbol in open_rows:
        wanted.setdefault(category, set()).add(symbol)
    updated = 0
    for category, symbols in wanted.items():
        tickers = bybit_client.get_client().get_tickers(category=category)
        for ticker in tickers:
            if ticker.symbol in symbols:
                mark = ticker.mark_price or ticker.last_price
                updated += position_set_mark_price(category=category, symbol=ticker.symbol, mark_price=mark)
    return updated


def position_snapshot_all() -> int:
    """One snapshot per position (flat ones included: PnL history stays continuous)."""
    now = timezone.now()
    snapshots = [
        PositionSnapshot(
            position=p,
            size=p.size,
            avg_entry_price=p.avg_entry_price,
            mark_price=p.mark_price,
            realized_pnl=p.realized_pnl,
            unrealized_pnl=p.unrealized_pnl,
            taken_at=now,
        )
        for p in Position.objects.all().iterator()
    ]
    PositionSnapshot.objects.bulk_create(snapshots, batch_size=1000)
    return len(snapshots)


def positions_check_loss_warnings() -> int:
    """Re-evaluate every open position against the loss threshold. Returns warnings raised."""
    raised = 0
    for pk in Position.objects.exclude(size=0).values_list("pk", flat=True):
        with transaction.atomic():
            position = Position.objects.select_for_update().get(pk=pk)
            raised += position_loss_warning_evaluate(position)
    return raised


def loss_percent(position: Position) -> Decimal:
    """Unrealized loss as a percentage of the entry value (0 when not losing)."""
    value = position.position_value
    if value <= 0 or position.unrealized_pnl >= 0:
        return ZERO
    return -position.unrealized_pnl * 100 / value


def position_loss_warning_evaluate(position: Position) -> int:
    """Warn once per crossing of the threshold; re-arm when the loss recedes. Returns warnings raised (0 or 1).

    The caller holds the row locked (``loss_warning_active`` is read, then written)."""
    percent = loss_percent(position)
    beyond = percent > settings.UNREALIZED_LOSS_WARNING_THRESHOLD
    if beyond == position.loss_warning_active:
        return 0
    position.loss_warning_active = beyond
    position.save(update_fields=["loss_warning_active", "updated_at"])
    if not beyond:
        return 0
    percent_text = str(percent.quantize(Decimal("0.01")))
    log.warning(
        "position_loss_warning",
        symbol=position.symbol,
        position_idx=position.position_idx,
        loss_percent=percent_text,
        unrealized_pnl=str(position.unrealized_pnl),
    )
    publish_event_on_commit(
        routing_key=POSITION_LOSS_WARNING,
        payload={
            **position_payload(position),
            "loss_percent": percent_text,
            "threshold_percent": settings.UNREALIZED_LOSS_WARNING_THRESHOLD,
        },
    )
    return 1


def position_payload(position: Position) -> dict:
    return {
        "category": position.category,
        "symbol": position.symbol,
        "position_idx": position.position_idx,
        "mode": position.mode,
        "side": position.side,
        "size": position.size,
        "avg_entry_price": position.avg_entry_price,
        "mark_price": position.mark_price,
        "unrealized_pnl": position.unrealized_pnl,
        "realized_pnl": position.realized_pnl,
        "fees_paid": position.fees_paid,
        "funding_paid": position.funding_paid,
    }


# --- internals ---------------------------------------------------------------------


_MARK_FIELDS = ("mark_price", "mark_price_updated_at", "unrealized_pnl", "updated_at")


def _set_mark(position: Position, mark_price: Decimal, *, at: datetime | None = None) -> None:
    position.mark_price = q18(mark_price)
    position.mark_price_updated_at = at or timezone.now()
    position.unrealized_pnl = unrealized_pnl(
        size=position.signed_size, avg_entry_price=position.avg_entry_price, mark_price=position.mark_price
    )
    instance_update(position, _MARK_FIELDS)  # prebuilt: the position topic's hot path (docs/decisions/0424)
    position_loss_warning_evaluate(position)
