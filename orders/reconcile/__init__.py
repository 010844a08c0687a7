"""Reconciliation: after any outage, the books equal the exchange.

``reconcile`` compares what the database holds as active (orders, positions)
with what Bybit says, settles every difference through the normal paths
(fills through ``orders.services.fills``, submits through the executor) and
records the run: a ``ReconciliationRun`` with counts and one ``Discrepancy``
row per difference, with the values before and after.

One run at a time, across processes (``lock``): a second caller gets
``ReconciliationInProgress`` (409) or waits up to ``wait`` seconds.

The steps of a run, per category (linear first), are the body of ``_reconcile_category``:
1. t0; every open order, all pages (``exchange``). Without it there is nothing to
   compare: a failing exchange ends the run as ``failed`` with the reason.
2. Orders: each active row against the listing; rows not listed are looked up by
   orderLinkId (realtime, then history). Plans are made, nothing written (``orders``).
3. Executions since the last good run, per desk symbol (``run.desk_symbols``), plus
   the fills of each order that is behind; missing ones go through the fill path,
   oldest first (``executions``).
4. Order states through ``order_update_apply``; pending_submit settled; external
   orders recorded (``orders``).
5. Positions (linear): compared by (symbol, positionIdx), explained by fills, else
   the symbol goes reduce-only (and, with fix_positions, our book is adjusted to the
   exchange's) (``positions``).

The other modules of the package: ``report`` (discrepancy kinds, the recorder, the
run as JSON), ``continuous`` and ``backfill_marks`` (the passes between full runs),
and ``start`` (queue a run from the admin or the API). The other ways in live where each app keeps
them: the django-q2 jobs in ``orders/jobs.py``, the REST views in ``orders/apis.py``, ``manage.py
reconcile`` in orders/management/commands/reconcile.py.
"""

from __future__ import annotations

import structlog
from django.utils import timezone

from exchange.bybit.client import get_client
from exchange.bybit.errors import BybitError
from exchange.bybit.types import MalformedPayload
from orders.models import ReconciliationRun
from orders.reconcile.exchange import open_orders_fetch
from orders.reconcile.executions import Backfill, backfill_run, executions_fetch
from orders.reconcile.lock import LockBusy, ReconciliationInProgress, reconcile_in_progress_error, reconcile_lock
from orders.reconcile.orders import orders_plan, plan_apply, plans_prepare
from orders.reconcile.positions import positions_reconcile
from orders.reconcile.report import RunContext
from orders.reconcile.run import Progress, active_categories, desk_symbols, run_finish, run_open, run_validated

log = structlog.get_logger(__name__)

STARTUP_WAIT_SECONDS = 30.0


def reconcile(
    *,
    trigger: str,
    user=None,
    symbol: str | None = None,
    dry_run: bool = False,
    fix_positions: bool = True,
    wait: float = 0.0,
    progress: Progress | None = None,
) -> ReconciliationRun:
    """Run one reconciliation and return its finished run row.

    ``dry_run`` records what it finds and changes nothing else. ``fix_positions``
    False (``--no-fix``) leaves our positions as they are when the fills do not
    explain the exchange's (the symbol still goes reduce-only). ``progress(stage,
    done, total)`` is called as the run advances (the command draws a bar).
    Raises ReconciliationInProgress when another run holds the lock past ``wait``.
    """
    trigger, symbol = run_validated(trigger, symbol)
    try:
        with reconcile_lock(wait=wait):
            return _run(trigger=trigger, user=user, symbol=symbol, dry_run=dry_run, fix_positions=fix_positions,
                        progress=progress)  # fmt: skip
    except LockBusy:
        raise reconcile_in_progress_error() from None


def reconcile_on_startup(*, wait: float = STARTUP_WAIT_SECONDS) -> ReconciliationRun | None:
    """The run at ``consume_signals`` startup, before messages are taken. Never raises:
    a failing exchange is recorded as a failed run (with the reason) and the service
    carries on; a run already in progress elsewhere is left to finish its job."""
    try:
        run = reconcile(trigger=ReconciliationRun.Trigger.STARTUP, wait=wait)
    except ReconciliationInProgress as exc:
        log.warning("reconcile_startup_skipped", reason=exc.message)
        return None
    except Exception:  # the service must start whatever happened here
        log.exception("reconcile_startup_failed")
        return None
    log.info("reconcile_startup_done", run_id=run.pk, status=run.status, error=run.error or None)
    return run


def _run(*, trigger, user, symbol, dry_run, fix_positions, progress) -> ReconciliationRun:
    rec = run_open(trigger=trigger, user=user, symbol=symbol, dry_run=dry_run, progress=progress)
    try:
        client = get_client()
        for category in active_categories():
            ctx = RunContext(client=client, rec=rec, category=category, symbol=symbol, dry_run=dry_run,
                             fix_positions=fix_positions, t0=timezone.now(), backfill=Backfill())  # fmt: skip
            _reconcile_category(ctx)
    except (BybitError, MalformedPayload) as exc:
        run_finish(rec, error=f"exchange unavailable or answered badly: {exc}")
    except Exception as exc:
        run_finish(rec, error=f"{type(exc).__name__}: {exc}")
        raise
    else:
        run_finish(rec)
    return rec.run


def _reconcile_category(ctx: RunContext) -> None:
    open_orders = open_orders_fetch(ctx.client, category=ctx.category, symbol=ctx.symbol)
    ctx.rec.step("open orders", len(open_orders.items), len(open_orders.items))
    plans = orders_plan(ctx, open_orders)
    executions_fetch(ctx, desk_symbols(category=ctx.category, symbol=ctx.symbol,
                                       exchange_symbols=open_orders.symbols), plans)  # fmt: skip
    if not ctx.dry_run:
        plans_prepare(plans)
    backfill_run(ctx)
    for n, plan in enumerate(plans, 1):
        plan_apply(ctx, plan)
        ctx.rec.step("apply", n, len(plans))
    if ctx.category != "spot":
        positions_reconcile(ctx)
