"""Positions against their fills: find, record and repair differences (property 8).

One SQL statement (``orders.selectors.validation.positions_recompute_differences``) finds
every position whose stored state is not the fold of its executions. Each
difference is logged as an error and recorded as a ``PositionDiscrepancy``;
with ``repair`` the position is rebuilt from its executions under its row lock
(``position_rebuild``), which also rewrites its ledger.

Executions waiting for their order (the position side is unknown) are not a fault
of the position: they are recorded as ``unapplied`` and left for the order
event or reconciliation, never guessed onto a side.
"""

from __future__ import annotations

from datetime import timedelta

import structlog
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from orders.models import Execution
from orders.selectors.validation import PositionDifference, position_executions, positions_recompute_differences
from positions.models import Position, PositionDiscrepancy, PositionLedgerEntry, PositionValidationRun
from positions.selectors import ledger_exec_ids_applied
from positions.services.discrepancies import position_discrepancy_record
from positions.services.ledger import position_rebuild

log = structlog.get_logger(__name__)


# Longer than any transaction that writes executions or ledger entries (they take milliseconds): a row whose id
# a run saw as the highest was written, with every lower id, by transactions that committed within this time.
INCREMENTAL_MARGIN = timedelta(minutes=10)


def positions_validate_against_fills(*, repair: bool = True, incremental: bool = False) -> list[PositionDiscrepancy]:
    """Validate every position; returns the discrepancies recorded by this run (empty when all agree).

    ``incremental`` validates only the symbols with an Execution or ledger row written since the previous run
    could see (``_changed_symbols``); it is a full run when there is no usable earlier run. A change that writes
    neither (a position row edited by hand) waits for the next full run: the scheduled job and the admin action
    run full ones."""
    run = PositionValidationRun.objects.create(
        started_at=timezone.now(),
        full=True,
        executions_high=Execution.objects.aggregate(high=Max("pk"))["high"] or 0,
        ledger_high=PositionLedgerEntry.objects.aggregate(high=Max("pk"))["high"] or 0,
    )
    symbols = _changed_symbols(run) if incremental else None
    differences = positions_recompute_differences(symbols=symbols)
    recorded = [_handle(diff, repair=repair) for diff in differences]
    run.full, run.symbols = symbols is None, None if symbols is None else len(symbols)
    run.finished_at, run.differences = timezone.now(), len(recorded)
    run.save(update_fields=["full", "symbols", "finished_at", "differences"])
    log.info(
        "positions_validated",
        differences=len(recorded),
        repaired=sum(r.repaired for r in recorded),
        symbols="all" if symbols is None else len(symbols),
    )
    return recorded


def positions_validate_incremental() -> int:
    """For a frequent schedule between the full runs: an incremental validation with repair; the number of
    discrepancies recorded."""
    return len(positions_validate_against_fills(repair=True, incremental=True))


def _changed_symbols(run: PositionValidationRun) -> list[str] | None:
    """The symbols with rows above the id marks of the latest finished run that started INCREMENTAL_MARGIN before
    the previous finished run (None: no such run, validate all).

    Why nothing is missed: ids are handed out in time order, so every row at or below such a run's marks was
    written by a transaction that had begun when that run started, hence committed within the margin, before the
    previous run started: the previous run saw it, and validated its symbol unless an earlier run had (by the
    same argument, back to a full run). Every newer row's symbol is validated now. Ledger replays and rebuilds
    write ledger rows too (a replay comes with its new entry; a rebuild inserts the entries anew)."""
    finished = PositionValidationRun.objects.filter(finished_at__isnull=False, started_at__lte=run.started_at)
    previous = finished.order_by("-started_at").first()
    if previous is None:
        return None
    base = finished.filter(started_at__lte=previous.started_at - INCREMENTAL_MARGIN).order_by("-started_at").first()
    if base is None:
        return None
    symbols = set(Execution.objects.filter(pk__gt=base.executions_high).values_list("symbol", flat=True).distinct())
    ledger = PositionLedgerEntry.objects.filter(pk__gt=base.ledger_high)
    symbols |= set(Position.objects.filter(pk__in=ledger.values("position_id")).values_list("symbol", flat=True))
    return sorted(symbols)


def _handle(diff: PositionDifference, *, repair: bool) -> PositionDiscrepancy:
    with transaction.atomic():
        executions = position_executions(category=diff.category, symbol=diff.symbol, position_idx=diff.position_idx)
        waiting = _waiting_for_order(diff, executions)
        applicable = [e for e in executions if e["exec_id"] not in waiting]
        kind = PositionDiscrepancy.Kind.STATE
        if "ledger_vs_executions" in diff.problems:
            kind = PositionDiscrepancy.Kind.UNAPPLIED if waiting else PositionDiscrepancy.Kind.LEDGER
        note = ", ".join(diff.problems)
        if waiting:
            note += f"; {len(waiting)} execution(s) wait for their order to name the position side"
        repaired = False
        position_id = diff.position_id
        if repair and (kind != PositionDiscrepancy.Kind.UNAPPLIED or _rest_differs(diff, waiting)):
            position = position_rebuild(
                category=diff.category, symbol=diff.symbol, position_idx=diff.position_idx, executions=applicable
            )
            position_id, repaired = position.pk, True
        record = position_discrepancy_record(
            position_id=position_id,
            category=diff.category,
            symbol=diff.symbol,
            position_idx=diff.position_idx,
            kind=kind,
            stored=diff.stored,
            expected=diff.expected,
            repaired=repaired,
            note=note,
        )
    level = log.warning if kind == PositionDiscrepancy.Kind.UNAPPLIED else log.error
    level(
        "position_discrepancy",
        symbol=diff.symbol,
        position_idx=diff.position_idx,
        kind=kind,
        problems=list(diff.problems),
        stored=diff.stored,
        expected=diff.expected,
        repaired=repaired,
    )
    return record


def _waiting_for_order(diff: PositionDifference, executions: list[dict]) -> set[str]:
    """Executions of orders we have not seen yet, not applied to any position."""
    orphans = [e["exec_id"] for e in executions if not e["has_order"]]
    if not orphans:
        return set()
    applied = ledger_exec_ids_applied(exec_ids=orphans)
    return set(orphans) - applied


def _rest_differs(diff: PositionDifference, waiting: set[str]) -> bool:
    # The waiting rows explain a count mismatch; anything else is a real fault.
    return any(p != "ledger_vs_executions" for p in diff.problems if not (waiting and p == "size_vs_executions"))
