"""The audit trail of exchange calls: one ExchangeCall row per HTTP attempt.

Rows are written outside any caller transaction concern: an audit insert that
fails must never turn a sent order into an exception (the order exists on the
exchange either way), so failures are logged with the row's content instead.
With ``EXCHANGE_AUDIT_SPOOL_DIR`` set (production) the row is appended to this
process's spool file and written by a thread (exchange/audit_spool.py,
docs/decisions/0208): the calling thread does not wait for the database, and a
killed process loses nothing. With it empty (the test settings), the row is
inserted inline; one that cannot be written because the database is
unreachable is kept in memory (``AUDIT_BACKLOG``, bounded, in order) and
written, with its original time, when the database returns (docs/decisions/0414).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import structlog
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from exchange import audit_spool
from exchange.models import ExchangeCall
from ordermanager.core.services.db_backlog import DB_UNAVAILABLE, WriteBacklog

logger = structlog.get_logger("exchange.audit")

REDACTED = "***"
# Parameter names that could carry a credential; never stored even if a caller passes one.
_SECRET_NAME = re.compile(r"secret|sign|password|passphrase|token|api_?key", re.IGNORECASE)
# The words _SECRET_NAME looks for, as plain substrings: a fast first look at a whole answer.
_SECRET_WORDS = ("secret", "sign", "password", "passphrase", "token", "apikey", "api_key")
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


def response_for_audit(raw: bytes, envelope: dict | None, scrub) -> tuple[str, int, bool]:
    """(body to store, size received in bytes, cut?) of one answer.

    Redacted as a request is: values under secret-looking keys replaced (when the body is JSON), then
    ``scrub`` (the client's: its key, its secret, signature-shaped hex) over the text; then cut to
    ``EXCHANGE_CALL_RESPONSE_MAX_BYTES`` bytes of UTF-8 at a character boundary. NUL characters, which
    PostgreSQL cannot store, become U+FFFD.
    """
    size = len(raw)
    text = raw.decode("utf-8", "replace")
    lowered = text.lower()
    if any(word in lowered for word in _SECRET_WORDS):  # only then can a key need redacting: parse, redact by name
        if envelope is None:
            with contextlib.suppress(ValueError):
                envelope = json.loads(text)
        if isinstance(envelope, dict | list):
            text = json.dumps(redact_params(envelope), ensure_ascii=False, separators=(",", ":"), default=str)
    text = scrub(text).replace("\x00", "\ufffd")
    limit = settings.EXCHANGE_CALL_RESPONSE_MAX_BYTES
    if len(text) * 4 <= limit:  # cannot exceed the cap: skip the encoding
        return text, size, False
    encoded = text.encode("utf-8")
    if len(encoded) <= limit:
        return text, size, False
    return encoded[:limit].decode("utf-8", "ignore"), size, True


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
    response_body: str = "",
    response_bytes: int | None = None,
    response_truncated: bool = False,
) -> ExchangeCall | None:
    """Record one audit row: spooled (returns None), or inserted inline (returns the row; None if refused)."""
    spool = audit_spool.current()
    row = dict(
        call_id=audit_spool.CALL_IDS.next(),
        created_at=timezone.now().isoformat() if spool is not None else timezone.now(),
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
        response_body=response_body or "",
        response_bytes=response_bytes,
        response_truncated=response_truncated,
    )
    if spool is not None:
        try:
            spool.append(audit_spool.row_line(row))
            return None
        except OSError as exc:  # a full or broken disk: the row goes inline instead of nowhere
            logger.error("exchange_audit_spool_append_failed", error=str(exc), path=row["path"])
    return _record_inline(row)


def _record_inline(fields: dict) -> ExchangeCall | None:
    if isinstance(fields["created_at"], str):  # the spool refused it
        fields["created_at"] = datetime.fromisoformat(fields["created_at"])
    row = ExchangeCall(**fields)
    http_status, ret_code = row.http_status, row.ret_code
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
    """A kept row, written late: it keeps the time of the call it records (``created_at`` is set, not auto)."""
    row.pk = None
    row.save(force_insert=True)


def _backlog_symbols(row: ExchangeCall) -> Iterable[tuple[str, str]]:
    params = row.params if isinstance(row.params, dict) else {}
    symbol = params.get("symbol")
    if isinstance(symbol, str) and symbol:
        return [(str(params.get("category") or "linear"), symbol)]
    return []


def _backlog_describe(row: ExchangeCall) -> dict:
    return {"method": row.method, "path": row.path, "http_status": row.http_status, "ret_code": row.ret_code,
            "attempt": row.attempt, "trace_id": row.trace_id, "order_link_id": row.order_link_id}  # fmt: skip


# Marking a symbol for a backfill is the orders app's business (its BackfillMark table): orders plugs its
# function in when the app registry is ready (``OrdersConfig.ready``), so exchange imports no domain app.
_backfill_mark: Callable[..., Any] | None = None


def audit_backlog_mark_set(mark: Callable[..., Any]) -> None:
    """Install ``mark(symbols, *, reason)``, called for the symbols of audit rows that could not be kept."""
    global _backfill_mark
    _backfill_mark = mark


def _backlog_mark(symbols, reason: str) -> None:
    if _backfill_mark is None:
        raise RuntimeError("No backfill marker installed: the orders app installs it when Django starts.")
    _backfill_mark(symbols, reason=reason)


AUDIT_BACKLOG: WriteBacklog[ExchangeCall] = WriteBacklog(
    "exchange-audit", write=_backlog_write, symbols_of=_backlog_symbols, describe=_backlog_describe,
    mark=_backlog_mark,
)  # fmt: skip
