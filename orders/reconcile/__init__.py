"""Reconciliation: after any outage, the books equal the exchange.

``reconcile`` compares what the database holds as active (orders, positions)
with what Bybit says, settles every difference through the normal paths
(fills through ``orders.services.fills``, submits through the executor) and
records the run: a ``ReconciliationRun`` with counts and one ``Discrepancy``
row per difference, with the values before and after.

One run at a time, across processes (``reconcile_lock``): a second caller gets
``ReconciliationInProgress`` (409) or waits up to ``wait`` seconds.

The order of a run, per category (linear first):
1. t0; every open order (all pages). Without it there is nothing to compare:
   a failing exchange ends the run as ``failed`` with the reason.
2. Orders: each active row against the listing; rows not listed are looked up
   by orderLinkId (realtime, then history). Plans are made, nothing written.
3. Executions since the last good run, per desk symbol, plus the fills of each
   order that is behind; missing ones go through the fill path, oldest first.
4. Order states through ``order_update_apply``; pending_submit settled;
   external orders recorded.
5. Positions (linear): compared by (symbol, positionIdx), explained by fills,
   else the symbol goes reduce-only (and, with fix_positions, our book is
   adjusted to the exchange's). See reconcile_positions.

Which symbols "the desk trades" (docs/decisions/0601-desk-symbols.md): every
symbol in our Order, Position and per-symbol RiskLimit rows, plus every symbol
the exchange reports open orders or positions for in the settleCoin=USDT
listings. A symbol-scoped run looks at that symbol only.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import structlog
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.utils import timezone

from ordermanager.core.exceptions import Conflict
from orders.models import ACTIVE_STATUSES, Order, ReconciliationRun, RiskLimit
from orders.reconcile.exchange import open_orders_fetch
from orders.reconcile.executions import Backfill, backfill_run, exec_window_start, now_ms
from orders.reconcile.lock import LockBusy, reconcile_lock
from orders.reconcile.orders import orders_plan, plan_apply, plans_prepare
from orders.reconcile.positions import positions_reconcile
from orders.reconcile.report import Kind, RunContext, RunRecorder

log = structlog.get_logger(__name__)

SYMBOL_RE = re.compile(r"^[A-Z0-9]{2,30}$")
STARTUP_WAIT_SECONDS = 30.0
INTERRUPTED = "interrupted: the process ended before the run finished"

Progress = Callable[[str, int, int], None]


class ReconciliationInProgress(Conflict):
    code = "reconciliation_in_progress"


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
    trigger, symbol = _validated(trigger, symbol)
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


def reconcile_is_running() -> bool:
    """True while a run holds the lock (anywhere). A ``running`` row alone may be a crashed run."""
    try:
        with reconcile_lock(wait=0):
            return False
    except LockBusy:
        return True


def reconcile_in_progress_error() -> ReconciliationInProgress:
    """The refusal a caller gets while the lock is held, naming the running run (also used by the
    queued start in orders.reconcile.start, so both ways of starting answer alike)."""
    running = ReconciliationRun.objects.filter(status=ReconciliationRun.Status.RUNNING).order_by("-id").first()
    label = f" (#{running.pk}, started {running.started_at:%Y-%m-%d %H:%M:%S} UTC)" if running else ""
    return ReconciliationInProgress(
        f"Another reconciliation run is in progress{label}; try again when it has finished.",
        extra={"run_id": running.pk if running else None},
    )


# ---------------------------------------------------------------- the run


def _validated(trigger: str, symbol: str | None) -> tuple[str, str | None]:
    if trigger not in ReconciliationRun.Trigger.values:
        raise ValidationError({"trigger": [f"Unknown trigger {trigger!r}; one of {ReconciliationRun.Trigger.values}."]})
    if symbol is not None:
        symbol = symbol.strip().upper()
        if not SYMBOL_RE.match(symbol):
            raise ValidationError({"symbol": [f"{symbol!r} is not a symbol such as BTCUSDT."]})
    return trigger, symbol or None


def _close_interrupted() -> None:
    # We hold the lock, so a row still "running" belongs to a process that died.
    ReconciliationRun.objects.filter(status=ReconciliationRun.Status.RUNNING).update(
        status=ReconciliationRun.Status.FAILED, finished_at=timezone.now(), error=INTERRUPTED
    )


def _run(*, trigger, user, symbol, dry_run, fix_positions, progress) -> ReconciliationRun:
    from exchange.bybit.errors import BybitError
    from exchange.bybit.types import MalformedPayload

    _close_interrupted()
    run = ReconciliationRun.objects.create(
        trigger=trigger,
        started_by=user if getattr(user, "is_authenticated", False) else None,
        symbol=symbol or "",
        dry_run=dry_run,
    )
    rec = RunRecorder(run=run, progress=progress)
    log.info("reconcile_started", run_id=run.pk, trigger=trigger, symbol=symbol, dry_run=dry_run)
    try:
        from exchange.bybit.client import get_client

        client = get_client()
        for category in _categories(symbol):
            ctx = RunContext(client=client, rec=rec, category=category, symbol=symbol, dry_run=dry_run,
                             fix_positions=fix_positions, t0=timezone.now(), backfill=Backfill())  # fmt: skip
            _reconcile_category(ctx)
    except (BybitError, MalformedPayload) as exc:
        _finish(rec, error=f"exchange unavailable or answered badly: {exc}")
    except Exception as exc:
        _finish(rec, error=f"{type(exc).__name__}: {exc}")
        raise
    else:
        _finish(rec)
    return run


def _categories(symbol: str | None) -> list[str]:
    """The configured category first, then any other our active orders or positions use."""
    from positions.models import Position

    found = set(Order.objects.filter(status__in=ACTIVE_STATUSES).values_list("category", flat=True).distinct())
    found |= set(Position.objects.exclude(size=0).values_list("category", flat=True).distinct())
    return [settings.BYBIT_CATEGORY] + sorted(found - {settings.BYBIT_CATEGORY})


def desk_symbols(*, category: str, symbol: str | None, exchange_symbols: set[str]) -> set[str]:
    """The symbols a run looks at (see the module docstring)."""
    from positions.models import Position

    if symbol:
        return {symbol}
    symbols = set(Order.objects.filter(category=category).values_list("symbol", flat=True).distinct())
    symbols |= set(Position.objects.filter(category=category).values_list("symbol", flat=True).distinct())
    if category == settings.BYBIT_CATEGORY:  # RiskLimit rows carry no category
        symbols |= set(RiskLimit.objects.filter(~Q(symbol="")).values_list("symbol", flat=True))
    return symbols | exchange_symbols


def _reconcile_category(ctx: RunContext) -> None:
    open_orders = open_orders_fetch(ctx.client, category=ctx.category, symbol=ctx.symbol)
    ctx.rec.step("open orders", len(open_orders.items), len(open_orders.items))
    plans = orders_plan(ctx, open_orders)
    _fetch_executions(ctx, desk_symbols(category=ctx.category, symbol=ctx.symbol,
                                        exchange_symbols=open_orders.symbols), plans)  # fmt: skip
    if not ctx.dry_run:
        plans_prepare(plans)
    backfill_run(ctx)
    for n, plan in enumerate(plans, 1):
        plan_apply(ctx, plan)
        ctx.rec.step("apply", n, len(plans))
    if ctx.category != "spot":
        positions_reconcile(ctx)


def _fetch_executions(ctx: RunContext, symbols: set[str], plans: list) -> None:
    """Every execution since the last good run for each symbol (funding and forced trades
    included), plus all fills of each order that is behind. A failed symbol is recorded
    as unknown; the rest of the run goes on."""
    from exchange.bybit.errors import BybitError

    start, end = exec_window_start(category=ctx.category, symbol=ctx.symbol, now=timezone.now()), now_ms()
    ordered = sorted(symbols)
    covered: set[str] = set()
    for n, symbol in enumerate(ordered, 1):
        try:
            ctx.backfill.offer(ctx.client.get_executions(category=ctx.category, symbol=symbol, start_ms=start,
                                                         end_ms=end, refused=ctx.backfill.refused))  # fmt: skip
            covered.add(symbol)
        except BybitError as exc:
            note = f"executions of {symbol} since the last run could not be fetched: {exc}"
            ctx.rec.discrepancy(kind=Kind.LOOKUP_FAILED, symbol=symbol, resolved=False, note=note)
        ctx.rec.step("executions", n, len(ordered))
    for plan in plans:
        if not plan.fetch_fills or (plan.symbol in covered and _created_ms(plan) >= start):
            continue  # every fill of an order created inside the window came with its symbol's pull
        order_id = plan.info.order_id if plan.info is not None else plan.order.order_id
        try:
            ctx.backfill.offer(ctx.client.get_executions(category=ctx.category, symbol=plan.symbol, order_id=order_id,
                                                         refused=ctx.backfill.refused))  # fmt: skip
        except BybitError as exc:
            plan.error = f"its executions could not be fetched: {exc}"


def _created_ms(plan) -> int:
    if plan.order is not None:
        return int(plan.order.created_at.timestamp() * 1000)
    return plan.info.created_ms


def _finish(rec: RunRecorder, *, error: str = "") -> None:
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
