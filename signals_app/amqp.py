"""The signal queue on RabbitMQ: declarations, the intake consumer, a publisher.

kombu directly (a Celery worker would discard the model service's plain-JSON
messages), with the Celery app's connection config. See
docs/decisions/0301-signal-pipeline.md for the design.

- Ingress queue ``SIGNAL_QUEUE``: durable, ``x-single-active-consumer`` so
  that with two ``consume_signals`` processes one consumes and the other is a
  hot standby: broker order = inbox order. A queue declared earlier without
  that argument makes RabbitMQ answer PRECONDITION_FAILED; the consumer stops
  with a message saying so (delete the queue or declare it like this).
- Dead-letter queue ``SIGNAL_DEAD_LETTER_QUEUE``: every message that breaks the
  contract is copied there with the reason in the ``x-rejection-reason``
  header, then acked. (RabbitMQ's own dead-lettering cannot add a reason.)
- Manual ack only after the intake transaction committed; prefetch
  ``SIGNAL_PREFETCH``; messages are stored in delivery order, in batches of up to
  50 per transaction (a partial batch waits at most 5 ms), then acked together.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from datetime import UTC, datetime

import structlog
from django.conf import settings
from django.db import DatabaseError, IntegrityError, close_old_connections, transaction
from kombu import Connection, Exchange, Producer, Queue
from kombu.mixins import ConsumerMixin

from signals_app.services.intake import signal_intake, signals_intake_batch

log = structlog.get_logger(__name__)

REASON_HEADER = "x-rejection-reason"
DEFAULT_EXCHANGE = Exchange("", type="direct")
MAX_HEADER_REASON = 4000


def broker_connection(url: str | None = None) -> Connection:
    """A kombu connection with the Celery app's broker settings (heartbeat, timeouts, confirms)."""
    from ordermanager.celery import configure_from_settings

    app = configure_from_settings()
    return app.connection_for_write(url=url) if url else app.connection_for_write()


def ingress_queue(name: str | None = None) -> Queue:
    name = name or settings.SIGNAL_QUEUE
    return Queue(name, exchange=DEFAULT_EXCHANGE, routing_key=name, durable=True,
                 queue_arguments={"x-single-active-consumer": True})


def dead_letter_queue(name: str | None = None) -> Queue:
    name = name or settings.SIGNAL_DEAD_LETTER_QUEUE
    return Queue(name, exchange=DEFAULT_EXCHANGE, routing_key=name, durable=True)


def signal_publish(*, body: bytes, connection: Connection, queue: Queue | None = None, headers: dict | None = None,
                   producer: Producer | None = None) -> None:
    """Publish one message to the ingress queue (persistent, publisher-confirmed): send_signal, tests, bench."""
    queue = queue or ingress_queue()
    producer = producer or Producer(connection.default_channel)
    producer.publish(body, exchange=DEFAULT_EXCHANGE, routing_key=queue.routing_key, declare=[queue],
                     content_type="application/json", content_encoding="utf-8", delivery_mode=2,
                     headers=headers or {}, retry=True)


