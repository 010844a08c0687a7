"""django-q2 jobs of the fill side, and their schedules.

Each job is a thin wrapper (STYLE rule 2) around one service; its return value
is what the admin shows as the task result. ``schedules_ensure`` creates the
schedules idempotently (``manage.py setup_schedules``), one per job, each
interval from its setting. django-q2 schedules run at minute resolution, so an
interval in seconds is rounded up to whole minutes (at least one).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import structlog
from django.conf import settings
from django.utils import timezone

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
    JobSchedule(
        "positions: validate against fills",
        "orders.jobs.job_positions_validate",
        "POSITION_VALIDATION_INTERVAL",
    ),  # fmt: skip
    JobSchedule(
        "positions: mark prices", "orders.jobs.job_mark_prices_refresh", "MARK_PRICE_REFRESH_INTERVAL"
    ),
    JobSchedule("positions: loss warnings", "orders.jobs.job_loss_warnings", "LOSS_WARNING_CHECK_INTERVAL"),
    JobSchedule("orders: stale sweep", "orders.jobs.job_stale_orders_sweep", "STALE_ORDER_SWEEP_INTERVAL"),
)


def schedules_ensure(*, schedule_model=None) -> dict[str, str]:
    """Create the missing schedules and set func and interval of existing ones from the settings.

    Returns ``{name: "created" | "updated" | "unchanged"}``. A new schedule runs at
    the first qcluster start (next_run = now); an existing one keeps its next_run.
    ``schedule_model`` lets a data migration pass its historical model.
    """
    if schedule_model is None:
        from django_q.models import Schedule as schedule_model
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


def job_positions_snapshot() -> int:
    from positions.services.marks import position_snapshot_all

    return position_snapshot_all()


def job_positions_validate() -> int:
    from orders.services.position_validation import positions_validate_against_fills

    return len(positions_validate_against_fills(repair=True))


def job_mark_prices_refresh() -> int:
    from positions.services.marks import positions_refresh_mark_prices

    return positions_refresh_mark_prices()


def job_loss_warnings() -> int:
    from positions.services.marks import positions_check_loss_warnings

    return positions_check_loss_warnings()


def job_stale_orders_sweep() -> int:
    from orders.services.stale_orders import orders_sweep_stale

    return orders_sweep_stale().cancelled
