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
