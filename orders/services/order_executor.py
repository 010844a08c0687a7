"""Place orders on the exchange, never twice.

Protocol (design property 2): the ``Order`` row is committed as
``pending_submit`` with its deterministic orderLinkId *before* the request;
the request runs outside any transaction; the answer moves the row forward
with a conditional UPDATE (a fill event from the private stream may already
have moved it further, and must win). After a crash the same orderLinkId is
sent again and the exchange's duplicate check (110072, resolved by the
client) or a lookup by orderLinkId turns it into the existing order.

Outcomes:
- acknowledged → ``new`` with the exchange orderId; event ``order.created``;
- refused by the exchange → ``rejected`` with retCode/retMsg; ``order.rejected``;
- never sent / given up on a definite error → ``failed``; ``order.failed``;
- unknown after the client's retries and lookup → stays ``pending_submit``;
  ``order.unknown``; reconciliation settles it (INTERFACES §5);
- dry-run → ``dry_run``, nothing sent, ``[DRY-RUN]`` log; ``order.dry_run``.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable

import structlog
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from exchange.bybit import client as bybit_client
from exchange.bybit.errors import BybitError
from ordermanager import events
from ordermanager.core.formatting import number_text
from ordermanager.core.prebuilt_sql import instances_of, qn
from ordermanager.core.sql_once import fixed_cursor
from orders.models import Order, OrderStatus
from orders.services.position_mode import is_mode_mismatch, position_mode_forget

log = structlog.get_logger(__name__)


def order_link_id_for(*, signal_id: uuid.UUID, leg: int) -> str:
    """Deterministic orderLinkId: 32 hex digits of the signal id, '-', the leg (<= 36 chars)."""
    if not 0 <= leg <= 999:
        raise ValueError(f"leg {leg} out of range 0..999")
    return f"{uuid.UUID(str(signal_id)).hex}-{leg}"


def signal_id_of_link(order_link_id: str) -> uuid.UUID | None:
    """The signal id an orderLinkId of ``order_link_id_for`` was made from (None for any other link id)."""
    head, _, leg = order_link_id.partition("-")
    try:
        return uuid.UUID(hex=head) if leg.isdigit() else None
    except ValueError:
        return None


def order_payload(order: Order) -> dict:
    """The event/log view of an order (strings for money)."""
    return {
        "order_link_id": order.order_link_id,
        "order_id": order.order_id,
        "symbol": order.symbol,
        "side": order.side,
        "order_type": order.order_type,
        "time_in_force": order.time_in_force,
        "qty": str(order.qty),
        "price": None if order.price is None else str(order.price),
        "reduce_only": order.reduce_only,
        "status": order.status,
        "leg": order.leg,
        "strategy_id": order.strategy_id,
        "trace_id": order.trace_id,
        "reject_code": order.reject_code,
        "reject_reason": order.reject_reason,
    }


# Runs inside the transaction that records an order's outcome: what must commit with it (the signal's end,
# through ``signal_orders``; docs/decisions/0323).
OutcomeCommit = Callable[[Order], None] | None


def order_submit(*, order: Order, fresh: bool = False, in_outcome_commit: OutcomeCommit = None) -> Order:
    """Send one ``pending_submit`` order and record the outcome. Idempotent: any other status is left alone.

    ``fresh=True`` skips re-reading the row (the caller has just committed it). ``in_outcome_commit(order)``
    runs inside the transaction that records the outcome (or a transaction of its own when there is nothing
    to record), so a caller's own bookkeeping commits with it: ``signal_orders`` settles the signal there.
    The client is reached through its module, so tests may patch ``exchange.bybit.client.get_client``.
    """
    if not fresh:
        order.refresh_from_db()
    if order.status != OrderStatus.PENDING_SUBMIT:
        return _then(order, in_outcome_commit)
    if settings.ENABLE_DRY_RUN:
        return _record_dry_run(order, in_outcome_commit)
    try:
        ack = bybit_client.get_client().create_order(
            category=order.category,
            symbol=order.symbol,
            side=order.side,
            order_type=order.order_type,
            qty=order.qty,
            price=order.price,
            time_in_force=order.time_in_force,
            reduce_only=order.reduce_only,
            position_idx=order.position_idx,
            order_link_id=order.order_link_id,
            trace_id=order.trace_id,
        )
    except BybitError as exc:
        return _record_error(order, exc, in_outcome_commit)
    if ack.dry_run:
        return _record_dry_run(order, in_outcome_commit)
    return _record_ack(order, ack.order_id, resolved_existing=ack.resolved_existing,
                       in_outcome_commit=in_outcome_commit)


def _then(order: Order, in_outcome_commit: OutcomeCommit) -> Order:
    if in_outcome_commit is not None:
        with transaction.atomic():
            in_outcome_commit(order)
    return order


def _record_ack(order: Order, order_id: str, *, resolved_existing: bool,
                in_outcome_commit: OutcomeCommit = None) -> Order:
    with transaction.atomic(), events.events_grouped():
        _ack_recorded(order, order_id, timezone.now())
        events.publish_event_on_commit(
            routing_key=events.ORDER_CREATED, payload={**order_payload(order), "resolved_existing": resolved_existing}
        )
        if in_outcome_commit is not None:
            in_outcome_commit(order)
    log.info("order_acknowledged", order_link_id=order.order_link_id, order_id=order_id,
             resolved_existing=resolved_existing)
    return order


def _ack_recorded(order: Order, order_id: str, now) -> None:
    """Record the exchange's acknowledgement in one statement and take the stored row into ``order``.

    Race: the private stream (or reconciliation) may have moved the row first (a market order's fills can
    be booked before the create's answer is read). Only a still-pending row moves to New; the orderId is
    recorded either way, and whatever the stream stored is what ``order`` holds afterwards. One UPDATE with
    ``RETURNING`` (its text built once per process): before, the race took two more UPDATEs and a re-read,
    each compiled by the ORM on the call (docs/decisions/0335)."""
    sql, stamp = _ack_sql(connection.vendor)
    when = stamp.get_db_prep_save(now, connection)
    pending = OrderStatus.PENDING_SUBMIT
    with fixed_cursor() as cursor:
        cursor.execute(sql, [order_id, pending, when, pending, when, pending, OrderStatus.NEW, order.pk])
        rows = cursor.fetchall()
    if not rows:
        raise Order.DoesNotExist(f"order {order.pk} vanished before its acknowledgement was recorded")
    stored = instances_of(Order, rows)[0]
    for field in Order._meta.concrete_fields:
        setattr(order, field.attname, getattr(stored, field.attname))


@functools.cache
def _ack_sql(vendor: str):
    """The acknowledgement's UPDATE (every SET reads the row as it was) and the field that prepares its time."""
    columns = ", ".join(qn(f.column) for f in Order._meta.concrete_fields)
    pending_then = f"CASE WHEN {qn('status')} = %s THEN %s ELSE"
    sql = (f"UPDATE {qn(Order._meta.db_table)} SET "
           f"{qn('order_id')} = CASE WHEN {qn('order_id')} = '' THEN %s ELSE {qn('order_id')} END, "
           f"{qn('submitted_at')} = {pending_then} {qn('submitted_at')} END, "
           f"{qn('updated_at')} = {pending_then} {qn('updated_at')} END, "
           f"{qn('status')} = {pending_then} {qn('status')} END "
           f"WHERE {qn(Order._meta.pk.column)} = %s RETURNING {columns}")
    return sql, Order._meta.get_field("submitted_at")


def _update_pending(order: Order, values: dict) -> None:
    """Conditional UPDATE from pending_submit; the in-memory row follows without a re-read when it applied."""
    if Order.objects.filter(pk=order.pk, status=OrderStatus.PENDING_SUBMIT).update(**values):
        for field, value in values.items():
            setattr(order, field, value)
    else:  # the stream (or reconciliation) moved it first: take what is stored
        order.refresh_from_db()


def _record_dry_run(order: Order, in_outcome_commit: OutcomeCommit = None) -> Order:
    log.info(
        f"[DRY-RUN] would place {order.side} {order.order_type} {number_text(order.qty)} {order.symbol}"
        f"{'' if order.price is None else f' @ {number_text(order.price)}'} ({order.time_in_force})",
        order_link_id=order.order_link_id,
    )
    values = {"status": OrderStatus.DRY_RUN, "is_dry_run": True, "order_id": f"dry-run-{order.order_link_id}",
              "submitted_at": timezone.now()}
    with transaction.atomic(), events.events_grouped():
        _update_pending(order, values)
        events.publish_event_on_commit(routing_key=events.ORDER_DRY_RUN, payload=order_payload(order))
        if in_outcome_commit is not None:
            in_outcome_commit(order)
    return order


def _record_error(order: Order, exc, in_outcome_commit: OutcomeCommit = None) -> Order:
    if exc.ambiguous:
        # Outcome unknown even after the client's lookup by orderLinkId: leave the
        # row pending so that nothing claims it was not placed.
        log.error("order_outcome_unknown", order_link_id=order.order_link_id, error=str(exc))
        events.publish_event_on_commit(
            routing_key=events.ORDER_UNKNOWN, payload={**order_payload(order), "error": str(exc)}
        )
        return _then(order, in_outcome_commit)
    # Only an answer that judged the order (a retCode of a refusing class) makes it `rejected`;
    # throttling, credentials, clock or an HTTP-level failure leave it `failed` (errors.py, `refused`).
    refused = exc.refused and exc.ret_code is not None
    if is_mode_mismatch(ret_code=exc.ret_code, ret_msg=exc.ret_msg):
        # The symbol's position mode changed since we cached it: the next signal reads it again.
        position_mode_forget(category=order.category, symbol=order.symbol)
    status = OrderStatus.REJECTED if refused else OrderStatus.FAILED
    reason = (exc.ret_msg or str(exc))[:500] if refused else str(exc)[:500]
    with transaction.atomic(), events.events_grouped():
        _update_pending(order, {"status": status, "reject_code": exc.ret_code, "reject_reason": reason,
                                "updated_at": timezone.now()})
        key = events.ORDER_REJECTED if refused else events.ORDER_FAILED
        events.publish_event_on_commit(routing_key=key, payload=order_payload(order))
        if in_outcome_commit is not None:
            in_outcome_commit(order)
    log.warning("order_not_placed", order_link_id=order.order_link_id, status=status,
                ret_code=exc.ret_code, ret_msg=exc.ret_msg, error=str(exc))
    return order


def order_resume(*, order: Order) -> Order:
    """Settle a ``pending_submit`` order left by a crash: look it up by orderLinkId first.

    Found → recorded as acknowledged (later states arrive from the stream or
    reconciliation). Not found and younger than ``PENDING_SUBMIT_RETRY_WINDOW``
    → sent (again) with the same orderLinkId. Not found and older → ``failed``:
    a late order for an old signal is worse than none.
    """
    order.refresh_from_db()
    if order.status != OrderStatus.PENDING_SUBMIT or settings.ENABLE_DRY_RUN:
        return order_submit(order=order)
    info = bybit_client.get_client().get_order(category=order.category, symbol=order.symbol,
                                               order_link_id=order.order_link_id)
    if info is not None:
        log.info("order_found_on_resume", order_link_id=order.order_link_id, status=info.order_status)
        return _record_ack(order, info.order_id, resolved_existing=True)
    age = (timezone.now() - order.created_at).total_seconds()
    if age > settings.PENDING_SUBMIT_RETRY_WINDOW:
        with transaction.atomic():
            Order.objects.filter(pk=order.pk, status=OrderStatus.PENDING_SUBMIT).update(
                status=OrderStatus.FAILED,
                reject_reason=f"not on the exchange and {age:.0f}s old, beyond PENDING_SUBMIT_RETRY_WINDOW "
                f"{settings.PENDING_SUBMIT_RETRY_WINDOW}s: not sent late",
                updated_at=timezone.now(),
            )
            order.refresh_from_db()
            events.publish_event_on_commit(routing_key=events.ORDER_FAILED, payload=order_payload(order))
        return order
    return order_submit(order=order)
