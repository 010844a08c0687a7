"""Fill ingest: private-stream messages (or REST backfill rows) → Execution, Order, Position.

Rules (ARCHITECTURE properties 2, 7, 8):
- One ``Execution`` per execId. The insert relies on the unique constraint
  (``ON CONFLICT DO NOTHING``), never on a check followed by an insert, so two
  processes racing on the same execId apply it once.
- Order status only moves forward (``STATUS_RANK``); fill quantities only grow.
  A late ``New`` after ``Filled`` changes nothing; ``Cancelled`` with a non-zero
  filled quantity is a normal final state and keeps its fills and fees.
- A fill whose order we do not know yet is stored (``order`` NULL) and linked
  when the order shows up; only then does it move the position, because only
  the order names the position side (validation reports such rows as unapplied).
- One transaction per message; the order row and the position row are locked.
  Items are applied in a fixed (symbol, time) order so concurrent writers take
  locks in the same order.
- Non-trade execution types follow ``positions.services.position_math.EXEC_TYPE_RULES``.
- A message is checked whole before anything of it is stored (``message_check``): a trade
  without a side, or an id or text longer than its column, refuses the message with
  ``FillRefused`` naming the item and the field. Nothing is ever cut to fit: the array cast
  of the batched insert would silently truncate, and two long execIds sharing a prefix would
  then collide (docs/decisions/0416-fills-complete-or-refused.md).
- A fill of an order we never saw moves the position at once when the symbol has an open
  one-way row (idx 0): the mode cannot change while a position is open, so the side is certain
  (docs/decisions/0417-unknown-order-fills-on-one-way-symbols.md).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import structlog
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, OuterRef, Q, Sum
from django.utils import timezone

from exchange.bybit.events import TOPIC_EXECUTION, TOPIC_ORDER, TOPIC_POSITION, PrivateMessage
from exchange.bybit.types import ExecutionInfo, OrderInfo, PositionInfo
from ordermanager.events import publish_event_on_commit
from orders.models import STATUS_RANK, CancelReason, Execution, Order, OrderStatus, OrderType, TimeInForce
from positions.models import Position, PositionLedgerEntry
from positions.selectors import position_symbol_is_hedge
from positions.services.ledger import FillValues, position_observe, positions_apply_fills
from positions.services.position_math import FillRule, div18, rule_for

log = structlog.get_logger(__name__)

ORDER_UPDATED = "order.updated"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Bybit orderStatus → ours. Untriggered/Triggered conditional orders are working
# orders (New); spot's PartiallyFilledCanceled and Deactivated are cancellations.
BYBIT_STATUS = {
    "New": OrderStatus.NEW,
    "Untriggered": OrderStatus.NEW,
    "Triggered": OrderStatus.NEW,
    "PartiallyFilled": OrderStatus.PARTIALLY_FILLED,
    "Filled": OrderStatus.FILLED,
    "Cancelled": OrderStatus.CANCELLED,
    "PartiallyFilledCanceled": OrderStatus.CANCELLED,
    "Deactivated": OrderStatus.CANCELLED,
    "Rejected": OrderStatus.REJECTED,
}
POST_ONLY_REJECT = "EC_PostOnlyWillTakeLiquidity"


class FillRefused(ValueError):
    """An item the fill path will not store as it is; ``str()`` names the item and the field."""


# Bybit's name for each text column an item writes, for a refusal a person can act on.
_EXECUTION_TEXT = {"exec_id": "execId", "exchange_order_id": "orderId", "order_link_id": "orderLinkId",
                   "category": "category", "symbol": "symbol", "side": "side", "exec_type": "execType",
                   "fee_currency": "feeCurrency"}  # fmt: skip
_INFO_ATTR = {"exchange_order_id": "order_id"}  # ExecutionInfo attribute where it differs from the column
_ORDER_TEXT = {"order_id": "orderId", "order_link_id": "orderLinkId", "category": "category", "symbol": "symbol"}


def _column_limits(model, names: dict[str, str]) -> list[tuple[str, str, int]]:
    return [(attname, bybit, model._meta.get_field(attname).max_length) for attname, bybit in names.items()]


def execution_refusal(info: ExecutionInfo) -> str | None:
    """Why this execution cannot be stored as it is, or None. Quantity, price and time are
    required by the parser already; here: the side of anything that moves a position, and
    every text fitting its column."""
    rule = rule_for(info.exec_type)
    if rule in (FillRule.TRADE, FillRule.FORCED_TRADE) and info.side not in ("Buy", "Sell"):
        what = "is missing" if not info.side else f"is {info.side!r}, not Buy or Sell"
        return f"side {what}: a {info.exec_type} execution needs it to move the position"
    for attname, bybit, limit in _column_limits(Execution, _EXECUTION_TEXT):
        value = getattr(info, _INFO_ATTR.get(attname, attname))
        if len(value) > limit:
            return f"{bybit} is {len(value)} characters, longer than the {limit} we can store ({_clipped(value)})"
    return None


def order_refusal(info: OrderInfo) -> str | None:
    for attname, bybit, limit in _column_limits(Order, _ORDER_TEXT):
        value = getattr(info, attname)
        if len(value) > limit:
            return f"{bybit} is {len(value)} characters, longer than the {limit} we can store ({_clipped(value)})"
    return None


def _clipped(value: str) -> str:
    return repr(value) if len(value) <= 80 else repr(value[:77] + "...")


def message_check(message: PrivateMessage) -> None:
    """Refuse the whole message (``FillRefused``) if any item cannot be stored as it is."""
    for index, info in enumerate(message.items):
        if isinstance(info, ExecutionInfo):
            why, key = execution_refusal(info), f"execId {_clipped(info.exec_id)}"
        elif isinstance(info, OrderInfo):
            why, key = order_refusal(info), f"orderId {_clipped(info.order_id)}"
        else:
            continue
        if why is not None:
            raise FillRefused(f"{message.topic} message: data[{index}] ({key}): {why}; nothing of the message applied")


@dataclass
class MessageOutcome:
    topic: str
    applied: int = 0
    ignored: int = 0  # duplicates, stale updates, wallet snapshots
    deferred: list[str] = field(default_factory=list)  # exec ids waiting for their order


def private_message_apply(*, message: PrivateMessage, source: str = "ws") -> MessageOutcome:
    """Apply one private-stream message in one transaction; ``FillRefused`` (nothing applied)
    when an item cannot be stored as it is."""
    message_check(message)
    outcome = MessageOutcome(topic=message.topic)
    with transaction.atomic():
        if message.topic == TOPIC_EXECUTION:
            _executions_apply(message.items, source=source, outcome=outcome)
        elif message.topic == TOPIC_ORDER:
            for info in sorted(message.items, key=lambda i: (i.symbol, i.updated_ms, i.order_id)):
                _count(outcome, _order_update(info))
        elif message.topic == TOPIC_POSITION:
            for info in sorted(message.items, key=lambda i: (i.symbol, i.position_idx)):
                _position_observe(info)
                outcome.applied += 1
        else:
            # Balances are read from the exchange when needed (risk checks); the
            # stream copy is not stored.
            outcome.ignored += len(message.items)
    return outcome


def execution_apply(*, execution: ExecutionInfo, source: str = "ws") -> bool:
    """Store and apply one execution; False when its execId was already applied.
    ``FillRefused`` when it cannot be stored as it is."""
    why = execution_refusal(execution)
    if why is not None:
        raise FillRefused(f"execution {_clipped(execution.exec_id)}: {why}")
    outcome = MessageOutcome(topic=TOPIC_EXECUTION)
    with transaction.atomic():
        _executions_apply([execution], source=source, outcome=outcome)
    return outcome.applied == 1


def order_update_apply(*, info: OrderInfo, source: str = "ws") -> bool:
    """Apply one order-topic item (status forward only, fill totals only up). True if anything changed."""
    why = order_refusal(info)
    if why is not None:
        raise FillRefused(f"order {_clipped(info.order_id)}: {why}")
    with transaction.atomic():
        return _order_update(info)


# --- executions ----------------------------------------------------------------------

# Rows per multi-row INSERT (SQLite allows 32766 parameters; an execution has about 20).
_INSERT_CHUNK = 500


def _executions_apply(infos: list[ExecutionInfo], *, source: str, outcome: MessageOutcome) -> None:
    """One message's executions in a fixed number of statements, whatever their number: orders
    locked in one query, executions in one insert, positions through ``positions_apply_fills``
    (one lock query, one ledger insert, one update per position), one totals query and one
    update per order."""
    unique = _unique_by_exec_id(
        sorted(infos, key=lambda i: (i.category, i.symbol, i.exec_time_ms, i.seq or 0, i.exec_id))
    )
    orders = _orders_locked(unique)
    modes: dict[tuple, bool | None] = {}  # per symbol: hedge / open one-way, looked up once per message
    now = timezone.now()
    placed = []
    for info in unique:
        order = orders[(info.order_link_id, info.order_id)]
        placed.append((info, order, _position_idx_for(info, order, modes)))
    new = _insert_new([_execution_values(i, order=o, position_idx=x, source=source, now=now) for i, o, x in placed])
    outcome.applied += len(new)
    outcome.ignored += len(infos) - len(new)
    fills: dict[tuple[str, str, int], list[FillValues]] = {}
    touched: dict[int, Order] = {}
    for info, order, position_idx in placed:
        if info.exec_id not in new:
            continue
        if position_idx is None:
            outcome.deferred.append(info.exec_id)
            log.warning(
                "execution_waiting_for_order",
                exec_id=info.exec_id,
                order_id=info.order_id,
                symbol=info.symbol,
                exec_type=info.exec_type,
            )
        else:
            fills.setdefault((info.category, info.symbol, position_idx), []).append(_fill_of_info(info))
        if order is not None:
            touched[order.pk] = order
    _apply_to_positions(fills)
    _orders_refresh_fills(list(touched.values()))


def _unique_by_exec_id(infos: list[ExecutionInfo]) -> list[ExecutionInfo]:
    # A message can carry one execId twice (a resend inside a batch): the first one counts.
    seen: set[str] = set()
    unique = []
    for info in infos:
        if info.exec_id not in seen:
            seen.add(info.exec_id)
            unique.append(info)
    return unique


def _position_idx_for(info: ExecutionInfo, order: Order | None, modes: dict) -> int | None:
    """Which position row an execution moves; None = wait until it can be told.

    Bybit's execution rows carry no positionIdx. Our own orders are always known
    (the row is committed before the request). A fill of an order we have not
    seen (placed elsewhere, liquidation) waits for that order's event, because
    only the order tells the hedge side, and the account's mode cannot be
    trusted from what happens to be stored (docs/decisions/0405-fills-before-orders.md).
    The exception is a symbol with an open one-way row: Bybit does not switch the mode of a
    symbol with an open position, so such a fill moves idx 0 at once (0417); a gateway that
    forwards only executions would otherwise leave it waiting for ever.
    A funding row names its side; it waits only while the symbol's mode is unknown (0410).
    """
    if order is not None:
        return order.position_idx
    if info.position_idx is not None:
        return info.position_idx
    rule = rule_for(info.exec_type)
    if rule in (FillRule.TRADE, FillRule.FORCED_TRADE):
        key = ("open", info.category, info.symbol)
        if key not in modes:
            modes[key] = _open_one_way(category=info.category, symbol=info.symbol)
        return 0 if modes[key] else None
    if rule is FillRule.FUNDING:
        key = (info.category, info.symbol)
        if key not in modes:
            modes[key] = _symbol_is_hedge(category=info.category, symbol=info.symbol)
        return _funding_idx(info.side, hedge=modes[key])
    if rule is FillRule.RECORD_ONLY:
        return 0  # no position effect either way; the ledger records it on the one-way row
    return None


def _open_one_way(*, category: str, symbol: str) -> bool:
    """True when the symbol's only open position row is the one-way row (idx 0)."""
    open_rows = set(
        Position.objects.filter(category=category, symbol=symbol).exclude(size=0).values_list("position_idx", flat=True)
    )
    return open_rows == {0}


