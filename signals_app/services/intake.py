"""Signal intake: one message in, at most one inbox row out.

Every door (AMQP consumer, ``POST /api/signals/``, ``manage.py send_signal``)
calls ``signal_intake``. It validates against the contract and stores:

- a valid signal as ``received`` (``skipped`` when it is a warm-up signal);
- an invalid one as ``rejected`` with the reason, when it carries a usable
  ``signal_id`` (otherwise nothing can be stored; the caller dead-letters it);
- nothing new for a ``signal_id`` already in the inbox (the idempotency key:
  redelivery, an upstream retry), whatever the second message says.

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

from ordermanager import events
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


def signal_intake(*, payload: bytes | str | dict, source: str) -> IntakeResult:
    """Validate and store one signal message. See the module docstring for the outcomes."""
    try:
        parsed = signal_parse(payload)
    except SignalInvalid as exc:
        return _intake_invalid(exc, source=source)
    with structlog.contextvars.bound_contextvars(signal_id=str(parsed.signal_id), trace_id=parsed.trace_id):
        return _intake_valid(parsed, source=source)


def _intake_valid(parsed: ParsedSignal, *, source: str) -> IntakeResult:
    warmup = parsed.is_warmup
    with transaction.atomic():
        _lock_symbol_intake(parsed.asset)
        try:
            with transaction.atomic():
                signal = TradingSignal.objects.create(
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
                    trace_id=parsed.trace_id,
                    source=source,
                    status=SignalStatus.SKIPPED if warmup else SignalStatus.RECEIVED,
                    reason=WARMUP_REASON if warmup else "",
                    processed_at=timezone.now() if warmup else None,
                )
        except IntegrityError:
            return _duplicate(parsed.signal_id)
        events.publish_event_on_commit(
            routing_key=events.SIGNAL_SKIPPED if warmup else events.SIGNAL_RECEIVED,
            payload=signal_event_payload(signal),
        )
        if not warmup:
            transaction.on_commit(_wake_processor)
    log.info("signal_received", source=source, asset=parsed.asset, side=parsed.signal_type,
             amount=str(parsed.amount), status=signal.status, inbox_id=signal.pk)
    return IntakeResult(signal=signal, created=True, rejected_reason=None)


def _intake_invalid(exc: SignalInvalid, *, source: str) -> IntakeResult:
    data = exc.data
    trace_id = data.get("trace_id") if isinstance(data.get("trace_id"), str) else ""
    with structlog.contextvars.bound_contextvars(signal_id=str(exc.signal_id or ""), trace_id=trace_id[:64]):
        log.warning("signal_invalid", source=source, reason=exc.reason)
        if exc.signal_id is None:
            events.publish_event_on_commit(
                routing_key=events.SIGNAL_REJECTED, payload={"signal_id": None, "reason": exc.reason, "source": source}
            )
            return IntakeResult(signal=None, created=False, rejected_reason=exc.reason)
        try:
            with transaction.atomic():
                signal = TradingSignal.objects.create(
                    signal_id=exc.signal_id,
                    signal_type=_text(data.get("signal_type"), 4) if data.get("signal_type") in ("buy", "sell") else "",
                    asset=_text(data.get("asset"), 30),
                    strategy_id=_text(data.get("strategy_id"), 100),
                    raw_payload=data,
                    trace_id=trace_id[:64],
                    source=source,
                    status=SignalStatus.REJECTED,
                    reason=exc.reason,
                    processed_at=timezone.now(),
                )
                events.publish_event_on_commit(routing_key=events.SIGNAL_REJECTED, payload=signal_event_payload(signal))
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


def _lock_symbol_intake(asset: str) -> None:
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        # One round trip: the lock, and a NOTIFY that PostgreSQL delivers only if this transaction commits.
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s, %s), pg_notify(%s, '')",
            [INTAKE_LOCK_NAMESPACE, _symbol_key(asset), INBOX_CHANNEL],
        )


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
