"""Fill ingest: private-stream messages (or REST backfill rows) → Execution, Order, Position.

Callers (the ws-gateway consumer, reconciliation, cancellation) use only the names below. One
module per job (ARCHITECTURE properties 2, 7, 8; docs/decisions/0418-fill-ingest-by-job.md):

- ``dispatch``         a message by topic, in one transaction, or a group of them in one (0419); the entry points.
- ``refusals``         a message is checked whole before anything of it is stored (0416).
- ``executions``       one row per execId (unique-key insert), the position row it moves, orphans
                       linked when their order shows up (0405, 0411, 0417).
- ``order_state``      status only forward, fill totals only up, ``order.updated`` events.
- ``external_orders``  orders placed elsewhere (manual, liquidation, ADL), recorded on first sight.
- ``funding``          funding that waited for the symbol's position mode (0410).
- ``fill_values``      a fill in the shape ``positions`` takes it.

Outside the package: the Bybit → our status map (``orders.exchange_status``) and the position
mode (``orders.services.position_mode``), shared with reconciliation and order planning.
"""

from ordermanager.events import ORDER_UPDATED  # re-exported: callers read fills.ORDER_UPDATED
from orders.services.fills.dispatch import (
    MessageOutcome,
    execution_apply,
    order_update_apply,
    private_message_apply,
    private_messages_apply,
)
from orders.services.fills.refusals import FillRefused, execution_refusal, message_check

__all__ = [
    "ORDER_UPDATED",
    "FillRefused",
    "MessageOutcome",
    "execution_apply",
    "execution_refusal",
    "message_check",
    "order_update_apply",
    "private_message_apply",
    "private_messages_apply",
]
