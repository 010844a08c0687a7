"""Every django-q2 job of the orders app, and the schedules that run them.

Each job is a thin wrapper (STYLE rule 2) around one service; its return value is what
the admin shows as the task result. django-q2 stores a job as the dotted path of its
function (a schedule's ``func``, a queued task's payload), so a job that moves needs a
data migration that rewrites those rows (``orders/migrations`` 0008, 0009).

- The fill-side jobs (``SCHEDULES``): ``schedules_ensure`` creates their schedules
  idempotently (``manage.py setup_schedules``), one per job, each interval from its
  setting. django-q2 schedules run at minute resolution, so an interval in seconds is
  rounded up to whole minutes (at least one).
- Reconciliation: ``reconcile_job`` is the queued run (admin and API, see
  ``orders.reconcile.start``); ``reconcile_scheduled`` the optional periodic one, off
  unless ``RECONCILE_INTERVAL_MINUTES`` > 0 (``reconcile_schedule_ensure`` creates or
  removes it, also from ``setup_schedules``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import structlog
from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone
from django_q.models import Schedule

from orders.models import ReconciliationRun
from orders.reconcile import ReconciliationInProgress, reconcile
from orders.services.pnl_days import pnl_days_refresh
from orders.services.position_validation import positions_validate_against_fills, positions_validate_incremental
from orders.services.stale_orders import orders_sweep_stale
from positions.services.marks import (
    position_snapshot_all,
    positions_check_loss_warnings,
    positions_refresh_mark_prices,
)

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class JobSchedule:
    name: str
    func: str
    interval_setting: str

    @property
    def minutes(self) -> int:
        return max(1, math.ceil(getattr(settings, self.interval_setting) / 60))


SCHEDULES = (
    JobSchedule("positions: snapshot", "orders.jobs.job_positions_snapshot", "POSITION_SNAPSHOT_INTERVAL"),
    JobSchedule("positions: validate against fills", "orders.jobs.job_positions_validate",
                "POSITION_VALIDATION_INTERVAL"),  # fmt: skip
    JobSchedule("positions: mark prices", "orders.jobs.job_mark_prices_refresh", "MARK_PRICE_REFRESH_INTERVAL"),
    JobSchedule("positions: loss warnings", "orders.jobs.job_loss_warnings", "LOSS_WARNING_CHECK_INTERVAL"),
    JobSchedule("orders: stale sweep", "orders.jobs.job_stale_orders_sweep", "STALE_ORDER_SWEEP_INTERVAL"),
    JobSchedule("positions: validate changed symbols", "orders.jobs.job_positions_validate_incremental",
                "POSITION_VALIDATION_INCREMENTAL_INTERVAL"),  # fmt: skip
    JobSchedule("positions: PnL days", "orders.jobs.job_pnl_days_refresh", "PNL_DAYS_REFRESH_INTERVAL"),
)

RECONCILE_SCHEDULE_NAME = "reconcile"
RECONCILE_SCHEDULE_FUNC = "orders.jobs.reconcile_scheduled"


def schedules_ensure(*, schedule_model=None) -> dict[str, str]:
    """Create the missing schedules and set func and interval of existing ones from the settings.

    Returns ``{name: "created" | "updated" | "unchanged"}``. A new schedule runs at
    the first qcluster start (next_run = now); an existing one keeps its next_run.
    ``schedule_model`` lets a data migration pass its historical model.
    """
    schedule_model = schedule_model or Schedule
    result = {}
    for job in SCHEDULES:
        wanted = {"func": job.func, "schedule_type": "I", "minutes": job.minutes, "repeats": -1}
        row = schedule_model.objects.filter(name=job.name).first()
        if row is None:
            schedule_model.objects.create(name=job.name, next_run=timezone.now(), **wanted)
            result[job.name] = "created"
        elif any(getattr(row, k) != v for k, v in wanted.items()):
            for key, value in wanted.items():
                setattr(row, key, value)
            row.save(update_fields=list(wanted))
            result[job.name] = "updated"
        else:
            result[job.name] = "unchanged"
    return result


def reconcile_schedule_ensure() -> str:
    """Create, update or delete the reconcile schedule from RECONCILE_INTERVAL_MINUTES; returns what it did."""
    minutes = int(getattr(settings, "RECONCILE_INTERVAL_MINUTES", 0) or 0)
    if minutes <= 0:
        deleted, _ = Schedule.objects.filter(name=RECONCILE_SCHEDULE_NAME).delete()
        return "removed" if deleted else "off"
    _, created = Schedule.objects.update_or_create(
        name=RECONCILE_SCHEDULE_NAME,
        defaults={"func": RECONCILE_SCHEDULE_FUNC, "schedule_type": Schedule.MINUTES, "minutes": minutes,
                  "repeats": -1},
    )  # fmt: skip
    return "created" if created else "updated"


# ------------------------------------------------------------------ fill side


def job_positions_snapshot() -> int:
    return position_snapshot_all()


def job_positions_validate() -> int:
    return len(positions_validate_against_fills(repair=True))


def job_positions_validate_incremental() -> int:
    return positions_validate_incremental()


def job_pnl_days_refresh() -> int:
    return pnl_days_refresh()


def job_mark_prices_refresh() -> int:
    return positions_refresh_mark_prices()


def job_loss_warnings() -> int:
    return positions_check_loss_warnings()


def job_stale_orders_sweep() -> int:
    return orders_sweep_stale().cancelled


# ------------------------------------------------------------------ reconciliation


def reconcile_job(*, trigger: str = ReconciliationRun.Trigger.ADMIN, user_id: int | None = None,
                  symbol: str | None = None, dry_run: bool = False, fix_positions: bool = True) -> int:  # fmt: skip
    """One queued run (``orders.reconcile.start.reconciliation_queue``, after commit); the task result is the
    run id. A run already in progress raises ReconciliationInProgress, which django-q2 records on the task."""
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
