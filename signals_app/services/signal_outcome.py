"""What becomes of a signal when its orders settle: the signal side of the way to orders (decision 0323).

``orders.services.signal_orders`` plans, records and sends a signal's orders; the signal's own rows change
only here, through the two seams orders offers:

- ``SignalCommit`` is the ``SignalCommitHook`` of one signal: ``processing`` in the commit that records its
  legs, and its terminal status (mapped from the ``Placement``) in the commit that records the last leg's
  outcome;
- ``HeldSignalsOfInbox`` is the ``HeldSignals`` answer registered at app ready (``SignalsAppConfig.ready``):
  whether reconciliation may still send a pending order of a signal, and a given-up order's signal
  becoming ``executed`` once reconciliation adopts the order.

Every signal ends terminal: ``executed`` (every leg acknowledged, or some, with the others named),
``dry_run``, ``rejected`` (a rule or the exchange said no, with the reason), ``failed`` (the exchange could
not be reached, or a leg's outcome stayed unknown until it was given up; the reason says which).
"""

from __future__ import annotations

import structlog
from django.db import transaction
from django.utils import timezone

from ordermanager import events, metrics
from ordermanager.core.sql_once import OrmStatement
from orders.models import Order
from orders.services.signal_orders import Placement, PlacementResult
from signals_app.models import SignalStatus, TradingSignal
from signals_app.services.intake import signal_event_payload

log = structlog.get_logger(__name__)

UNFINISHED = (SignalStatus.RECEIVED, SignalStatus.PROCESSING)

SIGNAL_STATUS_OF = {
    PlacementResult.PLACED: SignalStatus.EXECUTED,
    PlacementResult.DRY_RUN: SignalStatus.DRY_RUN,
    PlacementResult.REJECTED: SignalStatus.REJECTED,
    PlacementResult.FAILED: SignalStatus.FAILED,
}  # PlacementResult.HELD: the signal stays `processing`

_SIGNAL_EVENT = {
    SignalStatus.EXECUTED: events.SIGNAL_EXECUTED,
    SignalStatus.REJECTED: events.SIGNAL_REJECTED,
    SignalStatus.FAILED: events.SIGNAL_FAILED,
    SignalStatus.DRY_RUN: events.SIGNAL_DRY_RUN,
}


class SignalCommit:
    """``orders.services.signal_orders.SignalCommitHook`` for one signal."""

    def __init__(self, signal: TradingSignal):
        self.signal = signal

    def orders_recorded(self) -> None:
        # `processing` is set in the transaction that commits the orders (one commit fewer per signal).
        with transaction.atomic(savepoint=False):
            _TO_PROCESSING.run(pk=self.signal.pk)

    def placement_settled(self, placement: Placement) -> None:
        signal_finish(self.signal, SIGNAL_STATUS_OF[placement.result], placement.reason)


def signal_finish(signal: TradingSignal, status: str, reason: str) -> TradingSignal:
    """Move an unfinished signal to ``status`` with ``reason`` (and its event, on commit); a signal already
    terminal is left alone and re-read."""
    # savepoint=False: inside the executor's transaction this joins it (no SAVEPOINT round trips).
    with transaction.atomic(savepoint=False):
        now = timezone.now()
        changed = _FINISH.run(pk=signal.pk, status=status, reason=reason, now=now)
        if changed:
            signal.status, signal.reason, signal.processed_at = status, reason, now
        else:
            signal.refresh_from_db()
        if changed:
            events.publish_event_on_commit(routing_key=_SIGNAL_EVENT[status], payload=signal_event_payload(signal))
            metrics.signal_finished_on_commit(signal)
    level = log.info if status in (SignalStatus.EXECUTED, SignalStatus.DRY_RUN) else log.warning
    level("signal_finished", status=status, reason=reason)
    return signal


# The two UPDATEs every signal runs, compiled by the ORM once per process (docs/decisions/0328).
_TO_PROCESSING = OrmStatement(lambda pk: (
    TradingSignal.objects.filter(pk=pk, status=SignalStatus.RECEIVED), {"status": SignalStatus.PROCESSING}))
_FINISH = OrmStatement(lambda pk, status, reason, now: (
    TradingSignal.objects.filter(pk=pk, status__in=UNFINISHED), {"status": status, "reason": reason,
                                                                  "processed_at": now}))


class HeldSignalsOfInbox:
    """``orders.services.order_holds.HeldSignals``, answered from the inbox."""

    def send_blocker(self, order: Order) -> str:
        signal = TradingSignal.objects.filter(order_links__order=order).order_by("id").first()
        if signal is None:
            return ""
        if signal.status not in UNFINISHED:
            return f"its signal is finished ({signal.status}): not sent late"
        successor = (TradingSignal.objects.filter(asset=signal.asset, id__gt=signal.id)
                     .exclude(status=SignalStatus.RECEIVED).order_by("id").values_list("signal_id", flat=True)
                     .first())  # fmt: skip
        if successor is not None:
            return f"a later signal of {signal.asset} ({successor}) was processed after it: not sent out of order"
        return ""

    def signal_adopted(self, *, signal_pk: int, note: str) -> bool:
        with transaction.atomic(savepoint=False):
            signal = TradingSignal.objects.get(pk=signal_pk)
            changed = TradingSignal.objects.filter(pk=signal_pk, status=SignalStatus.FAILED).update(
                status=SignalStatus.EXECUTED, reason=signal.reason + note)
            if changed:
                signal.refresh_from_db()
                events.publish_event_on_commit(routing_key=events.SIGNAL_EXECUTED,
                                               payload=signal_event_payload(signal))
        return bool(changed)
