"""The audit trail of exchange calls: one ExchangeCall row per HTTP attempt.

Rows are written outside any caller transaction concern: an audit insert that
fails must never turn a sent order into an exception (the order exists on the
exchange either way), so failures are logged with the row's content instead.
"""

from __future__ import annotations

import re
from typing import Any

import structlog
from django.db import connection, transaction

from exchange.models import ExchangeCall

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
    )
    try:
        if connection.in_atomic_block:
            # A failed insert must not poison the caller's transaction (PostgreSQL aborts it).
            with transaction.atomic():
                row.save(force_insert=True)
        else:
            row.save(force_insert=True)
    except Exception:  # noqa: BLE001 - the audit must never break the call it records
        logger.exception(
            "exchange_call_audit_failed", method=row.method, path=row.path, http_status=http_status,
            ret_code=ret_code, attempt=row.attempt, trace_id=row.trace_id, order_link_id=row.order_link_id,
        )  # fmt: skip
        return None
    return row
