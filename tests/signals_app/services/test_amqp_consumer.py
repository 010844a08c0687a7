"""The intake consumer against the real broker (in a thread): ack after commit, dead letters, reconnects."""

import json
import socket
import threading
from urllib.parse import urlparse

import pytest
from kombu import Connection

from signals_app.amqp import REASON_HEADER, SignalConsumer, signal_publish
from signals_app.models import SignalStatus, TradingSignal
from tests.signals_app.conftest import signal_message
from tests.signals_app.e2e.harness import wait_until

pytestmark = [pytest.mark.rabbitmq, pytest.mark.django_db(transaction=True)]


class CuttableProxy:
    """A TCP proxy in front of RabbitMQ whose live connections can be cut, as a broker restart would."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self):
        with self.lock:
            for s in self.sockets:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.sockets.clear()

    def close(self):
        # Stop accepting first (shutdown wakes the blocked accept; a bare close would let it take one more
        # connection), then cut the live ones.
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        self.cut()


def run_consumer(url, queue, dead):
    consumer = SignalConsumer(Connection(url), queue=queue, dead_letter=dead, prefetch=10)
    thread = threading.Thread(target=consumer.run, daemon=True)
    thread.start()
    return consumer, thread


def stop(consumer, thread):
    consumer.should_stop = True
    thread.join(15)
    consumer.close()
    assert not thread.is_alive()


def test_valid_and_invalid_messages_are_stored_acked_or_dead_lettered(amqp_url, queues):
    conn, queue, dead = queues
    good, bad = signal_message(), signal_message(amount="-7")
    for body in (good, bad, b"{not json"):
        signal_publish(body=json.dumps(body).encode() if isinstance(body, dict) else body, connection=conn,
                       queue=queue)
    consumer, thread = run_consumer(amqp_url, queue, dead)
    wait_until(lambda: consumer.handled == 3, timeout=15, what="three messages handled")
    stop(consumer, thread)
    assert TradingSignal.objects.get(signal_id=good["signal_id"]).status == SignalStatus.RECEIVED
    assert TradingSignal.objects.get(signal_id=bad["signal_id"]).status == SignalStatus.REJECTED
    channel = conn.channel()
    assert queue.bind(channel).queue_declare(passive=True).message_count == 0  # all acked
    reasons = []
    while (message := dead.bind(channel).get(no_ack=True)) is not None:
        reasons.append(message.headers[REASON_HEADER])
    assert len(reasons) == 2
    assert any("amount: must be greater than 0, got -7" in r for r in reasons)
    assert any("not valid JSON" in r for r in reasons)


def test_consumer_reconnects_after_the_broker_connection_drops(amqp_url, queues):
    conn, queue, dead = queues
    parsed = urlparse(amqp_url)
    proxy = CuttableProxy((parsed.hostname, parsed.port or 5672))
    try:
        via_proxy = amqp_url.replace(f"{parsed.hostname}:{parsed.port or 5672}", f"127.0.0.1:{proxy.port}")
        if via_proxy == amqp_url:
            via_proxy = amqp_url.replace(parsed.hostname, f"127.0.0.1:{proxy.port}", 1)
        consumer, thread = run_consumer(via_proxy, queue, dead)
        first = signal_message()
        signal_publish(body=json.dumps(first).encode(), connection=conn, queue=queue)
        wait_until(lambda: TradingSignal.objects.filter(signal_id=first["signal_id"]).exists(), timeout=15,
                   what="first signal")
        proxy.cut()
        second = signal_message()
        signal_publish(body=json.dumps(second).encode(), connection=conn, queue=queue)
        wait_until(lambda: TradingSignal.objects.filter(signal_id=second["signal_id"]).exists(), timeout=30,
                   what="second signal after the reconnect")
        stop(consumer, thread)
    finally:
        proxy.close()
    assert TradingSignal.objects.count() == 2


def test_the_heartbeat_probe_follows_the_broker_connection(amqp_url, queues):
    from signals_app.services.pipeline_runtime import consumer_probe

    conn, queue, dead = queues
    parsed = urlparse(amqp_url)
    proxy = CuttableProxy((parsed.hostname, parsed.port or 5672))
    via_proxy = amqp_url.replace(f"{parsed.hostname}:{parsed.port or 5672}", f"127.0.0.1:{proxy.port}")
    if via_proxy == amqp_url:
        via_proxy = amqp_url.replace(parsed.hostname, f"127.0.0.1:{proxy.port}", 1)
    consumer, thread = run_consumer(via_proxy, queue, dead)
    probe = consumer_probe(consumer=consumer, processor=None, starting=lambda: False)
    try:
        wait_until(lambda: probe()[0], timeout=15, what="connected")
        assert f"queue {queue.name} connected" in probe()[1]
        proxy.close()  # the broker goes away and stays away
        wait_until(lambda: not probe()[0], timeout=15, what="the probe to report the broker")
        assert "broker unreachable (" in probe()[1]
    finally:
        stop(consumer, thread)
        proxy.close()


def test_text_the_database_cannot_store_is_rejected_and_dead_lettered_not_retried(amqp_url, queues):
    conn, queue, dead = queues
    bad, good = signal_message(metadata={"note\u0000": "x"}), signal_message()
    for body in (bad, good):
        signal_publish(body=json.dumps(body).encode(), connection=conn, queue=queue)
    consumer, thread = run_consumer(amqp_url, queue, dead)
    wait_until(lambda: consumer.handled == 2, timeout=15, what="both messages handled")
    stop(consumer, thread)
    rejected = TradingSignal.objects.get(signal_id=bad["signal_id"])
    assert rejected.status == SignalStatus.REJECTED and "metadata.note\\u0000: the key contains" in rejected.reason
    assert TradingSignal.objects.get(signal_id=good["signal_id"]).status == SignalStatus.RECEIVED
    channel = conn.channel()
    assert queue.bind(channel).queue_declare(passive=True).message_count == 0
    letter = dead.bind(channel).get(no_ack=True)
    assert letter.headers[REASON_HEADER] == rejected.reason


def test_a_consumer_cut_off_between_the_dead_letter_copy_and_the_ack_dead_letters_once(amqp_url, queues):
    """The copy and the ack are one AMQP transaction: losing the connection in between leaves neither, the
    broker redelivers, and the message lands in the dead-letter queue exactly once."""
    conn, queue, dead = queues
    parsed = urlparse(amqp_url)
    proxy = CuttableProxy((parsed.hostname, parsed.port or 5672))
    via_proxy = amqp_url.replace(f"{parsed.hostname}:{parsed.port or 5672}", f"127.0.0.1:{proxy.port}")

    class CutAfterTheCopy(SignalConsumer):
        cuts = 0

        def _dead_letter(self, channel, message, body, reason):
            super()._dead_letter(channel, message, body, reason)
            if not self.cuts:  # the copy is out; the ack is not: the process "dies" here
                self.cuts += 1
                proxy.cut()

    signal_publish(body=b"{broken", connection=conn, queue=queue)
    consumer = CutAfterTheCopy(Connection(via_proxy), queue=queue, dead_letter=dead, prefetch=10)
    thread = threading.Thread(target=consumer.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: consumer.handled == 1, timeout=30, what="the redelivered message handled")
    finally:
        stop(consumer, thread)
        proxy.close()
    assert consumer.cuts == 1 and consumer.dead_lettered == 2  # copied twice by us, committed once
    channel = conn.channel()
    assert queue.bind(channel).queue_declare(passive=True).message_count == 0
    letters = []
    while (message := dead.bind(channel).get(no_ack=True)) is not None:
        letters.append(message)
    assert len(letters) == 1 and "not valid JSON" in letters[0].headers[REASON_HEADER]


def test_a_second_consumer_is_a_standby_until_the_first_goes(amqp_url, queues):
    conn, queue, dead = queues
    first, first_thread = run_consumer(amqp_url, queue, dead)
    wait_until(lambda: first.connected and not first.standby and first.last_iteration, timeout=15, what="first")
    wait_until(lambda: _consumers(conn, queue) == 1, timeout=15, what="the first subscribed")
    second = SignalConsumer(Connection(amqp_url), queue=queue, dead_letter=dead, prefetch=10, standby_retry=0.1)
    second_thread = threading.Thread(target=second.run, daemon=True)
    second_thread.start()
    try:
        wait_until(lambda: second.standby, timeout=15, what="the second refused as a standby")
        body = signal_message()
        signal_publish(body=json.dumps(body).encode(), connection=conn, queue=queue)
        wait_until(lambda: first.handled == 1, timeout=15, what="the first takes the message")
        assert second.handled == 0 and second.standby
        stop(first, first_thread)
        wait_until(lambda: not second.standby and _consumers(conn, queue) == 1, timeout=15,
                   what="the standby taking over")
        later = signal_message()
        signal_publish(body=json.dumps(later).encode(), connection=conn, queue=queue)
        wait_until(lambda: second.handled == 1, timeout=15, what="the second takes the next message")
    finally:
        stop(second, second_thread)


def _consumers(conn, queue) -> int:
    channel = conn.channel()
    try:
        return queue.bind(channel).queue_declare(passive=True).consumer_count
    finally:
        channel.close()
