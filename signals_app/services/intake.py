"""Signal intake: one message in, at most one inbox row out.

Every door (AMQP consumer, ``POST /api/signals/``, ``manage.py send_signal``)
calls ``signal_intake`` (one message) or ``signals_intake_batch`` (the
consumer's batches; one path: a single message is a batch of one). It
validates against the contract and stores:

- a valid signal as ``received`` (``skipped`` when it is a warm-up signal);
- an invalid one as ``rejected`` with the reason, when it carries a usable
  ``signal_id`` (otherwise nothing can be stored; the caller dead-letters it);
- nothing new for a ``signal_id`` already in the inbox (the idempotency key:
  redelivery, an upstream retry), whatever the second message says.

The trace id stored with the signal (and bound to the log context while it is
handled) is the W3C ``traceparent`` header's when the message came with a valid
one, else the body's ``trace_id``, else a fresh one; a bad header is logged as a
warning, never a reason to refuse (docs/decisions/0322).

Ordering: the inbox id is the processing order of a symbol. On PostgreSQL two
intakes of the same symbol (AMQP and the API at the same moment) are
serialised with a transaction-level advisory lock, so ids of one symbol are
committed in increasing order and the processor can never see id N+1 before
id N. SQLite serialises all writers anyway. See docs/decisions/0302.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import structlog
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from ordermanager import events, metrics
from ordermanager.core.prebuilt_sql import instances_insert
from ordermanager.core.sql_once import fixed_cursor
from ordermanager.tracing import SignalTrace, signal_trace
from signals_app.contract import ParsedSignal, SignalInvalid, signal_parse
from signals_app.models import SignalStatus, TradingSignal

log = structlog.get_logger(__name__)

WARMUP_REASON = "warm-up signal (is_warmup=true): recorded, never traded"
# First key of the two-int advisory lock space for intake (the processor uses another).
INTAKE_LOCK_NAMESPACE = 0x51A1
# PostgreSQL NOTIFY channel that wakes the processors of every process after an intake commits. The payload
# names the stored symbols (space-separated; docs/decisions/0326); empty: look for work.
INBOX_CHANNEL = "om_signal_inbox"
# PostgreSQL refuses a NOTIFY payload of 8,000 bytes or more; a longer list becomes a bare wake-up.
NOTIFY_PAYLOAD_MAX = 7900


@dataclass(frozen=True)
class IntakeResult:
    signal: TradingSignal | None
    created: bool
    rejected_reason: str | None


def signal_intake(*, payload: bytes | str | dict, source: str, traceparent=None) -> IntakeResult:
    """Validate and store one signal message: a batch of one (``signals_intake_batch``) in a transaction of
    its own (a savepoint inside the caller's). See the module docstring for the outcomes.

    ``traceparent``: the W3C header that came with the message (None: absent); it decides the trace id with
    the body's ``trace_id`` (``ordermanager.tracing.signal_trace``) and never refuses a signal.
    """
    try:
        with transaction.atomic():
            return signals_intake_batch(payloads=[payload], source=source, traceparents=[traceparent])[0]
    except IntegrityError:
        # Another door stored the same signal_id between our check and our insert (the check's snapshot
        # predates the lock wait, or the copy named another symbol): taken again, the check finds it.
        with transaction.atomic():
            return signals_intake_batch(payloads=[payload], source=source, traceparents=[traceparent])[0]


def signals_intake_batch(*, payloads: list[bytes | str | dict], source: str,
                         traceparents: list | None = None) -> list[IntakeResult]:
    """Validate and store messages in the caller's transaction, in a few statements: the one intake path
    (``signal_intake`` is a batch of one). Results and side effects are message by message.

    The consumer stores up to 50 messages per transaction; one by one that is several round trips each, and
    the intake thread shares the GIL with the processor threads, so each round trip can wait milliseconds
    to run again. Here: the locks of every symbol in the batch (taken in key order, so two batches cannot
    deadlock), the NOTIFY and the duplicate check in one statement, one multi-row INSERT in message
    order (ids follow it, so per-symbol order is kept), and one outbox write for the batch's events.

    Must run inside a transaction. The check's snapshot may predate the lock wait: an id stored meanwhile
    by another door makes the INSERT fail (``IntegrityError``), and the caller takes the batch again (the
    check then finds it) or falls back to ``signal_intake`` per message. Raises on anything else.
    """
    parsed = [_parse(payload, header)
              for payload, header in zip(payloads, traceparents or [None] * len(payloads), strict=True)]
    ids = [p.signal_id for p, _ in parsed if p.signal_id is not None]
    assets = {p.asset for p, _ in parsed if isinstance(p, ParsedSignal)}
    # The symbols the processors are offered (their NOTIFY payload): of the signals stored `received`.
    offered = {p.asset for p, _ in parsed if isinstance(p, ParsedSignal) and not p.is_warmup}
    existing = _lock_symbols_and_find(assets=assets, ids=ids, offered=offered)
    rows, planned = [], []
    for item, trace in parsed:
        if item.signal_id is None or item.signal_id in existing:
            planned.append((item, trace))
            continue
        existing.add(item.signal_id)  # a repeat later in the same batch is a duplicate of this one
        row = (_valid_row(item, source=source, trace=trace) if isinstance(item, ParsedSignal)
               else _rejected_row(item, source=source, trace=trace))
        rows.append(row)
        planned.append((row, trace))
    instances_insert(rows)  # one INSERT ... RETURNING id, in message order, its text built once per row count
    with events.events_grouped():  # the batch's events (signal.received...) in one outbox write
        return [_result(item, source=source, trace=trace) for item, trace in planned]


def _parse(payload, header) -> tuple[ParsedSignal | SignalInvalid, SignalTrace]:
    try:
        item = signal_parse(payload)
    except SignalInvalid as exc:
        body = exc.data.get("trace_id") if isinstance(exc.data.get("trace_id"), str) else ""
        return exc, signal_trace(header=header, body_trace_id=body[:64])
    return item, signal_trace(header=header, body_trace_id=item.trace_id)


def _trace_warn(trace: SignalTrace, *, source: str) -> None:
    """The header's problems, logged in the signal's context (the signal is accepted all the same)."""
    for event, fields in trace.warnings:
        log.warning(event, source=source, trace_source=trace.source, **fields)


def _result(item: TradingSignal | ParsedSignal | SignalInvalid, *, source: str, trace: SignalTrace) -> IntakeResult:
    """One message's outcome, logged (and evented) in its own context: a row stored now, or a message
    that breaks the contract, or a repeat of a stored signal_id."""
    stored = isinstance(item, TradingSignal)
    signal_id = str(item.signal_id or "")
    with structlog.contextvars.bound_contextvars(signal_id=signal_id, trace_id=trace.trace_id[:64]):
        _trace_warn(trace, source=source)
        if isinstance(item, SignalInvalid) or (stored and item.status == SignalStatus.REJECTED):
            log.warning("signal_invalid", source=source, reason=item.reason)
        if stored:
            _stored(item)
            rejected = item.reason if item.status == SignalStatus.REJECTED else None
            return IntakeResult(signal=item, created=True, rejected_reason=rejected)
        if item.signal_id is None:  # nothing can be stored: the caller dead-letters it
            events.publish_event_on_commit(
                routing_key=events.SIGNAL_REJECTED, payload={"signal_id": None, "reason": item.reason, "source": source}
            )
            return IntakeResult(signal=None, created=False, rejected_reason=item.reason)
        duplicate = _duplicate(item.signal_id)
        if isinstance(item, SignalInvalid):  # a repeat (or a corrupted copy) of a stored one
            return IntakeResult(signal=duplicate.signal, created=False, rejected_reason=item.reason)
        return duplicate


def _lock_symbols_and_find(*, assets: set[str], ids: list, offered: set[str]) -> set:
    """Take the intake locks of ``assets`` until commit and wake the processors of every process when it
    commits, offering them the ``offered`` symbols (PostgreSQL: one statement with the duplicate check);
    return which of ``ids`` are stored."""
    if connection.vendor != "postgresql" or not assets:
        if not ids:
            return set()
        return set(TradingSignal.objects.filter(signal_id__in=ids).values_list("signal_id", flat=True))
    with fixed_cursor() as cursor:
        # The NOTIFY is delivered only if this transaction commits.
        cursor.execute(
            "SELECT (SELECT count(pg_advisory_xact_lock(%s, k)) FROM unnest(%s::int[]) AS k), pg_notify(%s, %s), "
            f"ARRAY(SELECT signal_id FROM {TradingSignal._meta.db_table} WHERE signal_id = ANY(%s::uuid[]))",
            [INTAKE_LOCK_NAMESPACE, sorted({_symbol_key(a) for a in assets}), INBOX_CHANNEL, notify_payload(offered),
             ids],
        )
        return set(cursor.fetchone()[2])


def notify_payload(symbols) -> str:
    """The inbox NOTIFY's payload: the symbols, space-separated (a symbol is capital letters and digits), or
    "" (look for work) when they would not fit PostgreSQL's payload limit."""
    text = " ".join(sorted(symbols))
    return text if len(text) <= NOTIFY_PAYLOAD_MAX else ""


def notify_symbols(payload: str) -> list[str]:
    """The symbols an inbox NOTIFY offers ([]: a bare wake-up, look for work)."""
    return payload.split()


def _valid_row(parsed: ParsedSignal, *, source: str, trace: SignalTrace) -> TradingSignal:
    warmup = parsed.is_warmup
    return TradingSignal(
        signal_id=parsed.signal_id,
        signal_type=parsed.signal_type,
        asset=parsed.asset,
        amount=parsed.amount,
        confidence=parsed.confidence,
        strategy_id=parsed.strategy_id,
        model_version=parsed.model_version,
        is_warmup=warmup,
        urgency=parsed.urgency,
        signal_timestamp=parsed.timestamp,
        snapshot_price=parsed.snapshot_price,
        snapshot_spread=parsed.snapshot_spread,
        raw_payload=parsed.raw,
        trace_id=trace.trace_id,
        trace_parent_id=trace.parent_span_id,
        source=source,
        status=SignalStatus.SKIPPED if warmup else SignalStatus.RECEIVED,
        reason=WARMUP_REASON if warmup else "",
        processed_at=timezone.now() if warmup else None,
    )


def _rejected_row(exc: SignalInvalid, *, source: str, trace: SignalTrace) -> TradingSignal:
    data = exc.data
    return TradingSignal(
        signal_id=exc.signal_id,
        signal_type=_text(data.get("signal_type"), 4) if data.get("signal_type") in ("buy", "sell") else "",
        asset=_text(data.get("asset"), 30),
        strategy_id=_text(data.get("strategy_id"), 100),
        raw_payload=data,
        trace_id=trace.trace_id[:64],
        trace_parent_id=trace.parent_span_id,
        source=source,
        status=SignalStatus.REJECTED,
        reason=exc.reason,
        processed_at=timezone.now(),
    )


def _stored(signal: TradingSignal) -> None:
    """The after-insert part of an intake: the event (on commit), the processors' wake-up, the log line."""
    routing_key = {SignalStatus.SKIPPED: events.SIGNAL_SKIPPED, SignalStatus.REJECTED: events.SIGNAL_REJECTED}.get(
        signal.status, events.SIGNAL_RECEIVED)
    events.publish_event_on_commit(routing_key=routing_key, payload=signal_event_payload(signal))
    if signal.status != SignalStatus.RECEIVED:  # rejected or skipped at the door: terminal already
        metrics.signal_finished_on_commit(signal)
    if signal.status == SignalStatus.RECEIVED:
        transaction.on_commit(lambda asset=signal.asset: _wake_processor(asset))
        log.info("signal_received", source=signal.source, asset=signal.asset, side=signal.signal_type,
                 amount=str(signal.amount), status=signal.status, inbox_id=signal.pk, signal_id=str(signal.signal_id),
                 trace_id=signal.trace_id, parent_span_id=signal.trace_parent_id)


def _duplicate(signal_id) -> IntakeResult:
    existing = TradingSignal.objects.filter(signal_id=signal_id).first()
    log.info("signal_duplicate", signal_id=str(signal_id), status=existing.status if existing else None)
    return IntakeResult(signal=existing, created=False, rejected_reason=None)


def _text(value, limit: int) -> str:
    return value[:limit] if isinstance(value, str) else ""


def _symbol_key(asset: str) -> int:
    # crc32 fits the int4 second key once shifted into the signed range; a collision only serialises two symbols.
    return zlib.crc32(asset.encode()) - 2**31


def _wake_processor(symbol: str) -> None:
    # Imported here: signal_processor imports signal_outcome, which imports this module (signal_event_payload).
    from signals_app.services.signal_processor import processor_wake

    processor_wake([symbol])  # straight to an idle worker of this process (the consumer defers it: 0324)


def signal_event_payload(signal: TradingSignal) -> dict:
    return {
        "signal_id": str(signal.signal_id),
        "inbox_id": signal.pk,
        "asset": signal.asset,
        "signal_type": signal.signal_type,
        "amount": None if signal.amount is None else str(signal.amount),
        "strategy_id": signal.strategy_id,
        "status": signal.status,
        "reason": signal.reason,
        "source": signal.source,
        "trace_id": signal.trace_id,
    }
