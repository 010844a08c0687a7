"""Decide on a true position (docs/decisions/0316).

Our ``Position`` rows follow the fills the private stream delivers, a few
milliseconds to seconds after the exchange (or not at all until a
reconciliation, when an event was dropped). A decision that depends on the
position (reduce-only, the no-short cap, the hedge side) is made on:

1. our book, when none of the symbol's recent acknowledged orders has fills
   that may be missing ("book current");
2. our book after a short wait (``POSITION_FILLS_WAIT_SECONDS``, never a blind sleep: the condition is
   checked again when the fill path commits for the symbol (``fill_wakeups``, 0327) and at the latest every
   ``POLL_SECONDS``; one statement compiled once per wait) for those fills ("waited");
3. the exchange's position (``/v5/position/list`` for the symbol) when they
   did not arrive in time ("read exchange").

A refusal that says the position was not what we thought (the exchange's
110017, or our own "no long position" on the book) re-reads the exchange and
re-plans once ("re-planned"; ``orders.services.signal_orders``). Each path is counted here
(shown in the consumer heartbeat) and logged as ``position_source``.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import structlog
from django.conf import settings
from django.db import connection
from django.db.models import F, Max, Q, Subquery
from django.utils import timezone

from ordermanager.core.services.db_backlog import outage_seen_within
from ordermanager.core.sql_once import OrmStatement, fixed_cursor
from orders.models import STREAM_BEHIND, BackfillMark, Order, OrderStatus, Side
from orders.services.fill_wakeups import booked_mark, booked_wait
from orders.services.position_mode import positions_read
from positions.selectors import position_rows

log = structlog.get_logger(__name__)

BOOK_CURRENT, WAITED, READ_EXCHANGE, REPLANNED = "book_current", "waited", "read_exchange", "replanned"
PATHS = (BOOK_CURRENT, WAITED, READ_EXCHANGE, REPLANNED)
# Orders older than this whose fills are still missing are reconciliation's business, not a reason to wait.
UNSETTLED_LOOKBACK = timedelta(minutes=15)
POLL_SECONDS = 0.05
# An order whose events have not come this long after its last change lost them: no point waiting for it.
RECENT_SECONDS = 5.0
# Orders whose acknowledgement (or cancel outcome) we do not know: a killed consumer, a lost response.
_UNACKED = (OrderStatus.PENDING_SUBMIT, OrderStatus.PENDING_CANCEL)
# After the database was unreachable (this process saw it, or the server restarted), fills may still sit in
# another process's outage backlog: the book is not judged current for this long.
OUTAGE_DOUBT_SECONDS = 30.0

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


def _unsettled_query(*, category: str, symbol: str, since: datetime, limit: int):
    # The row's part is ``Order.may_be_unsettled``, computed by the database from ``MAY_BE_UNSETTLED``: its
    # partial index holds the few orders that can be unsettled, so the check neither sums executions nor walks
    # every recent order (docs/decisions/0336). What a row cannot tell is added here: an order expected to
    # fill with nothing booked counts only if it was acknowledged after the position row last changed.
    position_touched = (position_rows(category=category, symbol=symbol).order_by()
                        .values("symbol").annotate(last=Max("updated_at")).values("last"))  # fmt: skip
    return (
        Order.objects.filter(may_be_unsettled=True, category=category, symbol=symbol, created_at__gte=since)
        .annotate(position_touched=Subquery(position_touched))
        .filter(STREAM_BEHIND | Q(position_touched__isnull=True) | Q(submitted_at__gt=F("position_touched")))
        .order_by("id")
        .values_list("order_link_id", "updated_at")[:limit]
    )  # fmt: skip


def unsettled_orders(*, category: str, symbol: str, limit: int = 20) -> list[tuple[str, datetime]]:
    """(orderLinkId, last change) of the symbol's recent acknowledged orders whose fills may not be booked: the
    exchange accepted them and the stream has not spoken about them since, the stream reported more filled
    than the executions we booked (an execution message lost or late), or one expected to fill was
    acknowledged after the symbol's position row last changed and has nothing booked."""
    return list(_unsettled_query(category=category, symbol=symbol, since=timezone.now() - UNSETTLED_LOOKBACK,
                                 limit=limit))


# The statements of a decision's freshness check, compiled once per process (docs/decisions/0328).
_UNSETTLED_ONE = OrmStatement(lambda category, symbol, since: _unsettled_query(
    category=category, symbol=symbol, since=since, limit=1))
_UNSETTLED_ROWS = OrmStatement(lambda category, symbol, since: _unsettled_query(
    category=category, symbol=symbol, since=since, limit=20))
_MARKED = OrmStatement(lambda category, symbol: BackfillMark.objects.filter(
    Q(category=category, symbol=symbol) | Q(symbol="*")).values("pk")[:1])
_UNACKED_ONE = OrmStatement(lambda category, symbol, since: Order.objects.filter(
    category=category, symbol=symbol, is_dry_run=False, is_external=False, created_at__gte=since,
    status__in=_UNACKED).values("pk")[:1])


def _unsettled_poll(*, category: str, symbol: str):
    """``unsettled_orders`` as a check to repeat while a decision waits; the statement is compiled once per
    process (``_UNSETTLED_ONE``; docs/decisions/0325, 0328). The lookback's start is fixed at the wait's start (a
    second off a 15-minute window). Returns a callable: True while any of the symbol's orders is still unsettled."""
    sql, params = _UNSETTLED_ONE.sql(category=category, symbol=symbol, since=timezone.now() - UNSETTLED_LOOKBACK)

    def still_unsettled() -> bool:
        with fixed_cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone() is not None

    return still_unsettled


