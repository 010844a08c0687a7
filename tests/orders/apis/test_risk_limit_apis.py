from decimal import Decimal

import pytest

from ordermanager.core.models import AuditEntry
from orders.models import RiskLimit
from orders.services.risk_limit_changes import MSG_HALT_REASON, MSG_NEGATIVE, MSG_RATIO, MSG_TOO_LARGE
from tests.orders.factories import RiskLimitFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def glob(db):
    return RiskLimitFactory(symbol="", max_position_size="50000", max_order_size_ratio="0.5")


@pytest.fixture
def staff(api_client, risk_staff):
    return api_client(risk_staff)


def test_list_shows_the_global_row_first(api_client, readonly_staff, glob):
    RiskLimitFactory(symbol="ETHUSDT")
    body = api_client(readonly_staff).get("/api/risk-limits/").json()
    assert [(r["symbol"], r["is_global"]) for r in body] == [("", True), ("ETHUSDT", False)]
    assert body[0]["max_order_size_ratio"] == "0.5"


def test_update_is_saved_and_audited_with_before_after_who_and_why(staff, risk_staff, glob):
    response = staff.post(
        f"/api/risk-limits/{glob.pk}/update/", {"max_position_size": "25000", "reason": "tighten"}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["max_position_size"] == "25000"
    assert response.json()["updated_by"] == risk_staff.username
    entry = AuditEntry.objects.get()
    assert entry.user == risk_staff and entry.reason == "tighten" and entry.source == "api"
    assert entry.changes == {"max_position_size": {"before": "50000", "after": "25000"}}


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"max_position_size": "-1"}, "max_position_size", MSG_NEGATIVE),
        ({"max_exposure": "-0.01"}, "max_exposure", MSG_NEGATIVE),
        ({"max_order_size_ratio": "1.5"}, "max_order_size_ratio", MSG_RATIO),
        ({"reduce_only": True}, "halt_reason", MSG_HALT_REASON),
    ],
)
def test_bad_values_are_400_naming_the_field_and_change_nothing(staff, glob, body, field, message):
    response = staff.post(f"/api/risk-limits/{glob.pk}/update/", body, format="json")
    assert response.status_code == 400
    assert response.json()["extra"]["fields"][field] == [message]
    glob.refresh_from_db()
    assert glob.max_position_size == 50000 and not glob.reduce_only
    assert AuditEntry.objects.count() == 0


def test_not_a_number_is_400(staff, glob):
    response = staff.post(f"/api/risk-limits/{glob.pk}/update/", {"max_position_size": "lots"}, format="json")
    assert response.status_code == 400
    assert "max_position_size" in response.json()["extra"]["fields"]


def test_update_unknown_row_is_404(staff, glob):
    assert staff.post("/api/risk-limits/999999/update/", {}, format="json").status_code == 404
    assert staff.get("/api/risk-limits/999999/").status_code == 404


def test_create_a_symbol_override_starting_from_the_global_row(staff, glob):
    response = staff.post("/api/risk-limits/create/", {"symbol": "ethusdt", "max_position_size": "100"}, format="json")
    assert response.status_code == 201, response.content
    row = RiskLimit.objects.get(symbol="ETHUSDT")
    assert row.max_position_size == 100 and row.max_order_size_ratio == Decimal("0.5")
    assert AuditEntry.objects.get().action == "risk_limit.create"


def test_create_a_duplicate_is_400_on_symbol(staff, glob):
    RiskLimitFactory(symbol="ETHUSDT")
    response = staff.post("/api/risk-limits/create/", {"symbol": "ETHUSDT"}, format="json")
    assert response.status_code == 400
    assert "symbol" in response.json()["extra"]["fields"]


def test_halt_needs_a_reason(staff, glob):
    response = staff.post("/api/trading-halt/", {"halted": True}, format="json")
    assert response.status_code == 400
    assert response.json()["extra"]["fields"]["reason"] == [MSG_HALT_REASON]
    glob.refresh_from_db()
    assert not glob.trading_halted


def test_halt_and_resume_are_audited(staff, risk_staff, glob):
    assert staff.post("/api/trading-halt/", {"halted": True, "reason": "exchange incident"}, format="json").json()[
        "trading_halted"
    ]
    glob.refresh_from_db()
    assert glob.trading_halted and glob.halt_reason == "exchange incident"
    body = staff.post("/api/trading-halt/", {"halted": False}, format="json").json()
    assert body["trading_halted"] is False and body["halt_reason"] == ""
    actions = list(AuditEntry.objects.order_by("id").values_list("changes", flat=True))
    assert actions[0]["trading_halted"] == {"before": False, "after": True}
    assert actions[1]["trading_halted"] == {"before": True, "after": False}


def test_an_amount_beyond_what_the_column_holds_is_400_naming_the_field(staff, glob):
    response = staff.post(f"/api/risk-limits/{glob.pk}/update/", {"max_exposure": "1e20"}, format="json")
    assert response.status_code == 400
    assert response.json()["extra"]["fields"]["max_exposure"] == [MSG_TOO_LARGE["max_exposure"]]
    assert MSG_TOO_LARGE["max_exposure"] == "Must be below 1,000,000,000,000,000,000 USDT (the largest amount stored)."
    glob.refresh_from_db()
    assert glob.max_exposure == Decimal("200000") and AuditEntry.objects.count() == 0


def test_position_limits_in_both_units_and_null_is_no_limit(staff, glob):
    response = staff.post(f"/api/risk-limits/{glob.pk}/update/",
                          {"max_position_size": "2.5", "max_position_value": None}, format="json")
    assert response.status_code == 200, response.content
    assert (response.json()["max_position_size"], response.json()["max_position_value"]) == ("2.5", None)
    glob.refresh_from_db()
    assert (glob.max_position_size, glob.max_position_value) == (Decimal("2.5"), None)
