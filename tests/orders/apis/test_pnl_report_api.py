from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from tests.orders.selectors.test_pnl import fill

pytestmark = pytest.mark.django_db


def test_pnl_by_symbol_and_strategy_as_exact_strings(api_client, readonly_staff, monkeypatch):
    import tests.orders.selectors.test_pnl as helpers

    monkeypatch.setattr(helpers, "T0", timezone.now() - timedelta(minutes=30))
    fill("Buy", "1", "100", minutes=1, strategy="a", fee="0.01")
    fill("Sell", "1", "100.5", minutes=2, strategy="b", fee="0.01")
    body = api_client(readonly_staff).get("/api/reports/pnl/", {"group_by": "symbol_strategy"}).json()
    assert [(r["symbol"], r["strategy"], r["realized_pnl"]) for r in body["rows"]] == [
        ("BTCUSDT", "a", "0"),
        ("BTCUSDT", "b", "0.5"),
    ]
    assert Decimal(body["total"]["net_pnl"]) == Decimal("0.48")


@pytest.mark.parametrize(("params", "field"), [({"group_by": "desk"}, "group_by"), ({"start": "x"}, "start")])
def test_bad_parameters_are_400(api_client, readonly_staff, params, field):
    response = api_client(readonly_staff).get("/api/reports/pnl/", params)
    assert response.status_code == 400
    assert field in response.json()["extra"]["fields"]


def test_end_before_start_is_400(api_client, readonly_staff):
    response = api_client(readonly_staff).get(
        "/api/reports/pnl/", {"start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"}
    )
    assert response.status_code == 400
    assert "end" in response.json()["extra"]["fields"]
