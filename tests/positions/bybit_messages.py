"""Bybit-shaped private-stream items for tests (field names and string decimals as Bybit sends them)."""

from __future__ import annotations

import itertools
import uuid
from decimal import Decimal

from exchange.bybit.types import ExecutionInfo, OrderInfo

_seq = itertools.count(1_000_000)
BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def execution_item(
    *,
    symbol: str = "BTCUSDT",
    side: str = "Buy",
    qty: str = "0.010",
    price: str = "64000",
    fee: str = "0",
    exec_type: str = "Trade",
    order_id: str = "",
    order_link_id: str = "",
    exec_id: str | None = None,
    exec_ms: int | None = None,
    seq: int | None = None,
    category: str = "linear",
) -> dict:
    seq = next(_seq) if seq is None else seq
    return {
        "category": category,
        "symbol": symbol,
        "execId": exec_id or str(uuid.uuid4()),
        "orderId": order_id,
        "orderLinkId": order_link_id,
        "side": side,
        "execType": exec_type,
        "execQty": qty,
        "execPrice": price,
        "execValue": str(Decimal(qty) * Decimal(price)),
        "execFee": fee,
        "feeCurrency": "USDT",
        "isMaker": False,
        "closedSize": "",
        "leavesQty": "0",
        "execTime": str(exec_ms if exec_ms is not None else BASE_MS + seq),
        "seq": seq,
        "orderType": "Market",
        "markPrice": price,
    }


def execution(**kwargs) -> ExecutionInfo:
    return ExecutionInfo.from_api(execution_item(**kwargs))


def order_item(
    *,
    order_link_id: str,
    order_id: str,
    status: str,
    qty: str = "0.010",
    cum_qty: str = "0",
    cum_value: str = "0",
    cum_fee: str = "0",
    avg_price: str = "",
    side: str = "Buy",
    symbol: str = "BTCUSDT",
    price: str = "64000",
    order_type: str = "Limit",
    position_idx: int = 0,
    updated_ms: int = BASE_MS,
    reject_reason: str = "EC_NoError",
    cancel_type: str = "UNKNOWN",
) -> dict:
    return {
        "category": "linear",
        "symbol": symbol,
        "orderId": order_id,
        "orderLinkId": order_link_id,
        "side": side,
        "orderType": order_type,
        "price": price,
        "qty": qty,
        "timeInForce": "GTC",
        "orderStatus": status,
        "createType": "CreateByUser",
        "cancelType": cancel_type,
        "rejectReason": reject_reason,
        "avgPrice": avg_price,
        "leavesQty": str(Decimal(qty) - Decimal(cum_qty)),
        "cumExecQty": cum_qty,
        "cumExecValue": cum_value,
        "cumExecFee": cum_fee,
        "positionIdx": position_idx,
        "reduceOnly": False,
        "createdTime": str(BASE_MS),
        "updatedTime": str(updated_ms),
    }


def order(**kwargs) -> OrderInfo:
    return OrderInfo.from_api(order_item(**kwargs))


def message(topic: str, items: list[dict]) -> dict:
    return {"id": str(uuid.uuid4()), "topic": topic, "creationTime": BASE_MS, "data": items}
