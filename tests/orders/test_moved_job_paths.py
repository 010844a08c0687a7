"""Migrations 0008 and 0009: django-q2 rows stored before a job moved (a running deployment's schedules,
tasks still queued at the upgrade) point at the new job paths, django-q2 can resolve them, and reverse
restores them. 0008: reconciliation into orders/reconcile/; 0009: every job of the app into orders/jobs.py
(``migrate`` applies both, so the 0008 test does)."""

import importlib
import pydoc

import pytest
from django.apps import apps
from django.utils import timezone
from django_q.models import OrmQ, Schedule
from django_q.signing import SignedPackage

from orders import jobs

pytestmark = pytest.mark.django_db
migration = importlib.import_module("orders.migrations.0008_reconcile_job_paths")
later = importlib.import_module("orders.migrations.0009_jobs_in_one_module")


def _queue(func: str, **kwargs) -> OrmQ:
    task = {"id": f"id-{func}", "name": "reconcile-0123456789abcdef", "func": func, "args": (), "kwargs": kwargs}
    return OrmQ.objects.create(key="ordermanager", payload=SignedPackage.dumps(task), lock=timezone.now())


def _func(queued: OrmQ) -> str:
    return SignedPackage.loads(OrmQ.objects.get(pk=queued.pk).payload)["func"]


def test_the_stored_schedule_and_queued_tasks_follow_the_move_and_back():
    schedule = Schedule.objects.create(name="reconcile", func="orders.jobs_reconcile.reconcile_scheduled",
                                       schedule_type=Schedule.MINUTES, minutes=15, repeats=-1)  # fmt: skip
    started = _queue("orders.services.reconciliation_start.reconciliation_job", trigger="admin", user_id=None)
    other = _queue("exchange.retention.job_exchange_calls_prune")
    unreadable = OrmQ.objects.create(key="ordermanager", payload="not signed", lock=timezone.now())
    assert pydoc.locate(schedule.func) is None  # what django-q2 would meet without the migration

    migration.forward(apps, None)
    later.forward(apps, None)

    schedule.refresh_from_db()
    assert pydoc.locate(schedule.func) is jobs.reconcile_scheduled
    assert pydoc.locate(_func(started)) is jobs.reconcile_job
    assert SignedPackage.loads(OrmQ.objects.get(pk=started.pk).payload)["kwargs"] == {"trigger": "admin",
                                                                                      "user_id": None}  # fmt: skip
    assert _func(other) == "exchange.retention.job_exchange_calls_prune"
    assert OrmQ.objects.get(pk=unreadable.pk).payload == "not signed"

    later.backward(apps, None)
    migration.backward(apps, None)

    schedule.refresh_from_db()
    assert schedule.func == "orders.jobs_reconcile.reconcile_scheduled"
    assert _func(started) == "orders.jobs_reconcile.reconcile_job"


def test_0009_every_stored_job_path_follows_the_move_into_orders_jobs_and_back():
    added_since = {"positions: validate changed symbols", "positions: PnL days"}  # 0515, never under the old path
    old_fill = {job.name: job.func.replace("orders.jobs.", "orders.services.jobs.") for job in jobs.SCHEDULES
                if job.name not in added_since}  # fmt: skip
    for name, func in old_fill.items():
        Schedule.objects.create(name=name, func=func, schedule_type=Schedule.MINUTES, minutes=1, repeats=-1)
    Schedule.objects.create(name="reconcile", func="orders.reconcile.jobs.reconcile_scheduled",
                            schedule_type=Schedule.MINUTES, minutes=15, repeats=-1)  # fmt: skip
    Schedule.objects.create(name="exchange: prune call audit", func="exchange.retention.job_exchange_calls_prune",
                            schedule_type=Schedule.MINUTES, minutes=60, repeats=-1)  # fmt: skip
    started = _queue("orders.reconcile.jobs.reconcile_job", trigger="api", user_id=None, symbol="BTCUSDT")
    sweep = _queue("orders.services.jobs.job_stale_orders_sweep")
    assert all(pydoc.locate(s.func) is None for s in Schedule.objects.filter(func__startswith="orders."))

    later.forward(apps, None)

    wanted = {job.name: pydoc.locate(job.func) for job in jobs.SCHEDULES if job.name in old_fill}  # the five moved
    assert None not in wanted.values() and len(wanted) == 5
    assert {s.name: pydoc.locate(s.func) for s in Schedule.objects.filter(name__in=wanted)} == wanted
    assert pydoc.locate(Schedule.objects.get(name="reconcile").func) is jobs.reconcile_scheduled
    assert Schedule.objects.get(name="exchange: prune call audit").func == "exchange.retention.job_exchange_calls_prune"
    assert pydoc.locate(_func(started)) is jobs.reconcile_job
    assert SignedPackage.loads(OrmQ.objects.get(pk=started.pk).payload)["kwargs"] == {
        "trigger": "api", "user_id": None, "symbol": "BTCUSDT"}  # fmt: skip
    assert pydoc.locate(_func(sweep)) is jobs.job_stale_orders_sweep

    later.backward(apps, None)

    assert {s.name: s.func for s in Schedule.objects.filter(name__in=old_fill)} == old_fill
    assert Schedule.objects.get(name="reconcile").func == "orders.reconcile.jobs.reconcile_scheduled"
    assert (_func(started), _func(sweep)) == ("orders.reconcile.jobs.reconcile_job",
                                              "orders.services.jobs.job_stale_orders_sweep")  # fmt: skip
