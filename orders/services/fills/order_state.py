"""An order's state as the exchange reports it: status only moves forward, fill totals only grow.

A late ``New`` after ``Filled`` changes nothing (``STATUS_RANK``); ``Cancelled`` with a non-zero
filled quantity is a normal final state and keeps its fills and fees. Every status change
publishes ``order.updated`` after commit. Callers hold the order row locked (``order_locked``,
``orders_locked``) inside their transaction.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from decimal import Decimal

import structlog
from django.db import connection
from django.utils import timezone

from exchange.bybit.types import ExecutionInfo, OrderInfo
from ordermanager.core.pg_arrays import pg_array_literals
from ordermanager.core.prebuilt_sql import (
    column_converter,
    in_list,
    instance_update,
    instances_of,
    list_param,
    lock_clause,
    qn,
    rows_select,
    select_sql,
)
from ordermanager.core.sql_once import fixed_cursor
from ordermanager.events import ORDER_UPDATED, publish_event_on_commit
from orders.exchange_status import order_status_of
from orders.models import STATUS_RANK, CancelReason, Execution, Order, OrderStatus
from positions.services.position_math import div18

log = structlog.get_logger(__name__)


def order_locked(*, order_link_id: str, order_id: str) -> Order | None:
    """The order row of an event, locked: by our orderLinkId, else by the exchange's orderId."""
    return order_locked_for_event(order_link_id=order_link_id, order_id=order_id)[0]


def order_locked_for_event(*, order_link_id: str, order_id: str) -> tuple[Order | None, bool]:
    """``order_locked``, and whether executions wait for that order (stored before it was known: what
    ``executions_link_orphans`` would find once the event's orderId is on the row), in the same statement.

    One prebuilt statement in the usual case (docs/decisions/0424): the row is found by its orderLinkId,
    and the orphan test that used to be a query of its own rides along as an ``EXISTS``."""
    # Our orderLinkId is the better key: the row exists (pending_submit) before
    # the exchange has assigned an orderId.
    sql_by_link, sql_by_id = _locked_for_event_sql()
    for sql, key in ((sql_by_link, order_link_id), (sql_by_id, order_id)):
        if not key:
            continue
        with fixed_cursor() as cursor:
            cursor.execute(sql, [order_id, order_id, key])  # the event's orderId twice in the EXISTS
            row = cursor.fetchone()
        if row is not None:
            return instances_of(Order, [row[:-1]])[0], bool(row[-1])
    return None, False


@functools.cache
def _locked_for_event_sql() -> tuple[str, str]:
    order, execution = Order._meta, Execution._meta
    o, e = qn(order.db_table), qn(execution.db_table)
    col = {f.name: qn(f.column) for f in order.concrete_fields}
    ecol = {f.name: qn(f.column) for f in execution.concrete_fields}
    # As executions_link_orphans keys them, with the event's orderId standing in for a row that has none yet
    # (order_merge writes it): by exchange orderId, or by our orderLinkId unless the order is external.
    # One EXISTS per key, each answered by an index on that key: executions without an order include every
    # funding fee ever booked (they never get one), so "order IS NULL" alone would walk all of them on every
    # order event (docs/decisions/0338).
    order_id = f"(CASE WHEN {o}.{col['order_id']} <> '' THEN {o}.{col['order_id']} ELSE %s END)"
    # The literal "key <> ''" on the execution's side matches the partial indexes' predicates (funding fees have
    # neither key), so the planner takes them whatever it guesses the key's value matches.
    orphans = (
        f"(EXISTS (SELECT 1 FROM {e} WHERE {order_id} <> '' AND {e}.{ecol['exchange_order_id']} = {order_id} "
        f"AND {e}.{ecol['order']} IS NULL AND {e}.{ecol['exchange_order_id']} <> '') OR "
        f"EXISTS (SELECT 1 FROM {e} WHERE {o}.{col['order_link_id']} <> '' AND NOT {o}.{col['is_external']} "
        f"AND {e}.{ecol['order_link_id']} = {o}.{col['order_link_id']} AND {e}.{ecol['order']} IS NULL "
        f"AND {e}.{ecol['order_link_id']} <> ''))"
    )
    columns = ", ".join(f"{o}.{qn(f.column)}" for f in order.concrete_fields)
    head = f"SELECT {columns}, {orphans} FROM {o} WHERE "
    return (
        head + f"{o}.{col['order_link_id']} = %s" + lock_clause(),
        head + f"{o}.{col['order_id']} = %s ORDER BY {o}.{col['id']} LIMIT 1" + lock_clause(),
    )


