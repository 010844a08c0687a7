import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from orders.apis import _CANCEL_REFUSED, _CANCEL_SETTLED
from orders.models import OrderStatus
from orders.services.cancellation import CancelResult
from tests.orders.factories import ExecutionFactory, OrderFactory, SignalOrderRelationshipFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def client(api_client, readonly_staff):
    return api_client(readonly_staff)


def test_list_is_newest_first_with_exact_decimal_strings(client):
    older = OrderFactory(qty="0.010", price="64000.5")
    newer = OrderFactory(qty="1.5", price=None, order_type="Market", time_in_force="IOC", post_only=False)
    body = client.get("/api/orders/").json()
    assert [row["order_link_id"] for row in body["results"]] == [newer.order_link_id, older.order_link_id]
    assert body["results"][1]["qty"] == "0.01"
    assert body["results"][1]["price"] == "64000.5"
    assert body["results"][0]["price"] is None


def test_list_filters_by_symbol_status_side_and_period(client):
    wanted = OrderFactory(symbol="ETHUSDT", status=OrderStatus.NEW, side="Sell")
    OrderFactory(symbol="ETHUSDT", status=OrderStatus.CANCELLED, side="Sell")
    OrderFactory(symbol="BTCUSDT", status=OrderStatus.NEW, side="Sell")
    since = (timezone.now() - timedelta(minutes=5)).isoformat()
    body = client.get("/api/orders/", {"symbol": "ethusdt", "status": "new", "side": "Sell", "created_after": since})
    assert [row["order_link_id"] for row in body.json()["results"]] == [wanted.order_link_id]


def test_list_filters_by_signal_and_strategy(client):
    link = SignalOrderRelationshipFactory(order=OrderFactory(strategy_id="momentum_v1"), role="open")
    OrderFactory(strategy_id="other")
    by_signal = client.get("/api/orders/", {"signal_id": str(link.signal.signal_id)}).json()["results"]
    assert [r["order_link_id"] for r in by_signal] == [link.order.order_link_id]
    assert by_signal[0]["signals"][0]["signal_id"] == str(link.signal.signal_id)
    assert by_signal[0]["signals"][0]["role"] == "open"
    by_strategy = client.get("/api/orders/", {"strategy": "momentum_v1"}).json()["results"]
    assert [r["order_link_id"] for r in by_strategy] == [link.order.order_link_id]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "bogus"}, "status"),
        ({"created_after": "yesterday"}, "created_after"),
        ({"signal_id": "x"}, "signal_id"),
    ],
)
def test_bad_filter_is_400_naming_the_field(client, params, field):
    response = client.get("/api/orders/", params)
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid"
    assert field in body["extra"]["fields"]


def test_cursor_pagination_walks_every_order_once(client):
    orders = OrderFactory.create_batch(5)
    seen, url = [], "/api/orders/?page_size=2"
    while url:
        body = client.get(url).json()
        seen += [row["order_link_id"] for row in body["results"]]
        url = body["next"]
    assert sorted(seen) == sorted(o.order_link_id for o in orders)


def test_detail_has_fills_signals_and_who_cancelled(client, risk_staff):
    order = OrderFactory(status=OrderStatus.CANCELLED, cancel_reason="manual", cancelled_by=risk_staff)
    ExecutionFactory(order=order, exec_qty="0.004", exec_price="64000")
    SignalOrderRelationshipFactory(order=order)
    body = client.get(f"/api/orders/{order.order_link_id}/").json()
    assert body["executions"][0]["exec_qty"] == "0.004"
    assert len(body["signals"]) == 1
    assert body["cancelled_by"] == risk_staff.username


def test_unknown_order_is_404_with_the_id(client):
    response = client.get("/api/orders/nope-123/")
    assert response.status_code == 404
    assert response.json() == {"code": "not_found", "message": "No order with orderLinkId 'nope-123'.", "extra": {}}


def test_cancel_unknown_order_is_404(api_client, risk_staff):
    response = api_client(risk_staff).post("/api/orders/nope/cancel/", {"note": "x"}, format="json")
    assert response.status_code == 404


def test_cancel_with_a_bad_reason_is_400_naming_the_field_and_changes_nothing(api_client, risk_staff):
    order = OrderFactory(status=OrderStatus.NEW)
    response = api_client(risk_staff).post(
        f"/api/orders/{order.order_link_id}/cancel/", {"reason": "because"}, format="json"
    )
    assert response.status_code == 400
    assert "reason" in response.json()["extra"]["fields"]
    order.refresh_from_db()
    assert order.status == OrderStatus.NEW


def test_cancel_a_filled_order_is_409(api_client, risk_staff):
    order = OrderFactory(status=OrderStatus.FILLED, filled_qty="0.010")
    response = api_client(risk_staff).post(f"/api/orders/{order.order_link_id}/cancel/", {}, format="json")
    assert response.status_code == 409
    assert response.json()["code"] == "order_not_cancellable"
    order.refresh_from_db()
    assert order.status == OrderStatus.FILLED and order.cancelled_by is None


def test_executions_list_filters_by_order_and_type(client):
    order = OrderFactory()
    fill = ExecutionFactory(order=order)
    ExecutionFactory(order=order, exec_type="Funding", exec_id="f-" + uuid.uuid4().hex)
    ExecutionFactory()
    body = client.get("/api/executions/", {"order_link_id": order.order_link_id, "exec_type": "Trade"}).json()
    assert [row["exec_id"] for row in body["results"]] == [fill.exec_id]
    assert body["results"][0]["order_link_id"] == order.order_link_id


def test_executions_bad_period_is_400(client):
    response = client.get("/api/executions/", {"exec_after": "soon"})
    assert response.status_code == 400
    assert "exec_after" in response.json()["extra"]["fields"]


def test_period_with_any_offset_python_accepts_is_compared_in_utc(client):
    # -19:05 is valid ISO 8601 for Python but out of PostgreSQL's range: normalised to UTC first.
    order = OrderFactory()
    body = client.get("/api/orders/", {"created_after": "2000-01-01T00:00:00-19:05"}).json()
    assert [row["order_link_id"] for row in body["results"]] == [order.order_link_id]
    response = client.get("/api/reconciliation-runs/", {"started_before": "4075-08-23T06:29:31-19:05"})
    assert response.status_code == 200


def test_period_beyond_the_calendar_in_utc_is_400(client):
    response = client.get("/api/orders/", {"created_before": "9999-12-31T23:00:00-05:00"})
    assert response.status_code == 400 and "created_before" in response.json()["extra"]["fields"]


def test_every_cancel_result_has_exactly_one_api_answer():
    assert set(_CANCEL_SETTLED).isdisjoint(_CANCEL_REFUSED)
    assert set(_CANCEL_SETTLED) | set(_CANCEL_REFUSED) == set(CancelResult)
