"""django-q2 wrappers around ``reconcile``: the queued run (admin and API, see ``start``) and the optional schedule.

Thin on purpose (STYLE rule 2): fetch by id, call the service, return the run id.
The schedule is off unless ``RECONCILE_INTERVAL_MINUTES`` > 0; ``setup_schedules``
(FILLS) calls ``reconcile_schedule_ensure()`` so it is created or removed idempotently.
"""

from __future__ import annotations

import structlog
from django.conf import settings
from django.contrib.auth import get_user_model

from orders.models import ReconciliationRun
from orders.reconcile import reconcile
from orders.reconcile.lock import ReconciliationInProgress

log = structlog.get_logger(__name__)

SCHEDULE_NAME = "reconcile"
SCHEDULE_FUNC = "orders.reconcile.jobs.reconcile_scheduled"


def reconcile_job(*, trigger: str = ReconciliationRun.Trigger.ADMIN, user_id: int | None = None,
                  symbol: str | None = None, dry_run: bool = False, fix_positions: bool = True) -> int:  # fmt: skip
    """One queued run (``start.reconciliation_queue``, after commit); the task result is the run id.
    A run already in progress raises ReconciliationInProgress, which django-q2 records on the task."""
    user = get_user_model().objects.filter(pk=user_id).first() if user_id else None
    run = reconcile(trigger=trigger, user=user, symbol=symbol, dry_run=dry_run, fix_positions=fix_positions)
    return run.pk


def reconcile_scheduled() -> int | None:
    """The periodic run. Skips quietly when another run is in progress (it is doing the job)."""
    try:
        return reconcile(trigger=ReconciliationRun.Trigger.SCHEDULE).pk
    except ReconciliationInProgress as exc:
        log.info("reconcile_schedule_skipped", reason=exc.message)
        return None


def reconcile_schedule_ensure() -> str:
    """Create, update or delete the django-q2 schedule from RECONCILE_INTERVAL_MINUTES; returns what it did."""
    from django_q.models import Schedule

    minutes = int(getattr(settings, "RECONCILE_INTERVAL_MINUTES", 0) or 0)
    if minutes <= 0:
        deleted, _ = Schedule.objects.filter(name=SCHEDULE_NAME).delete()
        return "removed" if deleted else "off"
    _, created = Schedule.objects.update_or_create(
        name=SCHEDULE_NAME,
        defaults={"func": SCHEDULE_FUNC, "schedule_type": Schedule.MINUTES, "minutes": minutes, "repeats": -1},
    )
    return "created" if created else "updated"
