"""The audit trail of exchange calls: one ExchangeCall row per HTTP attempt.

Rows are written outside any caller transaction concern: an audit insert that
fails must never turn a sent order into an exception (the order exists on the
exchange either way), so failures are logged with the row's content instead.
A row that cannot be written because the database is unreachable is kept in
memory (``AUDIT_BACKLOG``, bounded, in order) and written, with its original
time, when the database returns (docs/decisions/0414).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable
from typing import Any

import structlog
from django.db import connection, transaction
from django.utils import timezone

from exchange.models import ExchangeCall
from ordermanager.core.services.db_backlog import DB_UNAVAILABLE, WriteBacklog

logger = structlog.get_logger("exchange.audit")

REDACTED = "***"
# Parameter names that could carry a credential; never stored even if a caller passes one.
_SECRET_NAME = re.compile(r"secret|sign|password|passphrase|token|api_?key", re.IGNORECASE)
_PATH_MAX = ExchangeCall._meta.get_field("path").max_length
_MSG_MAX = ExchangeCall._meta.get_field("ret_msg").max_length
_ERROR_MAX = ExchangeCall._meta.get_field("error").max_length
_LINK_MAX = ExchangeCall._meta.get_field("order_link_id").max_length
_TRACE_MAX = ExchangeCall._meta.get_field("trace_id").max_length


def redact_params(params: Any) -> Any:
    """A copy of ``params`` with values under secret-looking names replaced."""
    if isinstance(params, dict):
        return {k: REDACTED if _SECRET_NAME.search(str(k)) else redact_params(v) for k, v in params.items()}
    if isinstance(params, list):
        return [redact_params(v) for v in params]
    return params


def exchange_call_record(
    *,
    method: str,
    path: str,
    params: dict | None,
    http_status: int | None,
    ret_code: int | None,
    ret_msg: str,
    latency_ms: int,
    attempt: int,
    trace_id: str = "",
    order_link_id: str = "",
    error: str = "",
    dry_run: bool = False,
) -> ExchangeCall | None:
    """Insert one audit row. Returns None (and logs) if the database refused it."""
    row = ExchangeCall(
        method=method[:8],
        path=path[:_PATH_MAX],
        params=redact_params(params or {}),
        http_status=http_status,
        ret_code=ret_code,
        ret_msg=(ret_msg or "")[:_MSG_MAX],
        latency_ms=max(0, int(latency_ms)),
        attempt=max(1, attempt),
        trace_id=(trace_id or "")[:_TRACE_MAX],
        order_link_id=(order_link_id or "")[:_LINK_MAX],
        error=(error or "")[:_ERROR_MAX],
        dry_run=dry_run,
        created_at=timezone.now(),
    )
    if AUDIT_BACKLOG.pending:  # earlier rows wait for the database: this one goes behind them
        AUDIT_BACKLOG.keep(row, error="earlier audit rows are waiting for the database")
        return None
    try:
        if connection.in_atomic_block:
            # A failed insert must not poison the caller's transaction (PostgreSQL aborts it).
            with transaction.atomic():
                row.save(force_insert=True)
        else:
            row.save(force_insert=True)
    except DB_UNAVAILABLE as exc:
        with contextlib.suppress(Exception):
            connection.close_if_unusable_or_obsolete()
        AUDIT_BACKLOG.keep(row, error=str(exc))
        return None
    except Exception:  # noqa: BLE001 - the audit must never break the call it records
        logger.exception(
            "exchange_call_audit_failed", method=row.method, path=row.path, http_status=http_status,
            ret_code=ret_code, attempt=row.attempt, trace_id=row.trace_id, order_link_id=row.order_link_id,
        )  # fmt: skip
        return None
    return row


def _backlog_write(row: ExchangeCall) -> None:
    """A kept row, written late: it keeps the time of the call it records (not of the write)."""
    at = row.created_at
    row.pk = None
    with transaction.atomic():
        row.save(force_insert=True)
        ExchangeCall.objects.filter(pk=row.pk).update(created_at=at)


def _backlog_symbols(row: ExchangeCall) -> Iterable[tuple[str, str]]:
    params = row.params if isinstance(row.params, dict) else {}
    symbol = params.get("symbol")
    if isinstance(symbol, str) and symbol:
        return [(str(params.get("category") or "linear"), symbol)]
    return []


def _backlog_describe(row: ExchangeCall) -> dict:
    return {"method": row.method, "path": row.path, "http_status": row.http_status, "ret_code": row.ret_code,
            "attempt": row.attempt, "trace_id": row.trace_id, "order_link_id": row.order_link_id}  # fmt: skip


def _backlog_mark(symbols, reason: str) -> None:
    from orders.reconcile.backfill_marks import backfill_mark

    backfill_mark(symbols, reason=reason)


AUDIT_BACKLOG: WriteBacklog[ExchangeCall] = WriteBacklog(
    "exchange-audit", write=_backlog_write, symbols_of=_backlog_symbols, describe=_backlog_describe,
    mark=_backlog_mark,
)  # fmt: skip