class SignalConsumer(ConsumerMixin):
    """Intake from the ingress queue until ``should_stop``; see the module docstring."""

    # Backoff while the database is down: the batch in hand is retried, never skipped
    # (skipping it would let the next prefetched messages overtake it).
    DB_RETRY_START, DB_RETRY_MAX = 0.5, 10.0
    # Messages are stored in batches of up to BATCH_MAX (bounded by the prefetch) in one transaction;
    # a partial batch waits at most BATCH_WAIT seconds. One commit per batch instead of per message.
    BATCH_MAX, BATCH_WAIT = 50, 0.005

    def __init__(self, connection: Connection, *, queue: Queue | None = None, dead_letter: Queue | None = None,
                 prefetch: int | None = None):
        self.connection = connection
        self.queue = queue or ingress_queue()
        self.dead_letter = dead_letter or dead_letter_queue()
        self.prefetch = prefetch or settings.SIGNAL_PREFETCH
        self.handled = 0
        self.batch_max = max(1, min(self.BATCH_MAX, self.prefetch))
        self._pending: list = []
        self._pending_since = 0.0
        self._dead_connection: Connection | None = None
        self._dead_producer: Producer | None = None
        # Read by the heartbeat (another thread): plain attribute writes, no lock needed.
        self.connected = False
        self.connection_error = ""
        self.last_iteration = time.monotonic()

    def get_consumers(self, Consumer, channel):  # noqa: N803 (kombu's signature)
        from amqp.exceptions import PreconditionFailed

        try:
            self.dead_letter.bind(channel).declare()
            consumer = Consumer(queues=[self.queue], on_message=self.on_message, prefetch_count=self.prefetch,
                                auto_declare=True)
        except PreconditionFailed as exc:
            # Retrying cannot help: the queue exists with other arguments.
            self.should_stop = True
            raise QueueMismatch(
                f"queue {self.queue.name!r} exists with different arguments ({exc}); it must be durable with "
                f"x-single-active-consumer=true: delete it (after draining) or declare it that way"
            ) from None
        return [consumer]

    def on_connection_error(self, exc, interval):
        self.connected, self.connection_error = False, f"{type(exc).__name__}: {exc}"
        if self.should_stop:
            raise _Stopped() from exc
        log.warning("broker_unreachable", error=str(exc), retry_in=interval)

    def on_connection_revived(self):
        self.connected, self.connection_error = True, ""
        self.last_iteration = time.monotonic()
        log.info("broker_connected", queue=self.queue.name)

    def run(self, _tokens=1, **kwargs):
        # drain_events gives up after BATCH_WAIT when idle, so on_iteration can flush a partial batch promptly.
        return super().run(_tokens, safety_interval=self.BATCH_WAIT, **kwargs)

    @contextmanager
    def extra_context(self, connection, channel):
        try:
            yield
            if self._pending:  # stopping: store and ack what we hold
                self._flush()
        finally:
            # After a lost connection these deliveries cannot be acked; the broker redelivers them, in order.
            self._pending = []
            self.connected = False

    def on_message(self, message) -> None:
        if not self._pending:
            self._pending_since = time.monotonic()
        self._pending.append(message)
        if len(self._pending) >= self.batch_max:
            self._flush()

    def on_iteration(self) -> None:
        self.last_iteration = time.monotonic()
        if self._pending and time.monotonic() - self._pending_since >= self.BATCH_WAIT:
            self._flush()

    def _flush(self) -> None:
        """Store the pending messages in one transaction, in delivery order; then dead-letter and ack them."""
        batch, self._pending = self._pending, []
        bodies = [m.body if isinstance(m.body, bytes) else str(m.body).encode() for m in batch]
        results = self._intake(bodies)
        if results is None:  # stopping while the database is down: unacked, the broker redelivers them in order
            return
        for message, body, result in zip(batch, bodies, results, strict=True):
            if result.rejected_reason:
                self._dead_letter(message, body, result.rejected_reason)
        batch[-1].ack(multiple=True)  # acks every earlier delivery of this channel too
        self.handled += len(batch)

    def _intake(self, bodies: list[bytes]):
        delay = self.DB_RETRY_START
        while True:
            try:
                # One commit for the batch: the acks come after it, so nothing is acked that is not stored.
                with transaction.atomic():
                    return self._intake_batch(bodies)
            except DatabaseError as exc:
                log.error("intake_database_error", error=str(exc), retry_in=delay)
                close_old_connections()
                if self.should_stop:
                    return None
                time.sleep(delay)
                delay = min(delay * 2, self.DB_RETRY_MAX)

    def _intake_batch(self, bodies: list[bytes]):
        """The batch in a few statements; message by message (each in its savepoint) if that breaks on a bug."""
        try:
            with transaction.atomic():  # a savepoint: a failure here leaves the batch transaction usable
                return signals_intake_batch(payloads=bodies, source="amqp")
        except IntegrityError:
            log.info("intake_batch_raced", messages=len(bodies))  # an id stored meanwhile by another door
        except DatabaseError:
            raise
        except Exception:
            log.exception("intake_batch_crashed", messages=len(bodies))
        return [self._intake_one(body) for body in bodies]

    @staticmethod
    def _intake_one(body: bytes):
        try:
            return signal_intake(payload=body, source="amqp")
        except DatabaseError:
            raise
        except Exception as exc:  # a bug must not wedge the queue: dead-letter with the cause
            log.exception("intake_crashed")
            return _Crashed(f"internal error during intake: {type(exc).__name__}: {exc}")

    def _dead_letter(self, message, body: bytes, reason: str) -> None:
        headers = dict(message.headers or {})
        headers.update({
            REASON_HEADER: reason[:MAX_HEADER_REASON],
            "x-original-queue": self.queue.name,
            "x-rejected-at": datetime.now(UTC).isoformat(),
        })
        self._dead_letter_producer().publish(
            body, exchange=DEFAULT_EXCHANGE, routing_key=self.dead_letter.routing_key,
            content_type=message.content_type or "application/octet-stream",
            content_encoding=message.content_encoding or "binary", delivery_mode=2, headers=headers,
            retry=True, retry_policy={"max_retries": 5, "interval_start": 0.5, "interval_step": 1},
        )
        log.warning("signal_dead_lettered", reason=reason, queue=self.dead_letter.name)

    def _dead_letter_producer(self) -> Producer:
        # A connection of its own: waiting for the publisher confirm on the consuming connection would let
        # py-amqp dispatch the next delivery into on_message re-entrantly, out of order.
        if self._dead_producer is None:
            self._dead_connection = self.connection.clone()
            self._dead_producer = Producer(self._dead_connection.default_channel)
        return self._dead_producer

    def close(self) -> None:
        if self._dead_connection is not None:
            self._dead_connection.release()
            self._dead_connection = self._dead_producer = None


class QueueMismatch(RuntimeError):
    """The ingress queue exists with arguments other than ours."""


class _Stopped(Exception):
    """Raised from the reconnect loop when a stop was requested while the broker is away."""


class _Crashed:
    def __init__(self, reason: str):
        self.rejected_reason = reason
        self.signal = None
        self.created = False


def consume_until_stopped(consumer: SignalConsumer) -> None:
    try:
        consumer.run()
    except _Stopped:
        log.info("consumer_stopped_while_disconnected")
