"""Reconciliation moved into orders/reconcile/ (docs/decisions/0608): django-q2 keeps job functions
as dotted paths in its own rows, so a running deployment's schedule and any task still queued
at the upgrade are pointed at the new paths here (they would fail as "function not defined")."""

from django.db import migrations
from django_q.signing import SignedPackage

NEW_JOB = "orders.reconcile.jobs.reconcile_job"
MOVED = {
    "orders.jobs_reconcile.reconcile_scheduled": "orders.reconcile.jobs.reconcile_scheduled",
    "orders.jobs_reconcile.reconcile_job": NEW_JOB,
    "orders.services.reconciliation_start.reconciliation_job": NEW_JOB,  # same job, queued by the old start
}
# Back: the old jobs_reconcile.reconcile_job takes every argument either old job was given.
RESTORED = {"orders.reconcile.jobs.reconcile_scheduled": "orders.jobs_reconcile.reconcile_scheduled",
            NEW_JOB: "orders.jobs_reconcile.reconcile_job"}  # fmt: skip


def _repoint(apps, paths: dict[str, str]) -> None:
    Schedule = apps.get_model("django_q", "Schedule")
    for old, new in paths.items():
        Schedule.objects.filter(func=old).update(func=new)
    OrmQ = apps.get_model("django_q", "OrmQ")
    for queued in OrmQ.objects.all():
        try:
            task = SignedPackage.loads(queued.payload)
        except Exception:  # another key, or a pickled function of a module gone: left for the worker to report
            continue
        if isinstance(task.get("func"), str) and task["func"] in paths:
            task["func"] = paths[task["func"]]
            OrmQ.objects.filter(pk=queued.pk).update(payload=SignedPackage.dumps(task))


def forward(apps, schema_editor):
    _repoint(apps, MOVED)


def backward(apps, schema_editor):
    _repoint(apps, RESTORED)


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0007_discrepancy_plural_label"),
        ("django_q", "0018_task_success_index"),
    ]

    operations = [migrations.RunPython(forward, backward)]
