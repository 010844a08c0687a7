"""The one Bybit → our order status map, as fill ingest and reconciliation both read it."""

from decimal import Decimal as D

import pytest

from exchange.bybit.types import OrderInfo
from orders.exchange_status import POST_ONLY_REJECT, order_status_of
from orders.models import OrderStatus
from orders.reconcile.exchange import status_of


def _info(order_status: str, *, reject_reason: str = "", cum_exec_qty: D = D(0)) -> OrderInfo:
    return OrderInfo.from_api(
        {"symbol": "BTCUSDT", "orderId": "x1", "side": "Buy", "orderType": "Limit", "orderStatus": order_status,
         "qty": "1", "price": "100", "cumExecQty": str(cum_exec_qty), "cumExecValue": "0", "cumExecFee": "0",
         "leavesQty": "0", "timeInForce": "PostOnly", "positionIdx": 0, "rejectReason": reject_reason,
         "createdTime": "1", "updatedTime": "2"}  # fmt: skip
    )


@pytest.mark.parametrize(
    "bybit,ours",
    [("Untriggered", OrderStatus.NEW), ("PartiallyFilled", OrderStatus.PARTIALLY_FILLED),
     ("PartiallyFilledCanceled", OrderStatus.CANCELLED), ("Deactivated", OrderStatus.CANCELLED),
     ("Rejected", OrderStatus.REJECTED)],  # fmt: skip
)
def test_both_readers_map_a_status_alike(bybit, ours):
    assert order_status_of(_info(bybit)) == status_of(_info(bybit)) == ours


def test_a_post_only_order_that_would_have_crossed_is_a_rejection_unless_it_filled():
    assert status_of(_info("Cancelled", reject_reason=POST_ONLY_REJECT)) == OrderStatus.REJECTED
    filled = _info("Cancelled", reject_reason=POST_ONLY_REJECT, cum_exec_qty=D("0.5"))
    assert order_status_of(filled) == status_of(filled) == OrderStatus.CANCELLED


def test_an_unknown_status_is_none_for_ingest_and_empty_for_reconciliation():
    assert order_status_of(_info("Frozen")) is None
    assert status_of(_info("Frozen")) == ""
