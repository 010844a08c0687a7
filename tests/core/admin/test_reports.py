"""The HTML reports people open from the admin: filters, CSV, permissions, strategy attribution."""

import csv
import io
from datetime import timedelta

import pytest
from django.utils import timezone

import tests.orders.selectors.test_pnl as ledger
from orders.models import OrderStatus
from tests.orders.factories import OrderFactory

pytestmark = pytest.mark.django_db


def test_orders_report_filters_by_status_and_symbol_and_exports_csv(client, readonly_staff):
    filled = OrderFactory(symbol="ETHUSDT", status=OrderStatus.FILLED)
    OrderFactory(symbol="ETHUSDT", status=OrderStatus.CANCELLED)
    OrderFactory(symbol="BTCUSDT", status=OrderStatus.FILLED)
    client.force_login(readonly_staff)
    response = client.get("/reports/orders/", {"status": "filled", "symbol": "ethusdt"})
    assert response.status_code == 200
    assert [o.pk for o in response.context["page"].object_list] == [filled.pk]
    export = client.get("/reports/orders/", {"status": "filled", "symbol": "ETHUSDT", "format": "csv"})
    rows = list(csv.reader(io.StringIO(b"".join(export.streaming_content).decode())))
    assert rows[0][:2] == ["created_at", "order_link_id"] and [r[1] for r in rows[1:]] == [filled.order_link_id]


def test_orders_report_bad_period_is_400_and_anonymous_is_sent_to_login(client, readonly_staff):
    assert client.get("/reports/orders/").status_code == 302
    client.force_login(readonly_staff)
    assert client.get("/reports/orders/", {"start": "2026-03-02", "end": "2026-03-01"}).status_code == 400


def test_pnl_report_by_strategy_attributes_each_fill_to_its_order(client, readonly_staff, monkeypatch):
    monkeypatch.setattr(ledger, "T0", timezone.now() - timedelta(hours=2))
    ledger.fill("Buy", "1", "100", minutes=1, strategy="alpha")
    ledger.fill("Sell", "1", "101", minutes=2, strategy="beta")
    client.force_login(readonly_staff)
    report = client.get("/reports/pnl/", {"group_by": "strategy"}).context["report"]
    assert {(r.strategy, r.realized_pnl, r.trades) for r in report.rows} == {("alpha", 0, 1), ("beta", 1, 1)}


def test_strategy_of_a_fill_outside_the_time_range_is_still_found(monkeypatch):
    # The range read misses a fill whose time differs from its ledger entry: the exec_id lookup finds it.
    from orders.selectors.pnl import _Strategies
    from positions.models import Position

    monkeypatch.setattr(ledger, "T0", timezone.now() - timedelta(hours=2))
    ledger.fill("Buy", "1", "100", minutes=1, strategy="gamma")
    position = Position.objects.get()
    now = timezone.now()
    strategy_of = _Strategies(position, now, now + timedelta(seconds=1))  # an empty range
    exec_id = position.ledger.get().exec_id
    assert strategy_of(exec_id) == "gamma"
    assert strategy_of("unknown-exec") == "(none)"
