"""The entry points: one private-stream message (or one REST backfill row) → its job, in one transaction;
or a group of messages in one transaction (group commit, docs/decisions/0419).

Items are applied in a fixed (symbol, time) order so concurrent writers take locks in the same
order; the order row and the position row are locked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db import transaction

from exchange.bybit.events import TOPIC_EXECUTION, TOPIC_ORDER, TOPIC_POSITION, PrivateMessage
from exchange.bybit.types import ExecutionInfo, OrderInfo, PositionInfo
from ordermanager.events import events_grouped
from orders.services.fill_wakeups import fills_booked_on_commit
from orders.services.fills.executions import executions_apply, executions_link_orphans
from orders.services.fills.external_orders import external_order_create
from orders.services.fills.funding import funding_waiting_apply
from orders.services.fills.order_state import order_locked_for_event, order_merge
from orders.services.fills.refusals import FillRefused, clipped, execution_refusal, message_check, order_refusal
from positions.selectors import position_idxs_of
from positions.services.ledger import position_observe


@dataclass
class MessageOutcome:
    topic: str
    applied: int = 0
    ignored: int = 0  # duplicates, stale updates, wallet snapshots
    deferred: list[str] = field(default_factory=list)  # exec ids waiting for their order


def private_message_apply(*, message: PrivateMessage, source: str = "ws", checked: bool = False) -> MessageOutcome:
    """Apply one private-stream message in one transaction; ``FillRefused`` (nothing applied)
    when an item cannot be stored as it is. ``checked``: the caller ran ``message_check`` on it already
    (the consumer does on receipt), so it is not run again (docs/decisions/0424)."""
    if not checked:
        message_check(message)
    outcome = MessageOutcome(topic=message.topic)
    with transaction.atomic(), events_grouped():  # the message's events in one outbox write
        _message_apply(message, source=source, outcome=outcome)
        fills_booked_on_commit(_symbols([message]))
    return outcome


def private_messages_apply(
    *, messages: list[PrivateMessage], source: str = "ws", checked: bool = False
) -> list[MessageOutcome]:
    """Apply ``messages`` in their order in ONE transaction (group commit), each message's outcome in
    its place. A run of consecutive execution messages is applied as one batch of their executions
    (the fixed statements of ``executions_apply`` once for the run), the first copy of an execId
    counting for the first message that carries it; any other message is applied as alone.

    All or nothing for the group: ``FillRefused`` or any failure rolls back every message of it, and
    the caller applies them one by one (``private_message_apply``) so that one bad message cannot take
    the good ones down.

    ``checked``: the caller has run ``message_check`` on every message already (the consumer does on
    receipt, before a frame is queued), so it is not run again (docs/decisions/0424)."""
    if not checked:
        for message in messages:
            message_check(message)
    outcomes = [MessageOutcome(topic=m.topic) for m in messages]
    # The group's events (order.updated, position.updated...) are written together at its end: a fixed
    # number of outbox statements per group, not four per event (docs/decisions/0419).
    with transaction.atomic(), events_grouped():
        start = 0
        while start < len(messages):
            end = start + 1
            if messages[start].topic == TOPIC_EXECUTION:
                while end < len(messages) and messages[end].topic == TOPIC_EXECUTION:
                    end += 1
                _execution_run(messages[start:end], outcomes[start:end], source=source)
            else:
                _message_apply(messages[start], source=source, outcome=outcomes[start])
            start = end
        fills_booked_on_commit(_symbols(messages))
    return outcomes


def _symbols(messages: list[PrivateMessage]) -> set[str]:
    """The symbols a transaction of the fill path wrote for: decisions waiting on them look again (0327)."""
    return {symbol for message in messages for item in message.items if (symbol := getattr(item, "symbol", ""))}


def _message_apply(message: PrivateMessage, *, source: str, outcome: MessageOutcome) -> None:
    if message.topic == TOPIC_EXECUTION:
        _executions(message.items, source=source, outcome=outcome)
    elif message.topic == TOPIC_ORDER:
        for info in sorted(message.items, key=lambda i: (i.symbol, i.updated_ms, i.order_id)):
            _count(outcome, _order_update(info))
    elif message.topic == TOPIC_POSITION:
        for info in sorted(message.items, key=lambda i: (i.symbol, i.position_idx)):
            _position_observe(info)
            outcome.applied += 1
    else:
        # Balances are read from the exchange when needed (risk checks); the
        # stream copy is not stored.
        outcome.ignored += len(message.items)


def _execution_run(messages: list[PrivateMessage], outcomes: list[MessageOutcome], *, source: str) -> None:
    """Consecutive execution messages as one batch; each message is told what of its own was new."""
    owner: dict[str, MessageOutcome] = {}  # execId -> the first message (in arrival order) that carries it
    infos: list[ExecutionInfo] = []
    for message, outcome in zip(messages, outcomes, strict=True):
        for info in message.items:
            if info.exec_id in owner:
                outcome.ignored += 1  # a repeat, in this message or an earlier one of the run
                continue
            owner[info.exec_id] = outcome
            infos.append(info)
    result = executions_apply(infos, source=source)
    for info in infos:
        _count(owner[info.exec_id], info.exec_id in result.new_ids)
    for exec_id in result.deferred:
        owner[exec_id].deferred.append(exec_id)


def execution_apply(*, execution: ExecutionInfo, source: str = "ws") -> bool:
    """Store and apply one execution; False when its execId was already applied.
    ``FillRefused`` when it cannot be stored as it is."""
    why = execution_refusal(execution)
    if why is not None:
        raise FillRefused(f"execution {clipped(execution.exec_id)}: {why}")
    outcome = MessageOutcome(topic=TOPIC_EXECUTION)
    with transaction.atomic():
        _executions([execution], source=source, outcome=outcome)
    return outcome.applied == 1


def order_update_apply(*, info: OrderInfo, source: str = "ws") -> bool:
    """Apply one order-topic item (status forward only, fill totals only up). True if anything changed."""
    why = order_refusal(info)
    if why is not None:
        raise FillRefused(f"order {clipped(info.order_id)}: {why}")
    with transaction.atomic():
        return _order_update(info)


def _executions(infos: list[ExecutionInfo], *, source: str, outcome: MessageOutcome) -> None:
    result = executions_apply(infos, source=source)
    outcome.applied += result.new
    outcome.ignored += len(infos) - result.new
    outcome.deferred.extend(result.deferred)


def _order_update(info: OrderInfo) -> bool:
    # The lock tells whether executions wait for the order, so the usual event (none wait) costs two
    # statements: this one and the row's update (docs/decisions/0424).
    order, orphans = order_locked_for_event(order_link_id=info.order_link_id, order_id=info.order_id)
    created = order is None
    if order is None:
        order = external_order_create(info)
        changed, orphans = order is not None, True
    else:
        changed = order_merge(order, info)
    if order is None:
        return False
    linked = executions_link_orphans(order) if orphans else 0
    if created and not position_idxs_of(category=order.category, symbol=order.symbol):
        # The symbol's first order tells its mode (no row does yet): place funding that waited for it.
        funding_waiting_apply(category=order.category, symbol=order.symbol)
    return changed or linked > 0


def _position_observe(info: PositionInfo) -> None:
    observed = position_observe(
        category=info.category,
        symbol=info.symbol,
        position_idx=info.position_idx,
        mark_price=info.mark_price,
        updated_ms=info.updated_ms,
    )
    if observed.created:
        funding_waiting_apply(category=info.category, symbol=info.symbol)


def _count(outcome: MessageOutcome, changed: bool) -> None:
    if changed:
        outcome.applied += 1
    else:
        outcome.ignored += 1
