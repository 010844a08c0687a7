"""The outbox relay against a real (private) RabbitMQ, read by a pika consumer as the model service would.

Events are written while the relay runs; the broker is taken away for 30 s mid-run; the relay is kill -9'ed
after the broker confirmed a batch and before the batch was marked sent. Every event arrives at least once,
none is missing, every message matches its JSON Schema, and after dropping repeats by ``event_id`` each
aggregate's events arrive in sequence order.
"""

from __future__ import annotations

import json
import os
import signal as os_signal
import subprocess
import sys
import threading
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import pika
import pytest
from django.db import connection, connections
from django.utils import timezone

from ordermanager import events
from ordermanager.core.models import OutboxEvent
from ordermanager.outbox import event_validate
from tests.signals_app.e2e.harness import database_url, wait_until
from tests.signals_app.e2e.test_queue_kinds_e2e import pika_parameters

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
OUTAGE_SECONDS = 30


class Relay:
    """``manage.py relay_events`` in a child process against the private node and this test's database."""

    def __init__(self, *, url: str, exchange: str, log_path: Path):
        self.env = {**os.environ, "DJANGO_SETTINGS_MODULE": "ordermanager.settings.base",
                    "DATABASE_URL": database_url(), "SIGNAL_BROKER_URL": url, "ORDER_EVENTS_EXCHANGE": exchange,
                    "OUTBOX_POLL_INTERVAL": "0.05", "OUTBOX_BATCH": "50", "LOG_LEVEL": "info", "REDIS_URL": ""}
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> Relay:
        log = open(self.log_path, "ab")  # noqa: SIM115 (closed with the process)
        self.proc = subprocess.Popen([sys.executable, "manage.py", "relay_events"], cwd=ROOT, env=self.env,
                                     stdout=log, stderr=subprocess.STDOUT)
        return self

    def kill9(self) -> None:
        self.proc.send_signal(os_signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self) -> int:
        self.proc.send_signal(os_signal.SIGTERM)
        return self.proc.wait(60)


def _order(link: str, n: int) -> dict:
    return {"order_link_id": link, "order_id": f"x{n}", "symbol": "BTCUSDT", "side": "Buy", "order_type": "Limit",
            "time_in_force": "GTC", "qty": "0.010", "price": str(60000 + n), "reduce_only": False,
            "status": "new", "leg": 0, "strategy_id": "relay", "trace_id": "", "reject_code": None,
            "reject_reason": "", "cancel_reason": f"step {n}"}


class Writer(threading.Thread):
    """Order events for a few aggregates, a transaction at a time, until stopped."""

    def __init__(self, links: list[str]):
        super().__init__(daemon=True)
        self.links = links
        self.written = 0
        self.stop_event = threading.Event()
        self.error: Exception | None = None

    def run(self) -> None:
        from django.db import transaction

        try:
            n = 0
            while not self.stop_event.is_set():
                with transaction.atomic():
                    for link in self.links:
                        events.publish_event_on_commit(routing_key=events.ORDER_CANCEL_REQUESTED,
                                                       payload=_order(link, n))
                self.written += len(self.links)
                n += 1
                self.stop_event.wait(0.02)  # pacing the writer, not waiting for a state
        except Exception as exc:  # surfaced by the test
            self.error = exc
        finally:
            connections.close_all()


@pytest.fixture
def relays():
    """Start relays (``relays(url=..., exchange=..., log_path=...)``); any still running when the test ends is
    killed: a relay left behind by a failed test holds the one-active-relay lock of the worker's database and
    silences the relays of the tests after it."""
    started: list[Relay] = []

    def start(**kwargs) -> Relay:
        relay = Relay(**kwargs).start()
        started.append(relay)
        return relay

    yield start
    for relay in started:
        if relay.proc is not None and relay.proc.poll() is None:
            relay.proc.kill()
            relay.proc.wait(10)


def _unsent_locked(locker) -> list[int]:
    """Lock the unsent events (until ``locker`` rolls back) once there are some: the relay may have caught up
    just then, and an empty lock would hold nothing for its mark to wait on."""
    def lock() -> list[int]:
        with locker.cursor() as cursor:
            cursor.execute("SELECT id FROM core_outboxevent WHERE sent_at IS NULL FOR UPDATE")
            rows = [row[0] for row in cursor.fetchall()]
        if not rows:
            locker.rollback()
        return rows

    return wait_until(lock, timeout=60, interval=0.01, what="unsent events to hold")