def _funding_idx(side: str, *, hedge: bool | None) -> int | None:
    # Bybit (and the simulator) give a funding row the side of the position it settles.
    if hedge is None:
        return None
    return (1 if side == "Buy" else 2) if hedge else 0


def _symbol_is_hedge(*, category: str, symbol: str) -> bool | None:
    """The symbol's position mode as far as the book can tell, or None when nothing tells it.

    Funding settles an open position, so an open row is the best witness; then the mode
    our latest order of the symbol was placed in; then any row. A symbol can switch mode
    while flat, which is why rows alone come last.
    """
    open_rows = set(
        Position.objects.filter(category=category, symbol=symbol).exclude(size=0).values_list("position_idx", flat=True)
    )
    if open_rows:
        return 0 not in open_rows
    latest = (
        Order.objects.filter(category=category, symbol=symbol).order_by("-pk").values_list("position_idx", flat=True)
    ).first()
    if latest is not None:
        return latest != 0
    if position_symbol_is_hedge(category=category, symbol=symbol):
        return True
    if Position.objects.filter(category=category, symbol=symbol, position_idx=0).exists():
        return False
    return None


def _execution_values(
    info: ExecutionInfo, *, order: Order | None, position_idx: int | None, source: str, now: datetime
) -> dict:
    """An Execution row as column values (by field attname), for ``_insert_new``."""
    return {
        "exec_id": info.exec_id,
        "order_id": order.pk if order is not None else None,
        "exchange_order_id": info.order_id,
        "order_link_id": info.order_link_id,
        "category": info.category,
        "symbol": info.symbol,
        "side": _side(info),
        "exec_type": info.exec_type,
        "exec_qty": info.exec_qty,
        "exec_price": info.exec_price,
        "exec_value": info.exec_value if info.exec_value else info.exec_qty * info.exec_price,
        "exec_fee": info.exec_fee,
        "fee_currency": info.fee_currency,
        "is_maker": info.is_maker,
        "closed_size": info.closed_size,
        "position_idx": position_idx or 0,
        "exec_time": _EPOCH + timedelta(milliseconds=info.exec_time_ms),
        "seq": info.seq,
        "source": source,
        "created_at": now,
    }


