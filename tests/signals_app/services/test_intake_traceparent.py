"""A W3C traceparent with the message decides the signal's trace id; a bad one is named, never refused (0322)."""

import json
import re
from contextlib import contextmanager

import pytest
import structlog
from django.db import transaction

from ordermanager.core.models import OutboxEvent
from signals_app.models import SignalStatus, TradingSignal
from signals_app.services.intake import signal_intake, signals_intake_batch
from tests.signals_app.conftest import signal_message

pytestmark = pytest.mark.django_db

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
VALID = f"00-{TRACE}-{SPAN}-01"
INVALID = {
    "uppercase": (f"00-{TRACE.upper()}-{SPAN}-01", "uppercase hex"),
    "short trace-id": (f"00-{TRACE[:-2]}-{SPAN}-01", "53 characters"),
    "long parent-id": (f"00-{TRACE}-{SPAN}0-01", "56 characters"),
    "zero trace-id": (f"00-{'0' * 32}-{SPAN}-01", "trace-id is all zeros"),
    "zero parent-id": (f"00-{TRACE}-{'0' * 16}-01", "parent-id is all zeros"),
    "version ff": (f"ff-{TRACE}-{SPAN}-01", "version ff is forbidden"),
    "leading space": (f" {VALID}", "leading or trailing whitespace"),
    "trailing space": (f"{VALID} ", "leading or trailing whitespace"),
}


@contextmanager
def logs_captured():
    """structlog's capture_logs with the bound context (signal_id, trace_id) merged in, as every line has it.
    Works across threads: the processor list is shared (changed in place, as capture_logs does)."""
    with structlog.testing.capture_logs() as entries:
        processors = structlog.get_config()["processors"]
        processors.insert(0, structlog.contextvars.merge_contextvars)
        yield entries


def events_of(signal: TradingSignal) -> list[dict]:
    return [e.payload for e in OutboxEvent.objects.filter(aggregate_id=str(signal.signal_id))]


def test_the_header_trace_id_wins_over_the_body_and_the_producer_span_is_kept():
    body = signal_message(trace_id="body-trace-1")
    with logs_captured() as logs:
        result = signal_intake(payload=json.dumps(body).encode(), source="amqp", traceparent=VALID)
    signal = TradingSignal.objects.get(signal_id=body["signal_id"])
    assert result.created and signal.status == SignalStatus.RECEIVED
    assert (signal.trace_id, signal.trace_parent_id) == (TRACE, SPAN)
    assert signal.raw_payload["trace_id"] == "body-trace-1"  # the body's id stays in the stored message
    [mismatch] = [e for e in logs if e["event"] == "trace_id_mismatch"]
    assert (mismatch["log_level"], mismatch["header_trace_id"], mismatch["body_trace_id"]) == (
        "warning", TRACE, "body-trace-1")
    [received] = [e for e in logs if e["event"] == "signal_received"]
    assert (received["trace_id"], received["parent_span_id"]) == (TRACE, SPAN)
    assert [e["trace_id"] for e in events_of(signal)] == [TRACE]


@pytest.mark.parametrize("variant", list(INVALID))
def test_an_invalid_header_is_warned_about_and_the_body_trace_id_used(variant):
    header, reason = INVALID[variant]
    body = signal_message(trace_id="body-trace-2")
    with logs_captured() as logs:
        result = signal_intake(payload=body, source="amqp", traceparent=header)
    assert result.created and result.rejected_reason is None
    signal = result.signal
    assert (signal.status, signal.trace_id, signal.trace_parent_id) == (SignalStatus.RECEIVED, "body-trace-2", "")
    [warning] = [e for e in logs if e["event"] == "traceparent_invalid"]
    assert warning["log_level"] == "warning" and reason in warning["reason"]
    assert warning["traceparent"] == header and warning["trace_source"] == "body"
    # Logged in the signal's context, so the line is found by the signal's id and trace id.
    assert (warning["signal_id"], warning["trace_id"]) == (body["signal_id"], "body-trace-2")


