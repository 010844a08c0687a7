"""Admin pages show decimals as people read them: no exponent notation, no 18 padding zeros."""

import re
from decimal import Decimal

import pytest

from orders.models import OrderStatus
from tests.orders.factories import ExecutionFactory, OrderFactory, SignalOrderRelationshipFactory
from tests.positions.factories import PositionFactory, PositionSnapshotFactory

pytestmark = pytest.mark.django_db
PADDED = re.compile(r"\d\.\d*0{6,}\b")  # 1.300000000000000000, 0.100000000000000000
EXPONENT = re.compile(r"\b\d(?:\.\d+)?E[+-]\d+\b")  # 2E+2


def _page(client, user, url) -> str:
    client.force_login(user)
    response = client.get(url)
    assert response.status_code == 200
    return response.content.decode()


def _plain(html: str) -> None:
    assert not PADDED.search(html), PADDED.search(html).group()
    assert not EXPONENT.search(html), EXPONENT.search(html).group()


def test_order_detail_list_and_inlines(client, risk_staff):
    order = OrderFactory(qty=Decimal("1.3"), filled_qty=Decimal("1.3"), price=Decimal("0.6"), fees=Decimal("0.03"),
                         cum_exec_value=Decimal("2E+2"), status=OrderStatus.FILLED)  # fmt: skip
    ExecutionFactory(order=order, exec_qty=Decimal("1.3"), exec_price=Decimal("0.6"), exec_value=Decimal("0.78"),
                     exec_fee=Decimal("0.03"))  # fmt: skip
    SignalOrderRelationshipFactory(order=order, allocation_amount=Decimal("2E+2"))
    # Read back from the database, as the pages do: NUMERIC(36, 18) pads every value to 18 places.
    detail = _page(client, risk_staff, f"/admin/orders/order/{order.pk}/change/")
    _plain(detail)
    assert re.search(r"<div class=\"readonly\">1\.3</div>", detail)  # "Qty: 1.3", not 1.300000000000000000
    assert "<div class=\"readonly\">0.03</div>" in detail and "<div class=\"readonly\">200.00</div>" in detail
    _plain(_page(client, risk_staff, "/admin/orders/order/"))
    _plain(_page(client, risk_staff, "/admin/orders/execution/"))
    execution_page = _page(client, risk_staff, f"/admin/orders/execution/{order.executions.get().pk}/change/")
    _plain(execution_page)
    assert "Trade Buy 1.3@0.6 BTCUSDT" in execution_page  # the object's name in the breadcrumbs


def test_cancel_confirmation_and_position_history(client, risk_staff):
    order = OrderFactory(qty=Decimal("200"), price=Decimal("0.6"), symbol="XRPUSDT", status=OrderStatus.NEW)
    client.force_login(risk_staff)
    response = client.post("/admin/orders/order/", {"action": "cancel_on_exchange", "_selected_action": [order.pk]})
    html = response.content.decode()
    _plain(html)
    assert "<td>200</td><td>0</td><td>0.6</td>" in html  # qty.normalize showed 2E+2
    position = PositionFactory(symbol="XRPUSDT", size=Decimal("200"), avg_entry_price=Decimal("0.6"))
    PositionSnapshotFactory(position=position, size=Decimal("200"), realized_pnl=Decimal("1E+1"))
    history = _page(client, risk_staff, f"/admin/positions/position/{position.pk}/change/")
    _plain(history)
    assert "<td>200</td><td>0.6</td>" in history and "<td>10.00</td>" in history
