import pytest
from rest_framework.throttling import UserRateThrottle

pytestmark = pytest.mark.django_db


def test_too_many_requests_is_429_in_the_envelope(api_trader_client, monkeypatch):
    from django.core.cache import cache

    cache.clear()
    monkeypatch.setattr(UserRateThrottle, "THROTTLE_RATES", {"user": "2/min", "anon": "2/min"})
    statuses = [api_trader_client.get("/api/health/").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    response = api_trader_client.get("/api/health/")
    assert response.json()["code"] == "throttled"
    assert int(response["Retry-After"]) > 0
    cache.clear()