def book_doubts(*, category: str, symbol: str) -> tuple[list[str], list[tuple[str, datetime]]]:
    """Why the book cannot know it is current (reasons for reading the exchange at once), and the unsettled
    orders, in one round trip: the symbol (or every symbol) is marked for a backfill (a ws-gateway reconnect,
    messages kept or lost during a database outage, in any process); an order of the symbol whose
    acknowledgement or cancel outcome is unknown; the database server restarted moments ago; plus, without a
    query, this process saw the database unreachable moments ago."""
    since = timezone.now() - UNSETTLED_LOOKBACK
    mark_sql, mark_params = _MARKED.sql(category=category, symbol=symbol)
    unacked_sql, unacked_params = _UNACKED_ONE.sql(category=category, symbol=symbol, since=since)
    rows_sql, rows_params = _UNSETTLED_ROWS.sql(category=category, symbol=symbol, since=since)
    if connection.vendor == "postgresql":
        restarted_sql, restarted_params = "pg_postmaster_start_time() > %s", (
            timezone.now() - timedelta(seconds=OUTAGE_DOUBT_SECONDS),)
    else:  # the embedded SQLite has no server that could have restarted under us
        restarted_sql, restarted_params = "0", ()
    sql = (f"SELECT d.marked, d.unacked, d.restarted, u.order_link_id, u.updated_at FROM "
           f"(SELECT EXISTS({mark_sql}) AS marked, EXISTS({unacked_sql}) AS unacked, "
           f"{restarted_sql} AS restarted) d "
           f"LEFT JOIN ({rows_sql}) u ON 1 = 1")  # fmt: skip
    with fixed_cursor() as cursor:
        cursor.execute(sql, (*mark_params, *unacked_params, *restarted_params, *rows_params))
        rows = cursor.fetchall()
    marked, pending, restarted = rows[0][:3]
    reasons = [reason for flag, reason in ((marked, "backfill mark"), (pending, "order outcome unknown"),
                                           (restarted, "database restarted")) if flag]  # fmt: skip
    if outage_seen_within(OUTAGE_DOUBT_SECONDS):
        reasons.append("database unreachable")
    return reasons, [(link, _aware(changed)) for *_, link, changed in rows if link is not None]


def _aware(when: datetime) -> datetime:
    """A raw cursor on SQLite gives naive UTC datetimes (PostgreSQL gives aware ones)."""
    return when if timezone.is_aware(when) else timezone.make_aware(when, UTC)


def book_sizes_read(*, category: str, symbol: str) -> dict[int, Decimal]:
    sizes = dict.fromkeys((0, 1, 2), Decimal(0))
    for idx, size in position_rows(category=category, symbol=symbol).values_list("position_idx", "size"):
        sizes[idx] = size
    return sizes


def exchange_sizes_read(*, category: str, symbol: str, since: float | None = None) -> dict[int, Decimal]:
    """The exchange's sizes in the book's shape: 0 signed (one-way), 1 long and 2 short unsigned (hedge).
    ``since``: a listing read at or after that monotonic time (the mode lookup of this very plan) is reused."""
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
    mark = booked_mark(symbol)  # before the first check: fills committed during it end the first wait at once
    doubts, unsettled = book_doubts(category=category, symbol=symbol)
    if not unsettled and not doubts:
        position_path_count(BOOK_CURRENT, symbol=symbol)
        return book_sizes, "book"
    started = time.monotonic()
    wait = float(settings.POSITION_FILLS_WAIT_SECONDS)
    # Waiting helps only for orders acknowledged moments ago (their events are on the way); for older ones the
    # events were lost, and what a doubt is about (another process's backlog, a lost acknowledgement, a backfill
    # to come) is not something a second's wait settles, so the exchange is asked at once.
    recent = timezone.now() - timedelta(seconds=max(RECENT_SECONDS, 2 * wait))
    waitable = not doubts and any(changed >= recent for _, changed in unsettled)
    deadline = started + (wait if waitable else 0.0)
    links = [link for link, _ in unsettled]
    still_unsettled = _unsettled_poll(category=category, symbol=symbol) if deadline > started else None
    while time.monotonic() < deadline:
        # Woken when the fill path commits for the symbol (any process; 0327), else after POLL_SECONDS.
        booked_wait(symbol, mark, min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))
        mark = booked_mark(symbol)  # taken before the check: what commits during it wakes the next wait
        if not still_unsettled():
            position_path_count(WAITED, symbol=symbol, waited_ms=round((time.monotonic() - started) * 1000),
                                orders=links)  # fmt: skip
            return book_sizes_read(category=category, symbol=symbol), "book"
    sizes = exchange_sizes_read(category=category, symbol=symbol)
    waited_ms = round((time.monotonic() - started) * 1000)
    position_path_count(READ_EXCHANGE, symbol=symbol, orders=links, doubts=doubts, waited_ms=waited_ms,
                        book={k: str(v) for k, v in book_sizes.items()},
                        exchange={k: str(v) for k, v in sizes.items()})  # fmt: skip
    return sizes, "exchange"
