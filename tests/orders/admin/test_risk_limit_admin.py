from decimal import Decimal

import pytest
from django.contrib.admin.models import LogEntry

from ordermanager.core.models import AuditEntry
from orders.models import RiskLimit
from orders.services.risk_limit_changes import MSG_HALT_REASON, MSG_NEGATIVE, MSG_RATIO, MSG_TOO_LARGE
from tests.orders.factories import RiskLimitFactory

pytestmark = pytest.mark.django_db


def _form(row: RiskLimit, **changes) -> dict:
    data = {
        "max_position_size": row.max_position_size, "max_position_value": row.max_position_value,
        "max_exposure": row.max_exposure, "max_order_size_ratio": row.max_order_size_ratio,
        "halt_reason": row.halt_reason, "change_reason": "",
    }  # fmt: skip
    data.update(changes)
    return {k: "" if v is None else v for k, v in data.items() if v is not False}


def test_tightening_a_limit_is_saved_and_audited(client, risk_staff):
    row = RiskLimitFactory(symbol="")
    client.force_login(risk_staff)
    response = client.post(
        f"/admin/orders/risklimit/{row.pk}/change/", _form(row, max_position_value="1000", change_reason="volatile")
    )
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    row.refresh_from_db()
    assert row.max_position_value == Decimal("1000") and row.updated_by == risk_staff
    entry = AuditEntry.objects.get()
    assert entry.changes["max_position_value"] == {"before": "50000", "after": "1000"}
    assert entry.user == risk_staff and entry.reason == "volatile" and entry.source == "admin"
    assert LogEntry.objects.filter(object_id=str(row.pk), user=risk_staff).exists()
    page = client.get(f"/admin/orders/risklimit/{row.pk}/change/").content.decode()
    assert 'id="audit-trail"' in page and "volatile" in page


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"max_position_size": "-5"}, "max_position_size", MSG_NEGATIVE),
        ({"max_position_value": "-5"}, "max_position_value", MSG_NEGATIVE),
        ({"max_order_size_ratio": "1.2"}, "max_order_size_ratio", MSG_RATIO),
        ({"reduce_only": "on"}, "halt_reason", MSG_HALT_REASON),
    ],
)
def test_bad_values_are_refused_with_a_clear_message(client, risk_staff, changes, field, message):
    row = RiskLimitFactory(symbol="")
    client.force_login(risk_staff)
    response = client.post(f"/admin/orders/risklimit/{row.pk}/change/", _form(row, **changes))
    assert response.status_code == 200
    assert message in response.context["adminform"].form.errors[field]
    assert AuditEntry.objects.count() == 0


def test_viewer_cannot_change_limits(client, readonly_staff):
    row = RiskLimitFactory(symbol="")
    client.force_login(readonly_staff)
    assert client.get(f"/admin/orders/risklimit/{row.pk}/change/").status_code == 200  # view only
    response = client.post(f"/admin/orders/risklimit/{row.pk}/change/", _form(row, max_position_value="1"))
    assert response.status_code == 403
    row.refresh_from_db()
    assert row.max_position_value == Decimal("50000")


def test_the_trading_halt_switch_asks_for_confirmation_and_a_reason(client, risk_staff):
    row = RiskLimitFactory(symbol="")
    client.force_login(risk_staff)
    changelist = client.get("/admin/orders/risklimit/").content.decode()
    assert "HALT ALL TRADING" in changelist
    confirm = client.get("/admin/orders/risklimit/trading-halt/")
    assert b"Yes, HALT ALL TRADING" in confirm.content
    assert b'name="want" value="halt"' in confirm.content
    refused = client.post("/admin/orders/risklimit/trading-halt/", {"want": "halt", "reason": ""})
    assert MSG_HALT_REASON in refused.context["form"].errors["reason"]
    row.refresh_from_db()
    assert not row.trading_halted
    halt = {"want": "halt", "reason": "exchange incident"}
    assert client.post("/admin/orders/risklimit/trading-halt/", halt).status_code == 302
    row.refresh_from_db()
    assert row.trading_halted and row.halt_reason == "exchange incident"
    assert "TRADING IS HALTED" in client.get("/admin/orders/risklimit/").content.decode()
    client.post("/admin/orders/risklimit/trading-halt/", {"want": "resume", "reason": ""})  # resume needs no reason
    row.refresh_from_db()
    assert not row.trading_halted
    assert AuditEntry.objects.filter(action="risk_limit.update").count() == 2


