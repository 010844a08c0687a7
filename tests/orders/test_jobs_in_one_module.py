"""Migration 0009: the schedules and queued tasks a running deployment stored under the old job modules
(orders.services.jobs, orders.reconcile.jobs) point at orders.jobs, django-q2 resolves them, and reverse
restores the old strings."""

import importlib
import pydoc

import pytest
from django.apps import apps
from django.utils import timezone
from django_q.models import OrmQ, Schedule
from django_q.signing import SignedPackage

from orders import jobs

pytestmark = pytest.mark.django_db
migration = importlib.import_module("orders.migrations.0009_jobs_in_one_module")


def _queue(func: str, **kwargs) -> OrmQ:
    task = {"id": f"id-{func}", "name": "reconcile-0123456789abcdef", "func": func, "args": (), "kwargs": kwargs}
    return OrmQ.objects.create(key="ordermanager", payload=SignedPackage.dumps(task), lock=timezone.now())


def _func(queued: OrmQ) -> str:
    return SignedPackage.loads(OrmQ.objects.get(pk=queued.pk).payload)["func"]


def test_every_stored_job_path_follows_the_move_and_back():
    old_fill = {job.name: job.func.replace("orders.jobs.", "orders.services.jobs.") for job in jobs.SCHEDULES}
    for name, func in old_fill.items():
        Schedule.objects.create(name=name, func=func, schedule_type=Schedule.MINUTES, minutes=1, repeats=-1)
    Schedule.objects.create(name="reconcile", func="orders.reconcile.jobs.reconcile_scheduled",
                            schedule_type=Schedule.MINUTES, minutes=15, repeats=-1)  # fmt: skip
    Schedule.objects.create(name="exchange: prune call audit", func="exchange.retention.job_exchange_calls_prune",
                            schedule_type=Schedule.MINUTES, minutes=60, repeats=-1)  # fmt: skip
    started = _queue("orders.reconcile.jobs.reconcile_job", trigger="api", user_id=None, symbol="BTCUSDT")
    sweep = _queue("orders.services.jobs.job_stale_orders_sweep")
    assert all(pydoc.locate(s.func) is None for s in Schedule.objects.filter(func__startswith="orders."))

    migration.forward(apps, None)

    wanted = {job.name: pydoc.locate(job.func) for job in jobs.SCHEDULES}
    assert None not in wanted.values() and len(wanted) == 5
    assert {s.name: pydoc.locate(s.func) for s in Schedule.objects.filter(name__in=wanted)} == wanted
    assert pydoc.locate(Schedule.objects.get(name="reconcile").func) is jobs.reconcile_scheduled
    assert Schedule.objects.get(name="exchange: prune call audit").func == "exchange.retention.job_exchange_calls_prune"
    assert pydoc.locate(_func(started)) is jobs.reconcile_job
    assert SignedPackage.loads(OrmQ.objects.get(pk=started.pk).payload)["kwargs"] == {
        "trigger": "api", "user_id": None, "symbol": "BTCUSDT"}  # fmt: skip
    assert pydoc.locate(_func(sweep)) is jobs.job_stale_orders_sweep

    migration.backward(apps, None)

    assert {s.name: s.func for s in Schedule.objects.filter(name__in=old_fill)} == old_fill
    assert Schedule.objects.get(name="reconcile").func == "orders.reconcile.jobs.reconcile_scheduled"
    assert (_func(started), _func(sweep)) == ("orders.reconcile.jobs.reconcile_job",
                                              "orders.services.jobs.job_stale_orders_sweep")  # fmt: skip
