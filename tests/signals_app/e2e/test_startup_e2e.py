"""consume_signals and process_signals (real child processes): reconcile before the first message, heartbeat."""

import random
import uuid

import pytest

from ordermanager.core.models import Heartbeat
from ordermanager.dashboard.selectors import health_components
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


@pytest.mark.parametrize("command", ["consume_signals", "process_signals"])
def test_a_running_process_beats_the_consumer_heartbeat_and_says_when_it_stopped(amqp_url, simulator, tmp_path,
                                                                                   command):
    queue_name = f"test.heartbeat.{uuid.uuid4().hex[:10]}"
    broker = Broker(amqp_url, queue_name)
    proc = ConsumerProcess(amqp_url=amqp_url, queue_name=queue_name, simulator=simulator, log_dir=tmp_path,
                           command=command, extra_env={"SIGNAL_HEARTBEAT_INTERVAL": "0.2", "LOG_LEVEL": "info"})
    try:
        proc.start()
        label = f"{command} pid {proc.proc.pid} on "

        def beat(**expected):
            row = Heartbeat.objects.filter(component="consumer").first()
            return row if row and label in row.detail and all(
                getattr(row, k) == v for k, v in expected.items()) and "starting" not in row.detail else None

        first = wait_until(lambda: beat(ok=True), timeout=30, what=f"a healthy beat\n{proc.log_tail()}")
        assert "inbox empty" in first.detail and "processor 4/4 workers" in first.detail
        if command == "consume_signals":
            assert f"queue {queue_name} connected" in first.detail
        wait_until(lambda: Heartbeat.objects.get(component="consumer").beat_at > first.beat_at, timeout=10,
                   what="a later beat")
        assert {c.name: c.status for c in health_components()}["consumer"] == "ok"
        # Started: the collector's policy is in force (docs/decisions/0331).
        wait_until(lambda: "gc_policy_applied" in proc.log_path.read_text(errors="replace"), timeout=30,
                   what=f"the collector's policy applied\n{proc.log_tail()}")
        assert proc.terminate() == 0, proc.log_tail()
    finally:
        if proc.alive():
            proc.kill9()
        broker.close()
    last = Heartbeat.objects.get(component="consumer")
    assert not last.ok and label in last.detail and "stopped" in last.detail
