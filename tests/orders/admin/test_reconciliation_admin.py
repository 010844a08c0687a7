import pytest

from orders.models import ReconciliationRun
from tests.orders.apis.lock_elsewhere import reconcile_lock_held_elsewhere
from tests.orders.factories import DiscrepancyFactory, ReconciliationRunFactory

pytestmark = pytest.mark.django_db


def test_reconcile_now_runs_through_django_q_and_the_run_shows_up(
    client, risk_staff, bybit_settings, simulator, django_capture_on_commit_callbacks
):
    client.force_login(risk_staff)
    assert b"Start reconciliation" in client.get("/admin/orders/reconciliationrun/reconcile-now/").content
    # Test settings run django-q2 synchronously: the queued job runs when the commit callback fires.
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/admin/orders/reconciliationrun/reconcile-now/", {"symbol": ""})
    assert response.status_code == 302
    run = ReconciliationRun.objects.get()
    assert run.trigger == "admin" and run.started_by == risk_staff
    assert run.status in (ReconciliationRun.Status.SUCCEEDED, ReconciliationRun.Status.UNRESOLVED), run.error
    page = client.get("/admin/orders/reconciliationrun/").content.decode()
    assert f">{run.pk}<" in page or f"/{run.pk}/change/" in page


def test_a_running_run_refuses_a_second(client, risk_staff, django_capture_on_commit_callbacks):
    running = ReconciliationRunFactory(status=ReconciliationRun.Status.RUNNING)
    client.force_login(risk_staff)
    with reconcile_lock_held_elsewhere():
        # The list says so and refreshes itself until the run is over.
        assert "A run is in progress" in client.get("/admin/orders/reconciliationrun/").content.decode()
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            response = client.post("/admin/orders/reconciliationrun/reconcile-now/", {"symbol": ""}, follow=True)
    assert callbacks == []
    assert f"Another reconciliation run is in progress (#{running.pk}" in response.content.decode()
    assert ReconciliationRun.objects.count() == 1


def test_a_running_row_left_by_a_dead_process_blocks_nothing(
    client, risk_staff, bybit_settings, simulator, django_capture_on_commit_callbacks
):
    stale = ReconciliationRunFactory(status=ReconciliationRun.Status.RUNNING)
    client.force_login(risk_staff)
    assert "A run is in progress" not in client.get("/admin/orders/reconciliationrun/").content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/admin/orders/reconciliationrun/reconcile-now/", {"symbol": ""})
    stale.refresh_from_db()
    assert stale.status == ReconciliationRun.Status.FAILED and "interrupted" in stale.error
    assert ReconciliationRun.objects.exclude(pk=stale.pk).get().trigger == "admin"


def test_viewer_cannot_start_a_run(client, readonly_staff):
    client.force_login(readonly_staff)
    assert b"reconcile-now" not in client.get("/admin/orders/reconciliationrun/").content
    assert client.post("/admin/orders/reconciliationrun/reconcile-now/", {}).status_code == 403


def test_run_page_shows_discrepancies(client, readonly_staff):
    d = DiscrepancyFactory(before={"status": "new"}, after={"status": "filled"})
    client.force_login(readonly_staff)
    page = client.get(f"/admin/orders/reconciliationrun/{d.run.pk}/change/").content.decode()
    assert "order_status" in page and "filled" in page
