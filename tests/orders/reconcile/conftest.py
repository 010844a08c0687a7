"""Helpers for the reconciliation scenarios: place orders the way the service does,
play the private stream into the fill path (or not: the consumer is "stopped"),
and compare the database with the simulator's books."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from exchange.bybit.events import parse_private_message
from orders.exchange_status import BYBIT_STATUS
from orders.models import Execution, Order, OrderStatus
from orders.services.fills import private_message_apply
from positions.models import Position
from tests.orders.factories import OrderFactory


@pytest.fixture
def sim(bybit_settings, simulator):
    """The simulator with the client pointed at it, quick retries, and no in-flight grace surprises."""
    bybit_settings.BYBIT_API_RETRY_MAX_ATTEMPTS = 2
    bybit_settings.RECONCILE_SETTLE_SECONDS = 0  # nothing trades during these scenarios unless a test says so
    bybit_settings.BYBIT_API_RETRY_BASE_DELAY = 0.01
    bybit_settings.BYBIT_API_RETRY_MAX_DELAY = 0.05
    from exchange.bybit.client import get_client

    get_client.cache_clear()
    return simulator


class Stream:
    """The private stream as the consumer would receive it. The simulator calls
    listeners on its own thread, where the test's database transaction is not
    visible, so messages are collected there and applied here by ``pump()``."""

    def __init__(self, engine, *, faults: bool = True):
        self._lock = threading.Lock()
        self._messages: list[dict] = []
        self.engine = engine
        self.sink = engine.add_listener(self._collect, faults=faults)

    def _collect(self, message: dict) -> None:
        with self._lock:
            self._messages.append(message)

    def pump(self) -> int:
        with self._lock:
            messages, self._messages = self._messages, []
        for message in messages:
            private_message_apply(message=parse_private_message(message), source="ws")
        return len(messages)

    def pumped_during(self, seconds: float, call):
        """``call()`` while ``pump()`` runs on another thread (its own database connection) after ``seconds``;
        returns what ``call`` returns once both are done."""

        def deliver() -> None:
            try:
                self.pump()
            finally:
                connection.close()

        timer = threading.Timer(seconds, deliver)
        timer.start()
        try:
            return call()
        finally:
            timer.join()

    def stop(self) -> None:
        """The consumer stops: what happens on the exchange from now on is not seen."""
        self.pump()
        self.engine.remove_listener(self.sink)


def place(*, symbol="BTCUSDT", side="Buy", qty="0.010", price="60000", order_type="Limit", tif="GTC",
          position_idx=0, reduce_only=False, age_seconds: float = 0, submit=True) -> Order:
    """An order as the pipeline makes it: a pending_submit row first, then the submit."""
    from orders.services.order_executor import order_submit

    order = OrderFactory(
        order_link_id=f"{uuid.uuid4().hex}-0",
        order_id="",
        symbol=symbol,
        side=side,
        order_type=order_type,
        time_in_force="IOC" if order_type == "Market" else tif,
        post_only=tif == "PostOnly",
        qty=Decimal(qty),
        price=None if order_type == "Market" else Decimal(price),
        position_idx=position_idx,
        reduce_only=reduce_only,
        status=OrderStatus.PENDING_SUBMIT,
    )
    if age_seconds:
        backdate(order, age_seconds)
    return order_submit(order=order) if submit else order


def backdate(order: Order, seconds: float) -> None:
    then = timezone.now() - timedelta(seconds=seconds)
    Order.objects.filter(pk=order.pk).update(created_at=then, updated_at=then)
    order.refresh_from_db()


def sim_order(engine, order: Order):
    with engine.lock:
        return engine.orders_by_link.get(order.order_link_id)


def books_differences(engine, *, symbols=None) -> list[str]:
    """Every way the database differs from the simulator: orders (status, fills),
    executions (the set of execIds) and positions (signed size per positionIdx)."""
    out: list[str] = []
    with engine.lock:
        orders = [(o.order_id, o.order_link_id, o.status, o.cum_exec_qty, o.symbol) for o in engine.orders.values()]
        exec_ids = {e.exec_id for e in engine.executions if symbols is None or e.symbol in symbols}
        positions = {
            (p.symbol, p.position_idx): (-p.size if p.side == "Sell" else p.size)
            for p in engine.positions.values()
        }
    by_id = {o.order_id: o for o in Order.objects.exclude(order_id="")}
    for order_id, link, status, cum, symbol in orders:
        if symbols is not None and symbol not in symbols:
            continue
        ours = by_id.get(order_id)
        if ours is None:
            out.append(f"order {order_id} ({link or 'no link'}) {status} missing from the database")
            continue
        want = BYBIT_STATUS[status]
        if status == "Cancelled" and ours.status == OrderStatus.REJECTED and cum == 0:
            want = OrderStatus.REJECTED  # PostOnly that would cross
        if ours.status != want or ours.filled_qty != cum:
            out.append(f"order {link}: ours {ours.status}/{ours.filled_qty}, exchange {status}/{cum}")
    ours_exec = set(Execution.objects.exclude(source="adjust").values_list("exec_id", flat=True))
    if ours_exec != exec_ids:
        out.append(f"executions: missing {sorted(exec_ids - ours_exec)}, extra {sorted(ours_exec - exec_ids)}")
    local = {(p.symbol, p.position_idx): p.signed_size for p in Position.objects.all()}
    for key in set(positions) | set(local):
        if symbols is not None and key[0] not in symbols:
            continue
        if positions.get(key, Decimal(0)) != local.get(key, Decimal(0)):
            out.append(f"position {key}: ours {local.get(key)}, exchange {positions.get(key)}")
    return out
