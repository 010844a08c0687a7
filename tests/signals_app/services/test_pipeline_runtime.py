"""The consumer heartbeat: beats on its own thread, says what is wrong, and says stopped when stopped."""

import threading
import time

import pytest
from kombu import Connection

from ordermanager.core.models import Heartbeat
from ordermanager.dashboard.selectors import health_components
from signals_app.amqp import SignalConsumer, ingress_queue
from signals_app.services import signal_processor
from signals_app.services.pipeline_runtime import (
    INTAKE_STALL_SECONDS,
    ProcessHeartbeat,
    consumer_probe,
    processor_probe,
)
from signals_app.services.signal_processor import SignalProcessor
from tests.signals_app.e2e.harness import wait_until
from tests.signals_app.factories import TradingSignalFactory

pytestmark = pytest.mark.django_db(transaction=True)  # the heartbeat writes on its own thread's connection


def consumer_row() -> Heartbeat | None:
    return Heartbeat.objects.filter(component="consumer").first()


def test_beats_repeatedly_then_reports_stopped():
    heartbeat = ProcessHeartbeat(label="consume_signals pid 1 on h", probe=lambda: (True, "all good"), interval=0.05)
    heartbeat.start()
    first = wait_until(consumer_row, timeout=5, what="a first beat")
    assert (first.ok, first.detail) == (True, "consume_signals pid 1 on h: all good")
    wait_until(lambda: consumer_row().beat_at > first.beat_at, timeout=5, what="a later beat")
    assert {c.name: c.status for c in health_components()}["consumer"] == "ok"
    heartbeat.stop(detail="stopped (3 messages taken)")
    last = consumer_row()
    assert (last.ok, last.detail) == (False, "consume_signals pid 1 on h: stopped (3 messages taken)")
    assert {c.name: c.status for c in health_components()}["consumer"] == "down"


def test_a_failing_probe_is_reported_not_fatal():
    calls = []

    def probe():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return True, "fine again"

    heartbeat = ProcessHeartbeat(label="p", probe=probe, interval=0.05)
    heartbeat.start()
    try:
        wait_until(lambda: consumer_row() and "fine again" in consumer_row().detail, timeout=5, what="recovery")
    finally:
        heartbeat.stop()
    assert len(calls) >= 2


def _consumer(**state) -> SignalConsumer:
    consumer = SignalConsumer(Connection("amqp://127.0.0.1:1//"), queue=ingress_queue("q"))  # never connects
    consumer.handled, consumer.connected = 7, True
    for name, value in state.items():
        setattr(consumer, name, value)
    return consumer


@pytest.mark.parametrize("state, ok, says", [
    ({}, True, "queue q connected; 7 messages taken"),
    ({"connected": False, "connection_error": "ConnectionRefusedError: [Errno 111]"}, False,
     "broker unreachable (ConnectionRefusedError: [Errno 111])"),
    ({"last_iteration": time.monotonic() - INTAKE_STALL_SECONDS - 5}, False, "intake loop stalled for"),
])
def test_consumer_probe_names_the_broker_and_intake_state(state, ok, says):
    TradingSignalFactory()
    probe = consumer_probe(consumer=_consumer(**state), processor=None, starting=lambda: False)
    healthy, detail = probe()
    assert healthy is ok and says in detail
    assert "inbox 1 unfinished, oldest" in detail


def test_consumer_probe_while_starting_is_ok_and_says_so():
    probe = consumer_probe(consumer=_consumer(connected=False), processor=None, starting=lambda: True)
    assert probe() == (True, "starting: reconciling with the exchange before taking messages")


def test_processor_health_reports_a_dead_worker_a_stuck_signal_and_a_recent_error(monkeypatch):
    processor = SignalProcessor(threads=1)
    processor._workers = [threading.Thread(target=lambda: None)]  # never started: not alive
    assert processor_probe(processor=processor, starting=lambda: False)() == (
        False, "processor 0/1 workers, 0 signals done; 1 worker thread(s) died; inbox empty")

    alive = threading.Event()
    worker = threading.Thread(target=alive.wait, daemon=True)
    worker.start()
    processor._workers = [worker]
    assert processor.health() == (True, "processor 1/1 workers, 0 signals done")
    processor._in_hand["signal-worker-0"] = (42, time.monotonic() - signal_processor.STUCK_AFTER_SECONDS - 1)
    ok, detail = processor.health()
    assert not ok and "signal-worker-0 has been on inbox signal 42 for" in detail
    processor._in_hand.clear()
    processor._last_error = ("OperationalError: server closed the connection", time.monotonic())
    ok, detail = processor.health()
    assert not ok and "worker error 0 s ago: OperationalError" in detail
    alive.set()


def test_a_running_processor_counts_what_it_did(pipeline, simulator):
    from signals_app.services.intake import signal_intake
    from tests.signals_app.conftest import signal_message

    processor = SignalProcessor(threads=1, poll_interval=0.05)
    signal_intake(payload=signal_message(confidence=0.95, amount="650"), source="api")
    processor.start()
    try:
        wait_until(lambda: "1 signals done" in processor.health()[1], timeout=10, what="one signal processed")
        assert processor.health()[0]
    finally:
        processor.stop()
        processor.join(10)
