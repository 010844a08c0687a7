"""``manage.py setup_schedules``: the fill-side django-q2 schedules, idempotent, intervals from settings."""

from io import StringIO

import pytest
from django.core.management import call_command
from django_q.models import Schedule

from orders.jobs import SCHEDULES

pytestmark = pytest.mark.django_db


def test_creates_every_schedule_once_and_follows_the_settings(settings):
    settings.POSITION_SNAPSHOT_INTERVAL, settings.STALE_ORDER_SWEEP_INTERVAL = 300, 61
    settings.RECONCILE_INTERVAL_MINUTES = 0  # reconcile's schedule is also an orders.jobs path (test_jobs)
    call_command("setup_schedules", stdout=StringIO())
    call_command("setup_schedules", stdout=StringIO())

    rows = {s.name: s for s in Schedule.objects.filter(name__in=[j.name for j in SCHEDULES])}
    assert len(rows) == 7 == Schedule.objects.filter(func__startswith="orders.jobs.").count()
    assert rows["positions: snapshot"].minutes == 5
    assert rows["orders: stale sweep"].minutes == 2  # 61 s, rounded up to whole minutes
    assert all(r.schedule_type == Schedule.MINUTES and r.repeats == -1 for r in rows.values())

    settings.POSITION_SNAPSHOT_INTERVAL = 60
    out = StringIO()
    call_command("setup_schedules", stdout=out)
    assert Schedule.objects.get(name="positions: snapshot").minutes == 1
    assert "positions: snapshot: updated" in out.getvalue()


def test_every_job_function_exists_and_runs():
    from django.utils.module_loading import import_string

    for job in SCHEDULES:
        import_string(job.func)  # a typo in a schedule would only show up in qcluster
    from orders import jobs

    assert jobs.job_positions_snapshot() == 0
    assert jobs.job_positions_validate() == 0
    assert jobs.job_loss_warnings() == 0
    assert jobs.job_mark_prices_refresh() == 0  # no open position: no exchange call
    assert jobs.job_stale_orders_sweep() == 0
    assert jobs.job_positions_validate_incremental() == 0
    assert jobs.job_pnl_days_refresh() == 0  # no position: no day to sum
