"""Fixtures shared by the signal-service tests."""

import uuid

import pytest
from kombu import Connection

from signals_app.amqp import dead_letter_queue, ingress_queue


@pytest.fixture
def queues(amqp_url):
    """A private ingress queue and its dead-letter queue on the test broker, deleted afterwards."""
    name = f"test.signals.{uuid.uuid4().hex[:8]}"
    queue, dead = ingress_queue(name), dead_letter_queue(f"{name}.dead")
    conn = Connection(amqp_url)
    yield conn, queue, dead
    for q in (queue, dead):
        try:
            q.bind(conn.default_channel).delete()
        except Exception:
            pass
    conn.release()


@pytest.fixture
def processor_trail(monkeypatch):
    """What the processor's workers do, in order: ``("search", None)`` for each inbox search for symbols with
    work, ``("process", signal_id)`` for each signal processed. The wake-ups start cleared."""
    from signals_app.services import signal_processor

    trail: list[tuple[str, object]] = []
    search, process = signal_processor.symbols_with_work, signal_processor.signal_process

    def searching(**kwargs):
        trail.append(("search", None))
        return search(**kwargs)

    def processing(*, signal):
        trail.append(("process", str(signal.signal_id)))
        return process(signal=signal)

    monkeypatch.setattr(signal_processor, "symbols_with_work", searching)
    monkeypatch.setattr(signal_processor, "signal_process", processing)
    signal_processor._wake.clear()
    return trail
