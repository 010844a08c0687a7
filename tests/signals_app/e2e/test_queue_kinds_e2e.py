"""The ingress queue as the model service declares it: plain classic, single-active-consumer, quorum.

For each kind a pika producer (as the model service is) declares the queue first and publishes; two
``consume_signals`` processes take it, and the active one is ``kill -9``ed several times mid-run. Every run
proves: the producer's own declare is accepted (we demand no arguments), each published signal is stored once
(nothing lost, nothing doubled at the exchange), per-symbol FIFO from publish to exchange, and every malformed
message is in the dead-letter queue exactly once with its reason.
"""

from __future__ import annotations

import json
import random
import uuid
from collections import Counter
from urllib.parse import unquote, urlparse

import pika
import pytest

from signals_app.amqp import REASON_HEADER
from signals_app.models import TradingSignal
from tests.signals_app.e2e.harness import ConsumerProcess, random_signal, scaled, twenty_symbols, wait_until
from tests.signals_app.e2e.test_pipeline_e2e import (
    _malformed,
    assert_exchange_matches_db,
    assert_per_symbol_fifo,
    wait_all_terminal,
)

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

QUEUE_KINDS = {
    "classic": {},
    "single_active": {"x-single-active-consumer": True},
    "quorum": {"x-queue-type": "quorum"},
}


def pika_parameters(amqp_url: str) -> pika.ConnectionParameters:
    """pika's parameters for a kombu-style URL (``amqp://u:p@host:port//`` is vhost "/")."""
    parsed = urlparse(amqp_url)
    vhost = unquote(parsed.path[1:]) if len(parsed.path) > 1 else "/"
    return pika.ConnectionParameters(
        host=parsed.hostname or "127.0.0.1", port=parsed.port or 5672, virtual_host=vhost,
        credentials=pika.PlainCredentials(unquote(parsed.username or "guest"), unquote(parsed.password or "guest")),
        heartbeat=0,  # the tests wait minutes between calls; no heartbeat to miss
    )


class PikaProducer:
    """The model service's side: declares its queue (durable, its own arguments) and publishes, confirmed."""

    def __init__(self, amqp_url: str, queue: str, arguments: dict):
        self.queue = queue
        self.connection = pika.BlockingConnection(pika_parameters(amqp_url))
        self.channel = self.connection.channel()
        self.channel.confirm_delivery()
        self.channel.queue_declare(queue, durable=True, arguments=arguments or None)

    def publish(self, body: bytes | dict, message_id: str) -> None:
        raw = json.dumps(body).encode() if isinstance(body, dict) else body
        self.channel.basic_publish("", self.queue, raw, pika.BasicProperties(
            content_type="application/json", delivery_mode=2, message_id=message_id))

    def redeclare(self, arguments: dict) -> None:
        """A producer restarting declares again: must still be accepted after our consumers ran."""
        self.channel.queue_declare(self.queue, durable=True, arguments=arguments or None)

    def depth(self, queue: str) -> int:
        return self.channel.queue_declare(queue, passive=True).method.message_count

    def drain(self, queue: str) -> list[tuple[pika.BasicProperties, bytes]]:
        messages = []
        while True:
            method, properties, body = self.channel.basic_get(queue, auto_ack=True)
            if method is None:
                return messages
            messages.append((properties, body))

    def close(self) -> None:
        for queue in (self.queue, f"{self.queue}.dead"):
            try:
                self.channel.queue_delete(queue)
            except Exception:
                pass
        try:
            self.connection.close()
        except Exception:
            pass


class Watched:
    """A consume_signals process whose intake state is read from its log since its latest start."""

    def __init__(self, proc: ConsumerProcess):
        self.proc = proc
        self.offset = 0

    def start(self) -> Watched:
        self.offset = self.proc.log_path.stat().st_size if self.proc.log_path.exists() else 0
        self.proc.start()
        return self

    def _log(self) -> str:
        with open(self.proc.log_path, "rb") as fh:
            fh.seek(self.offset)
            return fh.read().decode(errors="replace")

    def registered(self) -> bool:
        """Subscribed (active or waiting) or refused as a standby, since the latest start."""
        assert self.proc.alive(), self.proc.log_tail()
        text = self._log()
        return "intake_consuming" in text or "intake_standby" in text


