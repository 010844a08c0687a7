from datetime import timedelta

import pytest
from django.utils import timezone

from exchange.models import ExchangeCall
from ordermanager.core.models import Heartbeat
from ordermanager.core.services.heartbeat import heartbeat_beat

pytestmark = pytest.mark.django_db


def _components(client):
    body = client.get("/api/health/").json()
    return body["status"], {c["name"]: c for c in body["components"]}


def test_unknown_until_components_report(api_trader_client):
    status, components = _components(api_trader_client)
    assert status == "ok"
    assert components["database"]["status"] == "ok"
    assert {components[n]["status"] for n in ("consumer", "ws_gateway", "exchange", "jobs")} == {"unknown"}


def test_heartbeats_and_exchange_audit_drive_the_status(api_trader_client):
    heartbeat_beat(component="consumer")
    heartbeat_beat(component="ws_gateway")
    Heartbeat.objects.filter(component="ws_gateway").update(beat_at=timezone.now() - timedelta(minutes=5))
    ExchangeCall.objects.create(method="POST", path="/v5/order/create", http_status=200, ret_code=0)
    status, components = _components(api_trader_client)
    assert components["consumer"]["status"] == "ok"
    assert components["ws_gateway"]["status"] == "stale"
    assert components["exchange"]["status"] == "ok"
    # Stale is not down, but a heartbeat 5 min old is past ALERT_HEARTBEAT_AGE_SECONDS: the alert degrades it.
    body = api_trader_client.get("/api/health/").json()
    assert (status, [a["key"] for a in body["alerts"]]) == ("degraded", ["heartbeat_age:ws_gateway"])


def test_a_failing_exchange_makes_it_degraded(api_trader_client):
    ExchangeCall.objects.create(method="GET", path="/v5/order/realtime", http_status=None, error="ReadTimeout")
    status, components = _components(api_trader_client)
    assert status == "degraded"
    assert components["exchange"]["status"] == "down"
    assert "ReadTimeout" in components["exchange"]["detail"]
