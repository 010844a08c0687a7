import pytest
from django.utils import timezone
from django_q.models import Task

from orders.models import ReconciliationRun
from orders.reconcile import start as reconciliation_start
from tests.orders.apis.lock_elsewhere import reconcile_lock_held_elsewhere
from tests.orders.factories import DiscrepancyFactory, ReconciliationRunFactory

pytestmark = pytest.mark.django_db


def test_list_and_detail_with_discrepancies(api_client, readonly_staff):
    run = ReconciliationRunFactory(status=ReconciliationRun.Status.UNRESOLVED, checked=4)
    DiscrepancyFactory(run=run, kind="order_status", before={"status": "new"}, after={"status": "filled"})
    client = api_client(readonly_staff)
    assert client.get("/api/reconciliation-runs/").json()["results"][0]["id"] == run.pk
    detail = client.get(f"/api/reconciliation-runs/{run.pk}/").json()
    assert detail["discrepancies"][0]["after"] == {"status": "filled"}
    assert client.get("/api/reconciliation-runs/999999/").status_code == 404
    assert client.get("/api/reconciliation-runs/", {"status": "nope"}).status_code == 400


def test_start_queues_the_job_after_commit(
    api_client, risk_staff, mocker_async_task, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = api_client(risk_staff).post("/api/reconciliation-runs/start/", {"symbol": "btcusdt"}, format="json")
    assert response.status_code == 202
    body = response.json()
    assert body["state"] == "queued" and body["status_url"].endswith(f"/{body['task']}/")
    (call,) = mocker_async_task
    assert call["func"] == reconciliation_start.RECONCILE_JOB
    assert call["kwargs"] == {
        "trigger": "api", "user_id": risk_staff.pk, "symbol": "BTCUSDT", "task_name": body["task"],
        "group": "reconciliation",
    }


def test_start_while_a_run_holds_the_lock_is_409_and_queues_nothing(
    api_client, risk_staff, mocker_async_task, django_capture_on_commit_callbacks
):
    running = ReconciliationRunFactory(status=ReconciliationRun.Status.RUNNING)
    with reconcile_lock_held_elsewhere(), django_capture_on_commit_callbacks(execute=True):
        response = api_client(risk_staff).post("/api/reconciliation-runs/start/", {}, format="json")
        synchronous = api_client(risk_staff).post("/api/reconcile/", {}, format="json")
    assert response.status_code == 409
    # Both ways of starting a run answer alike: the same code, message and run id.
    assert response.json() == synchronous.json()
    assert response.json()["code"] == "reconciliation_in_progress"
    assert response.json()["extra"] == {"run_id": running.pk}
    assert f"#{running.pk}" in response.json()["message"]
    assert mocker_async_task == []


def test_a_running_row_without_the_lock_does_not_block_a_start(
    api_client, risk_staff, mocker_async_task, django_capture_on_commit_callbacks
):
    # The process that wrote it died (kill -9): it holds no lock; the next run marks it interrupted.
    ReconciliationRunFactory(status=ReconciliationRun.Status.RUNNING)
    with django_capture_on_commit_callbacks(execute=True):
        response = api_client(risk_staff).post("/api/reconciliation-runs/start/", {}, format="json")
    assert response.status_code == 202, response.content
    assert len(mocker_async_task) == 1


def test_task_status_reports_the_run_it_produced(api_client, readonly_staff):
    run = ReconciliationRunFactory(status=ReconciliationRun.Status.SUCCEEDED)
    now = timezone.now()
    Task.objects.create(id="t1", name="reconcile-abc", func="x", started=now, stopped=now, success=True, result=run.pk)
    body = api_client(readonly_staff).get("/api/reconciliation-tasks/reconcile-abc/").json()
    assert body["state"] == "succeeded" and body["run_id"] == run.pk
    assert api_client(readonly_staff).get("/api/reconciliation-tasks/reconcile-zzz/").status_code == 404


@pytest.fixture
def mocker_async_task(monkeypatch):
    """Stand-in for django-q2's enqueue at the import site: records what would be queued."""
    calls = []

    def fake_async_task(func, *args, **kwargs):
        calls.append({"func": func, "args": args, "kwargs": kwargs})
        return "id"

    monkeypatch.setattr("django_q.tasks.async_task", fake_async_task)
    return calls


def test_a_run_lists_its_discrepancies_in_the_order_they_were_found(api_client, readonly_staff):
    run = ReconciliationRunFactory(status=ReconciliationRun.Status.UNRESOLVED)
    # Stored in the other order than their ids say they were found: the table's order is not the finding order.
    later = DiscrepancyFactory(run=run, id=1_000_002, kind="order_closed_on_exchange")
    earlier = DiscrepancyFactory(run=run, id=1_000_001, kind="order_status")
    detail = api_client(readonly_staff).get(f"/api/reconciliation-runs/{run.pk}/").json()
    assert [d["id"] for d in detail["discrepancies"]] == [earlier.pk, later.pk]
