"""What a reconciliation run records: counts and discrepancies (before/after), and the run as JSON."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from ordermanager.core.decimals import plain_decimal
from orders.models import Discrepancy, ReconciliationRun


class Kind:
    """Discrepancy kinds (the ``Discrepancy.kind`` column)."""

    ORDER_CLOSED = "order_closed_on_exchange"  # we said active, the exchange had closed it
    ORDER_FILLS_BEHIND = "order_fills_behind"  # the exchange reported more fills than we had
    ORDER_STATUS = "order_status"  # other status difference on an open order
    ORDER_AMENDED = "order_amended"  # qty/price on the exchange differ from ours (an amend whose answer was lost)
    ORDER_NOT_FOUND = "order_not_found"  # acknowledged once, unknown to the exchange now (retention)
    ORDER_REOPENED = "order_open_on_exchange"  # we said terminal, the exchange says open
    PENDING_ADOPTED = "pending_submit_adopted"
    PENDING_FAILED = "pending_submit_failed"
    PENDING_RESUBMITTED = "pending_submit_resubmitted"
    PENDING_NOT_SENT = "pending_submit_not_sent"  # its signal is finished or has successors (decision 0315)
    GIVEN_UP_ADOPTED = "given_up_order_adopted"  # given up as unknown, found on the exchange later (0315)
    CANCEL_SETTLED = "pending_cancel_settled"
    CANCEL_NOT_DONE = "pending_cancel_still_open"
    EXTERNAL_ORDER = "external_order"
    EXECUTIONS_BACKFILLED = "executions_backfilled"
    POSITION_EXPLAINED = "position_explained_by_fills"
    POSITION_MISMATCH = "position_mismatch"
    POSITION_ENTRY_PRICE = "position_entry_price"
    POSITION_UNKNOWN = "position_unknown"
    LOOKUP_FAILED = "exchange_lookup_failed"
    EXECUTION_REFUSED = "execution_refused"  # the exchange sent an execution we cannot book as it is
    SYMBOL_HALTED = "symbol_reduce_only"


def plain(value: Any) -> Any:
    """JSON-safe and exact: Decimals as plain strings (never floats, never ``2E+2`` or the column's
    18 padding zeros: the admin shows these), dates ISO, containers recursively."""
    if isinstance(value, Decimal):
        return plain_decimal(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [plain(v) for v in value]
    return value


@dataclass
class RunRecorder:
    """Counts and discrepancy rows of one run. Rows are written as found, so a
    run that dies half-way still shows what it had found."""

    run: ReconciliationRun
    progress: Callable[[str, int, int], None] | None = None
    counts: dict[str, int] = field(
        default_factory=lambda: {"checked": 0, "updated": 0, "backfilled": 0, "external": 0, "failed": 0}
    )
    unresolved: int = 0
    found: int = 0

    def add(self, counter: str, n: int = 1) -> None:
        self.counts[counter] += n

    def discrepancy(
        self,
        *,
        kind: str,
        symbol: str = "",
        order_link_id: str = "",
        before: dict | None = None,
        after: dict | None = None,
        resolved: bool,
        note: str = "",
    ) -> Discrepancy:
        self.found += 1
        if not resolved:
            self.unresolved += 1
        return Discrepancy.objects.create(
            run=self.run,
            kind=kind,
            symbol=symbol,
            order_link_id=order_link_id[:36],
            before=plain(before or {}),
            after=plain(after or {}),
            resolved=resolved,
            note=note[:500],
        )

    def step(self, stage: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(stage, done, total)


def run_counts(run: ReconciliationRun, discrepancies: list[Discrepancy]) -> dict[str, int]:
    """The run's counters with how many discrepancies it recorded and how many remain unresolved."""
    return {
        "checked": run.checked,
        "updated": run.updated,
        "backfilled": run.backfilled,
        "external": run.external,
        "failed": run.failed,
        "discrepancies": len(discrepancies),
        "unresolved": sum(1 for d in discrepancies if not d.resolved),
    }


def reconcile_run_as_dict(run: ReconciliationRun) -> dict:
    """The run with its discrepancies, as plain JSON (``manage.py reconcile``: the summary and --json).
    The API renders a run with orders.apis.ReconciliationRunDetailOutput."""
    discrepancies = list(run.discrepancies.order_by("id"))
    return {
        "id": run.pk,
        "trigger": run.trigger,
        "started_by": run.started_by.get_username() if run.started_by_id else None,
        "status": run.status,
        "symbol": run.symbol or None,
        "dry_run": run.dry_run,
        "started_at": plain(run.started_at),
        "finished_at": plain(run.finished_at),
        "counts": run_counts(run, discrepancies),
        "error": run.error,
        "discrepancies": [
            {
                "id": d.pk,
                "kind": d.kind,
                "symbol": d.symbol,
                "order_link_id": d.order_link_id,
                "before": d.before,
                "after": d.after,
                "resolved": d.resolved,
                "note": d.note,
            }
            for d in discrepancies
        ],
    }


@dataclass
class RunContext:
    """Everything one category's pass of a run shares."""

    client: Any
    rec: RunRecorder
    category: str
    symbol: str | None
    dry_run: bool
    fix_positions: bool
    t0: datetime  # taken just before the exchange snapshot: rows changed after it are not judged
    exchange_orders: dict = field(default_factory=dict)  # orderId -> OrderInfo seen this run
    backfill: Any = None

    @property
    def run(self) -> ReconciliationRun:
        return self.rec.run
