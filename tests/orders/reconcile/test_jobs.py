"""django-q2 wrappers: the queued run (admin) and the optional schedule."""

import pytest
from django_q.models import Schedule
from django_q.tasks import async_task, result

from orders.jobs import RECONCILE_SCHEDULE_FUNC as SCHEDULE_FUNC
from orders.jobs import RECONCILE_SCHEDULE_NAME as SCHEDULE_NAME
from orders.jobs import reconcile_schedule_ensure, reconcile_scheduled
from orders.models import ReconciliationRun
from orders.reconcile.lock import LockBusy

pytestmark = pytest.mark.django_db


def test_the_queued_job_runs_for_the_user_and_returns_the_run_id(sim, risk_staff):
    task = async_task("orders.jobs.reconcile_job", user_id=risk_staff.pk, symbol="ETHUSDT", sync=True)
    run = ReconciliationRun.objects.get()
    assert result(task) == run.pk
    assert (run.trigger, run.started_by, run.symbol) == ("admin", risk_staff, "ETHUSDT")


def test_the_scheduled_run_skips_quietly_when_one_is_in_progress(sim, monkeypatch):
    assert ReconciliationRun.objects.get(pk=reconcile_scheduled()).trigger == "schedule"
    import orders.reconcile as reconciliation

    def busy(*, wait):
        raise LockBusy("held")

    monkeypatch.setattr(reconciliation, "reconcile_lock", busy)
    assert reconcile_scheduled() is None


def test_the_schedule_follows_the_setting(settings):
    settings.RECONCILE_INTERVAL_MINUTES = 0
    assert reconcile_schedule_ensure() == "off"
    settings.RECONCILE_INTERVAL_MINUTES = 15
    assert reconcile_schedule_ensure() == "created"
    settings.RECONCILE_INTERVAL_MINUTES = 5
    assert reconcile_schedule_ensure() == "updated"
    schedule = Schedule.objects.get(name=SCHEDULE_NAME)
    assert (schedule.func, schedule.minutes, schedule.schedule_type) == (SCHEDULE_FUNC, 5, Schedule.MINUTES)
    settings.RECONCILE_INTERVAL_MINUTES = 0
    assert reconcile_schedule_ensure() == "removed" and not Schedule.objects.exists()
