"""From one signal to its orders on the exchange: plan, cancel, record, send, settle (docs/decisions/0323).

signals_app hands over what orders needs of a signal (``SignalOrderInput``) and the one place where the
signal's own rows change with the orders' (``SignalCommitHook``); this module does the rest and answers
with a ``Placement``: placed, dry-run, rejected, failed, or held.

Crash safety (design properties 1 and 2; docs/decisions/0301): every leg is committed ``pending_submit``
with its deterministic orderLinkId before anything is sent, in the transaction that marks the signal
``processing`` (``SignalCommitHook.orders_recorded``). A signal found ``processing`` with orders is resumed
(``signal_orders_resume``): each pending leg is looked up on the exchange by orderLinkId and only sent if
absent (``order_resume``); one with no orders is planned again.

One commit (docs/decisions/0301, 0306): the last leg's outcome and the signal's end are committed together:
``SignalCommitHook.placement_settled`` runs inside the transaction that records that outcome (and on its
own, in a transaction of its own, for an outcome decided before any order was recorded).

Holds (docs/decisions/0315): a leg whose outcome is unknown holds the symbol (``order_holds``): the
placement is ``HELD``, the signal stays ``processing``, and later rounds look the order up with backoff
until the outcome is known or the order is given up. Fresh positions (docs/decisions/0316): a refusal that
says the position was not what we decided on re-reads the exchange and re-plans once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import structlog
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, transaction
from django.utils import timezone

from exchange.bybit.errors import BybitError
from exchange.instruments import UnknownInstrument
from ordermanager.core.prebuilt_sql import instances_insert
from orders.models import Order, OrderHold, OrderStatus, SignalOrderRelationship
from orders.services import fresh_position, order_holds
from orders.services.cancellation import CancelOutcome, CancelResult, orders_cancel_for_signal
from orders.services.order_executor import order_link_id_for, order_resume, order_submit
from orders.services.order_plan import NO_POSITION, OrderPlan, SignalOrderInput, order_plan

log = structlog.get_logger(__name__)

ACKNOWLEDGED = (
    OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED, OrderStatus.PENDING_CANCEL,
    OrderStatus.CANCELLED,
)
REDUCE_ONLY_REFUSED = 110017

__all__ = ["ACKNOWLEDGED", "Placement", "PlacementResult", "SignalCommitHook", "SignalOrderInput",
           "orders_place_for_signal", "signal_orders_resume"]  # fmt: skip


class PlacementResult(StrEnum):
    PLACED = "placed"  # every leg acknowledged, or some (the reason names the others)
    DRY_RUN = "dry_run"  # every leg recorded, nothing sent
    REJECTED = "rejected"  # a rule or the exchange said no
    FAILED = "failed"  # the exchange could not be reached, or a leg was given up
    HELD = "held"  # a leg's outcome is unknown: the symbol waits (docs/decisions/0315)


@dataclass(frozen=True)
class Placement:
    """What became of a signal's orders, and the sentence its reason carries ("" while held)."""

    result: PlacementResult
    reason: str


class SignalCommitHook(Protocol):
    """The signal's writes that must commit with the orders' writes: the one seam between signals_app and
    orders on the way from a signal to its orders (docs/decisions/0323).

    signals_app implements it (``signals_app.services.signal_outcome``); each method opens
    ``transaction.atomic(savepoint=False)`` so it joins the orders' transaction when called inside one."""

    def orders_recorded(self) -> None:
        """Runs in the transaction that commits the legs ``pending_submit``: the signal becomes
        ``processing`` in the same commit (a signal with orders is resumed, never planned twice)."""

    def placement_settled(self, placement: Placement) -> None:
        """Runs once per settled placement, inside the transaction that records the last leg's outcome
        (or alone, when the outcome was decided before any order was recorded): the signal ends there."""


