"""Decide on a true position (docs/decisions/0316).

Our ``Position`` rows follow the fills the private stream delivers, a few
milliseconds to seconds after the exchange (or not at all until a
reconciliation, when an event was dropped). A decision that depends on the
position (reduce-only, the no-short cap, the hedge side) is made on:

1. our book, when none of the symbol's recent acknowledged orders has fills
   that may be missing ("book current");
2. our book after a short wait (``POSITION_FILLS_WAIT_SECONDS``, the condition
   polled, never a blind sleep) for those fills ("waited");
3. the exchange's position (``/v5/position/list`` for the symbol) when they
   did not arrive in time ("read exchange").

A refusal that says the position was not what we thought (the exchange's
110017, or our own "no long position" on the book) re-reads the exchange and
re-plans once ("re-planned"; signal_processor). Each path is counted here
(shown in the consumer heartbeat) and logged as ``position_source``.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from decimal import Decimal

import structlog
from django.conf import settings
from django.db.models import DecimalField, F, OuterRef, Q, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from orders.models import Execution, Order, OrderStatus, Side

log = structlog.get_logger(__name__)

BOOK_CURRENT, WAITED, READ_EXCHANGE, REPLANNED = "book_current", "waited", "read_exchange", "replanned"
PATHS = (BOOK_CURRENT, WAITED, READ_EXCHANGE, REPLANNED)
# Orders older than this whose fills are still missing are reconciliation's business, not a reason to wait.
UNSETTLED_LOOKBACK = timedelta(minutes=15)
POLL_SECONDS = 0.05
# An order whose events have not come this long after its last change lost them: no point waiting for it.
RECENT_SECONDS = 5.0
_ACK_OPEN = (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED, OrderStatus.PENDING_CANCEL)

_lock = threading.Lock()
_counts = dict.fromkeys(PATHS, 0)


def position_path_counts() -> dict[str, int]:
    """How often each path was taken in this process (for the heartbeat)."""
    with _lock:
        return dict(_counts)


def position_path_count(path: str, **fields) -> None:
    with _lock:
        _counts[path] += 1
    log.info("position_source", path=path, **fields)


def position_matters(*, side: str, sizes: dict, hedge: bool) -> bool:
    """Does the decision for ``side`` depend on the position? Hedge mode: always (the side closes the other
    first). One-way: a sell unless shorting is allowed and the book is flat or short; a buy against a short."""
    if hedge:
        return True
    if side == Side.SELL:
        return sizes[0] > 0 or not settings.ALLOW_SHORT
    return sizes[0] < 0


def unsettled_orders(*, category: str, symbol: str, limit: int = 20) -> list[tuple[str, datetime]]:
    """(orderLinkId, last change) of the symbol's recent acknowledged orders whose fills may not be booked: the
    exchange accepted them and the stream has not spoken about them since, or the stream reported more
    filled than the executions we booked (an execution message lost or late)."""
    booked = (Execution.objects.filter(order=OuterRef("pk")).order_by().values("order")
              .annotate(total=Sum("exec_qty")).values("total"))  # fmt: skip
    zero = Value(Decimal(0), output_field=DecimalField(max_digits=36, decimal_places=18))
    rows = (
        Order.objects.filter(category=category, symbol=symbol, is_dry_run=False, is_external=False,
                             created_at__gte=timezone.now() - UNSETTLED_LOOKBACK)
        .exclude(order_id="")
        .filter(status__in=[*_ACK_OPEN, OrderStatus.FILLED, OrderStatus.CANCELLED])
        .annotate(booked=Coalesce(Subquery(booked), zero))
        .filter(Q(exchange_updated_ms=0, status__in=_ACK_OPEN) | Q(filled_qty__gt=F("booked")))
        .order_by("id")
        .values_list("order_link_id", "updated_at")[:limit]
    )  # fmt: skip
    return list(rows)


def book_sizes_read(*, category: str, symbol: str) -> dict[int, Decimal]:
    from positions.models import Position

    sizes = dict.fromkeys((0, 1, 2), Decimal(0))
    for idx, size in Position.objects.filter(category=category, symbol=symbol).values_list("position_idx", "size"):
        sizes[idx] = size
    return sizes


def exchange_sizes_read(*, category: str, symbol: str, since: float | None = None) -> dict[int, Decimal]:
    """The exchange's sizes in the book's shape: 0 signed (one-way), 1 long and 2 short unsigned (hedge).
    ``since``: a listing read at or after that monotonic time (the mode lookup of this very plan) is reused."""
    from orders.services.position_mode import positions_read

    sizes = dict.fromkeys((0, 1, 2), Decimal(0))
    for row in positions_read(category=category, symbol=symbol, since=since):
        if row.position_idx in sizes:
            sizes[row.position_idx] = row.signed_size if row.position_idx == 0 else row.size
    return sizes


def position_fresh(*, category: str, symbol: str, side: str, book_sizes: dict, hedge: bool) -> tuple[dict, str]:
    """The sizes to decide on and where they come from (``"book"`` or ``"exchange"``).

    Raises the client's ``BybitError`` when the exchange must be asked and cannot answer."""
    if not position_matters(side=side, sizes=book_sizes, hedge=hedge):
        return book_sizes, "book"
    unsettled = unsettled_orders(category=category, symbol=symbol)
    if not unsettled:
        position_path_count(BOOK_CURRENT, symbol=symbol)
        return book_sizes, "book"
    started = time.monotonic()
    wait = float(settings.POSITION_FILLS_WAIT_SECONDS)
    # Waiting helps only for orders acknowledged moments ago (their events are on the way); for older ones the
    # events were lost, so the exchange is asked at once.
    recent = timezone.now() - timedelta(seconds=max(RECENT_SECONDS, 2 * wait))
    deadline = started + (wait if any(changed >= recent for _, changed in unsettled) else 0.0)
    links = [link for link, _ in unsettled]
    while time.monotonic() < deadline:
        time.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))
        if not unsettled_orders(category=category, symbol=symbol):
            position_path_count(WAITED, symbol=symbol, waited_ms=round((time.monotonic() - started) * 1000),
                                orders=links)  # fmt: skip
            return book_sizes_read(category=category, symbol=symbol), "book"
    sizes = exchange_sizes_read(category=category, symbol=symbol)
    waited_ms = round((time.monotonic() - started) * 1000)
    position_path_count(READ_EXCHANGE, symbol=symbol, orders=links, waited_ms=waited_ms,
                        book={k: str(v) for k, v in book_sizes.items()},
                        exchange={k: str(v) for k, v in sizes.items()})  # fmt: skip
    return sizes, "exchange"
