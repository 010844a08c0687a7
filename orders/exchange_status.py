"""Bybit's orderStatus in our terms: the one map, used by fill ingest and by reconciliation.

Both must agree, or reconciliation would "repair" an order into a state the fill path would
never write (docs/decisions/0418-fill-ingest-by-job.md).
"""

from __future__ import annotations

from exchange.bybit.types import OrderInfo
from orders.models import OrderStatus

# Untriggered/Triggered conditional orders are working orders (New); spot's
# PartiallyFilledCanceled and Deactivated are cancellations.
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


def order_status_of(info: OrderInfo) -> str | None:
    """Our status for the exchange's, or None for a status we do not know."""
    status = BYBIT_STATUS.get(info.order_status)
    if status == OrderStatus.CANCELLED and info.reject_reason == POST_ONLY_REJECT and info.cum_exec_qty == 0:
        # A PostOnly order that would have crossed ends "Cancelled" on Bybit; it
        # never rested, so it is a rejection.
        return OrderStatus.REJECTED
    return status
