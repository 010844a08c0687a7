"""Holds: a symbol kept by a signal whose create outcome is unknown (docs/decisions/0315).

A create whose outcome stays unknown after the client's retries and its own
lookup leaves the order ``pending_submit`` and its signal ``processing``; an
``OrderHold`` row says so. The signal processor stops the symbol there (its
later signals wait) and looks the order up by orderLinkId with backoff on
each round until the outcome is known, or gives it up after
``ORDER_HOLD_MAX_SECONDS``: the order is recorded ``failed``, the signal
finished, the symbol released. Reconciliation never sends an order whose
signal is finished or has successors, and adopts a given-up order the
exchange turns out to have (the signal then becomes ``executed`` with a note).

orders does not read or write signals (the layers are signals_app → orders →
positions → exchange): what a hold needs of its signal (may a pending order still
be sent? the signal of an adopted order becomes ``executed``) is asked of the
``HeldSignals`` that signals_app registers at app ready (``held_signals_register``,
docs/decisions/0323).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import structlog
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ordermanager import events
from orders.models import Order, OrderHold, OrderStatus
from orders.services.order_executor import order_payload, signal_id_of_link

log = structlog.get_logger(__name__)

BACKOFF_CAP_SECONDS = 30.0


class HeldSignals(Protocol):
    """What the signal side answers and does for holds; signals_app registers one at app ready."""

    def send_blocker(self, order: Order) -> str:
        """Why reconciliation must never send this ``pending_submit`` order of a signal ("" when it may):
        its signal is finished, or a later signal of the symbol was processed after it."""

    def signal_adopted(self, *, signal_pk: int, note: str) -> bool:
        """The given-up order of inbox signal ``signal_pk`` turned out placed: a ``failed`` signal becomes
        ``executed`` with ``note`` appended (joins the caller's transaction). True when it changed."""


_held_signals: HeldSignals | None = None


def held_signals_register(held_signals: HeldSignals) -> None:
    """signals_app's answer to ``HeldSignals`` (``SignalsAppConfig.ready``); the last one registered wins."""
    global _held_signals
    _held_signals = held_signals


def _signals() -> HeldSignals:
    if _held_signals is None:
        raise RuntimeError("no HeldSignals registered: signals_app registers one when the app is ready")
    return _held_signals


def _backoff(attempts: int) -> timedelta:
    base = float(settings.ORDER_HOLD_LOOKUP_BACKOFF_SECONDS)
    return timedelta(seconds=min(BACKOFF_CAP_SECONDS, base * 2 ** max(0, attempts - 1)))


# --- the live hold (signal processor) -------------------------------------------------------------------------


def holds_open(*, signal_pk: int, orders: list[Order], error: str = "") -> None:
    """Hold the symbol for each still-pending order of inbox signal ``signal_pk`` (idempotent; joins the
    caller's transaction)."""
    now = timezone.now()
    for order in orders:
        hold, created = OrderHold.objects.get_or_create(
            order=order,
            defaults={"signal_id": signal_pk, "category": order.category, "symbol": order.symbol, "since": now,
                      "attempts": 1, "next_check_at": now + _backoff(1), "last_error": error[:500]},
        )  # fmt: skip
        if created:
            log.warning("symbol_held", symbol=order.symbol, order_link_id=order.order_link_id, error=error)


def hold_waiting(orders: list[Order], *, now: datetime | None = None) -> bool:
    """True when a hold of these orders is not due for its next lookup yet."""
    now = now or timezone.now()
    return OrderHold.objects.filter(order__in=orders, state=OrderHold.State.HELD, next_check_at__gt=now).exists()


def hold_note_unknown(*, signal_pk: int, order: Order, error: str) -> OrderHold:
    """One more lookup that could not tell: back off (doubling), keep the reason."""
    now = timezone.now()
    holds_open(signal_pk=signal_pk, orders=[order], error=error)
    hold = OrderHold.objects.get(order=order)
    if hold.state == OrderHold.State.HELD:
        hold.attempts += 1
        hold.next_check_at = now + _backoff(hold.attempts)
        hold.last_error = error[:500]
        hold.save(update_fields=["attempts", "next_check_at", "last_error", "updated_at"])
    log.warning("held_order_still_unknown", symbol=order.symbol, order_link_id=order.order_link_id,
                attempts=hold.attempts, held_seconds=round((now - hold.since).total_seconds(), 1), error=error)
    return hold


def hold_expired(hold: OrderHold, *, now: datetime | None = None) -> bool:
    now = now or timezone.now()
    return (now - hold.since).total_seconds() > float(settings.ORDER_HOLD_MAX_SECONDS)


def hold_give_up(hold: OrderHold) -> Order:
    """Past ``ORDER_HOLD_MAX_SECONDS``: record the order ``failed`` (conditional on still pending) and release
    the symbol. Reconciliation keeps looking for it and adopts it if the exchange has it."""
    held = (timezone.now() - hold.since).total_seconds()
    reason = (f"create outcome unknown after {held:.0f}s of lookups by orderLinkId (ORDER_HOLD_MAX_SECONDS="
              f"{settings.ORDER_HOLD_MAX_SECONDS:g}): given up; adopted if the exchange shows it later")
    order = hold.order
    with transaction.atomic():
        changed = Order.objects.filter(pk=order.pk, status=OrderStatus.PENDING_SUBMIT).update(
            status=OrderStatus.FAILED, reject_reason=reason[:500], updated_at=timezone.now())
        OrderHold.objects.filter(pk=hold.pk, state=OrderHold.State.HELD).update(state=OrderHold.State.GIVEN_UP)
        order.refresh_from_db()
        if changed:
            events.publish_event_on_commit(routing_key=events.ORDER_FAILED, payload=order_payload(order))
    log.error("held_order_given_up", symbol=order.symbol, order_link_id=order.order_link_id,
              held_seconds=round(held, 1), attempts=hold.attempts, last_error=hold.last_error)
    return order


def holds_release(orders: list[Order]) -> None:
    """The outcome is known: the live holds of these orders end (a given-up one stays for reconciliation)."""
    released = OrderHold.objects.filter(order__in=orders, state=OrderHold.State.HELD).delete()[0]
    if released:
        log.info("symbol_released", orders=[o.order_link_id for o in orders])


# --- what health and the dashboard show --------------------------------------------------------------------------


@dataclass(frozen=True)
class HeldSymbol:
    symbol: str
    order_link_id: str
    order_pk: int
    since: datetime
    attempts: int
    last_error: str


def held_symbols(*, limit: int = 20) -> list[HeldSymbol]:
    """Symbols waiting on an unknown create, the longest-held first (a handful at most: one query)."""
    rows = (OrderHold.objects.filter(state=OrderHold.State.HELD).order_by("since")
            .values_list("symbol", "order__order_link_id", "order_id", "since", "attempts", "last_error")[:limit])
    return [HeldSymbol(*row) for row in rows]


def held_symbols_text(holds: list[HeldSymbol], *, now: datetime | None = None) -> str:
    now = now or timezone.now()
    return "; ".join(
        f"{h.symbol} held {(now - h.since).total_seconds():.0f}s by {h.order_link_id} (since {h.since:%H:%M:%S} UTC, "
        f"{h.attempts} lookups{': ' + h.last_error[:80] if h.last_error else ''})" for h in holds
    )


# --- reconciliation ------------------------------------------------------------------------------------------------


def pending_send_blocker(order: Order) -> tuple[str, str]:
    """May reconciliation send this ``pending_submit`` order? ``("", "")`` yes; ``("held", why)`` leave it to
    the signal processor's hold; ``("fail", why)`` never: its signal is finished or has successors
    (``HeldSignals.send_blocker``)."""
    if OrderHold.objects.filter(order=order, state=OrderHold.State.HELD).exists():
        return "held", "held by the signal processor until its outcome is known"
    why = _signals().send_blocker(order)
    return ("fail", why) if why else ("", "")


def given_up_holds(*, category: str, symbol: str | None) -> list[OrderHold]:
    qs = OrderHold.objects.filter(state=OrderHold.State.GIVEN_UP, category=category).select_related("order")
    if symbol:
        qs = qs.filter(symbol=symbol)
    return list(qs.order_by("id")[:200])


def hold_not_placed(hold: OrderHold) -> None:
    """The exchange, asked long after the give-up, does not have it: it was never placed."""
    OrderHold.objects.filter(pk=hold.pk, state=OrderHold.State.GIVEN_UP).update(state=OrderHold.State.NOT_PLACED)
    log.info("given_up_order_not_placed", order_link_id=hold.order.order_link_id)


def hold_adopted(order: Order) -> bool:
    """After reconciliation adopted a given-up order: its signal follows what really happened
    (``failed`` → ``executed`` with a note, ``HeldSignals.signal_adopted``). True when the signal changed."""
    hold = OrderHold.objects.filter(order=order, state=OrderHold.State.GIVEN_UP).first()
    if hold is None:
        return False
    order.refresh_from_db()
    if order.status in (OrderStatus.PENDING_SUBMIT, OrderStatus.FAILED, OrderStatus.REJECTED):
        return False
    note = (f"; adopted by reconciliation: the exchange had {order.order_link_id} given up as unknown "
            f"({order.status}, filled {order.filled_qty})")
    with transaction.atomic():
        OrderHold.objects.filter(pk=hold.pk).update(state=OrderHold.State.ADOPTED)
        changed = _signals().signal_adopted(signal_pk=hold.signal_id, note=note)
    log.warning("given_up_order_adopted", order_link_id=order.order_link_id, status=order.status,
                signal_id=str(signal_id_of_link(order.order_link_id)), signal_changed=bool(changed))
    return bool(changed)