def _side(info: ExecutionInfo) -> str:
    return info.side if info.side in ("Buy", "Sell") else ""


def _insert_new(rows: list[dict]) -> set[str]:
    """INSERT … ON CONFLICT (exec_id) DO NOTHING RETURNING: the unique key decides which rows are
    new, so two processes racing on one execId store it once. Returns the exec ids inserted
    (``bulk_create(ignore_conflicts=True)`` cannot tell them)."""
    if not rows:
        return set()
    fields = [f for f in Execution._meta.concrete_fields if not f.primary_key]
    new: set[str] = set()
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # One array per column, unnested server side: the statement text is the same for any
            # number of rows (parsed once by the driver), and values go to the driver as they are.
            cursor.execute(_insert_sql_pg(), [[row[f.attname] for row in rows] for f in fields])
            new.update(exec_id for _, exec_id in cursor.fetchall())
            return new
        head, row_sql, tail = _insert_sql_values()
        for start in range(0, len(rows), _INSERT_CHUNK):
            chunk = rows[start : start + _INSERT_CHUNK]
            params = [f.get_db_prep_save(row[f.attname], connection) for row in chunk for f in fields]
            cursor.execute(head + ", ".join([row_sql] * len(chunk)) + tail, params)
            new.update(exec_id for _, exec_id in cursor.fetchall())
    return new


