"""The stale-order sweep: cancel our open orders older than ``CANCEL_STALE_ORDER_TIMEOUT`` (reason ``stale``).

Age counts from submission (``submitted_at``; creation when it was never
submitted). Partially filled orders are swept only with
``CANCEL_PARTIALLY_FILLED_ORDERS`` (design notes: partially filled orders are
not cancelled unless configured), the same rule as signal-driven cancels; when
swept, the fills stay with the order and the position, only the resting
remainder is cancelled (docs/decisions/0404-stale-sweep.md, 0415). External orders (placed outside this
service) and dry-run rows are never touched. Each cancel goes through
``order_cancel`` (PIPE), which holds no transaction across the exchange call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog
from django.conf import settings
from django.db.models import QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone

from orders.models import CancelReason, Order, OrderStatus
from orders.services.cancellation import CancelOutcome, CancelResult, order_cancel

log = structlog.get_logger(__name__)


def swept_statuses() -> list[str]:
    """``new``, plus ``partially_filled`` only when ``CANCEL_PARTIALLY_FILLED_ORDERS`` says so."""
    if settings.CANCEL_PARTIALLY_FILLED_ORDERS:
        return [OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED]
    return [OrderStatus.NEW]


@dataclass
class SweepResult:
    checked: int = 0
    outcomes: list[CancelOutcome] = field(default_factory=list)

    @property
    def cancelled(self) -> int:
        return sum(o.result is CancelResult.CANCELLED for o in self.outcomes)


def orders_stale(*, now: datetime | None = None, timeout_seconds: int | None = None) -> QuerySet[Order]:
    age = settings.CANCEL_STALE_ORDER_TIMEOUT if timeout_seconds is None else timeout_seconds
    cutoff = (now or timezone.now()) - timedelta(seconds=age)
    return (
        Order.objects.filter(status__in=swept_statuses(), is_external=False, is_dry_run=False)
        .alias(since=Coalesce("submitted_at", "created_at"))
        .filter(since__lt=cutoff)
        .order_by("pk")
    )


def orders_sweep_stale(*, now: datetime | None = None, timeout_seconds: int | None = None) -> SweepResult:
    """Cancel every stale open order; one failure does not stop the sweep."""
    age = settings.CANCEL_STALE_ORDER_TIMEOUT if timeout_seconds is None else timeout_seconds
    result = SweepResult()
    for order in orders_stale(now=now, timeout_seconds=age):
        result.checked += 1
        try:
            outcome = order_cancel(order=order, reason=CancelReason.STALE, note=f"open for more than {age}s")
        except Exception as exc:  # keep sweeping; the next run retries this one
            log.exception("stale_cancel_failed", order_link_id=order.order_link_id)
            outcome = CancelOutcome(order.order_link_id, CancelResult.ERROR, str(exc))
        result.outcomes.append(outcome)
    if result.checked:
        log.info("stale_orders_swept", checked=result.checked, cancelled=result.cancelled)
    return result
