"""consume_signals (a real child process) reconciles with the exchange before it takes the first message."""

import random
import uuid

import pytest

from orders.models import ReconciliationRun
from signals_app.models import TradingSignal
from signals_app.services.signal_processor import UNFINISHED
from tests.signals_app.e2e.harness import Broker, ConsumerProcess, random_signal, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq, pytest.mark.django_db(transaction=True)]


def test_the_startup_run_finishes_before_the_first_message_is_stored(amqp_url, simulator, tmp_path):
    queue_name = f"test.startup.{uuid.uuid4().hex[:10]}"
    broker = Broker(amqp_url, queue_name)
    consumer = ConsumerProcess(amqp_url=amqp_url, queue_name=queue_name, simulator=simulator, log_dir=tmp_path)
    try:
        rng = random.Random(7)
        symbols = sorted(simulator.engine.prices)
        bodies = [random_signal(rng, symbols, simulator.engine.prices, confidence=0.95) for _ in range(5)]
        for body in bodies:  # waiting in the queue before the process starts
            broker.publish(body)
        consumer.start()
        wait_until(lambda: TradingSignal.objects.count() == len(bodies)
                   and not TradingSignal.objects.filter(status__in=UNFINISHED).exists(),
                   timeout=60, what="the queued signals to be processed")
        assert consumer.terminate() == 0, consumer.log_tail()
    finally:
        if consumer.alive():
            consumer.kill9()
        broker.close()
    run = ReconciliationRun.objects.get(trigger=ReconciliationRun.Trigger.STARTUP)
    assert run.status == ReconciliationRun.Status.SUCCEEDED, run.error
    first_stored = TradingSignal.objects.order_by("received_at").first().received_at
    assert run.finished_at <= first_stored