@functools.cache
def _insert_sql_pg() -> str:
    meta = Execution._meta
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    qn = connection.ops.quote_name
    arrays = ", ".join(f"%s::{f.db_type(connection)}[]" for f in fields)
    exec_id = qn(meta.get_field("exec_id").column)
    return (
        f"INSERT INTO {qn(meta.db_table)} ({', '.join(qn(f.column) for f in fields)}) SELECT * FROM unnest({arrays}) "
        f"ON CONFLICT ({exec_id}) DO NOTHING RETURNING {qn(meta.pk.column)}, {exec_id}"
    )


@functools.cache
def _insert_sql_values() -> tuple[str, str, str]:
    meta = Execution._meta
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    qn = connection.ops.quote_name
    exec_id = qn(meta.get_field("exec_id").column)
    return (
        f"INSERT INTO {qn(meta.db_table)} ({', '.join(qn(f.column) for f in fields)}) VALUES ",
        "(" + ", ".join(["%s"] * len(fields)) + ")",
        f" ON CONFLICT ({exec_id}) DO NOTHING RETURNING {qn(meta.pk.column)}, {exec_id}",
    )


def _fill_of_info(info: ExecutionInfo) -> FillValues:
    return FillValues(
        exec_id=info.exec_id,
        exec_type=info.exec_type,
        exec_time_ms=info.exec_time_ms,
        seq=info.seq or 0,
        side=_side(info),
        qty=info.exec_qty,
        price=info.exec_price,
        fee=info.exec_fee,
    )