def _relay_backend_blocked_on_mark() -> int | None:
    """The database session of a relay whose mark (UPDATE ... sent_at) waits on a row lock, if any."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                       "AND datname = current_database() "
                       "AND query LIKE 'UPDATE \"core_outboxevent\" SET \"sent_at\"%%'")
        row = cursor.fetchone()
        return row[0] if row else None


@pytest.mark.timeout(900)
def test_every_event_arrives_at_least_once_in_order_per_aggregate_through_an_outage_and_a_kill(
        private_rabbit, tmp_path, relays):
    exchange = f"test.outbox.{uuid.uuid4().hex[:8]}"
    queue = f"{exchange}.model-service"
    pika_conn = pika.BlockingConnection(pika_parameters(private_rabbit.url))
    channel = pika_conn.channel()
    channel.exchange_declare(exchange, exchange_type="topic", durable=True)
    channel.queue_declare(queue, durable=True)
    channel.queue_bind(queue, exchange, routing_key="#")
    pika_conn.close()

    relay = relays(url=private_rabbit.url, exchange=exchange, log_path=tmp_path / "relay.log")
    writer = Writer([f"agg-{i}" for i in range(5)])
    writer.start()
    try:
        wait_until(lambda: OutboxEvent.objects.filter(sent_at__isnull=False).count() >= 100, timeout=90,
                   what="the relay publishing")

        # 1. kill -9 between the broker's confirm and the mark: hold the unsent rows' locks so the mark waits.
        locker = connections.create_connection("default")
        locker.set_autocommit(False)
        locked = _unsent_locked(locker)
        try:
            backend = wait_until(_relay_backend_blocked_on_mark, timeout=60,
                                 what="the relay waiting to mark a batch the broker confirmed")
            relay.kill9()
            # The mark was already on its way to the server: end that session too, so the kill lands where
            # the process had published and not yet marked (a server does not see a dead client mid-wait).
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_terminate_backend(%s)", [backend])
        finally:
            locker.rollback()
            locker.close()
        assert locked
        relay = relays(url=private_rabbit.url, exchange=exchange, log_path=tmp_path / "relay.log")
        marked = OutboxEvent.objects.filter(sent_at__isnull=False).count()
        wait_until(lambda: OutboxEvent.objects.filter(sent_at__isnull=False).count() > marked + 50, timeout=90,
                   what="the restarted relay publishing")

        # 2. The broker away for 30 s while events keep being written.
        private_rabbit.stop_app()
        away_since = timezone.now()
        wait_until(lambda: (timezone.now() - away_since).total_seconds() >= OUTAGE_SECONDS
                   and OutboxEvent.objects.filter(sent_at__isnull=True, created_at__gt=away_since).exists(),
                   timeout=OUTAGE_SECONDS + 60, interval=0.5, what="30 s of outage with events waiting")
        assert not OutboxEvent.objects.filter(sent_at__isnull=False, created_at__gt=away_since).exists()
        private_rabbit.start_app()
    finally:
        writer.stop_event.set()
        writer.join(30)
    assert writer.error is None, writer.error
    wait_until(lambda: not OutboxEvent.objects.filter(sent_at__isnull=True).exists(), timeout=120,
               what="every event sent after the broker came back")
    assert relay.terminate() == 0

    # The model service's side: a pika consumer reading everything that arrived.
    pika_conn = pika.BlockingConnection(pika_parameters(private_rabbit.url))
    channel = pika_conn.channel()
    received = []
    while True:
        method, properties, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            break
        message = json.loads(body)
        assert properties.message_id == message["event_id"]
        event_validate(method.routing_key, message)
        received.append(message)
    pika_conn.close()

    expected = {str(e) for e in OutboxEvent.objects.values_list("event_id", flat=True)}
    assert len(expected) == writer.written
    ids = [m["event_id"] for m in received]
    assert set(ids) == expected, f"missing: {len(expected - set(ids))}"
    assert len(ids) > len(expected), "the killed relay's confirmed-but-unmarked batch was not published again"
    repeated = {i for i, n in Counter(ids).items() if n > 1}
    assert {str(e) for e in OutboxEvent.objects.filter(id__in=locked).values_list("event_id", flat=True)} & repeated, (
        "the repeats are not the batch the killed relay had published")
    seen, per_aggregate = set(), defaultdict(list)
    for message in received:
        if message["event_id"] in seen:
            continue
        seen.add(message["event_id"])
        per_aggregate[message["aggregate_id"]].append(message["sequence"])
    for aggregate, sequences in per_aggregate.items():
        assert sequences == list(range(1, len(sequences) + 1)), f"{aggregate} out of order or with a gap"