def orders_place_for_signal(*, signal: SignalOrderInput, signal_commit: SignalCommitHook) -> Placement:
    """Plan the signal's orders, cancel what it replaces, record the legs and send them; the settled
    outcome reaches the signal through ``signal_commit`` (module docstring)."""
    replanned = False
    try:
        try:
            plan = order_plan(signal=signal)
        except ValidationError as exc:
            if not _no_position_on_book(exc):
                raise
            # "No long position" decided on our book: ask the exchange once (docs/decisions/0316).
            sizes = fresh_position.exchange_sizes_read(category=settings.BYBIT_CATEGORY, symbol=signal.symbol,
                                                       since=exc.plan_started)  # fmt: skip
            fresh_position.position_path_count(fresh_position.REPLANNED, symbol=signal.symbol, after="no position",
                                               exchange={k: str(v) for k, v in sizes.items()})  # fmt: skip
            replanned = True
            plan = order_plan(signal=signal, position_sizes=sizes)
    except ValidationError as exc:
        return _settled(signal_commit, PlacementResult.REJECTED, "; ".join(exc.messages))
    except BybitError as exc:
        return _settled(signal_commit, PlacementResult.FAILED,
                        f"exchange unavailable while preparing the order: {exc}")
    except UnknownInstrument as exc:
        return _settled(signal_commit, PlacementResult.REJECTED,
                        f"asset {signal.symbol} is not listed on the exchange: {exc}")
    except DatabaseError:
        raise
    except Exception as exc:
        log.exception("signal_plan_crashed")
        return _settled(signal_commit, PlacementResult.FAILED,
                        f"internal error while planning: {type(exc).__name__}: {exc}")
    log.info("signal_planned", plan=plan.summary(), why=plan.decision.why, position_source=plan.position_source)
    cancels = orders_cancel_for_signal(
        symbol=plan.symbol, side=plan.side, order_type=plan.decision.order_type, category=settings.BYBIT_CATEGORY,
        note=f"signal {signal.signal_id}",
    ) if plan.cancel_candidates else []
    notes = [*plan.notes, *_cancel_notes(cancels)]
    summary = "; ".join([plan.summary(), *notes])
    orders = _orders_create(signal, plan, signal_commit)
    done = _LegsSubmission(signal, orders, signal_commit, summary=summary, replan=not replanned).run()
    return done if done is not None else _replan_after_refusal(signal, orders, signal_commit, summary=summary)


def signal_orders_resume(*, signal: SignalOrderInput, signal_commit: SignalCommitHook) -> Placement | None:
    """A ``processing`` signal's orders: a hold to check, or a crash to resume; None when it has none (it is
    planned afresh: nothing of it reached the exchange but cancellations).

    Each pending leg is looked up by orderLinkId (``order_resume``): found → acknowledged; absent → sent
    (young) or failed (old). A lookup that cannot tell keeps the hold (backoff); past
    ORDER_HOLD_MAX_SECONDS the leg is given up."""
    orders = list(Order.objects.filter(signal_links__signal_id=signal.pk).order_by("leg"))
    if not orders:
        return None
    pending = [o for o in orders if o.status == OrderStatus.PENDING_SUBMIT]
    if pending and order_holds.hold_waiting(pending):
        return _HELD  # not due for its next lookup: the symbol keeps waiting
    held = {h.order_id: h for h in OrderHold.objects.filter(order__in=orders)}
    log.warning("signal_resumed", orders=[o.order_link_id for o in orders], held=bool(held))
    for order in pending:
        try:
            order_resume(order=order)
        except BybitError as exc:
            order_holds.hold_note_unknown(signal_pk=signal.pk, order=order, error=f"lookup failed: {exc}")
            continue
        if order.status == OrderStatus.PENDING_SUBMIT:  # sent again, and again no answer
            order_holds.hold_note_unknown(signal_pk=signal.pk, order=order, error="re-sent: outcome unknown again")
    still = [o for o in pending if o.status == OrderStatus.PENDING_SUBMIT]
    for order in still:
        hold = OrderHold.objects.get(order=order)
        if order_holds.hold_expired(hold):
            order_holds.hold_give_up(hold)
            order.refresh_from_db()
    if any(o.status == OrderStatus.PENDING_SUBMIT for o in still):
        return _HELD
    order_holds.holds_release(orders)
    for order in orders:
        order.refresh_from_db()
    if held:
        since = min(h.since for h in held.values())
        summary = f"held {(timezone.now() - since).total_seconds():.0f}s until the create's outcome was known"
    else:
        summary = "resumed after restart"
    return _outcome_settled(signal_commit, orders, summary=summary)