def _fill_of(execution: Execution) -> FillValues:
    return FillValues(
        exec_id=execution.exec_id,
        exec_type=execution.exec_type,
        exec_time_ms=_ms(execution.exec_time),
        seq=execution.seq or 0,
        side=execution.side,
        qty=execution.exec_qty,
        price=execution.exec_price,
        fee=execution.exec_fee,
    )


def _ms(value: datetime) -> int:
    return (value - _EPOCH) // timedelta(milliseconds=1)


def _apply_to_positions(fills: dict[tuple[str, str, int], list[FillValues]]) -> None:
    if not fills:
        return
    applied = positions_apply_fills(fills=fills)
    # A new position row tells the symbol's mode: funding that waited for it can now be placed.
    for category, symbol in sorted({(c, s) for c, s, _ in applied.created}):
        _funding_waiting_apply(category=category, symbol=symbol)


def _funding_waiting_apply(*, category: str, symbol: str) -> int:
    """Apply the symbol's funding rows that arrived while its position mode was unknown."""
    applied = PositionLedgerEntry.objects.filter(exec_id=OuterRef("exec_id"))
    waiting = list(
        Execution.objects.filter(category=category, symbol=symbol, exec_type="Funding", order__isnull=True)
        .filter(~Exists(applied))
        .order_by("exec_time", "seq", "exec_id")
    )
    hedge = _symbol_is_hedge(category=category, symbol=symbol) if waiting else None
    if hedge is None:
        return 0
    fills: dict[tuple[str, str, int], list[FillValues]] = {}
    for execution in waiting:
        execution.position_idx = _funding_idx(execution.side, hedge=hedge)
        fills.setdefault((category, symbol, execution.position_idx), []).append(_fill_of(execution))
    Execution.objects.bulk_update(waiting, ["position_idx"])
    positions_apply_fills(fills=fills)
    log.info("funding_applied_after_mode_known", symbol=symbol, count=len(waiting), hedge=hedge)
    return len(waiting)


# --- orders ----------------------------------------------------------------------------


def _order_locked(*, order_link_id: str, order_id: str) -> Order | None:
    # Our orderLinkId is the better key: the row exists (pending_submit) before
    # the exchange has assigned an orderId.
    if order_link_id:
        order = Order.objects.select_for_update().filter(order_link_id=order_link_id).first()
        if order is not None:
            return order
    if order_id:
        return Order.objects.select_for_update().filter(order_id=order_id).order_by("pk").first()
    return None


def _orders_locked(infos: list[ExecutionInfo]) -> dict[tuple[str, str], Order | None]:
    """``_order_locked`` for every (orderLinkId, orderId) of a message, in at most two queries.

    Rows are locked in primary-key order, so two messages touching the same orders never
    wait on each other crosswise.
    """
    links = sorted({i.order_link_id for i in infos if i.order_link_id})
    by_link: dict[str, Order] = {}
    if links:
        locked = Order.objects.select_for_update().filter(order_link_id__in=links).order_by("pk")
        by_link = {o.order_link_id: o for o in locked}
    ids = sorted({i.order_id for i in infos if i.order_id and i.order_link_id not in by_link})
    by_id: dict[str, Order] = {}
    if ids:
        for o in Order.objects.select_for_update().filter(order_id__in=ids).order_by("pk"):
            by_id.setdefault(o.order_id, o)
    # One object per row, however it was found, so its totals are refreshed once.
    rows = {o.pk: o for o in by_link.values()}
    found: dict[tuple[str, str], Order | None] = {}
    for info in infos:
        order = by_link.get(info.order_link_id) if info.order_link_id else None
        if order is None and info.order_id in by_id:
            order = rows.setdefault(by_id[info.order_id].pk, by_id[info.order_id])
        found[(info.order_link_id, info.order_id)] = order
    return found


def _order_refresh_fills(order: Order) -> None:
    _orders_refresh_fills([order])


