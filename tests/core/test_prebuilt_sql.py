"""Prebuilt statements for the fill path (docs/decisions/0424): a row read through them is the row the ORM
reads, on PostgreSQL and SQLite; an update writes what ``save(update_fields=...)`` writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from ordermanager.core.prebuilt_sql import in_list, instance_update, list_param, qn, rows_select, select_sql
from orders.models import Order, OrderStatus
from positions.models import Position
from tests.orders.factories import OrderFactory

pytestmark = pytest.mark.django_db


def _fields(instance) -> dict:
    return {f.attname: getattr(instance, f.attname) for f in type(instance)._meta.concrete_fields}


def test_a_row_read_by_a_prebuilt_select_equals_the_orms():
    submitted = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    order = OrderFactory(qty=Decimal("0.123456789012"), price=Decimal("64000.5"), reduce_only=True)
    Order.objects.filter(pk=order.pk).update(submitted_at=submitted)
    position = Position.objects.create(symbol="BTCUSDT", size=Decimal("-1.5"), mark_price=None)

    [read] = rows_select(Order, select_sql(Order, f"{qn('order_link_id')} = %s"), [order.order_link_id])
    [row] = rows_select(Position, select_sql(Position, f"{qn('symbol')} = %s", lock=True), ["BTCUSDT"])

    assert _fields(read) == _fields(Order.objects.get(pk=order.pk))
    assert _fields(row) == _fields(Position.objects.get(pk=position.pk))
    assert not read._state.adding and read._state.db == "default"


def test_in_list_matches_any_number_of_values_with_one_text():
    orders = [OrderFactory() for _ in range(3)]
    sql = select_sql(Order, in_list(qn("order_link_id")), order_by=qn("id"))

    for wanted in ([], orders[:1], orders):
        links = [o.order_link_id for o in wanted]
        assert [o.pk for o in rows_select(Order, sql, [list_param(links)])] == [o.pk for o in wanted]


def test_instance_update_writes_the_fields_and_sets_auto_now_like_save():
    order = OrderFactory(status=OrderStatus.NEW)
    Order.objects.filter(pk=order.pk).update(updated_at=datetime(2020, 1, 1, tzinfo=UTC))
    order.status, order.filled_qty, order.strategy_id = OrderStatus.PARTIALLY_FILLED, Decimal("0.001"), "not-saved"

    assert instance_update(order, ("status", "filled_qty", "updated_at")) == 1

    stored = Order.objects.get(pk=order.pk)
    assert (stored.status, stored.filled_qty) == (OrderStatus.PARTIALLY_FILLED, Decimal("0.001"))
    assert stored.strategy_id == ""  # not among the fields: not written
    assert stored.updated_at > datetime.now(UTC) - timedelta(minutes=1)
    assert stored.updated_at == order.updated_at
