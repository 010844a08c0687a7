"""Executions: stored once per execId, placed on a position row, applied to the book.

- One ``Execution`` per execId. The insert relies on the unique constraint (``ON CONFLICT DO
  NOTHING``), never on a check followed by an insert, so two processes racing on the same execId
  apply it once.
- A fill whose order we do not know yet is stored (``order`` NULL) and linked when the order
  shows up (``executions_link_orphans``); only then does it move the position, because only the
  order names the position side (validation reports such rows as unapplied). The exception: a
  symbol with an open one-way row (docs/decisions/0417).
- Non-trade execution types follow ``positions.services.position_math.EXEC_TYPE_RULES``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime

import structlog
from django.db import connection
from django.db.models import Q
from django.utils import timezone

from exchange.bybit.types import ExecutionInfo
from ordermanager.core.epoch import from_epoch_ms
from ordermanager.core.pg_arrays import pg_array_literals
from ordermanager.core.sql_once import fixed_cursor
from orders.models import Execution, Order
from orders.services.fills.fill_values import fill_of_execution, fill_of_info, side_of
from orders.services.fills.funding import fills_to_positions, funding_idx
from orders.services.fills.order_state import orders_locked, orders_refresh_fills
from orders.services.position_mode import ONE_WAY, position_mode_in_book
from positions.selectors import ledger_exec_ids_applied
from positions.services.ledger import FillValues
from positions.services.position_math import FillRule, rule_for

log = structlog.get_logger(__name__)

# Rows per multi-row INSERT (SQLite allows 32766 parameters; an execution has about 20).
_INSERT_CHUNK = 500


@dataclass
class ExecutionsApplied:
    new: int = 0  # stored now; the rest were already stored (duplicates)
    new_ids: set[str] = field(default_factory=set)  # their exec ids (a group tells each message its own)
    deferred: list[str] = field(default_factory=list)  # exec ids waiting for their order


def executions_apply(infos: list[ExecutionInfo], *, source: str) -> ExecutionsApplied:
    """One message's executions in a fixed number of statements, whatever their number: orders
    locked in one query, executions in one insert, positions through ``positions_apply_fills``
    (one lock query, one ledger insert, one update per position), one totals query and one
    update per order. The caller owns the transaction."""
    unique = _unique_by_exec_id(
        sorted(infos, key=lambda i: (i.category, i.symbol, i.exec_time_ms, i.seq or 0, i.exec_id))
    )
    orders = orders_locked(unique)
    modes: dict[tuple, str | None] = {}  # per symbol: its mode as the book tells it, looked up once per message
    now = timezone.now()
    placed = []
    for info in unique:
        order = orders[(info.order_link_id, info.order_id)]
        placed.append((info, order, _position_idx_for(info, order, modes)))
    new = _insert_new([_execution_values(i, order=o, position_idx=x, source=source, now=now) for i, o, x in placed])
    result = ExecutionsApplied(new=len(new), new_ids=new)
    fills: dict[tuple[str, str, int], list[FillValues]] = {}
    touched: dict[int, Order] = {}
    for info, order, position_idx in placed:
        if info.exec_id not in new:
            continue
        if position_idx is None:
            result.deferred.append(info.exec_id)
            log.warning(
                "execution_waiting_for_order",
                exec_id=info.exec_id,
                order_id=info.order_id,
                symbol=info.symbol,
                exec_type=info.exec_type,
            )
        else:
            fills.setdefault((info.category, info.symbol, position_idx), []).append(fill_of_info(info))
        if order is not None:
            touched[order.pk] = order
    fills_to_positions(fills)
    orders_refresh_fills(list(touched.values()))
    return result


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
            modes[key] = position_mode_in_book(category=info.category, symbol=info.symbol, certain=True)
        return 0 if modes[key] == ONE_WAY else None
    if rule is FillRule.FUNDING:
        key = (info.category, info.symbol)
        if key not in modes:
            modes[key] = position_mode_in_book(category=info.category, symbol=info.symbol)
        return funding_idx(info.side, mode=modes[key])
    if rule is FillRule.RECORD_ONLY:
        return 0  # no position effect either way; the ledger records it on the one-way row
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
        "side": side_of(info),
        "exec_type": info.exec_type,
        "exec_qty": info.exec_qty,
        "exec_price": info.exec_price,
        "exec_value": info.exec_value if info.exec_value else info.exec_qty * info.exec_price,
        "exec_fee": info.exec_fee,
        "fee_currency": info.fee_currency,
        "is_maker": info.is_maker,
        "closed_size": info.closed_size,
        "position_idx": position_idx or 0,
        "exec_time": from_epoch_ms(info.exec_time_ms),
        "seq": info.seq,
        "source": source,
        "created_at": now,
    }


def _insert_new(rows: list[dict]) -> set[str]:
    """INSERT … ON CONFLICT (exec_id) DO NOTHING RETURNING: the unique key decides which rows are
    new, so two processes racing on one execId store it once. Returns the exec ids inserted
    (``bulk_create(ignore_conflicts=True)`` cannot tell them)."""
    if not rows:
        return set()
    fields = [f for f in Execution._meta.concrete_fields if not f.primary_key]
    new: set[str] = set()
    with fixed_cursor() as cursor:
        if connection.vendor == "postgresql":
            # One array per column, unnested server side: the statement text is the same for any
            # number of rows (parsed once by the driver), and values go to the driver as they are.
            # The arrays go as literals joined here (``pg_array_literals``), not as lists for psycopg to dump.
            cursor.execute(_insert_sql_pg(), pg_array_literals(fields, rows, by_key=True))
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


def executions_link_orphans(order: Order) -> int:
    """Attach executions that arrived before their order; apply the ones still waiting."""
    keys = Q(exchange_order_id=order.order_id) if order.order_id else Q()
    if order.order_link_id and not order.is_external:
        keys |= Q(order_link_id=order.order_link_id)
    if not keys:
        return 0
    # Answered by the partial indexes of the unlinked executions, one per key (docs/decisions/0338): "order IS
    # NULL" alone would also match every funding fee ever booked.
    orphans = list(Execution.objects.filter(order__isnull=True).filter(keys).order_by("exec_time", "seq", "exec_id"))
    if not orphans:
        return 0
    applied = ledger_exec_ids_applied(exec_ids=[e.exec_id for e in orphans])
    fills: dict[tuple[str, str, int], list[FillValues]] = {}
    for execution in orphans:
        execution.order = order
        if execution.exec_id not in applied:
            execution.position_idx = order.position_idx
            fills.setdefault((execution.category, execution.symbol, order.position_idx), []).append(
                fill_of_execution(execution)
            )
    Execution.objects.bulk_update(orphans, ["order", "position_idx"])
    fills_to_positions(fills)
    log.info("executions_linked", order_link_id=order.order_link_id, count=len(orphans))
    orders_refresh_fills([order])
    return len(orphans)