@pytest.fixture
def kinds_e2e(amqp_url, simulator, tmp_path):
    made: list[tuple[PikaProducer, list[ConsumerProcess]]] = []

    def make(kind: str):
        queue = f"test.kinds.{kind}.{uuid.uuid4().hex[:8]}"
        producer = PikaProducer(amqp_url, queue, QUEUE_KINDS[kind])
        procs = [ConsumerProcess(amqp_url=amqp_url, queue_name=queue, simulator=simulator, log_dir=tmp_path,
                                 name=f"{kind}-{n}", threads=2, extra_env={"LOG_LEVEL": "info",
                                                                           "SIGNAL_STANDBY_RETRY": "0.2"})
                 for n in ("a", "b")]
        made.append((producer, procs))
        return producer, [Watched(p) for p in procs]

    with twenty_symbols(simulator) as symbols:
        yield make, symbols, {s: simulator.engine.prices[s] for s in symbols}, simulator
        for producer, procs in made:
            for proc in procs:
                if proc.alive():
                    proc.kill9()
            producer.close()


@pytest.mark.parametrize("kind", list(QUEUE_KINDS))
def test_two_consumers_kill_9_of_the_active_one_fifo_no_loss_no_double_dead_letters_once(kinds_e2e, kind):
    make, symbols, prices, simulator = kinds_e2e
    producer, (first, second) = make(kind)
    rng = random.Random(f"kinds-{kind}")

    def valid(**overrides):
        return random_signal(rng, symbols, prices, **overrides)

    stream: list[tuple[str, bytes | dict, str | None]] = []  # (kind, body, usable signal_id of a bad one)
    for i in range(scaled(400)):
        if i % 7 == 3:
            body, sid, _ = _malformed(rng, i, valid)
            stream.append(("bad", body, sid))
        else:
            stream.append(("good", valid(), None))
    good = [body for what, body, _ in stream if what == "good"]
    bad_ids = {}

    # The first process takes the queue; the second registers after it (standby, or waiting on an SAC queue).
    first.start()
    wait_until(first.registered, timeout=60, what="the first consumer subscribed")
    second.start()
    wait_until(second.registered, timeout=60, what="the second consumer registered")
    active, standby = first, second
    chunks = [stream[i * len(stream) // 4:(i + 1) * len(stream) // 4] for i in range(4)]
    kills = 0
    for number, chunk in enumerate(chunks):
        # Counted before the chunk is published: a consumer that stores the whole chunk before the count is
        # read would otherwise leave nothing to wait for.
        before = TradingSignal.objects.count()
        for what, body, _ in chunk:
            message_id = uuid.uuid4().hex
            if what == "bad":
                bad_ids[message_id] = body
            producer.publish(body, message_id)
        if number == len(chunks) - 1:
            break
        # Kill the active one while it is working through this chunk: the standby must take over.
        wait_until(lambda b=before: TradingSignal.objects.count() > b, timeout=60, what="intake under way")
        active.proc.kill9()
        kills += 1
        stored = TradingSignal.objects.count()
        wait_until(lambda s=stored: TradingSignal.objects.count() > s or producer.depth(producer.queue) == 0,
                   timeout=60, what="the standby taking over")
        active.start()  # back as the standby
        wait_until(active.registered, timeout=60, what="the restarted consumer registered")
        active, standby = standby, active

    usable = [sid for what, _, sid in stream if what == "bad" and sid]
    wait_all_terminal(len(good) + len(usable), [first.proc, second.proc], timeout=240)
    wait_until(lambda: producer.depth(producer.queue) == 0, timeout=60, what="the ingress queue drained")
    wait_until(lambda: producer.depth(f"{producer.queue}.dead") >= len(bad_ids), timeout=60, what="dead letters")
    assert first.proc.terminate() == 0 and second.proc.terminate() == 0
    assert kills == 3

    stored = {str(s) for s in TradingSignal.objects.values_list("signal_id", flat=True)}
    assert stored == {b["signal_id"] for b in good} | set(usable), "a published signal was lost or invented"
    per_symbol = assert_exchange_matches_db(simulator)  # each placed order reached the exchange once
    assert_per_symbol_fifo(per_symbol, [b["signal_id"] for b in good])
    # Every malformed message is in the dead-letter queue exactly once, with its reason.
    dead = producer.drain(f"{producer.queue}.dead")
    counts = Counter(props.message_id for props, _ in dead)
    assert set(counts) == set(bad_ids), "a malformed message is missing from the dead letters"
    assert max(counts.values()) == 1, f"dead-lettered twice: {[m for m, n in counts.items() if n > 1]}"
    for props, body in dead:
        assert props.headers[REASON_HEADER] and body == bad_ids[props.message_id]
    # The model service restarting still declares its queue its way.
    producer.redeclare(QUEUE_KINDS[kind])