_HELD = Placement(PlacementResult.HELD, "")


def _settled(signal_commit: SignalCommitHook, result: PlacementResult, reason: str) -> Placement:
    placement = Placement(result, reason)
    signal_commit.placement_settled(placement)
    return placement


def _cancel_notes(cancels: list[CancelOutcome]) -> list[str]:
    """The one reading of cancel results on the way to a signal's orders: only a failed cancel is worth a
    note on the signal (the others are the plan going as decided)."""
    return [f"cancel of {c.order_link_id} failed: {c.message}" for c in cancels if c.result is CancelResult.ERROR]


class _LegsSubmission:
    """Send each leg; the last leg's outcome and the signal's end commit together."""

    def __init__(self, signal: SignalOrderInput, orders: list[Order], signal_commit: SignalCommitHook, *,
                 summary: str, replan: bool):  # fmt: skip
        self.signal, self.orders, self.signal_commit = signal, orders, signal_commit
        self.summary, self.replan = summary, replan
        self.placement: Placement | None = None

    def run(self) -> Placement | None:
        """The settled (or held) placement; None: every leg was refused for a stale position (re-plan)."""
        for index, order in enumerate(self.orders):
            last = index == len(self.orders) - 1
            # order_submit returns the instance it was given, moved on.
            order_submit(order=order, fresh=True, in_outcome_commit=self.last_leg_recorded if last else None)
        return self.placement

    def last_leg_recorded(self, last: Order) -> None:
        """Runs in the transaction that records the last leg's outcome (``order_submit``).

        Finish the signal, or hold its symbol when a leg's outcome is unknown (the signal stays
        `processing`), or leave ``placement`` None when every leg was refused as reduce-only against a
        position we did not have (re-plan)."""
        orders = self.orders
        pending = [o for o in orders if o.status == OrderStatus.PENDING_SUBMIT]
        if pending:
            order_holds.holds_open(signal_pk=self.signal.pk, orders=pending, error="create outcome unknown after "
                                   "the client's retries and lookup")  # fmt: skip
            log.warning("signal_held", orders=[o.order_link_id for o in pending])
            self.placement = _HELD
            return
        if self.replan and _refused_for_position(orders):
            return
        self.placement = _outcome_settled(self.signal_commit, orders, summary=self.summary)


def _refused_for_position(orders: list[Order]) -> bool:
    """No leg placed and the exchange refused one as reduce-only (110017): our position was stale."""
    return not any(o.status in ACKNOWLEDGED for o in orders) and any(
        o.status == OrderStatus.REJECTED and o.reject_code == REDUCE_ONLY_REFUSED for o in orders)


def _replan_after_refusal(signal: SignalOrderInput, refused: list[Order], signal_commit: SignalCommitHook, *,
                          summary: str) -> Placement:  # fmt: skip
    """Read the exchange's position and plan the signal once more (docs/decisions/0316)."""
    problems = "; ".join(_order_problem(o) for o in refused)
    head = f"{summary}: {problems}; re-planned on the exchange's position"
    try:
        sizes = fresh_position.exchange_sizes_read(category=refused[0].category, symbol=refused[0].symbol)
        fresh_position.position_path_count(fresh_position.REPLANNED, symbol=signal.symbol, after="110017",
                                           exchange={k: str(v) for k, v in sizes.items()})  # fmt: skip
        plan = order_plan(signal=signal, position_sizes=sizes)
    except ValidationError as exc:
        return _settled(signal_commit, PlacementResult.REJECTED, f"{head}: {'; '.join(exc.messages)}")
    except BybitError as exc:
        return _settled(signal_commit, PlacementResult.REJECTED,
                        f"{head} failed, the exchange could not be asked: {exc}")
    first = max(o.leg for o in refused) + 1
    plan = dataclasses.replace(plan, legs=[dataclasses.replace(leg, leg=first + leg.leg) for leg in plan.legs])
    log.info("signal_replanned", plan=plan.summary(), refused=[o.order_link_id for o in refused])
    orders = _orders_create(signal, plan, signal_commit)
    summary = "; ".join([f"{head}: {plan.summary()}", *plan.notes])
    return _LegsSubmission(signal, orders, signal_commit, summary=summary, replan=False).run()


