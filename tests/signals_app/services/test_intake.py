import json
import uuid
from decimal import Decimal as D

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from ordermanager import events
from ordermanager.core.models import OutboxEvent
from signals_app.models import SignalStatus, TradingSignal
from signals_app.services.intake import WARMUP_REASON, signal_intake
from tests.core.test_outbox_many import outbox_statements


def message(**overrides):
    body = {
        "signal_id": str(uuid.uuid4()), "signal_type": "buy", "asset": "BTCUSDT", "amount": "100",
        "confidence": 0.5, "timestamp": "2026-11-23T10:15:00Z", "strategy_id": "s1", "trace_id": "t-1",
        "market_data_snapshot": {"price": "64000", "spread": "1"},
    }
    body.update(overrides)
    return body


@pytest.mark.django_db
def test_valid_signal_is_stored_as_received_with_decimal_fields():
    body = message(amount="123.45678901")
    result = signal_intake(payload=json.dumps(body).encode(), source="amqp")
    assert result.created and result.rejected_reason is None
    row = TradingSignal.objects.get(signal_id=body["signal_id"])
    assert (row.status, row.source, row.asset, row.trace_id) == (SignalStatus.RECEIVED, "amqp", "BTCUSDT", "t-1")
    assert row.amount == D("123.45678901")
    assert row.snapshot_price == D("64000") and row.confidence == D("0.5")


@pytest.mark.postgres
@pytest.mark.django_db
def test_amount_keeps_eighteen_decimal_places_on_postgres():
    body = json.dumps(message(amount=None)).replace('"amount": null', '"amount": 123456789.123456789012345678')
    result = signal_intake(payload=body, source="amqp")
    result.signal.refresh_from_db()
    assert result.signal.amount == D("123456789.123456789012345678")


@pytest.mark.django_db
def test_duplicate_signal_id_creates_nothing_new():
    body = message()
    first = signal_intake(payload=body, source="amqp")
    second = signal_intake(payload={**body, "amount": "999"}, source="api")
    assert first.created and not second.created
    assert second.signal.pk == first.signal.pk
    assert TradingSignal.objects.count() == 1
    assert TradingSignal.objects.get().amount == D("100")


@pytest.mark.django_db
def test_warmup_signal_is_skipped():
    result = signal_intake(payload=message(is_warmup=True), source="amqp")
    assert result.signal.status == SignalStatus.SKIPPED and result.signal.reason == WARMUP_REASON
    assert result.signal.processed_at is not None


@pytest.mark.django_db
def test_invalid_signal_with_usable_id_is_stored_rejected_with_the_reason():
    body = message(amount="-5", asset="BTCUSDT")
    result = signal_intake(payload=body, source="amqp")
    assert result.created and "amount: must be greater than 0, got -5" in result.rejected_reason
    row = TradingSignal.objects.get(signal_id=body["signal_id"])
    assert (row.status, row.reason, row.asset, row.amount) == (
        SignalStatus.REJECTED, result.rejected_reason, "BTCUSDT", None)
    assert row.raw_payload["amount"] == "-5"


@pytest.mark.django_db
def test_invalid_signal_without_usable_id_stores_nothing():
    result = signal_intake(payload=b"{oops", source="amqp")
    assert result.signal is None and not result.created and "not valid JSON" in result.rejected_reason
    assert not TradingSignal.objects.exists()


@pytest.mark.django_db
def test_invalid_repeat_of_a_stored_signal_changes_nothing():
    body = message()
    signal_intake(payload=body, source="amqp")
    result = signal_intake(payload={**body, "amount": "-1"}, source="amqp")
    assert not result.created and result.rejected_reason
    assert TradingSignal.objects.get().status == SignalStatus.RECEIVED