def orders_locked(infos: Sequence[ExecutionInfo | OrderInfo]) -> dict[tuple[str, str], Order | None]:
    """``order_locked`` for every (orderLinkId, orderId) of a message, in at most two prebuilt statements.

    Rows are locked in primary-key order, so two messages touching the same orders never
    wait on each other crosswise.
    """
    links = sorted({i.order_link_id for i in infos if i.order_link_id})
    sql_by_links, sql_by_ids = _orders_locked_sql()
    by_link: dict[str, Order] = {}
    if links:
        by_link = {o.order_link_id: o for o in rows_select(Order, sql_by_links, [list_param(links)])}
    ids = sorted({i.order_id for i in infos if i.order_id and i.order_link_id not in by_link})
    by_id: dict[str, Order] = {}
    if ids:
        for o in rows_select(Order, sql_by_ids, [list_param(ids)]):
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


def orders_awaited(orders: Sequence[tuple[Order, str]]) -> tuple[set[str], set[str]]:
    """For ``(order, the orderId its event gives)`` pairs: the exchange orderIds and our orderLinkIds of those
    orders that executions wait for (stored before the order was known, what ``executions_link_orphans`` would
    find), in one prebuilt statement for any number of orders. The event's orderId stands in for a row that
    has none yet (``order_merge`` writes it); an external order is not matched by its link, as there."""
    ids = sorted({order.order_id or event_id for order, event_id in orders} - {""})
    links = sorted({o.order_link_id for o, _ in orders if o.order_link_id and not o.is_external})
    if not ids and not links:
        return set(), set()
    with fixed_cursor() as cursor:
        cursor.execute(_orders_awaited_sql(), [list_param(ids), list_param(links)])
        rows = cursor.fetchall()
    return {key for by_id, key in rows if by_id}, {key for by_id, key in rows if not by_id}


@functools.cache
def _orders_awaited_sql() -> str:
    meta = Execution._meta
    e, order = qn(meta.db_table), qn(meta.get_field("order").column)
    # One branch per key, each carrying the literal "key <> ''" of its partial index (docs/decisions/0338).
    return " UNION ".join(
        f"SELECT {flag}, {col} FROM {e} WHERE {order} IS NULL AND {col} <> '' AND {in_list(col)}"
        for flag, col in ((1, qn(meta.get_field("exchange_order_id").column)),
                          (0, qn(meta.get_field("order_link_id").column)))
    )  # fmt: skip


@functools.cache
def _orders_locked_sql() -> tuple[str, str]:
    pk = qn(Order._meta.pk.column)
    return tuple(
        select_sql(Order, in_list(qn(Order._meta.get_field(name).column)), order_by=pk, lock=True)
        for name in ("order_link_id", "order_id")
    )