def _orders_refresh_fills(orders: list[Order]) -> None:
    """Fill totals from each order's executions (one grouped query), unless an order event
    already reported more.

    Executions give exact per-fill fees; an order event's cumExecQty can run ahead
    of them when execution messages were dropped (the backfill catches up later).
    """
    if not orders:
        return
    rows = (
        Execution.objects.filter(order__in=[o.pk for o in orders])
        .order_by()
        .values("order")
        .annotate(qty=Sum("exec_qty"), value=Sum("exec_value"), fees=Sum("exec_fee"))
    )
    totals = {r["order"]: r for r in rows}
    for order in sorted(orders, key=lambda o: o.pk):
        row = totals.get(order.pk) or {}
        qty = row.get("qty") or Decimal(0)
        if qty < order.filled_qty:
            log.info("order_fills_behind_event", order_link_id=order.order_link_id, executions=qty)
            continue
        before = order.status
        _set_fills(order, qty=qty, value=row.get("value") or Decimal(0), fees=row.get("fees") or Decimal(0), avg=None)
        _advance_from_fills(order)
        order.save(update_fields=_FILL_FIELDS)
        _order_event(order, before)


_FILL_FIELDS = ["qty", "filled_qty", "cum_exec_value", "fees", "avg_fill_price", "status", "updated_at"]


def _set_fills(order: Order, *, qty: Decimal, value: Decimal, fees: Decimal, avg: Decimal | None) -> None:
    if qty > order.qty:
        # The exchange filled more than we asked for: the order was amended
        # elsewhere. Keep the fills (they happened) and say so loudly.
        log.error("order_overfilled", order_link_id=order.order_link_id, qty=order.qty, filled=qty)
        order.qty = qty
    order.filled_qty = qty
    order.cum_exec_value = value
    order.fees = fees
    order.avg_fill_price = avg if avg else (div18(value, qty) if qty > 0 else None)


def _advance(order: Order, status: str) -> bool:
    if STATUS_RANK[status] > STATUS_RANK[order.status]:
        order.status = status
        return True
    return False


def _advance_from_fills(order: Order) -> None:
    if order.filled_qty >= order.qty:
        _advance(order, OrderStatus.FILLED)
    elif order.filled_qty > 0:
        _advance(order, OrderStatus.PARTIALLY_FILLED)


def _order_update(info: OrderInfo) -> bool:
    order = _order_locked(order_link_id=info.order_link_id, order_id=info.order_id)
    created = order is None
    if order is None:
        order = _external_order_create(info)
        changed = order is not None
    else:
        changed = _order_merge(order, info)
    if order is None:
        return False
    linked = _link_orphan_executions(order)
    if created and not Position.objects.filter(category=order.category, symbol=order.symbol).exists():
        # The symbol's first order tells its mode (no row does yet): place funding that waited for it.
        _funding_waiting_apply(category=order.category, symbol=order.symbol)
    return changed or linked > 0


def _order_merge(order: Order, info: OrderInfo) -> bool:
    before = (order.status, order.filled_qty, order.order_id, order.exchange_updated_ms)
    status_before = order.status
    if not order.order_id and info.order_id:
        order.order_id = info.order_id
    if info.cum_exec_qty > order.filled_qty:
        _set_fills(order, qty=info.cum_exec_qty, value=info.cum_exec_value, fees=info.cum_exec_fee, avg=info.avg_price)
    status = _status_of(info)
    if status is not None and _advance(order, status):
        _note_final(order, info)
    _advance_from_fills(order)
    # updatedTime is recorded, not used to overrule: status rank and monotonic
    # cumExecQty already make a stale event harmless.
    order.exchange_updated_ms = max(order.exchange_updated_ms, info.updated_ms)
    if (order.status, order.filled_qty, order.order_id, order.exchange_updated_ms) == before:
        return False
    order.save()
    _order_event(order, status_before)
    return True


def _status_of(info: OrderInfo) -> str | None:
    status = BYBIT_STATUS.get(info.order_status)
    if status is None:
        log.warning("order_status_unknown", order_status=info.order_status, order_id=info.order_id)
        return None
    if status == OrderStatus.CANCELLED and info.reject_reason == POST_ONLY_REJECT and info.cum_exec_qty == 0:
        # A PostOnly order that would have crossed ends "Cancelled" on Bybit; it
        # never rested, so it is a rejection.
        return OrderStatus.REJECTED
    return status


def _note_final(order: Order, info: OrderInfo) -> None:
    if order.status == OrderStatus.REJECTED:
        order.reject_reason = order.reject_reason or info.reject_reason
    elif order.status == OrderStatus.CANCELLED and not order.cancel_reason:
        order.cancel_reason = CancelReason.EXCHANGE
        order.cancel_note = order.cancel_note or f"{info.cancel_type or 'cancelled'} {info.reject_reason}".strip()


