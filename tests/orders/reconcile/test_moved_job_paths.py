"""Migration 0008: django-q2 rows stored before reconciliation moved (a running deployment's schedule,
tasks still queued at the upgrade) point at the new job paths, and django-q2 can resolve them.
The jobs have moved once more since (0009, orders/jobs.py): ``migrate`` applies both, so the test does."""

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