def orders_refresh_fills(orders: list[Order]) -> None:
    """Fill totals from each order's executions (one grouped query), unless an order event
    already reported more; and each order's ``booked_qty`` (the executions' sum) in every case.

    Executions give exact per-fill fees; an order event's cumExecQty can run ahead
    of them when execution messages were dropped (the backfill catches up later): then only
    ``booked_qty`` moves, and it stays below ``filled_qty`` until they come.
    """
    if not orders:
        return
    totals = _fill_totals([o.pk for o in orders])
    saved: list[Order] = []
    changed: list[tuple[Order, str]] = []
    for order in sorted(orders, key=lambda o: o.pk):
        row = totals.get(order.pk) or {}
        qty = row.get("qty") or Decimal(0)
        before, stored, booked = order.status, _fill_values(order), order.booked_qty
        order.booked_qty = qty
        if qty < order.filled_qty:
            log.info("order_fills_behind_event", order_link_id=order.order_link_id, executions=qty)
        else:
            order_set_fills(
                order, qty=qty, value=row.get("value") or Decimal(0), fees=row.get("fees") or Decimal(0), avg=None
            )
            _advance_from_fills(order)
        # The order event usually came first with the same totals (a market order: order, execution,
        # position): only the booked sum moves then, and no event is due (docs/decisions/0424, 0336).
        if _fill_values(order) != stored:
            changed.append((order, before))
            saved.append(order)
        elif qty != booked and connection.vendor != "postgresql":
            saved.append(order)  # PostgreSQL: the totals' statement stored it (``_fill_totals_sql``)
    _orders_save_fills(saved)
    for order, before in changed:
        _order_event(order, before)


def _fill_values(order: Order) -> tuple:
    """What an order event reports of the fills (``booked_qty`` and the time of the change aside)."""
    return tuple(getattr(order, name) for name in _FILL_FIELDS if name not in ("updated_at", "booked_qty"))


def _fill_totals(order_pks: list[int]) -> dict[int, dict]:
    """Per order: the sums of its executions' qty, value and fees (one prebuilt statement)."""
    sql, convert = _fill_totals_sql(connection.vendor)
    with fixed_cursor() as cursor:
        cursor.execute(sql, [list_param(order_pks)])
        rows = cursor.fetchall()
    return {pk: {"qty": convert(qty), "value": convert(value), "fees": convert(fees)} for pk, qty, value, fees in rows}


@functools.cache
def _fill_totals_sql(vendor: str) -> tuple[str, object]:
    """The totals' statement. On PostgreSQL it also stores each order's ``booked_qty`` where it moved, in a
    data-modifying CTE (the orders are locked by the caller): keeping the booked sum costs no statement of
    its own when the order event came first and nothing else of the order changes (docs/decisions/0336)."""
    meta = Execution._meta
    order, qty, value, fee = (qn(meta.get_field(n).column) for n in ("order", "exec_qty", "exec_value", "exec_fee"))
    sums = ", ".join(f"CAST(SUM({c}) AS NUMERIC)" if vendor == "sqlite" else f"SUM({c})" for c in (qty, value, fee))
    sql = (f"SELECT {order}, {sums} FROM {qn(meta.db_table)} WHERE {in_list(order, 'bigint')} "
           f"GROUP BY {order}")  # fmt: skip
    if vendor == "postgresql":
        booked, pk = qn(Order._meta.get_field("booked_qty").column), qn(Order._meta.pk.column)
        sql = (f"WITH t (o, q, v, f) AS ({sql}), b AS (UPDATE {qn(Order._meta.db_table)} AS r SET {booked} = t.q "
               f"FROM t WHERE r.{pk} = t.o AND r.{booked} <> t.q) SELECT o, q, v, f FROM t")  # fmt: skip
    # The three columns share one scale (money_field): one converter, as the ORM's Sum would apply.
    return sql, column_converter(Execution, "exec_qty")


_FILL_FIELDS = ["qty", "filled_qty", "booked_qty", "cum_exec_value", "fees", "avg_fill_price", "status", "updated_at"]


def _orders_save_fills(orders: list[Order]) -> None:
    """Save the fill fields of ``orders`` (locked by the caller): one UPDATE for all of them on PostgreSQL,
    however many a group of messages touched (docs/decisions/0419); one per order elsewhere."""
    orders_save(orders, tuple(_FILL_FIELDS))


