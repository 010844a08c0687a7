"""The row of one reconciliation run: validated, opened (closing runs a dead process left), finished.

Also which categories and symbols a run looks at (docs/decisions/0601-desk-symbols.md):
every symbol in our Order, Position and per-symbol RiskLimit rows, plus every symbol the
exchange reports open orders or positions for in the settleCoin=USDT listings. A
symbol-scoped run looks at that symbol only.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import structlog
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.utils import timezone

from orders.models import ACTIVE_STATUSES, Order, ReconciliationRun, RiskLimit
from orders.reconcile.report import RunRecorder
from positions.selectors import position_open_rows, position_rows

log = structlog.get_logger(__name__)

SYMBOL_RE = re.compile(r"^[A-Z0-9]{2,30}$")
INTERRUPTED = "interrupted: the process ended before the run finished"

Progress = Callable[[str, int, int], None]


def run_validated(trigger: str, symbol: str | None) -> tuple[str, str | None]:
    if trigger not in ReconciliationRun.Trigger.values:
        raise ValidationError({"trigger": [f"Unknown trigger {trigger!r}; one of {ReconciliationRun.Trigger.values}."]})
    if symbol is not None:
        symbol = symbol.strip().upper()
        if not SYMBOL_RE.match(symbol):
            raise ValidationError({"symbol": [f"{symbol!r} is not a symbol such as BTCUSDT."]})
    return trigger, symbol or None


def run_open(*, trigger, user, symbol, dry_run, progress) -> RunRecorder:
    """Close runs left ``running`` by a dead process, then record this one as running."""
    # We hold the lock, so a row still "running" belongs to a process that died.
    ReconciliationRun.objects.filter(status=ReconciliationRun.Status.RUNNING).update(
        status=ReconciliationRun.Status.FAILED, finished_at=timezone.now(), error=INTERRUPTED
    )
    run = ReconciliationRun.objects.create(
        trigger=trigger,
        started_by=user if getattr(user, "is_authenticated", False) else None,
        symbol=symbol or "",
        dry_run=dry_run,
    )
    log.info("reconcile_started", run_id=run.pk, trigger=trigger, symbol=symbol, dry_run=dry_run)
    return RunRecorder(run=run, progress=progress)


def active_categories(*, with_positions: bool = True) -> list[str]:
    """The configured category first, then any other our active orders use, and with ``with_positions``
    any other our open positions use. A run looks at both; the light pass (``continuous``) lists the
    categories of working orders only."""
    found = set(Order.objects.filter(status__in=ACTIVE_STATUSES).values_list("category", flat=True).distinct())
    if with_positions:
        found |= set(position_open_rows().values_list("category", flat=True).distinct())
    return [settings.BYBIT_CATEGORY] + sorted(found - {settings.BYBIT_CATEGORY})


def desk_symbols(*, category: str, symbol: str | None, exchange_symbols: set[str]) -> set[str]:
    """The symbols a run looks at (see the module docstring)."""
    if symbol:
        return {symbol}
    symbols = set(Order.objects.filter(category=category).values_list("symbol", flat=True).distinct())
    symbols |= set(position_rows(category=category).values_list("symbol", flat=True).distinct())
    if category == settings.BYBIT_CATEGORY:  # RiskLimit rows carry no category
        symbols |= set(RiskLimit.objects.filter(~Q(symbol="")).values_list("symbol", flat=True))
    return symbols | exchange_symbols


def run_finish(rec: RunRecorder, *, error: str = "") -> None:
    run = rec.run
    for name, value in rec.counts.items():
        setattr(run, name, value)
    if error:
        run.status = ReconciliationRun.Status.FAILED
        run.error = error[:5000]
    elif rec.unresolved:
        run.status = ReconciliationRun.Status.UNRESOLVED
    else:
        run.status = ReconciliationRun.Status.SUCCEEDED
    run.finished_at = timezone.now()
    run.save(update_fields=[*rec.counts, "status", "error", "finished_at"])
    log.info("reconcile_finished", run_id=run.pk, status=run.status, **rec.counts, discrepancies=rec.found,
             unresolved=rec.unresolved, error=error or None)  # fmt: skip
