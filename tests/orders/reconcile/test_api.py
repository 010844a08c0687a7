"""POST /api/reconcile/: runs now, answers with the run; roles, bad input and a run in progress."""

import pytest
from rest_framework.test import APIClient

from orders.models import ReconciliationRun
from orders.reconcile.lock import LockBusy
from tests.orders.reconcile.conftest import place

pytestmark = pytest.mark.django_db
URL = "/api/reconcile/"


def _client(user=None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_login(user)
    return client


def test_risk_staff_runs_it_and_gets_the_finished_run(sim, risk_staff):
    place(price="64000")
    sim.engine.set_price("BTCUSDT", "63900")

    response = _client(risk_staff).post(URL, {"symbol": "btcusdt"}, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    run = ReconciliationRun.objects.get()
    assert body["id"] == run.pk and body["status"] == "succeeded" and body["symbol"] == "BTCUSDT"
    assert (run.trigger, run.started_by) == ("api", risk_staff)
    assert body["started_by"] == risk_staff.username
    assert {d["kind"] for d in body["discrepancies"]} == {"order_closed_on_exchange", "executions_backfilled"}


def test_dry_run_and_no_fix_reach_the_service(sim, risk_staff):
    response = _client(risk_staff).post(URL, {"dry_run": True, "fix_positions": False}, format="json")
    assert response.status_code == 201 and response.json()["dry_run"] is True


@pytest.mark.parametrize("who", ["readonly_staff", "api_trader"])
def test_viewers_and_services_without_the_permission_get_403(sim, request, who):
    user = request.getfixturevalue(who)
    assert _client(user).post(URL, {}, format="json").status_code == 403
    assert not ReconciliationRun.objects.exists()


def test_anonymous_gets_401(sim):
    assert _client().post(URL, {}, format="json").status_code == 401


def test_bad_input_is_400_with_the_field(sim, risk_staff):
    response = _client(risk_staff).post(URL, {"symbol": "BTC USDT", "wait": 600}, format="json")
    assert response.status_code == 400
    fields = response.json()["extra"]["fields"]
    assert "wait" in fields
    response = _client(risk_staff).post(URL, {"symbol": "BTC USDT"}, format="json")
    assert response.status_code == 400 and "symbol" in response.json()["extra"]["fields"]
    assert not ReconciliationRun.objects.exists()


def test_a_run_in_progress_is_409(sim, risk_staff, monkeypatch):
    import orders.reconcile as reconciliation

    def busy(*, wait):
        raise LockBusy("held")

    monkeypatch.setattr(reconciliation, "reconcile_lock", busy)
    response = _client(risk_staff).post(URL, {}, format="json")
    assert response.status_code == 409
    assert response.json()["code"] == "reconciliation_in_progress"
