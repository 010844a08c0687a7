"""Executions: fetched from the exchange for a run, and those the private stream never delivered
booked through the normal fill path.

Every execution goes through ``orders.services.fills.execution_apply`` (FILLS),
which stores it once per execId and moves the order and the position exactly
as a live event would; non-trade types (funding, ADL, liquidation) follow the
same rules as live. Backfilled rows are applied oldest first so the position
fold sees them in exchange order.

A row the fill path refuses (a field its kind needs is missing, a decimal is not
in JSON notation, an id longer than its column) is not booked: it becomes an
unresolved ``execution_refused`` discrepancy naming the row and the reason, the
other rows are applied, and the run does not count as one that pulled every
execution (the next run looks again from before it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import timedelta

from django.db.models import Exists, OuterRef
from django.utils import timezone

from exchange.bybit.errors import BybitError
from exchange.bybit.types import ExecutionInfo
from ordermanager.core.epoch import epoch_ms
from orders.models import Discrepancy, Execution, Order, ReconciliationRun
from orders.reconcile.orders import Plan, plan_apply, plans_prepare
from orders.reconcile.report import Kind
from orders.services.fills import FillRefused, execution_apply, execution_refusal

# How far before the last good run's start the next run looks again: covers
# fills whose execTime precedes their arrival (exchange and clock lag).
WINDOW_OVERLAP = timedelta(minutes=10)
# Bybit keeps executions for two years but answers at most 7 days per request (the
# client splits longer ranges). A run without a predecessor looks back this far: just
# under 7 days, so that the range stays one request.
MAX_LOOKBACK = timedelta(days=7) - timedelta(minutes=1)
SOURCE = "rest"  # Execution.source of a backfilled row
_CHUNK = 1000


def exec_window_start(*, category: str, symbol: str | None, now) -> int:
    """Epoch ms from which a run pulls every execution: the start of the last run that pulled
    them all (finished, not a dry run, no failed lookup, no refused execution), minus an overlap; never more than
    MAX_LOOKBACK ago."""
    done = (ReconciliationRun.Status.SUCCEEDED, ReconciliationRun.Status.UNRESOLVED)
    # A failed lookup or a refused execution: that run did not take every execution in.
    incomplete = [Kind.LOOKUP_FAILED, Kind.EXECUTION_REFUSED]
    failed_lookup = Discrepancy.objects.filter(run=OuterRef("pk"), kind__in=incomplete)
    runs = ReconciliationRun.objects.filter(status__in=done, dry_run=False).exclude(Exists(failed_lookup))
    # A continuous pass's roll-up row pulled no executions of its own (its window is kept on its lease).
    runs = runs.exclude(trigger=ReconciliationRun.Trigger.LIGHT, symbol="")
    runs = runs.filter(symbol__in=["", symbol]) if symbol else runs.filter(symbol="")
    last = runs.order_by("-started_at").values_list("started_at", flat=True).first()
    start = now - MAX_LOOKBACK
    if last is not None and last - WINDOW_OVERLAP > start:
        start = last - WINDOW_OVERLAP
    return epoch_ms(start)


def executions_known(exec_ids: Iterable[str]) -> set[str]:
    ids = list(exec_ids)
    known: set[str] = set()
    for i in range(0, len(ids), _CHUNK):
        known.update(Execution.objects.filter(exec_id__in=ids[i : i + _CHUNK]).values_list("exec_id", flat=True))
    return known


def sort_key(info: ExecutionInfo) -> tuple:
    # Bybit returns newest first and leaves equal execTimes unordered; seq then
    # execId make the order total and stable.
    return (info.exec_time_ms, info.seq or 0, info.exec_id)


@dataclasses.dataclass
class Backfill:
    """Executions seen on the exchange this run, keyed by execId."""

    seen: dict[str, ExecutionInfo] = dataclasses.field(default_factory=dict)
    applied: list[ExecutionInfo] = dataclasses.field(default_factory=list)
    # (raw item or parsed row, reason): rows the exchange sent that cannot be booked as they are.
    refused: list[tuple[dict | ExecutionInfo, str]] = dataclasses.field(default_factory=list)
    # execIds of refused rows already recorded this run (a later pull of the same rows records nothing).
    refused_ids: set[str] = dataclasses.field(default_factory=set)

    def offer(self, infos: Iterable[ExecutionInfo]) -> None:
        for info in infos:
            self.seen.setdefault(info.exec_id, info)

    def missing(self) -> list[ExecutionInfo]:
        known = executions_known(self.seen)
        return sorted((i for i in self.seen.values() if i.exec_id not in known), key=sort_key)


def position_idx_index(infos: list[ExecutionInfo], *, exchange_orders: dict) -> dict[str, int]:
    """orderId → positionIdx, from our order rows first, else from the exchange's order info.

    Bybit's execution rows carry no positionIdx; in hedge mode the order says
    which side (1 long, 2 short) a fill belongs to."""
    order_ids = {i.order_id for i in infos if i.order_id}
    index: dict[str, int] = {}
    ids = list(order_ids)
    for n in range(0, len(ids), _CHUNK):
        index.update(Order.objects.filter(order_id__in=ids[n : n + _CHUNK]).values_list("order_id", "position_idx"))
    for order_id in order_ids - index.keys():
        info = exchange_orders.get(order_id)
        if info is not None:
            index[order_id] = info.position_idx
    return index


def executions_apply(
    infos: list[ExecutionInfo], *, exchange_orders: dict, refused: list | None = None
) -> list[ExecutionInfo]:
    """Apply missing executions oldest first; returns the ones that were new. A row the fill
    path refuses is appended to ``refused`` (row, reason) and the others go on."""
    idx = position_idx_index(infos, exchange_orders=exchange_orders)
    applied = []
    for info in sorted(infos, key=sort_key):
        if info.position_idx is None and info.order_id in idx:
            info = info._replace(position_idx=idx[info.order_id])
        try:
            if execution_apply(execution=info, source=SOURCE):
                applied.append(info)
        except FillRefused as exc:
            if refused is None:
                raise
            refused.append((info, str(exc)))
    return applied


def executions_fetch(ctx, symbols: set[str], plans: list[Plan]) -> None:
    """Every execution since the last good run for each symbol (funding and forced trades
    included), plus all fills of each order that is behind. A failed symbol is recorded
    as unknown; the rest of the run goes on."""
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


def _created_ms(plan: Plan) -> int:
    if plan.order is not None:
        return epoch_ms(plan.order.created_at)
    return plan.info.created_ms


def now_ms() -> int:
    return epoch_ms(timezone.now())


def _unknown_order_plans(ctx, missing: list[ExecutionInfo]) -> list:
    """Fills of orders we have no row for (placed outside the service, or by the exchange
    itself: liquidation, ADL): look each order up so it is recorded as external."""
    wanted = {(i.order_id, i.symbol) for i in missing if i.order_id and i.order_id not in ctx.exchange_orders}
    if not wanted:
        return []
    known = set(Order.objects.filter(order_id__in=[o for o, _ in wanted]).values_list("order_id", flat=True))
    plans = []
    for order_id, symbol in sorted(wanted):
        if order_id in known:
            continue
        try:
            info = ctx.client.get_order(category=ctx.category, symbol=symbol, order_id=order_id)
        except BybitError as exc:
            log_note = f"order {order_id} of backfilled fills could not be looked up: {exc}"
            ctx.rec.discrepancy(kind=Kind.LOOKUP_FAILED, symbol=symbol, resolved=False, note=log_note)
            continue
        if info is not None:
            ctx.exchange_orders[order_id] = info
            plans.append(Plan(kind=Kind.EXTERNAL_ORDER, info=info))
    return plans


def _refusals_record(ctx) -> None:
    """One unresolved discrepancy per execution the exchange sent that cannot be booked as it is."""
    refused, ctx.backfill.refused[:] = list(ctx.backfill.refused), []
    for row, reason in refused:
        if isinstance(row, ExecutionInfo):
            symbol, exec_id, raw = row.symbol, row.exec_id, None
        else:
            symbol, exec_id, raw = str(row.get("symbol") or ""), str(row.get("execId") or ""), row
        ctx.backfill.refused_ids.add(exec_id)
        ctx.rec.discrepancy(
            kind=Kind.EXECUTION_REFUSED,
            symbol=symbol[:30],
            before={"exec_id": exec_id[:200], **({"raw": raw} if raw is not None else {})},
            resolved=False,
            note=f"execution from the exchange not booked: {reason}",
        )


def backfill_run(ctx) -> int:
    """Apply every execution seen this run that the database lacks; returns how many."""
    missing = ctx.backfill.missing()
    if not missing:
        _refusals_record(ctx)
        return 0
    plans = _unknown_order_plans(ctx, missing)
    if not ctx.dry_run:
        plans_prepare(plans)
        applied = executions_apply(missing, exchange_orders=ctx.exchange_orders, refused=ctx.backfill.refused)
    else:
        applied = []
        for info in missing:
            why = execution_refusal(info)
            if why is None:
                applied.append(info)
            else:
                ctx.backfill.refused.append((info, f"execution {info.exec_id!r}: {why}"))
    _refusals_record(ctx)
    ctx.rec.add("backfilled", len(applied) if not ctx.dry_run else 0)
    by_symbol: dict[str, list[ExecutionInfo]] = {}
    for info in applied:
        by_symbol.setdefault(info.symbol, []).append(info)
    for symbol, infos in sorted(by_symbol.items()):
        types = sorted({i.exec_type for i in infos})
        ctx.rec.discrepancy(
            kind=Kind.EXECUTIONS_BACKFILLED,
            symbol=symbol,
            before={"missing": len(infos), "exec_types": types},
            after={"exec_ids": [i.exec_id for i in infos[:100]], "applied": 0 if ctx.dry_run else len(infos)},
            resolved=not ctx.dry_run,
            note=("dry run, not applied: " if ctx.dry_run else "")
            + f"{len(infos)} execution(s) the private stream did not deliver, through the fill path",
        )
    for plan in plans:
        plan_apply(ctx, plan)
    return len(applied)
