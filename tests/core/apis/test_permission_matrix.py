"""Every role x every API action: allowed or refused, and refused means nothing changed.

"Allowed" is proven by a status that only a permitted caller can reach (a 2xx,
or a domain answer such as 409 "order already filled" for a cancel).
"""

import pytest

from ordermanager.core.models import AuditEntry
from orders.models import OrderStatus, RiskLimit
from tests.orders.factories import OrderFactory, RiskLimitFactory
from tests.positions.factories import PositionFactory
from tests.signals_app.factories import TradingSignalFactory

pytestmark = pytest.mark.django_db

ROLES = ["anonymous", "readonly_staff", "api_trader", "risk_staff", "risk_admin"]
READ_ROLES = {"readonly_staff", "api_trader", "risk_staff", "risk_admin"}
WRITE_ROLES = {"risk_staff", "risk_admin"}


@pytest.fixture
def world(db):
    glob = RiskLimitFactory(symbol="")
    order = OrderFactory(status=OrderStatus.FILLED, filled_qty="0.010")
    position = PositionFactory(symbol="BTCUSDT")
    signal = TradingSignalFactory()
    return {"glob": glob, "order": order, "position": position, "signal": signal}


@pytest.fixture
def client_as(request, api_client):
    def make(role):
        if role == "anonymous":
            return api_client()
        if role == "api_trader":
            return request.getfixturevalue("api_trader_client")
        return api_client(request.getfixturevalue(role))

    return make


def _reads(world):
    return [
        "/api/orders/",
        f"/api/orders/{world['order'].order_link_id}/",
        "/api/executions/",
        "/api/signals/",
        f"/api/signals/{world['signal'].signal_id}/",
        "/api/positions/",
        f"/api/positions/{world['position'].pk}/",
        f"/api/positions/{world['position'].pk}/snapshots/",
        "/api/risk-limits/",
        f"/api/risk-limits/{world['glob'].pk}/",
        "/api/reconciliation-runs/",
        "/api/reports/pnl/",
        "/api/health/",
    ]


@pytest.mark.parametrize("role", ROLES)
def test_reads(role, world, client_as):
    client = client_as(role)
    for url in _reads(world):
        response = client.get(url)
        expected = 200 if role in READ_ROLES else 401
        assert response.status_code == expected, (role, url, response.content[:200])


def _writes(world):
    return {
        "cancel_order": (f"/api/orders/{world['order'].order_link_id}/cancel/", {"note": "t"}, 409),
        "update_limit": (f"/api/risk-limits/{world['glob'].pk}/update/", {"max_position_size": "100"}, 200),
        "create_limit": ("/api/risk-limits/create/", {"symbol": "ETHUSDT", "max_position_size": "10"}, 201),
        "halt": ("/api/trading-halt/", {"halted": True, "reason": "test"}, 200),
        "reconcile": ("/api/reconciliation-runs/start/", {}, 202),
    }


@pytest.mark.parametrize("action", ["cancel_order", "update_limit", "create_limit", "halt", "reconcile"])
@pytest.mark.parametrize("role", ROLES)
def test_writes(role, action, world, client_as, django_capture_on_commit_callbacks):
    url, body, allowed_status = _writes(world)[action]
    with django_capture_on_commit_callbacks(execute=False):
        response = client_as(role).post(url, body, format="json")
    if role in WRITE_ROLES:
        assert response.status_code == allowed_status, response.content
        return
    assert response.status_code == (401 if role == "anonymous" else 403), response.content
    assert response.json()["code"] in ("not_authenticated", "permission_denied")
    # Refused means nothing changed.
    assert AuditEntry.objects.count() == 0
    assert not RiskLimit.objects.filter(trading_halted=True).exists()
    assert not RiskLimit.objects.filter(symbol="ETHUSDT").exists()