def _no_position_on_book(exc: ValidationError) -> bool:
    return getattr(exc, "code", None) == NO_POSITION and getattr(exc, "position_source", "") == "book"


def _orders_create(signal: SignalOrderInput, plan: OrderPlan, signal_commit: SignalCommitHook) -> list[Order]:
    """Commit every leg as pending_submit (with its orderLinkId) before anything is sent, with the signal's
    ``processing`` (``SignalCommitHook.orders_recorded``).

    The legs are written in one statement and their links in another, each built once per process and leg
    count (``instances_insert``): the ORM's ``create`` builds and compiles its INSERT for every call, a third
    of a millisecond of CPU per row on the signal path (docs/decisions/0325). The values go through the
    fields as the ORM's would (defaults, auto timestamps, database preparation)."""
    with transaction.atomic():
        signal_commit.orders_recorded()
        orders = [Order(
            order_link_id=order_link_id_for(signal_id=signal.signal_id, leg=leg.leg),
            category=settings.BYBIT_CATEGORY,
            symbol=plan.symbol,
            side=plan.side,
            order_type=plan.decision.order_type,
            time_in_force=plan.decision.time_in_force,
            qty=leg.qty,
            price=plan.decision.price,
            post_only=plan.decision.post_only,
            reduce_only=leg.reduce_only,
            position_idx=leg.position_idx,
            leg=leg.leg,
            status=OrderStatus.PENDING_SUBMIT,
            is_dry_run=settings.ENABLE_DRY_RUN,
            strategy_id=signal.strategy_id,
            trace_id=signal.trace_id,
        ) for leg in plan.legs]
        instances_insert(orders)
        # The allocation is the share of the amount this leg's sent quantity stands for; the role says
        # whether it closes, opens or flips (a hedge remainder is a second, opening order; decision 0318).
        instances_insert([SignalOrderRelationship(signal_id=signal.pk, order=order,
                                                  allocation_amount=leg.allocation_amount, role=leg.role)
                          for order, leg in zip(orders, plan.legs, strict=True)])
    return orders


def _outcome_settled(signal_commit: SignalCommitHook, orders: list[Order], *, summary: str) -> Placement:
    result, detail = _outcome(orders)
    return _settled(signal_commit, result, f"{summary}: {detail}" if summary else detail)


def _outcome(orders: list[Order]) -> tuple[PlacementResult, str]:
    statuses = [o.status for o in orders]
    if all(s == OrderStatus.DRY_RUN for s in statuses):
        return PlacementResult.DRY_RUN, f"dry-run: {len(orders)} order(s) recorded, nothing sent"
    placed = [o for o in orders if o.status in ACKNOWLEDGED]
    if len(placed) == len(orders):
        return PlacementResult.PLACED, f"{len(orders)} order(s) placed"
    problems = "; ".join(_order_problem(o) for o in orders if o.status not in ACKNOWLEDGED)
    head = f"{len(placed)} of {len(orders)} order(s) placed; " if placed else ""
    if placed:
        return PlacementResult.PLACED, head + problems
    if all(o.status == OrderStatus.REJECTED for o in orders):
        return PlacementResult.REJECTED, problems
    return PlacementResult.FAILED, problems


def _order_problem(order: Order) -> str:
    if order.status == OrderStatus.REJECTED:
        return f"{order.order_link_id} rejected by the exchange: retCode {order.reject_code} {order.reject_reason}"
    if order.status == OrderStatus.PENDING_SUBMIT:
        return f"{order.order_link_id} outcome unknown after retries"
    return f"{order.order_link_id} {order.status}: {order.reject_reason}"
