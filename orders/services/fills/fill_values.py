"""A fill as ``positions`` takes it (``FillValues``), from a stream item or from a stored ``Execution``."""

from __future__ import annotations

from exchange.bybit.types import ExecutionInfo
from ordermanager.core.epoch import epoch_ms
from orders.models import Execution
from positions.services.ledger import FillValues


def side_of(info: ExecutionInfo) -> str:
    """The side as stored: "" for anything but Buy/Sell (non-trade rows may carry none)."""
    return info.side if info.side in ("Buy", "Sell") else ""


def fill_of_info(info: ExecutionInfo) -> FillValues:
    return FillValues(
        exec_id=info.exec_id,
        exec_type=info.exec_type,
        exec_time_ms=info.exec_time_ms,
        seq=info.seq or 0,
        side=side_of(info),
        qty=info.exec_qty,
        price=info.exec_price,
        fee=info.exec_fee,
    )


def fill_of_execution(execution: Execution) -> FillValues:
    return FillValues(
        exec_id=execution.exec_id,
        exec_type=execution.exec_type,
        exec_time_ms=epoch_ms(execution.exec_time),
        seq=execution.seq or 0,
        side=execution.side,
        qty=execution.exec_qty,
        price=execution.exec_price,
        fee=execution.exec_fee,
    )

