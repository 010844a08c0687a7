"""Orders: what the database holds as active against what the exchange says.

Two passes. ``orders_plan`` reads (database and exchange lookups) and decides
one ``Plan`` per difference without writing; ``plan_apply`` writes each plan
in its own short transaction (no exchange call inside one). Between the two
the run backfills executions, so that order updates land after their fills,
as they would live.

Races with the live stream (reconciliation may run while it does):
- a row that changed after the run took its exchange snapshot (``updated_at >=
  t0``) is not judged against that snapshot; the next run looks at it again;
- the writes the forward-only rule cannot make (undoing a cancel that never
  happened, reviving a row we had written off, an amend) are conditional
  UPDATEs on the status we judged and on ``exchange_updated_ms`` not having
  moved past the exchange state we apply (a newer live event wins).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import structlog
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from exchange.bybit.errors import BybitError
from exchange.bybit.types import OrderInfo
from ordermanager import events
from orders.models import ACTIVE_STATUSES, CancelReason, Order, OrderStatus, OrderType
from orders.reconcile.exchange import OpenOrders, is_open, status_of
from orders.reconcile.report import Kind
from orders.services.fills import order_update_apply
from orders.services.order_executor import order_payload, order_submit
from orders.services.order_holds import given_up_holds, hold_adopted, hold_not_placed, pending_send_blocker

log = structlog.get_logger(__name__)

ORDER_FIELDS = ("status", "order_id", "filled_qty", "avg_fill_price", "qty", "price", "exchange_updated_ms")


def order_state(order: Order) -> dict:
    return {name: getattr(order, name) for name in ORDER_FIELDS}


def exchange_state(info: OrderInfo) -> dict:
    return {
        "status": status_of(info),
        "exchange_status": info.order_status,
        "order_id": info.order_id,
        "filled_qty": info.cum_exec_qty,
        "avg_fill_price": info.avg_price,
        "qty": info.qty,
        "price": info.price,
        "cancel_type": info.cancel_type,
        "reject_reason": info.reject_reason,
    }


@dataclass
class Plan:
    """One difference and what to do about it."""

    kind: str
    order: Order | None = None  # None for an order we do not know yet (external)
    info: OrderInfo | None = None
    fetch_fills: bool = False  # pull this order's executions before applying
    error: str = ""
    before: dict = field(default_factory=dict)

    @property
    def symbol(self) -> str:
        return self.order.symbol if self.order is not None else self.info.symbol

    @property
    def link(self) -> str:
        if self.order is not None:
            return self.order.order_link_id
        return self.info.order_link_id or self.info.order_id[:36]


# ---------------------------------------------------------------- planning


def active_orders(*, category: str, symbol: str | None):
    qs = Order.objects.filter(category=category, status__in=ACTIVE_STATUSES, is_dry_run=False)
    if symbol:
        qs = qs.filter(symbol=symbol)
    return qs.order_by("id")


def plan_for_open(order: Order, info: OrderInfo) -> Plan | None:
    """The exchange has the order open. None when the two agree."""
    fills_behind = info.cum_exec_qty > order.filled_qty
    amended = is_amended(order, info)
    if order.status == OrderStatus.PENDING_SUBMIT:
        kind = Kind.PENDING_ADOPTED
    elif order.status == OrderStatus.PENDING_CANCEL:
        kind = Kind.CANCEL_NOT_DONE
    elif fills_behind:
        kind = Kind.ORDER_FILLS_BEHIND
    elif status_of(info) != order.status:
        kind = Kind.ORDER_STATUS
    elif amended:
        kind = Kind.ORDER_AMENDED
    else:
        return None
    return Plan(kind=kind, order=order, info=info, fetch_fills=fills_behind, before=order_state(order))


def is_amended(order: Order, info: OrderInfo) -> bool:
    """qty, or a limit order's price, differ (a market order's price on Bybit is its slippage cap)."""
    if info.qty != order.qty:
        return True
    return order.order_type == OrderType.LIMIT and info.price is not None and info.price != order.price


def plan_for_closed(order: Order, info: OrderInfo) -> Plan:
    kind = {
        OrderStatus.PENDING_SUBMIT: Kind.PENDING_ADOPTED,
        OrderStatus.PENDING_CANCEL: Kind.CANCEL_SETTLED,
    }.get(order.status, Kind.ORDER_CLOSED)
    return Plan(
        kind=kind, order=order, info=info, fetch_fills=info.cum_exec_qty > order.filled_qty, before=order_state(order)
    )


def plan_for_missing(client, order: Order) -> Plan:
    """Not among the open orders: look it up (realtime, then history)."""
    try:
        info = client.get_order(
            category=order.category,
            symbol=order.symbol,
            order_link_id=order.order_link_id,
            order_id=None if order.order_link_id else order.order_id or None,
        )
    except BybitError as exc:
        return Plan(kind=Kind.LOOKUP_FAILED, order=order, error=str(exc), before=order_state(order))
    if info is None:
        if order.status == OrderStatus.PENDING_SUBMIT:
            return Plan(kind=Kind.PENDING_FAILED, order=order, before=order_state(order))  # decided in apply
        # Acknowledged once, gone from the open list and from history: closed
        # beyond Bybit's retention (cancelled orders without fills: 24 h).
        return Plan(kind=Kind.ORDER_NOT_FOUND, order=order, fetch_fills=bool(order.order_id), before=order_state(order))
    if is_open(info):
        # Opened after the listing, or the listing lagged: the lookup is newer.
        return plan_for_open(order, info) or Plan(kind="", order=order, info=info)
    return plan_for_closed(order, info)


def plans_for_unmatched(infos: list[OrderInfo], *, t0) -> list[Plan]:
    """Open on the exchange, not active in our book: ours but terminal here, or external."""
    if not infos:
        return []
    links = [i.order_link_id for i in infos if i.order_link_id]
    ids = [i.order_id for i in infos]
    known = {}
    for order in Order.objects.filter(order_link_id__in=links) | Order.objects.filter(order_id__in=ids):
        known[order.order_link_id] = order
        if order.order_id:
            known[order.order_id] = order
    plans = []
    for info in infos:
        order = known.get(info.order_link_id) if info.order_link_id else None
        order = order or known.get(info.order_id)
        if order is None:
            plans.append(Plan(kind=Kind.EXTERNAL_ORDER, info=info, fetch_fills=info.cum_exec_qty > 0))
        elif order.updated_at < t0 and not order.is_dry_run and order.status not in ACTIVE_STATUSES:
            plans.append(Plan(kind=Kind.ORDER_REOPENED, order=order, info=info,
                              fetch_fills=info.cum_exec_qty > order.filled_qty, before=order_state(order)))  # fmt: skip
    return plans


_ROW = ("pk", "order_link_id", "order_id", "status", "filled_qty", "qty", "price", "order_type", "updated_at")


def _agrees(row: dict, info: OrderInfo) -> bool:
    """The cheap test of the common case (the exchange and we agree), on plain values:
    no model instance is built for the thousands of orders that need nothing."""
    if row["status"] in (OrderStatus.PENDING_SUBMIT, OrderStatus.PENDING_CANCEL):
        return False
    if info.cum_exec_qty != row["filled_qty"] or status_of(info) != row["status"] or info.qty != row["qty"]:
        return False
    return row["order_type"] != OrderType.LIMIT or info.price is None or info.price == row["price"]


def orders_plan(ctx, open_orders: OpenOrders) -> list[Plan]:
    """Compare every active order with the exchange; returns the differences."""
    rows = list(active_orders(category=ctx.category, symbol=ctx.symbol).values(*_ROW))
    matched: set[str] = set()
    suspects: dict[int, OrderInfo | None] = {}
    for row in rows:
        info = open_orders.match(order_link_id=row["order_link_id"], order_id=row["order_id"])
        if info is not None:
            matched.add(info.order_id)
        if row["updated_at"] >= ctx.t0:
            continue  # changed by a live event after our snapshot; judged by the next run
        if info is None or not _agrees(row, info):
            suspects[row["pk"]] = info
    ctx.rec.add("checked", len(rows))
    ctx.rec.step("orders", len(rows) - len(suspects), len(rows))
    plans: list[Plan] = []
    orders = Order.objects.in_bulk(list(suspects))
    for n, (pk, info) in enumerate(suspects.items(), 1):
        order = orders[pk]
        if info is None and order.status == OrderStatus.PENDING_SUBMIT and pending_in_flight(order, now=ctx.t0):
            continue  # another process may still be sending it
        # One lookup per order: /v5/order/realtime by orderLinkId finds the 500 most recently
        # closed; reading the symbol's history in bulk would page through its open orders too.
        plan = plan_for_open(order, info) if info is not None else plan_for_missing(ctx.client, order)
        if plan is not None and plan.kind:
            if plan.info is not None:
                ctx.exchange_orders[plan.info.order_id] = plan.info
            plans.append(plan)
        ctx.rec.step("orders", len(rows) - len(suspects) + n, len(rows))
    unmatched = [i for i in open_orders.items if i.order_id not in matched]
    ctx.rec.add("checked", len(unmatched))
    for plan in plans_for_unmatched(unmatched, t0=ctx.t0):
        ctx.exchange_orders[plan.info.order_id] = plan.info
        plans.append(plan)
    plans.extend(given_up_plans(ctx, plans))
    return plans


def given_up_plans(ctx, plans: list[Plan]) -> list[Plan]:
    """Orders the signal processor gave up as unknown (docs/decisions/0315): looked up by orderLinkId;
    the exchange has one → adopted (``GIVEN_UP_ADOPTED``); it has none → it was never placed."""
    planned = {p.order.pk for p in plans if p.order is not None}
    out = []
    for hold in given_up_holds(category=ctx.category, symbol=ctx.symbol):
        order = hold.order
        if order.pk in planned:
            continue  # open on the exchange: ORDER_REOPENED adopts it
        try:
            info = ctx.client.get_order(category=order.category, symbol=order.symbol,
                                        order_link_id=order.order_link_id)  # fmt: skip
        except BybitError as exc:
            log.warning("given_up_lookup_failed", order_link_id=order.order_link_id, error=str(exc))
            continue  # the next run asks again
        ctx.rec.add("checked")
        if info is None:
            # Given up ORDER_HOLD_MAX_SECONDS after the request: far beyond the window in which the exchange
            # accepts a signed request (recvWindow), so it can no longer appear.
            if not ctx.dry_run:
                hold_not_placed(hold)
            continue
        ctx.exchange_orders[info.order_id] = info
        out.append(Plan(kind=Kind.GIVEN_UP_ADOPTED, order=order, info=info,
                        fetch_fills=info.cum_exec_qty > order.filled_qty, before=order_state(order)))  # fmt: skip
    return out


# ---------------------------------------------------------------- applying


def external_order_record(info: OrderInfo) -> Order | None:
    """Record an order placed outside the service through the fill path's own rule for
    unknown orders (``is_external=True``, the exchange's fill totals); never cancelled."""
    order_update_apply(info=info, source="rest")
    return Order.objects.filter(order_id=info.order_id).order_by("pk").first()


def _unchanged_since(info: OrderInfo):
    """The race guard of the writes below: no order event newer than the exchange state we
    are applying has been applied to the row meanwhile (the live stream would have raised
    ``exchange_updated_ms``). Our own backfill does not move it, a live event does."""
    return Q(exchange_updated_ms__lte=info.updated_ms)


def _reset_to_exchange(order: Order, info: OrderInfo, *, note: str, from_statuses) -> bool:
    """Move a row to the exchange's status when the forward-only rule cannot (a cancel that
    never happened, a row we had written off). Conditional on the status we judged."""
    with transaction.atomic():
        changed = Order.objects.filter(_unchanged_since(info), pk=order.pk, status__in=from_statuses).update(
            status=status_of(info),
            order_id=order.order_id or info.order_id,
            cancel_note=note[:500],
            updated_at=timezone.now(),
        )
    return changed == 1


def _amend_to_exchange(order: Order, info: OrderInfo) -> bool:
    """An amend whose answer was lost: take the exchange's qty/price (filled_qty <= qty holds there)."""
    values = {"qty": info.qty}
    if info.price is not None and order.order_type == OrderType.LIMIT:
        values["price"] = info.price
    with transaction.atomic():
        return Order.objects.filter(_unchanged_since(info), pk=order.pk, filled_qty__lte=info.qty).update(
            **values, updated_at=timezone.now()
        ) == 1


def order_close_not_found(order: Order, *, before: dict) -> bool:
    """Closed beyond the exchange's retention: filled if our fills cover the qty, else cancelled.
    Conditional on the status we judged and on no order event since (exchange_updated_ms)."""
    order.refresh_from_db(fields=["filled_qty"])
    status = OrderStatus.FILLED if order.filled_qty >= order.qty else OrderStatus.CANCELLED
    with transaction.atomic():
        return Order.objects.filter(
            pk=order.pk, status=before["status"], exchange_updated_ms=before["exchange_updated_ms"]
        ).update(
            status=status,
            cancel_reason=CancelReason.RECONCILE if status == OrderStatus.CANCELLED else order.cancel_reason,
            cancel_note="not on the exchange (open list, realtime and history): closed by reconciliation",
            updated_at=timezone.now(),
        ) == 1


def pending_signal_age(order: Order, *, now) -> float:
    """Seconds since the order's signal arrived (or the order was created, if older or unlinked):
    a late order for an old signal is worse than none."""
    started = order.created_at
    received = order.signal_links.order_by("signal__received_at").values_list("signal__received_at", flat=True).first()
    if received is not None and received < started:
        started = received
    return (now - started).total_seconds()


def pending_in_flight(order: Order, *, now) -> bool:
    """A ``pending_submit`` row younger than the submit budget may still be in another
    process's hands (its request on the way): leave it to that process."""
    return now - order.created_at < timedelta(seconds=float(settings.ORDER_EXECUTION_TIMEOUT))


def pending_fail(order: Order, *, age: float = 0.0, reason: str = "") -> bool:
    reason = reason or (
        f"reconciliation: not on the exchange, and its signal is {age:.0f}s old, beyond "
        f"PENDING_SUBMIT_RETRY_WINDOW={settings.PENDING_SUBMIT_RETRY_WINDOW}s: not sent late"
    )
    with transaction.atomic():
        # Conditional on pending_submit: a submit finishing elsewhere meanwhile wins.
        changed = Order.objects.filter(pk=order.pk, status=OrderStatus.PENDING_SUBMIT).update(
            status=OrderStatus.FAILED, reject_reason=reason, updated_at=timezone.now()
        )
        if changed:
            order.refresh_from_db()
            events.publish_event_on_commit(routing_key=events.ORDER_FAILED, payload=order_payload(order))
    return changed == 1


# ---------------------------------------------------------------- plan lifecycle

_SYNC_KINDS = {
    Kind.PENDING_ADOPTED,
    Kind.CANCEL_SETTLED,
    Kind.CANCEL_NOT_DONE,
    Kind.ORDER_CLOSED,
    Kind.ORDER_FILLS_BEHIND,
    Kind.ORDER_STATUS,
    Kind.ORDER_AMENDED,
    Kind.ORDER_REOPENED,
    Kind.EXTERNAL_ORDER,
    Kind.GIVEN_UP_ADOPTED,
}
NOTES = {
    Kind.PENDING_ADOPTED: "we crashed around the request: the exchange has it, adopted",
    Kind.CANCEL_SETTLED: "the cancel's answer never came: settled from the exchange's state",
    Kind.CANCEL_NOT_DONE: "the cancel never took effect: the exchange still has the order open",
    Kind.ORDER_CLOSED: "closed on the exchange while we were not listening",
    Kind.ORDER_FILLS_BEHIND: "fills the private stream did not deliver: backfilled",
    Kind.ORDER_STATUS: "status taken from the exchange",
    Kind.ORDER_AMENDED: "qty/price taken from the exchange (an amend whose answer was lost)",
    Kind.ORDER_REOPENED: "our row said it was finished; the exchange has it open",
    Kind.EXTERNAL_ORDER: "placed outside the service: recorded as external and flagged, never cancelled",
    Kind.ORDER_NOT_FOUND: "not on the exchange any more (beyond its retention): closed here",
}


def plans_prepare(plans: list[Plan]) -> None:
    """Before fills are applied: rows for external orders, and rows we had written off
    put back to the exchange's state (so the fills land on an active order)."""
    for plan in plans:
        if plan_unfetched(plan):
            continue  # nothing of it is applied this run (plan_apply records why)
        if plan.kind == Kind.EXTERNAL_ORDER:
            plan.order = external_order_record(plan.info)
            plan.before = {}
        elif plan.kind == Kind.ORDER_REOPENED:
            note = f"reconciliation: open on the exchange although recorded {plan.order.status}"
            _reset_to_exchange(plan.order, plan.info, from_statuses=[plan.order.status], note=note)
        elif plan.kind == Kind.GIVEN_UP_ADOPTED:
            note = "reconciliation: given up as unknown, but the exchange has it: adopted"
            _reset_to_exchange(plan.order, plan.info, from_statuses=[OrderStatus.FAILED], note=note)


def plan_apply(ctx, plan: Plan) -> None:
    """Write one plan and record it as a discrepancy with before/after."""
    if ctx.dry_run:
        return _record(ctx, plan, after=exchange_state(plan.info) if plan.info else {}, resolved=False,
                       note=f"dry run, not applied: {NOTES.get(plan.kind, plan.kind)}")  # fmt: skip
    if plan.kind == Kind.LOOKUP_FAILED:
        return _record(ctx, plan, after={}, resolved=False, note=f"order lookup failed: {plan.error}")
    if plan_unfetched(plan):
        return _record_unfetched(ctx, plan)
    if plan.kind == Kind.ORDER_NOT_FOUND:
        changed = order_close_not_found(plan.order, before=plan.before)
        return _record_after(ctx, plan, resolved=changed, counter="updated" if changed else None)
    if plan.kind == Kind.PENDING_FAILED:
        return _settle_pending(ctx, plan)
    if plan.order is None:  # an external order the fill path could not record (no side/qty/id)
        return _record(ctx, plan, after={}, resolved=False, note="external order could not be recorded")
    _sync(ctx, plan)


def plan_unfetched(plan: Plan) -> bool:
    """The order's executions were needed (``fetch_fills``) and could not be fetched (``plan.error``)."""
    return bool(plan.error) and plan.kind != Kind.LOOKUP_FAILED


def _record_unfetched(ctx, plan: Plan) -> None:
    """Leave the order as it is and unresolved: its state taken from the order lookup alone (cumExecQty
    without the fills behind it) would make the next run agree with the exchange and never fetch the
    fills, and a position or a 'closed beyond retention' verdict would be judged on missing fills. The
    exchange's state goes in the record; the next run looks at the order again."""
    after = order_state(plan.order) if plan.order is not None else {}
    note = f"{NOTES.get(plan.kind, plan.kind)} — not applied: {plan.error}; the next run looks again"
    _record(ctx, plan, after=after, resolved=False, note=note)


def _sync(ctx, plan: Plan) -> None:
    order, info = plan.order, plan.info
    # Our own conditional writes first: the fill path's update below records the
    # exchange's updatedTime, which is what guards them against a live event.
    if plan.kind == Kind.CANCEL_NOT_DONE:
        note = "reconciliation: cancel not confirmed, the order is still open on the exchange"
        _reset_to_exchange(order, info, from_statuses=[OrderStatus.PENDING_CANCEL], note=note)
    if is_open(info) and is_amended(order, info):
        _amend_to_exchange(order, info)
    order_update_apply(info=info, source="rest")
    order.refresh_from_db()
    if plan.kind in (Kind.GIVEN_UP_ADOPTED, Kind.ORDER_REOPENED):
        hold_adopted(order)  # the signal follows what really happened (docs/decisions/0315)
    if plan.kind == Kind.EXTERNAL_ORDER:
        ctx.rec.add("external")
    resolved = order.status == status_of(info) and order.filled_qty == info.cum_exec_qty
    _record_after(ctx, plan, resolved=resolved, counter="updated" if plan.kind != Kind.EXTERNAL_ORDER else None,
                  extra_note="" if resolved else " — still differs from the exchange after the update")  # fmt: skip


def _settle_pending(ctx, plan: Plan) -> None:
    """A pending_submit order the exchange never saw: leave it to a live hold; fail it when its signal is
    finished, has successors (docs/decisions/0315) or is too old; else send it now (same orderLinkId, so the
    exchange's duplicate check still holds)."""
    order = plan.order
    action, why = pending_send_blocker(order)
    if action == "held":
        log.info("reconcile_pending_left_to_hold", order_link_id=order.order_link_id)
        return None
    if action == "fail":
        plan.kind = Kind.PENDING_NOT_SENT
        failed = pending_fail(order, reason=f"reconciliation: not on the exchange, and {why}")
        if failed:
            ctx.rec.add("failed")
        return _record_after(ctx, plan, resolved=failed, counter=None, extra_note=f" ({why})")
    age = pending_signal_age(order, now=timezone.now())
    if age > settings.PENDING_SUBMIT_RETRY_WINDOW:
        failed = pending_fail(order, age=age)
        if failed:
            ctx.rec.add("failed")
        return _record_after(ctx, plan, resolved=failed, counter=None,
                             extra_note=f" (signal {age:.0f}s old)")  # fmt: skip
    plan.kind = Kind.PENDING_RESUBMITTED
    order = order_submit(order=order)
    resolved = order.status != OrderStatus.PENDING_SUBMIT
    if order.status == OrderStatus.FAILED:
        ctx.rec.add("failed")
    _record_after(ctx, plan, resolved=resolved, counter="updated",
                  extra_note=f" (signal {age:.0f}s old, within PENDING_SUBMIT_RETRY_WINDOW): sent, now {order.status}")


NOTES[Kind.PENDING_FAILED] = "never reached the exchange and too old to send: failed"
NOTES[Kind.PENDING_RESUBMITTED] = "never reached the exchange and still fresh: re-submitted"
NOTES[Kind.PENDING_NOT_SENT] = "never reached the exchange; never sent late or out of order: failed"
NOTES[Kind.GIVEN_UP_ADOPTED] = "given up as unknown by the signal processor; the exchange has it: adopted"


def _record_after(ctx, plan: Plan, *, resolved: bool, counter: str | None, extra_note: str = "") -> None:
    plan.order.refresh_from_db()
    if counter:
        ctx.rec.add(counter)
    _record(ctx, plan, after=order_state(plan.order), resolved=resolved, note=NOTES.get(plan.kind, "") + extra_note)


def _record(ctx, plan: Plan, *, after: dict, resolved: bool, note: str) -> None:
    before = dict(plan.before)
    if plan.info is not None:
        before["exchange"] = exchange_state(plan.info)
    ctx.rec.discrepancy(kind=plan.kind, symbol=plan.symbol, order_link_id=plan.link, before=before, after=after,
                        resolved=resolved, note=note)  # fmt: skip