def orders_save(orders: list[Order], names: tuple[str, ...]) -> None:
    """Save the fields ``names`` (``updated_at`` among them) of ``orders``, locked by the caller: one
    ``UPDATE … FROM unnest(…)`` for all of them on PostgreSQL, one UPDATE per order elsewhere."""
    if not orders:
        return
    now = timezone.now()
    for order in orders:
        order.updated_at = now
    if connection.vendor != "postgresql":
        for order in orders:
            instance_update(order, names)
        return
    fields = [Order._meta.pk] + [Order._meta.get_field(name) for name in names]
    with fixed_cursor() as cursor:
        cursor.execute(_orders_update_sql(names), pg_array_literals(fields, orders))


@functools.cache
def _orders_update_sql(names: tuple[str, ...]) -> str:
    # One array per column, unnested server side: the statement text is the same for any number of orders.
    qn = connection.ops.quote_name
    fields = [Order._meta.pk] + [Order._meta.get_field(name) for name in names]
    arrays = ", ".join(f"%s::{f.db_type(connection).replace('serial', 'int')}[]" for f in fields)
    columns = ", ".join(qn(f.column) for f in fields)
    sets = ", ".join(f"{qn(f.column)} = v.{qn(f.column)}" for f in fields[1:])
    pk = qn(Order._meta.pk.column)
    return (
        f"UPDATE {qn(Order._meta.db_table)} AS o SET {sets} FROM unnest({arrays}) AS v({columns}) WHERE o.{pk} = v.{pk}"
    )


def order_set_fills(order: Order, *, qty: Decimal, value: Decimal, fees: Decimal, avg: Decimal | None) -> None:
    """Set the fill totals (not saved); the average from value/qty when the exchange gave none."""
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


_MERGE_FIELDS = (
    "order_id", "qty", "filled_qty", "cum_exec_value", "fees", "avg_fill_price", "status", "reject_reason",
    "cancel_reason", "cancel_note", "exchange_updated_ms", "updated_at",
)  # fmt: skip


def order_merge(order: Order, info: OrderInfo, *, save: bool = True) -> bool:
    """Apply an order event to the (locked) row and save it; True if anything changed. ``save=False``: the
    caller saves the changed rows together before its transaction ends (``orders_save_merged``)."""
    before = (order.status, order.filled_qty, order.order_id, order.exchange_updated_ms)
    status_before = order.status
    if not order.order_id and info.order_id:
        order.order_id = info.order_id
    if info.cum_exec_qty > order.filled_qty:
        order_set_fills(
            order, qty=info.cum_exec_qty, value=info.cum_exec_value, fees=info.cum_exec_fee, avg=info.avg_price
        )
    status = status_of(info)
    if status is not None and _advance(order, status):
        order_note_final(order, info)
    _advance_from_fills(order)
    # updatedTime is recorded, not used to overrule: status rank and monotonic
    # cumExecQty already make a stale event harmless.
    order.exchange_updated_ms = max(order.exchange_updated_ms, info.updated_ms)
    if (order.status, order.filled_qty, order.order_id, order.exchange_updated_ms) == before:
        return False
    if save:
        instance_update(order, _MERGE_FIELDS)  # the fields an event can change, in a prebuilt UPDATE (0424)
    _order_event(order, status_before)
    return True


def orders_save_merged(orders: list[Order]) -> None:
    """Save what ``order_merge(save=False)`` changed on ``orders`` (locked by the caller), in one statement on
    PostgreSQL."""
    orders_save(orders, _MERGE_FIELDS)


def status_of(info: OrderInfo) -> str | None:
    """Our status for the event's (``orders.exchange_status``); an unknown one is logged and ignored."""
    status = order_status_of(info)
    if status is None:
        log.warning("order_status_unknown", order_status=info.order_status, order_id=info.order_id)
    return status


def order_note_final(order: Order, info: OrderInfo) -> None:
    """Why a rejected or cancelled order ended, unless it already says."""
    if order.status == OrderStatus.REJECTED:
        order.reject_reason = order.reject_reason or info.reject_reason
    elif order.status == OrderStatus.CANCELLED and not order.cancel_reason:
        order.cancel_reason = CancelReason.EXCHANGE
        order.cancel_note = order.cancel_note or f"{info.cancel_type or 'cancelled'} {info.reject_reason}".strip()


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