def _external_order_create(info: OrderInfo) -> Order | None:
    """An order the exchange knows and we did not place (manual, liquidation, ADL)."""
    qty = max(info.qty, info.cum_exec_qty)
    if qty <= 0 or info.side not in ("Buy", "Sell") or not info.order_id:
        log.warning("order_event_unusable", order_id=info.order_id, order_link_id=info.order_link_id)
        return None
    is_limit = info.order_type == OrderType.LIMIT and info.price is not None
    status = _status_of(info) or OrderStatus.NEW
    order = Order(
        order_link_id=info.order_link_id or "ext-" + hashlib.sha1(info.order_id.encode()).hexdigest()[:32],
        order_id=info.order_id,
        category=info.category,
        symbol=info.symbol,
        side=info.side,
        order_type=OrderType.LIMIT if is_limit else OrderType.MARKET,
        time_in_force=info.time_in_force if info.time_in_force in TimeInForce.values else TimeInForce.GTC,
        qty=qty,
        price=info.price if is_limit else None,
        position_idx=info.position_idx if info.position_idx in (0, 1, 2) else 0,
        reduce_only=info.reduce_only,
        status=status,
        is_external=True,
        exchange_updated_ms=info.updated_ms,
    )
    if info.cum_exec_qty > 0:
        _set_fills(order, qty=info.cum_exec_qty, value=info.cum_exec_value, fees=info.cum_exec_fee, avg=info.avg_price)
    _note_final(order, info)
    try:
        with transaction.atomic():
            order.save(force_insert=True)
    except IntegrityError:  # another process recorded it first
        return _order_locked(order_link_id=order.order_link_id, order_id=info.order_id)
    log.info("order_external_recorded", order_id=info.order_id, symbol=info.symbol, status=status)
    return order


def _link_orphan_executions(order: Order) -> int:
    """Attach executions that arrived before their order; apply the ones still waiting."""
    keys = Q(exchange_order_id=order.order_id) if order.order_id else Q()
    if order.order_link_id and not order.is_external:
        keys |= Q(order_link_id=order.order_link_id)
    if not keys:
        return 0
    # order IS NULL first: the FK index narrows the scan to the few orphans.
    orphans = list(Execution.objects.filter(order__isnull=True).filter(keys).order_by("exec_time", "seq", "exec_id"))
    if not orphans:
        return 0
    applied = set(
        PositionLedgerEntry.objects.filter(exec_id__in=[e.exec_id for e in orphans]).values_list("exec_id", flat=True)
    )
    fills: dict[tuple[str, str, int], list[FillValues]] = {}
    for execution in orphans:
        execution.order = order
        if execution.exec_id not in applied:
            execution.position_idx = order.position_idx
            fills.setdefault((execution.category, execution.symbol, order.position_idx), []).append(_fill_of(execution))
    Execution.objects.bulk_update(orphans, ["order", "position_idx"])
    _apply_to_positions(fills)
    log.info("executions_linked", order_link_id=order.order_link_id, count=len(orphans))
    _order_refresh_fills(order)
    return len(orphans)


def _order_event(order: Order, status_before: str) -> None:
    if order.status == status_before:
        return
    publish_event_on_commit(
        routing_key=ORDER_UPDATED,
        payload={
            "order_link_id": order.order_link_id,
            "order_id": order.order_id,
            "symbol": order.symbol,
            "status": order.status,
            "previous_status": status_before,
            "filled_qty": order.filled_qty,
            "avg_fill_price": order.avg_fill_price,
            "fees": order.fees,
            "trace_id": order.trace_id,
        },
    )


# --- positions topic ------------------------------------------------------------------------


def _position_observe(info: PositionInfo) -> None:
    observed = position_observe(
        category=info.category,
        symbol=info.symbol,
        position_idx=info.position_idx,
        mark_price=info.mark_price,
        updated_ms=info.updated_ms,
    )
    if observed.created:
        _funding_waiting_apply(category=info.category, symbol=info.symbol)


def _count(outcome: MessageOutcome, changed: bool) -> None:
    if changed:
        outcome.applied += 1
    else:
        outcome.ignored += 1
