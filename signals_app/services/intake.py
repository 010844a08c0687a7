"""Signal intake: one message in, at most one inbox row out.

Every door (AMQP consumer, ``POST /api/signals/``, ``manage.py send_signal``)
calls ``signal_intake``. It validates against the contract and stores:

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
from ordermanager.tracing import SignalTrace, signal_trace
from signals_app.contract import ParsedSignal, SignalInvalid, signal_parse
from signals_app.models import SignalStatus, TradingSignal

log = structlog.get_logger(__name__)

WARMUP_REASON = "warm-up signal (is_warmup=true): recorded, never traded"
# First key of the two-int advisory lock space for intake (the processor uses another).
INTAKE_LOCK_NAMESPACE = 0x51A1
# PostgreSQL NOTIFY channel that wakes the processors of every process after an intake commits.
INBOX_CHANNEL = "om_signal_inbox"


@dataclass(frozen=True)
class IntakeResult:
    signal: TradingSignal | None
    created: bool
    rejected_reason: str | None


def signal_intake(*, payload: bytes | str | dict, source: str, traceparent=None) -> IntakeResult:
    """Validate and store one signal message. See the module docstring for the outcomes.

    ``traceparent``: the W3C header that came with the message (None: absent); it decides the trace id with
    the body's ``trace_id`` (``ordermanager.tracing.signal_trace``) and never refuses a signal.
    """
    try:
        parsed = signal_parse(payload)
    except SignalInvalid as exc:
        return _intake_invalid(exc, source=source, trace=_trace_of_invalid(exc, traceparent))
    trace = signal_trace(header=traceparent, body_trace_id=parsed.trace_id)
    with structlog.contextvars.bound_contextvars(signal_id=str(parsed.signal_id), trace_id=trace.trace_id):
        _trace_warn(trace, source=source)
        return _intake_valid(parsed, source=source, trace=trace)


def _trace_of_invalid(exc: SignalInvalid, traceparent) -> SignalTrace:
    body = exc.data.get("trace_id") if isinstance(exc.data.get("trace_id"), str) else ""
    return signal_trace(header=traceparent, body_trace_id=body[:64])


def _trace_warn(trace: SignalTrace, *, source: str) -> None:
    """The header's problems, logged in the signal's context (the signal is accepted all the same)."""
    for event, fields in trace.warnings:
        log.warning(event, source=source, trace_source=trace.source, **fields)


def signals_intake_batch(*, payloads: list[bytes], source: str, traceparents: list | None = None) -> list[IntakeResult]:
    """``signal_intake`` for a batch of messages, in the caller's transaction, in a few statements.

    The consumer stores up to 50 messages per transaction; one by one that is four round trips each
    (savepoint, lock, insert, release), and the intake thread shares the GIL with the processor threads, so
    each round trip can wait milliseconds to run again. Here: the locks of every symbol in the batch (taken
    in key order, so two batches cannot deadlock) and the NOTIFY in one statement, the duplicate check in
    one, and one multi-row INSERT in message order (ids follow it, so per-symbol order is kept). Results
    and side effects are those of ``signal_intake`` message by message.

    Must run inside a transaction. A concurrent insert of one of the ids makes the INSERT fail: the caller
    retries the batch, and the check then finds it. Raises on anything else (the caller falls back to
    ``signal_intake`` per message, which isolates a message that breaks something).
    """
    parsed: list[tuple[ParsedSignal | SignalInvalid, SignalTrace]] = []
    for payload, header in zip(payloads, traceparents or [None] * len(payloads), strict=True):
        try:
            item = signal_parse(payload)
            parsed.append((item, signal_trace(header=header, body_trace_id=item.trace_id)))
        except SignalInvalid as exc:
            parsed.append((exc, _trace_of_invalid(exc, header)))
    ids = [p.signal_id for p, _ in parsed if p.signal_id is not None]
    existing = _lock_symbols_and_find(assets={p.asset for p, _ in parsed if isinstance(p, ParsedSignal)}, ids=ids)
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
    TradingSignal.objects.bulk_create(rows)  # one INSERT ... RETURNING id, in message order
    return [_batch_result(item, source=source, trace=trace) for item, trace in planned]


def _batch_result(item, *, source: str, trace: SignalTrace) -> IntakeResult:
    if isinstance(item, TradingSignal):
        with structlog.contextvars.bound_contextvars(signal_id=str(item.signal_id), trace_id=item.trace_id):
            _trace_warn(trace, source=source)
            if item.status == SignalStatus.REJECTED:
                log.warning("signal_invalid", source=source, reason=item.reason)
            _stored(item)
        rejected = item.reason if item.status == SignalStatus.REJECTED else None
        return IntakeResult(signal=item, created=True, rejected_reason=rejected)
    if isinstance(item, SignalInvalid):
        if item.signal_id is None:
            return _intake_invalid(item, source=source, trace=trace)  # nothing to store: logged and evented there
        duplicate = _duplicate(item.signal_id)
        return IntakeResult(signal=duplicate.signal, created=False, rejected_reason=item.reason)
    return _duplicate(item.signal_id)


def _lock_symbols_and_find(*, assets: set[str], ids: list) -> set:
    """Take the intake locks of ``assets`` (PostgreSQL) and return which of ``ids`` are already stored."""
    if connection.vendor == "postgresql" and assets:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(pg_advisory_xact_lock(%s, k)), pg_notify(%s, '') FROM unnest(%s::int[]) AS k",
                [INTAKE_LOCK_NAMESPACE, INBOX_CHANNEL, sorted({_symbol_key(a) for a in assets})],
            )
    if not ids:
        return set()
    # After the locks (a statement of its own, so its snapshot sees what the lock holders committed).
    return set(TradingSignal.objects.filter(signal_id__in=ids).values_list("signal_id", flat=True))


def _intake_valid(parsed: ParsedSignal, *, source: str, trace: SignalTrace) -> IntakeResult:
    try:
        # Inside the consumer's batch transaction this is one savepoint per message: a failure (a bug, a
        # concurrent insert of the same id) is rolled back alone and the rest of the batch goes on.
        with transaction.atomic():
            if _lock_symbol_intake(parsed.asset, signal_id=parsed.signal_id):
                return _duplicate(parsed.signal_id)
            signal = _valid_row(parsed, source=source, trace=trace)
            signal.save(force_insert=True)
            _stored(signal)
    except IntegrityError:
        # Another door stored the same signal_id between our check and our insert (the check's snapshot
        # predates the lock wait, or the copy named another symbol).
        return _duplicate(parsed.signal_id)
    return IntakeResult(signal=signal, created=True, rejected_reason=None)


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
        transaction.on_commit(_wake_processor)
        log.info("signal_received", source=signal.source, asset=signal.asset, side=signal.signal_type,
                 amount=str(signal.amount), status=signal.status, inbox_id=signal.pk, signal_id=str(signal.signal_id),
                 trace_id=signal.trace_id, parent_span_id=signal.trace_parent_id)


def _intake_invalid(exc: SignalInvalid, *, source: str, trace: SignalTrace) -> IntakeResult:
    with structlog.contextvars.bound_contextvars(signal_id=str(exc.signal_id or ""), trace_id=trace.trace_id[:64]):
        _trace_warn(trace, source=source)
        log.warning("signal_invalid", source=source, reason=exc.reason)
        if exc.signal_id is None:
            events.publish_event_on_commit(
                routing_key=events.SIGNAL_REJECTED, payload={"signal_id": None, "reason": exc.reason, "source": source}
            )
            return IntakeResult(signal=None, created=False, rejected_reason=exc.reason)
        try:
            with transaction.atomic():
                signal = _rejected_row(exc, source=source, trace=trace)
                signal.save(force_insert=True)
                _stored(signal)
        except IntegrityError:
            # The id is taken: this message is a repeat (or a corrupted copy) of a stored one.
            duplicate = _duplicate(exc.signal_id)
            return IntakeResult(signal=duplicate.signal, created=False, rejected_reason=exc.reason)
        return IntakeResult(signal=signal, created=True, rejected_reason=exc.reason)


def _duplicate(signal_id) -> IntakeResult:
    existing = TradingSignal.objects.filter(signal_id=signal_id).first()
    log.info("signal_duplicate", signal_id=str(signal_id), status=existing.status if existing else None)
    return IntakeResult(signal=existing, created=False, rejected_reason=None)


def _text(value, limit: int) -> str:
    return value[:limit] if isinstance(value, str) else ""


def _lock_symbol_intake(asset: str, *, signal_id) -> bool:
    """Serialise intakes of ``asset`` until commit (PostgreSQL); True when ``signal_id`` is already stored."""
    if connection.vendor != "postgresql":
        return TradingSignal.objects.filter(signal_id=signal_id).exists()
    with connection.cursor() as cursor:
        # One round trip: the lock, a NOTIFY that PostgreSQL delivers only if this transaction commits, and
        # the duplicate check (a repeat is answered without an insert that fails).
        cursor.execute(
            f"SELECT pg_advisory_xact_lock(%s, %s), pg_notify(%s, ''), "
            f"EXISTS (SELECT 1 FROM {TradingSignal._meta.db_table} WHERE signal_id = %s)",
            [INTAKE_LOCK_NAMESPACE, _symbol_key(asset), INBOX_CHANNEL, signal_id],
        )
        return bool(cursor.fetchone()[2])


def _symbol_key(asset: str) -> int:
    # crc32 fits the int4 second key once shifted into the signed range; a collision only serialises two symbols.
    return zlib.crc32(asset.encode()) - 2**31


def _wake_processor() -> None:
    from signals_app.services.signal_processor import processor_wake

    processor_wake()


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
