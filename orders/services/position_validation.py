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

import structlog
from django.db import transaction

from orders.selectors.validation import PositionDifference, position_executions, positions_recompute_differences
from positions.models import PositionDiscrepancy
from positions.selectors import ledger_exec_ids_applied
from positions.services.discrepancies import position_discrepancy_record
from positions.services.ledger import position_rebuild

log = structlog.get_logger(__name__)


def positions_validate_against_fills(*, repair: bool = True) -> list[PositionDiscrepancy]:
    """Validate every position; returns the discrepancies recorded by this run (empty when all agree)."""
    differences = positions_recompute_differences()
    recorded = [_handle(diff, repair=repair) for diff in differences]
    log.info("positions_validated", differences=len(recorded), repaired=sum(r.repaired for r in recorded))
    return recorded


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
