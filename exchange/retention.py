"""Retention of the exchange-call audit: rows older than EXCHANGE_CALL_RETENTION_DAYS are deleted.

The job deletes in batches of EXCHANGE_CALL_PRUNE_BATCH rows, oldest first, one
short statement (its own transaction) per batch, so no lock is held for long and
the clients' inserts never wait behind a single huge DELETE; it stops when a batch
comes back short. Its django-q2 schedule is created by ``manage.py setup_schedules``
(``prune_schedule_ensure``, idempotent). Before pruning, the job also writes the
audit spool files that dead processes left behind (exchange/audit_spool.py).
docs/decisions/0208-exchange-audit-spool.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog
from django.conf import settings
from django.utils import timezone

from exchange import audit_spool
from exchange.models import ExchangeCall

log = structlog.get_logger(__name__)

SCHEDULE_NAME = "exchange: prune call audit"
SCHEDULE_FUNC = "exchange.retention.job_exchange_calls_prune"


def exchange_calls_prune(
    *, now: datetime | None = None, batch: int | None = None, on_batch: Callable[[int], None] | None = None
) -> int:
    """Delete the audit rows older than the retention, ``batch`` at a time; returns how many were deleted.

    ``on_batch(deleted)`` is called after each committed batch (progress, and a test's window between them).
    """
    batch = batch or settings.EXCHANGE_CALL_PRUNE_BATCH
    cutoff = (now or timezone.now()) - timedelta(days=settings.EXCHANGE_CALL_RETENTION_DAYS)
    oldest = ExchangeCall.objects.filter(created_at__lt=cutoff).order_by("created_at")
    total = batches = 0
    while True:
        # One DELETE ... WHERE id IN (SELECT id ... ORDER BY created_at LIMIT batch): the created_at index finds
        # the oldest rows, and the statement is its own short transaction (autocommit).
        deleted, _ = ExchangeCall.objects.filter(pk__in=oldest.values("pk")[:batch]).delete()
        total += deleted
        batches += 1
        if on_batch is not None:
            on_batch(deleted)
        if deleted < batch:
            break
    if total:
        log.info("exchange_calls_pruned", deleted=total, batches=batches, older_than=cutoff.isoformat())
    return total


def job_exchange_calls_prune() -> int:
    """django-q2 job: write what dead processes left in the audit spool, then prune by age."""
    audit_spool.drain_orphans_of_settings()
    return exchange_calls_prune()


def prune_schedule_ensure() -> str:
    """Create or update the prune job's django-q2 schedule from EXCHANGE_CALL_PRUNE_INTERVAL (seconds)."""
    from django_q.models import Schedule

    minutes = max(1, math.ceil(settings.EXCHANGE_CALL_PRUNE_INTERVAL / 60))
    wanted = {"func": SCHEDULE_FUNC, "schedule_type": Schedule.MINUTES, "minutes": minutes, "repeats": -1}
    row = Schedule.objects.filter(name=SCHEDULE_NAME).first()
    if row is None:
        Schedule.objects.create(name=SCHEDULE_NAME, next_run=timezone.now(), **wanted)
        return "created"
    if all(getattr(row, k) == v for k, v in wanted.items()):
        return "unchanged"
    for key, value in wanted.items():
        setattr(row, key, value)
    row.save(update_fields=list(wanted))
    return "updated"
