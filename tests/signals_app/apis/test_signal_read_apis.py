import uuid

import pytest

from signals_app.models import SignalStatus
from tests.orders.factories import SignalOrderRelationshipFactory
from tests.signals_app.factories import TradingSignalFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def client(api_client, readonly_staff):
    return api_client(readonly_staff)


def test_list_filters_by_status_and_symbol(client):
    rejected = TradingSignalFactory(status=SignalStatus.REJECTED, reason="amount must be positive", asset="ETHUSDT")
    TradingSignalFactory(status=SignalStatus.EXECUTED, asset="ETHUSDT")
    TradingSignalFactory(status=SignalStatus.REJECTED, asset="BTCUSDT")
    body = client.get("/api/signals/", {"status": "rejected", "symbol": "ethusdt"}).json()
    assert [(r["signal_id"], r["reason"]) for r in body["results"]] == [
        (str(rejected.signal_id), "amount must be positive")
    ]
    assert "raw_payload" not in body["results"][0]
    assert client.get("/api/signals/", {"status": "lost"}).status_code == 400


def test_detail_has_payload_and_the_orders_it_produced(client):
    link = SignalOrderRelationshipFactory(role="close")
    body = client.get(f"/api/signals/{link.signal.signal_id}/").json()
    assert body["raw_payload"]["signal_id"] == str(link.signal.signal_id)
    assert [(o["order_link_id"], o["allocation_amount"], o["role"]) for o in body["orders"]] == [
        (link.order.order_link_id, "640", "close")
    ]


def test_unknown_signal_is_404(client):
    response = client.get(f"/api/signals/{uuid.uuid4()}/")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