def test_viewer_gets_no_halt_switch(client, readonly_staff):
    RiskLimitFactory(symbol="")
    client.force_login(readonly_staff)
    assert "HALT ALL TRADING" not in client.get("/admin/orders/risklimit/").content.decode()
    assert client.post("/admin/orders/risklimit/trading-halt/", {"reason": "x"}).status_code == 403
    assert not RiskLimit.objects.filter(trading_halted=True).exists()


def test_add_a_symbol_override(client, risk_staff):
    RiskLimitFactory(symbol="")
    client.force_login(risk_staff)
    data = {"symbol": "ethusdt", "max_position_size": "500", "max_exposure": "200000", "max_order_size_ratio": "0.2",
            "halt_reason": ""}  # fmt: skip
    assert client.post("/admin/orders/risklimit/add/", data).status_code == 302
    row = RiskLimit.objects.get(symbol="ETHUSDT")
    assert row.max_order_size_ratio == Decimal("0.2")
    assert AuditEntry.objects.get().action == "risk_limit.create"


def test_a_second_halt_click_never_resumes_trading(client, risk_staff):
    # Two officers open the confirmation while trading runs; both confirm "halt".
    row = RiskLimitFactory(symbol="")
    client.force_login(risk_staff)
    for _ in range(2):
        response = client.post("/admin/orders/risklimit/trading-halt/", {"want": "halt", "reason": "incident"},
                               follow=True)  # fmt: skip
        row.refresh_from_db()
        assert row.trading_halted
    assert "already halted" in response.content.decode()
    assert AuditEntry.objects.filter(action="risk_limit.update").count() == 1


@pytest.mark.parametrize(
    ("field", "value"),
    [("max_exposure", "1e20"), ("max_position_value", "1000000000000000000"), ("max_position_size", "1E+18")],
)
def test_amounts_beyond_what_the_column_holds_are_refused_in_the_form(client, risk_staff, field, value):
    """Not a DataError on save: the form says what the largest storable amount is, in the field's unit."""
    row = RiskLimitFactory(symbol="")
    client.force_login(risk_staff)
    response = client.post(f"/admin/orders/risklimit/{row.pk}/change/", _form(row, **{field: value}))
    assert response.status_code == 200
    assert MSG_TOO_LARGE[field] in response.context["adminform"].form.errors[field]
    row.refresh_from_db()
    assert (row.max_exposure, row.max_position_value, row.max_position_size) == (
        Decimal("200000"), Decimal("50000"), None)
    assert AuditEntry.objects.count() == 0


def test_the_admin_names_the_unit_of_each_limit_and_a_blank_limit_is_no_limit(client, risk_staff):
    row = RiskLimitFactory(symbol="")
    client.force_login(risk_staff)
    changelist = client.get("/admin/orders/risklimit/").content.decode()
    for label in ("max position size (base units)", "max position value (USDT)", "max exposure (USDT)"):
        assert label.lower() in changelist.lower()
    assert "no limit" in changelist  # the global row has no base-unit limit
    form = client.get(f"/admin/orders/risklimit/{row.pk}/change/").content.decode()
    assert "Max position size (base units)" in form and "Max position value (USDT)" in form
    response = client.post(f"/admin/orders/risklimit/{row.pk}/change/",
                           _form(row, max_position_size="2.5", max_position_value="", change_reason="per coin"))
    assert response.status_code == 302
    row.refresh_from_db()
    assert (row.max_position_size, row.max_position_value) == (Decimal("2.5"), None)
