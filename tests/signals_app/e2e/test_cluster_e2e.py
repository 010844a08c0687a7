"""A three-node RabbitMQ cluster (private nodes, one Erlang cookie) with a quorum ingress queue.

The model service (pika) declares the quorum queue and publishes through a follower; two consume_signals
processes take it (every node listed for failover), connected either through the followers or through the
leader's node. Mid-run the node holding the queue's leader is stopped: the two remaining nodes elect a new leader
(a majority of three) and intake moves on (through the same connections, or after failing over to a follower).
Every signal is stored once, per symbol in publish order, and reaches the exchange once.
"""

from __future__ import annotations

import json
import random
import re
import uuid

import pika
import pytest

from signals_app.models import TradingSignal
from tests.signals_app.e2e.harness import ConsumerProcess, random_signal, scaled, twenty_symbols, wait_until
from tests.signals_app.e2e.test_pipeline_e2e import (
    assert_exchange_matches_db,
    assert_per_symbol_fifo,
    wait_all_terminal,
)
from tests.signals_app.e2e.test_queue_kinds_e2e import pika_parameters

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def queue_leader(node, queue: str) -> str:
    out = node.ctl("list_queues", "name", "leader", "--no-table-headers", "--quiet").stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == queue:
            return parts[1]
    return ""


class ConfirmingProducer:
    """pika, confirm per message; a publish the cluster refuses during the election is sent again (same bytes,
    before the next one, so publish order holds; the inbox drops a repeat by signal_id)."""

    def __init__(self, nodes, queue: str):
        self.nodes, self.queue = nodes, queue
        self.repeats = 0
        self._connect()
        self.channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})

    def _connect(self):
        for node in self.nodes:
            if node.accepts():
                self.connection = pika.BlockingConnection(pika_parameters(node.url))
                self.channel = self.connection.channel()
                self.channel.confirm_delivery()
                return
        raise AssertionError("no node accepts connections")

    def publish(self, body: bytes) -> None:
        for _ in range(100):
            try:
                self.channel.basic_publish("", self.queue, body, pika.BasicProperties(delivery_mode=2),
                                           mandatory=True)
                return
            except (pika.exceptions.AMQPError, OSError):
                self.repeats += 1
                try:
                    self.connection.close()
                except Exception:
                    pass
                wait_until(lambda: any(n.accepts() for n in self.nodes), timeout=30, what="a node")
                self._connect()
        raise AssertionError("the cluster never took the message")

    def depth(self) -> int:
        return self.channel.queue_declare(self.queue, passive=True).method.message_count


@pytest.mark.timeout(900)
@pytest.mark.parametrize("consumers_on", ["followers", "leader"])
def test_stopping_the_quorum_leader_node_mid_run_loses_nothing_doubles_nothing(rabbit_cluster, simulator, tmp_path,
                                                                               consumers_on):
    nodes = rabbit_cluster
    queue = f"test.cluster.{uuid.uuid4().hex[:8]}"
    # Publish and consume through the second node; the leader is created on the node the declare came in on.
    entry = [nodes[1], nodes[2], nodes[0]]
    producer = ConfirmingProducer(entry, queue)
    leader_name = queue_leader(nodes[0], queue)
    assert re.match(r"^bus\w+-\d@localhost$", leader_name), leader_name
    leader = next(n for n in nodes if n.name == leader_name)
    followers = [n for n in nodes if n is not leader]
    # "leader": the consumers' connections die with the node, they fail over to a follower and one of them
    # takes the intake again; "followers": their connections live on while the queue elects a new leader.
    order = followers + [leader] if consumers_on == "followers" else [leader] + followers
    failover = ";".join(n.url for n in order)
    procs = [ConsumerProcess(amqp_url=failover, queue_name=queue, simulator=simulator, log_dir=tmp_path,
                             name=f"cluster-{i}", threads=2,
                             extra_env={"LOG_LEVEL": "info", "SIGNAL_STANDBY_RETRY": "0.2",
                                        # A classic dead-letter queue would live on one node only.
                                        "SIGNAL_DEAD_LETTER_QUEUE_ARGUMENTS": '{"x-queue-type": "quorum"}'})
             for i in range(2)]
    rng = random.Random("cluster")
    with twenty_symbols(simulator) as symbols:
        prices = {s: simulator.engine.prices[s] for s in symbols}
        bodies = [random_signal(rng, symbols, prices) for _ in range(scaled(400))]
        try:
            for proc in procs:
                proc.start()
            half = len(bodies) // 2
            for body in bodies[:half]:
                producer.publish(json.dumps(body).encode())
            wait_until(lambda: TradingSignal.objects.count() >= half // 2, timeout=120, what="intake under way")
            # Stop the node holding the quorum queue's leader while intake is running.
            leader.stop_app()
            wait_until(lambda: queue_leader(followers[0], queue) in {f.name for f in followers}, timeout=60,
                       what="a new leader elected on the remaining nodes")
            for body in bodies[half:]:
                producer.publish(json.dumps(body).encode())
            wait_all_terminal(len(bodies), procs, timeout=300)
            wait_until(lambda: producer.depth() == 0, timeout=60, what="the queue drained")
            for proc in procs:
                assert proc.terminate() == 0, proc.log_tail()
        finally:
            for proc in procs:
                if proc.alive():
                    proc.kill9()
        stored = [str(s) for s in TradingSignal.objects.values_list("signal_id", flat=True)]
        assert sorted(stored) == sorted(b["signal_id"] for b in bodies), "lost or doubled in the inbox"
        per_symbol = assert_exchange_matches_db(simulator)
        assert_per_symbol_fifo(per_symbol, [b["signal_id"] for b in bodies])
        leader.start_app()
