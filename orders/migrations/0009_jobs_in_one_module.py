"""Every job of the orders app moved into orders/jobs.py (docs/decisions/0609): the stored schedules
(setup_schedules' five fill-side ones, reconcile's) and any task still queued at the upgrade are pointed
at the new paths, and back on reverse. The rewriting is migration 0008's, reused, not copied."""

import importlib

from django.db import migrations

_repoint = importlib.import_module("orders.migrations.0008_reconcile_job_paths")._repoint

FILL_JOBS = ("job_positions_snapshot", "job_positions_validate", "job_mark_prices_refresh", "job_loss_warnings",
             "job_stale_orders_sweep")  # fmt: skip
RECONCILE_JOBS = ("reconcile_job", "reconcile_scheduled")
MOVED = {
    **{f"orders.services.jobs.{name}": f"orders.jobs.{name}" for name in FILL_JOBS},
    **{f"orders.reconcile.jobs.{name}": f"orders.jobs.{name}" for name in RECONCILE_JOBS},
}
RESTORED = {new: old for old, new in MOVED.items()}


def forward(apps, schema_editor):
    _repoint(apps, MOVED)


def backward(apps, schema_editor):
    _repoint(apps, RESTORED)


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0008_reconcile_job_paths"),
        ("django_q", "0018_task_success_index"),
    ]

    operations = [migrations.RunPython(forward, backward)]