def test_an_invalid_header_without_a_body_trace_id_gets_a_fresh_trace_id():
    body = signal_message(trace_id=None)
    with logs_captured() as logs:
        signal = signal_intake(payload=body, source="amqp", traceparent=INVALID["version ff"][0]).signal
    assert signal.status == SignalStatus.RECEIVED and re.fullmatch("[0-9a-f]{32}", signal.trace_id)
    assert [e["trace_source"] for e in logs if e["event"] == "traceparent_invalid"] == ["new"]
    assert [e["trace_id"] for e in events_of(signal)] == [signal.trace_id]


def test_no_header_and_no_body_trace_id_gives_a_fresh_one_without_a_warning():
    body = signal_message()
    del body["trace_id"]
    with logs_captured() as logs:
        first = signal_intake(payload=body, source="api").signal
        second = signal_intake(payload=signal_message(trace_id=""), source="api").signal
    assert re.fullmatch("[0-9a-f]{32}", first.trace_id) and re.fullmatch("[0-9a-f]{32}", second.trace_id)
    assert first.trace_id != second.trace_id
    assert not [e for e in logs if e["log_level"] == "warning"]


def test_a_rejected_signal_carries_the_header_trace_id_too():
    body = signal_message(amount="-1", trace_id="body-trace-3")
    result = signal_intake(payload=body, source="amqp", traceparent=VALID)
    assert result.rejected_reason and result.signal.status == SignalStatus.REJECTED
    assert (result.signal.trace_id, result.signal.trace_parent_id) == (TRACE, SPAN)
    assert [e["trace_id"] for e in events_of(result.signal)] == [TRACE]


def test_the_batch_intake_gives_each_message_its_own_header():
    bodies = [signal_message(trace_id="b1"), signal_message(trace_id="b2"), signal_message(trace_id="b3"),
              signal_message(amount="0", trace_id="b4")]
    headers = [VALID, INVALID["uppercase"][0], None, f"00-{'a' * 32}-{'b' * 16}-00"]
    with logs_captured() as logs, transaction.atomic():
        results = signals_intake_batch(payloads=[json.dumps(b).encode() for b in bodies], source="amqp",
                                       traceparents=headers)
    assert [(r.signal.trace_id, r.signal.trace_parent_id) for r in results] == [
        (TRACE, SPAN), ("b2", ""), ("b3", ""), ("a" * 32, "b" * 16)]
    assert results[3].signal.status == SignalStatus.REJECTED
    warned = [(e["event"], e["signal_id"]) for e in logs if e["event"].startswith("trace")]
    assert warned == [("trace_id_mismatch", bodies[0]["signal_id"]), ("traceparent_invalid", bodies[1]["signal_id"]),
                      ("trace_id_mismatch", bodies[3]["signal_id"])]


def test_the_http_api_reads_the_standard_header(api_trader_client):
    accepted = signal_message(trace_id=None)
    response = api_trader_client.post("/api/signals/", data=json.dumps(accepted), content_type="application/json",
                                      HTTP_TRACEPARENT=VALID)
    assert response.status_code == 201, response.content
    assert TradingSignal.objects.get(signal_id=accepted["signal_id"]).trace_id == TRACE
    warned = signal_message(trace_id="api-body")
    with logs_captured() as logs:
        response = api_trader_client.post("/api/signals/", data=json.dumps(warned), content_type="application/json",
                                          HTTP_TRACEPARENT=f"00-{TRACE}-{SPAN}-01,{VALID}")  # sent twice
    assert response.status_code == 201, response.content  # never refused for its trace header
    assert TradingSignal.objects.get(signal_id=warned["signal_id"]).trace_id == "api-body"
    assert [e["source"] for e in logs if e["event"] == "traceparent_invalid"] == ["api"]
