"""Latency first (docs/decisions/0324): no timer on a signal's path at light load, batches under a burst, and
the stored symbol handed straight to an idle processor worker."""

import json
import threading
import time

import pytest
from kombu import Connection

from signals_app.amqp import SignalConsumer, signal_publish
from signals_app.models import SignalStatus, TradingSignal
from signals_app.services.signal_processor import SignalProcessor
from tests.signals_app.conftest import signal_message
from tests.signals_app.e2e.harness import wait_until

pytestmark = [pytest.mark.rabbitmq, pytest.mark.django_db(transaction=True)]


class SlowTimers(SignalConsumer):
    """Every timer a consumer could wait on set far beyond the tests' deadlines: a message that is stored
    within them was not waiting for one. (BATCH_WAIT was the partial-batch timer before 0324.)"""

    BATCH_WAIT = IDLE_WAIT = 5.0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.batches: list[int] = []

    def _flush_batch(self, batch):
        self.batches.append(len(batch))
        return super()._flush_batch(batch)


def start(consumer):
    thread = threading.Thread(target=consumer.run, daemon=True)
    thread.start()
    return thread


def stop(consumer, thread):
    consumer.should_stop = True
    thread.join(20)
    assert not thread.is_alive()


def subscribed(conn, queue) -> bool:
    channel = conn.channel()
    try:
        return queue.bind(channel).queue_declare(passive=True).consumer_count == 1
    except Exception:
        return False  # not declared yet
    finally:
        channel.close()


def test_a_lone_message_on_an_idle_consumer_is_stored_at_once(amqp_url, queues):
    conn, queue, dead = queues
    consumer = SlowTimers(Connection(amqp_url), queue=queue, dead_letter=dead, prefetch=10)
    thread = start(consumer)
    try:
        wait_until(lambda: subscribed(conn, queue), timeout=15, what="the consumer subscribed")
        body = signal_message()
        sent = time.monotonic()
        signal_publish(body=json.dumps(body).encode(), connection=conn, queue=queue)
        wait_until(lambda: TradingSignal.objects.filter(signal_id=body["signal_id"]).exists(), timeout=2.5,
                   interval=0.01, what="the signal stored well before any 5 s timer")
        assert time.monotonic() - sent < 2.5
        wait_until(lambda: consumer.handled == 1, timeout=2.5, interval=0.01, what="acked")
    finally:
        stop(consumer, thread)
    assert consumer.batches == [1]


def test_a_burst_is_stored_in_batches_in_delivery_order(amqp_url, queues):
    conn, queue, dead = queues
    bodies = [signal_message(asset=["BTCUSDT", "ETHUSDT"][i % 2]) for i in range(30)]
    for body in bodies:
        signal_publish(body=json.dumps(body).encode(), connection=conn, queue=queue)
    consumer = SlowTimers(Connection(amqp_url), queue=queue, dead_letter=dead, prefetch=10)
    thread = start(consumer)
    try:
        wait_until(lambda: consumer.handled == 30, timeout=2.5, interval=0.01,
                   what="the burst stored well before any 5 s timer")
    finally:
        stop(consumer, thread)
    assert sum(consumer.batches) == 30 and max(consumer.batches) <= 10  # at most the prefetch per transaction
    assert len(consumer.batches) < 30  # what queued up meanwhile goes together
    stored = list(TradingSignal.objects.order_by("id").values_list("signal_id", flat=True))
    assert [str(s) for s in stored] == [b["signal_id"] for b in bodies]


def test_a_stored_signal_goes_straight_to_an_idle_worker_without_an_inbox_search(
        amqp_url, queues, pipeline, simulator, processor_trail):
    conn, queue, dead = queues
    trail = processor_trail
    processor = SignalProcessor(threads=2, poll_interval=30.0)  # a poll would come far too late
    consumer = SlowTimers(Connection(amqp_url), queue=queue, dead_letter=dead, prefetch=10)
    processor.start()
    thread = start(consumer)
    try:
        wait_until(lambda: subscribed(conn, queue) and trail.count(("search", None)) >= 2, timeout=15,
                   what="the consumer subscribed and both workers idle after their first look")
        before = len(trail)
        body = signal_message(confidence=0.95, amount="650")
        signal_publish(body=json.dumps(body).encode(), connection=conn, queue=queue)
        wait_until(lambda: TradingSignal.objects.filter(signal_id=body["signal_id"], status=SignalStatus.EXECUTED)
                   .exists(), timeout=10, interval=0.01, what="the signal executed long before the 30 s poll")
    finally:
        stop(consumer, thread)
        processor.stop()
        processor.join(10)
    # Handed over, not found: the first thing after the intake is processing the signal, no inbox search first.
    assert trail[before] == ("process", body["signal_id"])
