from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from tests.positions.factories import PositionFactory, PositionSnapshotFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def client(api_client, readonly_staff):
    return api_client(readonly_staff)


def test_list_and_open_filter(client):
    long = PositionFactory(symbol="BTCUSDT", size=Decimal("0.5"), unrealized_pnl=Decimal("12.25"))
    PositionFactory(symbol="ETHUSDT", size=Decimal("0"))
    rows = client.get("/api/positions/", {"open": "true"}).json()
    assert [(r["id"], r["size"], r["unrealized_pnl"]) for r in rows] == [(long.pk, "0.5", "12.25")]
    assert len(client.get("/api/positions/").json()) == 2
    assert client.get("/api/positions/", {"open": "maybe"}).status_code == 400


def test_detail_and_404(client):
    position = PositionFactory(symbol="BTCUSDT")
    assert client.get(f"/api/positions/{position.pk}/").json()["symbol"] == "BTCUSDT"
    assert client.get("/api/positions/999999/").status_code == 404
    assert client.get("/api/positions/999999/snapshots/").status_code == 404


def test_snapshots_newest_first_and_period_filter(client):
    position = PositionFactory()
    now = timezone.now()
    old = PositionSnapshotFactory(position=position, taken_at=now - timedelta(hours=3))
    new = PositionSnapshotFactory(position=position, taken_at=now - timedelta(minutes=1))
    PositionSnapshotFactory()  # another position
    body = client.get(f"/api/positions/{position.pk}/snapshots/").json()
    assert [r["id"] for r in body["results"]] == [new.pk, old.pk]
    since = (now - timedelta(hours=1)).isoformat()
    body = client.get(f"/api/positions/{position.pk}/snapshots/", {"taken_after": since}).json()
    assert [r["id"] for r in body["results"]] == [new.pk]
    assert client.get(f"/api/positions/{position.pk}/snapshots/", {"taken_after": "x"}).status_code == 400
