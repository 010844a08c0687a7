"""Cancel orders on the exchange, with a reason kept on the order.

``order_cancel`` marks the row ``pending_cancel`` (with reason, note and user)
in a short transaction, sends the cancel outside it, and leaves the final
``cancelled`` to the private stream (or reconciliation): Bybit's cancel answer
only means "accepted". If the exchange refuses, the row goes back to the
status it had, unless the stream moved it on meanwhile.

``orders_cancel_for_signal`` applies the pre-order rules (design notes §8):
by default a new signal cancels the symbol's open orders
(``CANCEL_OPPOSITE_ORDERS_ONLY``: only the opposite side); a market signal
cancels the symbol's open limit orders whatever their side; partially filled
orders are kept unless ``CANCEL_PARTIALLY_FILLED_ORDERS``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import structlog
from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from exchange.bybit import client as bybit_client
from exchange.bybit.errors import BybitError, BybitOrderClosedError, BybitOrderNotFoundError
from ordermanager import events
from orders.models import CancelReason, Order, OrderStatus, OrderType, TimeInForce
from orders.services.fills import order_update_apply
from orders.services.order_executor import order_payload

log = structlog.get_logger(__name__)

CANCELLABLE = (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED)


class CancelResult(StrEnum):
    """What became of one cancel request. Each door (API, admin, signal processor) maps it once."""

    CANCELLED = "cancelled"  # the exchange accepted the cancel; the stream brings the final state
    ALREADY_CLOSED = "already_closed"  # the exchange says the order is filled or cancelled already
    NOT_CANCELLABLE = "not_cancellable"  # our row is not open: nothing was sent
    ERROR = "error"  # the exchange refused or did not answer; the row is back to its open status
    DRY_RUN = "dry_run"  # nothing sent


@dataclass(frozen=True)
class CancelOutcome:
    order_link_id: str
    result: CancelResult
    message: str


def order_cancel(*, order: Order, reason: str, note: str = "", user=None) -> CancelOutcome:
    """Request the cancellation of one open order. See the module docstring for the states."""
    if reason not in CancelReason.values:
        raise ValueError(f"unknown cancel reason {reason!r}")
    previous = _mark_pending_cancel(order, reason=reason, note=note, user=user)
    if previous is None:
        order.refresh_from_db()
        why = f"order is {order.get_status_display()}"
        return CancelOutcome(order.order_link_id, CancelResult.NOT_CANCELLABLE, why)
    if settings.ENABLE_DRY_RUN:
        _restore(order, previous)
        log.info(f"[DRY-RUN] would cancel {order.order_link_id}", reason=reason)
        return CancelOutcome(order.order_link_id, CancelResult.DRY_RUN, "dry-run: nothing sent")

    try:
        bybit_client.get_client().cancel_order(
            category=order.category, symbol=order.symbol, order_link_id=order.order_link_id, trace_id=order.trace_id
        )
    except (BybitOrderNotFoundError, BybitOrderClosedError) as exc:
        _settle_closed(order)
        return CancelOutcome(order.order_link_id, CancelResult.ALREADY_CLOSED, exc.ret_msg or str(exc))
    except BybitError as exc:
        _restore(order, previous)
        events.publish_event_on_commit(
            routing_key=events.ORDER_CANCEL_FAILED, payload={**order_payload(order), "error": str(exc)}
        )
        log.warning("cancel_failed", order_link_id=order.order_link_id, error=str(exc))
        return CancelOutcome(order.order_link_id, CancelResult.ERROR, str(exc))
    order.refresh_from_db()
    events.publish_event_on_commit(
        routing_key=events.ORDER_CANCEL_REQUESTED, payload={**order_payload(order), "cancel_reason": reason}
    )
    log.info("cancel_requested", order_link_id=order.order_link_id, reason=reason)
    return CancelOutcome(order.order_link_id, CancelResult.CANCELLED, "cancel accepted by the exchange")


def _mark_pending_cancel(order: Order, *, reason: str, note: str, user) -> str | None:
    """Conditional UPDATE from an open status; returns the status it replaced, or None."""
    for status in CANCELLABLE:
        changed = Order.objects.filter(pk=order.pk, status=status).update(
            status=OrderStatus.PENDING_CANCEL,
            cancel_reason=reason,
            cancel_note=note[:500],
            cancelled_by=user,
            updated_at=timezone.now(),
        )
        if changed:
            return status
    return None


def _restore(order: Order, previous: str) -> None:
    # Only our own pending_cancel goes back; a stream update (filled, cancelled) wins.
    Order.objects.filter(pk=order.pk, status=OrderStatus.PENDING_CANCEL).update(
        status=previous, updated_at=timezone.now()
    )
    order.refresh_from_db()


def _settle_closed(order: Order) -> None:
    """The exchange says the order is gone: take its final state from the exchange if the fills app can apply it."""
    try:
        client = bybit_client.get_client()
        info = client.get_order(category=order.category, symbol=order.symbol, order_link_id=order.order_link_id)
        if info is not None:
            order_update_apply(info=info, source="rest")
    except Exception as exc:  # best effort: reconciliation settles what this cannot
        log.warning("cancel_settle_failed", order_link_id=order.order_link_id, error=str(exc))
    order.refresh_from_db()


def cancel_candidates(*, symbol: str, category: str = "linear") -> QuerySet[Order]:
    """Our open orders of ``symbol`` that a new signal may cancel (before the side/type rules)."""
    statuses = list(CANCELLABLE) if settings.CANCEL_PARTIALLY_FILLED_ORDERS else [OrderStatus.NEW]
    # IOC/FOK orders never rest on the book: one still `new` here only awaits its fill event.
    # Orders placed outside the order manager (recorded by reconciliation) are never ours to cancel.
    return (
        Order.objects.filter(category=category, symbol=symbol, status__in=statuses, is_external=False)
        .exclude(time_in_force__in=[TimeInForce.IOC, TimeInForce.FOK])
    )


def orders_to_cancel_for_signal(*, symbol: str, side: str, order_type: str, category: str = "linear") -> list[Order]:
    """The open orders a new signal on ``symbol`` replaces, with the rules of the module docstring."""
    chosen = []
    for order in cancel_candidates(symbol=symbol, category=category).order_by("id"):
        opposite = order.side != side
        if order_type == OrderType.MARKET and order.order_type == OrderType.LIMIT:
            chosen.append(order)
        elif opposite or not settings.CANCEL_OPPOSITE_ORDERS_ONLY:
            chosen.append(order)
    return chosen


def orders_cancel_for_signal(
    *, symbol: str, side: str, order_type: str, category: str = "linear", note: str = ""
) -> list[CancelOutcome]:
    """Cancel what a new ``side``/``order_type`` signal on ``symbol`` replaces (reason new_signal/opposite_signal)."""
    outcomes = []
    for order in orders_to_cancel_for_signal(symbol=symbol, side=side, order_type=order_type, category=category):
        reason = CancelReason.OPPOSITE_SIGNAL if order.side != side else CancelReason.NEW_SIGNAL
        outcomes.append(order_cancel(order=order, reason=reason, note=note))
    return outcomes

