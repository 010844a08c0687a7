from decimal import Decimal

import pytest

from tests.positions.factories import PositionFactory, PositionSnapshotFactory

pytestmark = pytest.mark.django_db


def test_pnl_is_coloured_and_signed(client, readonly_staff):
    PositionFactory(symbol="BTCUSDT", unrealized_pnl=Decimal("12.5"), realized_pnl=Decimal("-3"))
    client.force_login(readonly_staff)
    page = client.get("/admin/positions/position/").content.decode()
    assert 'class="pnl-gain"' in page and "+12.5" in page
    assert 'class="pnl-loss"' in page and "-3" in page


def test_position_page_has_a_snapshot_chart(client, readonly_staff):
    snap = PositionSnapshotFactory()
    PositionSnapshotFactory(position=snap.position)
    client.force_login(readonly_staff)
    page = client.get(f"/admin/positions/position/{snap.position.pk}/change/").content.decode()
    assert "<svg" in page and "<polyline" in page


@pytest.mark.django_db(transaction=True)  # validation reads on its own connections (parallel slices on PostgreSQL)
def test_validate_now_repairs_a_position_that_differs_from_its_fills(client, risk_staff):
    from positions.models import Position
    from tests.orders.selectors.test_pnl import fill

    fill("Buy", "1", "100", minutes=1, symbol="BTCUSDT")
    position = Position.objects.get(symbol="BTCUSDT")
    Position.objects.filter(pk=position.pk).update(size=Decimal("5"))  # drift the stored row behind the fills
    client.force_login(risk_staff)
    assert b"Validate and repair now" in client.get("/admin/positions/position/validate-now/").content
    response = client.post("/admin/positions/position/validate-now/", follow=True)
    assert "difference" in response.content.decode()
    position.refresh_from_db()
    assert position.size == Decimal("1")


def test_viewer_cannot_validate(client, readonly_staff):
    client.force_login(readonly_staff)
    assert client.post("/admin/positions/position/validate-now/").status_code == 403