@pytest.mark.django_db
def test_events_are_published_only_after_commit(django_capture_on_commit_callbacks, monkeypatch):
    published = []
    # Patched on the class: an instance attribute left behind by monkeypatch would hide later class patches.
    monkeypatch.setattr(events.EventPublisher, "submit", lambda self, key, msg: published.append((key, msg)))
    with django_capture_on_commit_callbacks(execute=True):
        signal_intake(payload=message(trace_id="trace-9"), source="api")
        signal_intake(payload=message(amount="x"), source="api")
    keys = [key for key, _ in published]
    assert keys == [events.SIGNAL_RECEIVED, events.SIGNAL_REJECTED]
    assert published[0][1]["trace_id"] == "trace-9" and published[0][1]["amount"] == "100"


@pytest.mark.django_db
def test_intake_wakes_the_processor_after_commit(django_capture_on_commit_callbacks):
    from signals_app.services import signal_processor

    signal_processor._wake.clear()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        signal_intake(payload=message(), source="api")
    assert not signal_processor._wake.is_set()
    for callback in callbacks:
        callback()
    assert signal_processor._wake.is_set()


@pytest.mark.django_db
def test_a_batch_is_stored_in_message_order_with_the_outcomes_of_one_by_one_intake():
    from django.db import transaction

    from signals_app.services.intake import signals_intake_batch

    stored = message(asset="ETHUSDT")
    signal_intake(payload=stored, source="api")
    first, second = message(asset="SOLUSDT"), message(asset="BTCUSDT")
    bad_with_id, bad_without_id = message(amount="-1"), b"{not json"
    payloads = [json.dumps(first).encode(), json.dumps(stored).encode(), json.dumps(bad_with_id).encode(),
                bad_without_id, json.dumps(second).encode(), json.dumps(first).encode(),
                json.dumps(message(is_warmup=True)).encode()]
    events_before = OutboxEvent.objects.count()
    with transaction.atomic(), CaptureQueriesContext(connection) as captured:
        results = signals_intake_batch(payloads=payloads, source="amqp")
    # The batch's events in one outbox write (its statements as for one event).
    assert len([q for q in captured.captured_queries if "core_outbox" in q["sql"]]) == outbox_statements()
    assert list(OutboxEvent.objects.order_by("id")[events_before:].values_list("routing_key", flat=True)) == [
        "signal.received", "signal.rejected", "signal.rejected", "signal.received", "signal.skipped"]
    assert [(r.created, r.rejected_reason is not None) for r in results] == [
        (True, False), (False, False), (True, True), (False, True), (True, False), (False, False), (True, False)]
    assert "amount: must be greater than 0, got -1" in results[2].rejected_reason
    assert "not valid JSON" in results[3].rejected_reason and results[3].signal is None
    assert results[5].signal.pk == results[0].signal.pk  # a repeat inside the batch is the first one
    assert results[1].signal.source == "api"  # the stored one, untouched
    rows = list(TradingSignal.objects.filter(source="amqp").order_by("id"))
    assert [str(r.signal_id) for r in rows] == [first["signal_id"], bad_with_id["signal_id"], second["signal_id"],
                                                 json.loads(payloads[6])["signal_id"]]
    assert [r.status for r in rows] == [SignalStatus.RECEIVED, SignalStatus.REJECTED, SignalStatus.RECEIVED,
                                        SignalStatus.SKIPPED]
    assert rows[0].amount == D("100") and rows[0].raw_payload["asset"] == "SOLUSDT"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_batch_holds_the_intake_lock_of_each_of_its_symbols_until_commit():
    """Property 3 with two doors: a single intake of a symbol in the batch waits for the batch's commit."""
    import threading

    from django.db import connection, transaction

    from signals_app.services.intake import signals_intake_batch

    batch = [json.dumps(message(asset=a)).encode() for a in ("SOLUSDT", "BTCUSDT")]
    single = message(asset="BTCUSDT")
    done = threading.Event()

    def other_door():
        signal_intake(payload=single, source="api")
        connection.close()
        done.set()

    with transaction.atomic():
        signals_intake_batch(payloads=batch, source="amqp")
        thread = threading.Thread(target=other_door)
        thread.start()
        assert not done.wait(0.5)  # blocked on the BTCUSDT lock while the batch is open
    assert done.wait(10)
    ids = list(TradingSignal.objects.filter(asset="BTCUSDT").order_by("id").values_list("source", flat=True))
    assert ids == ["amqp", "api"]
