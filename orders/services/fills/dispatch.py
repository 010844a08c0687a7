"""The entry points: one private-stream message (or one REST backfill row) → its job, in one transaction;
or a group of messages in one transaction (group commit, docs/decisions/0419), applied by topic (0339).

Items are applied in a fixed (symbol, time) order so concurrent writers take locks in the same
order; the order row and the position row are locked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db import transaction

from exchange.bybit.events import TOPIC_EXECUTION, TOPIC_ORDER, TOPIC_POSITION, PrivateMessage
from exchange.bybit.types import ExecutionInfo, OrderInfo, PositionInfo
from ordermanager.events import events_grouped
from orders.models import Order
from orders.services.fill_wakeups import fills_booked_on_commit
from orders.services.fills.executions import executions_apply, executions_link_orphans
from orders.services.fills.external_orders import external_order_create
from orders.services.fills.funding import funding_waiting_apply
from orders.services.fills.order_state import (
    order_locked_for_event,
    order_merge,
    orders_awaited,
    orders_locked,
    orders_save_merged,
)
from orders.services.fills.refusals import FillRefused, clipped, execution_refusal, message_check, order_refusal
from positions.selectors import position_idxs_of
from positions.services.ledger import positions_observe


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
    """Apply ``messages`` in ONE transaction (group commit), each message's outcome in its place.

    The group is applied by topic (docs/decisions/0339): first every order event (the orders locked in one
    statement, each event merged in arrival order, the changed rows saved in one statement), then every
    execution as one batch (``executions_apply``, the first copy of an execId counting for the first message
    that carries it), then every position push (the rows locked in one statement, each written once). The
    state at commit is the state the messages applied one by one in arrival order would leave: an order's
    status only moves forward and its fill totals only grow, an execId is stored once and the fold does not
    depend on arrival order (0411), a position's mark takes the newest push, and an execution that came
    before its order is linked when the order is known, which here is before it is stored. A message's
    outcome counts what it did in that order of application (an execution of an order whose event is later
    in the group is not "deferred").

    All or nothing for the group: ``FillRefused`` or any failure rolls back every message of it, and
    the caller applies them one by one (``private_message_apply``) so that one bad message cannot take
    the good ones down.

    ``checked``: the caller has run ``message_check`` on every message already (the consumer does on
    receipt, before a frame is queued), so it is not run again (docs/decisions/0424)."""
    if not checked:
        for message in messages:
            message_check(message)
    outcomes = [MessageOutcome(topic=m.topic) for m in messages]
    orders: list[tuple[OrderInfo, MessageOutcome]] = []
    executions: list[tuple[PrivateMessage, MessageOutcome]] = []
    positions: list[tuple[PositionInfo, MessageOutcome]] = []
    for message, outcome in zip(messages, outcomes, strict=True):
        if message.topic == TOPIC_ORDER:
            orders += [(info, outcome) for info in _order_items(message)]
        elif message.topic == TOPIC_EXECUTION:
            executions.append((message, outcome))
        elif message.topic == TOPIC_POSITION:
            positions += [(info, outcome) for info in message.items]
        else:
            outcome.ignored += len(message.items)  # balances: read from the exchange when needed
    # The group's events (order.updated, position.updated...) are written together at its end: a fixed
    # number of outbox statements per group, not four per event (docs/decisions/0419).
    with transaction.atomic(), events_grouped():
        _order_run(orders)
        _execution_run([m for m, _ in executions], [o for _, o in executions], source=source)
        _position_run(positions)
        fills_booked_on_commit(_symbols(messages))
    return outcomes


def _symbols(messages: list[PrivateMessage]) -> set[str]:
    """The symbols a transaction of the fill path wrote fills or order states for: decisions waiting on them look
    again (0327). A position push changes neither (only the mark and that the row exists), so it wakes no one."""
    return {
        symbol
        for message in messages
        if message.topic in (TOPIC_EXECUTION, TOPIC_ORDER)
        for item in message.items
        if (symbol := getattr(item, "symbol", ""))
    }


def _message_apply(message: PrivateMessage, *, source: str, outcome: MessageOutcome) -> None:
    if message.topic == TOPIC_EXECUTION:
        _executions(message.items, source=source, outcome=outcome)
    elif message.topic == TOPIC_ORDER:
        for info in _order_items(message):
            _count(outcome, _order_update(info))
    elif message.topic == TOPIC_POSITION:
        _position_run([(info, outcome) for info in message.items])
    else:
        # Balances are read from the exchange when needed (risk checks); the
        # stream copy is not stored.
        outcome.ignored += len(message.items)


def _order_items(message: PrivateMessage) -> list[OrderInfo]:
    return sorted(message.items, key=lambda i: (i.symbol, i.updated_ms, i.order_id))


def _order_run(items: list[tuple[OrderInfo, MessageOutcome]]) -> None:
    """A group's order events in arrival order, at a fixed number of statements for the orders we know: their
    rows locked in one statement (primary-key order), the executions waiting for them found in one, each event
    merged on its row in memory, the changed rows saved in one. An event of an order not yet recorded goes
    through ``_order_update`` alone (recorded as external on first sight), and so does a lone event, which
    that path takes in two statements (its lock tells whether executions wait) instead of three."""
    if len(items) <= 1:
        for info, outcome in items:
            _count(outcome, _order_update(info))
        return
    found = orders_locked([info for info, _ in items])
    event_ids: dict[int, str] = {}
    for info, _ in items:
        order = found[(info.order_link_id, info.order_id)]
        if order is not None and info.order_id:
            event_ids.setdefault(order.pk, info.order_id)
    rows = {order.pk: order for order in found.values() if order is not None}
    awaited_ids, awaited_links = orders_awaited([(order, event_ids.get(pk, "")) for pk, order in rows.items()])
    changed: dict[int, Order] = {}
    linked: set[int] = set()
    for info, outcome in items:
        order = found[(info.order_link_id, info.order_id)]
        if order is None:
            _count(outcome, _order_update(info))
            continue
        merged = order_merge(order, info, save=False)
        if merged:
            changed[order.pk] = order
        orphans = order.pk not in linked and (
            order.order_id in awaited_ids or (not order.is_external and order.order_link_id in awaited_links)
        )
        if orphans:
            linked.add(order.pk)
        _count(outcome, (executions_link_orphans(order) if orphans else 0) > 0 or merged)
    orders_save_merged(list(changed.values()))


def _execution_run(messages: list[PrivateMessage], outcomes: list[MessageOutcome], *, source: str) -> None:
    """Execution messages as one batch; each message is told what of its own was new."""
    if not messages:
        return
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


def _position_run(items: list[tuple[PositionInfo, MessageOutcome]]) -> None:
    """Position pushes in arrival order: rows locked (created) in one statement, each written once; a row created
    tells its symbol's mode, so funding that waited for it is placed."""
    if not items:
        return
    created = positions_observe(
        [((info.category, info.symbol, info.position_idx), info.mark_price, info.updated_ms) for info, _ in items]
    )
    for _, outcome in items:
        outcome.applied += 1
    for category, symbol in sorted({(c, s) for c, s, _ in created}):
        funding_waiting_apply(category=category, symbol=symbol)


def _count(outcome: MessageOutcome, changed: bool) -> None:
    if changed:
        outcome.applied += 1
    else:
        outcome.ignored += 1
