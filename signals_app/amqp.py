"""The signal queue on RabbitMQ: the ingress queue as declared, the intake consumer, a publisher.

kombu directly (a Celery worker would discard the model service's plain-JSON
messages), with the Celery app's connection config. See
docs/decisions/0301-signal-pipeline.md and 0320-ingress-queue-as-declared.md.

- Ingress queue ``SIGNAL_QUEUE``: its arguments are the model service's to
  choose. The consumer takes it as it exists (plain durable classic queue,
  ``x-single-active-consumer``, quorum): a passive declare first; only where
  nobody declared it, it is declared durable with ``SIGNAL_QUEUE_ARGUMENTS``.
- One active intake at a time, whatever the queue's arguments: before it
  subscribes, the consumer takes the intake lock, an exclusive queue
  ``<queue>.intake-lock`` on its own connection. A second ``consume_signals``
  is refused (RESOURCE_LOCKED) and stays a standby, retrying every
  ``SIGNAL_STANDBY_RETRY`` s; when the holder's connection closes (even by
  ``kill -9``) the broker deletes the lock. The new holder subscribes once the
  old subscription has left the queue (its unacked messages back in place), so
  broker order = inbox order.
- Dead-letter queue ``SIGNAL_DEAD_LETTER_QUEUE``: every message that breaks the
  contract is copied there with the reason in the ``x-rejection-reason``
  header. The copy and the ack of the original are one AMQP transaction on the
  consuming channel (``tx.select``): a consumer killed between them leaves
  neither, the message is redelivered and dead-lettered once.
- A W3C ``traceparent`` application header (as an OpenTelemetry-instrumented producer sets it) gives the
  signal its trace id; a missing or invalid one never refuses a message (docs/decisions/0322).
- Ack only after the intake transaction committed; prefetch ``SIGNAL_PREFETCH``. Latency first
  (docs/decisions/0324): the consumer blocks until a delivery arrives, then takes only what is already
  readable on the socket (no wait, at most 50) and stores it at once, in delivery order, in one
  transaction, then acks it together. An idle consumer stores a lone signal straight away; under load
  the batch is what queued up during the previous commit. No timer decides when a batch is stored.
"""

from __future__ import annotations

import select
import threading
import time
import weakref
from contextlib import contextmanager
from datetime import UTC, datetime

import structlog
from amqp.basic_message import Message as AmqpMessage
from amqp.exceptions import NotFound, PreconditionFailed, ResourceLocked
from django.conf import settings
from django.db import DatabaseError, IntegrityError, close_old_connections, connection, transaction
from kombu import Connection, Exchange, Producer, Queue
from kombu.mixins import ConsumerMixin

from ordermanager.celery import broker_connection  # noqa: F401 (the outbox and startup share it: decision 0422)
from ordermanager.tracing import HEADER as TRACEPARENT_HEADER
from signals_app.models import SignalStatus
from signals_app.services.intake import signal_intake, signals_intake_batch
from signals_app.services.signal_processor import processor_local_backend, processor_wake, processor_wakes_deferred

log = structlog.get_logger(__name__)

REASON_HEADER = "x-rejection-reason"
DEFAULT_EXCHANGE = Exchange("", type="direct")
MAX_HEADER_REASON = 4000
# How long a new intake waits for the previous one's subscription to leave the queue before subscribing anyway.
PREVIOUS_CONSUMER_WAIT = 30.0


def ingress_queue(name: str | None = None, arguments: dict | None = None) -> Queue:
    """The ingress queue; ``arguments`` (default ``SIGNAL_QUEUE_ARGUMENTS``) are used only to declare it first."""
    name = name or settings.SIGNAL_QUEUE
    arguments = dict(settings.SIGNAL_QUEUE_ARGUMENTS if arguments is None else arguments)
    return Queue(name, exchange=DEFAULT_EXCHANGE, routing_key=name, durable=True, queue_arguments=arguments)


def dead_letter_queue(name: str | None = None, arguments: dict | None = None) -> Queue:
    """Ours to declare (``SIGNAL_DEAD_LETTER_QUEUE_ARGUMENTS``; in a cluster a quorum queue, so the dead letters do
    not depend on one node); an existing one is used as it is."""
    name = name or settings.SIGNAL_DEAD_LETTER_QUEUE
    arguments = dict(settings.SIGNAL_DEAD_LETTER_QUEUE_ARGUMENTS if arguments is None else arguments)
    return Queue(name, exchange=DEFAULT_EXCHANGE, routing_key=name, durable=True, queue_arguments=arguments)


def _close_quietly(channel) -> None:
    try:
        channel.close()
    except Exception:  # already closed by the broker's answer
        pass


def queue_ensure(raw_connection, queue: Queue) -> bool:
    """Make sure ``queue`` exists without demanding arguments: True if we declared it.

    A passive declare learns whether it exists (it succeeds whatever the arguments); only when it does not is
    it declared durable with ``queue.queue_arguments``. If someone declares it differently in between, theirs
    stands. ``raw_connection`` is py-amqp's connection (``channel.connection``, ``kombu_conn.connection``).
    """
    for _ in range(5):
        channel = raw_connection.channel()
        try:
            channel.queue_declare(queue=queue.name, passive=True)
            return False
        except NotFound:
            pass
        finally:
            _close_quietly(channel)
        channel = raw_connection.channel()
        try:
            channel.queue_declare(queue=queue.name, durable=True, auto_delete=False,
                                  arguments=queue.queue_arguments or {})
            log.info("queue_declared", queue=queue.name, arguments=queue.queue_arguments or {})
            return True
        except PreconditionFailed:
            continue  # declared meanwhile with other arguments: consume it as it is
        finally:
            _close_quietly(channel)
    raise RuntimeError(f"queue {queue.name!r} keeps appearing and disappearing; cannot consume it")


def intake_lock_name(queue: Queue) -> str:
    return f"{queue.name}.intake-lock"


def intake_lock_take(raw_connection, queue: Queue) -> None:
    """Take the queue's intake lock for this connection, or raise ``ResourceLocked`` (another intake holds it).

    The lock is an exclusive, auto-deleted queue: RabbitMQ gives it to one connection and deletes it when that
    connection closes (a ``kill -9`` too). It works whatever the ingress queue's kind; an exclusive subscription
    does not (a quorum queue ignores ``exclusive`` on basic.consume, a single-active-consumer classic queue
    refuses it always).
    """
    channel = raw_connection.channel()
    try:
        channel.queue_declare(queue=intake_lock_name(queue), durable=False, exclusive=True, auto_delete=False)
    finally:
        _close_quietly(channel)


def queue_consumers_gone(raw_connection, queue: Queue, *, timeout: float, stop=lambda: False) -> bool:
    """Wait until ``queue`` has no consumer: the previous intake's subscription is gone and its unacked messages are
    back in the queue, in place, before we subscribe (a quorum queue processes the two independently of the lock).
    False when some other consumer stays (not one of ours: ours hold the lock first)."""
    deadline = time.monotonic() + timeout
    while True:
        channel = raw_connection.channel()
        try:
            count = channel.queue_declare(queue=queue.name, passive=True).consumer_count
        finally:
            _close_quietly(channel)
        if count == 0:
            return True
        if time.monotonic() >= deadline or stop():
            return False
        time.sleep(0.02)  # polling the broker's consumer count with a deadline


_ENSURED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_ENSURED_LOCK = threading.Lock()


def signal_publish(*, body: bytes, connection: Connection, queue: Queue | None = None, headers: dict | None = None,
                   producer: Producer | None = None) -> None:
    """Publish one message to the ingress queue (persistent, publisher-confirmed): send_signal, tests, bench.

    The queue is made to exist once per connection (``queue_ensure``), never redeclared with our arguments.
    """
    queue = queue or ingress_queue()
    with _ENSURED_LOCK:
        done = _ENSURED.setdefault(connection, set())
        if queue.name not in done:
            queue_ensure(connection.connection, queue)
            done.add(queue.name)
    producer = producer or Producer(connection.default_channel)
    producer.publish(body, exchange=DEFAULT_EXCHANGE, routing_key=queue.routing_key,
                     content_type="application/json", content_encoding="utf-8", delivery_mode=2,
                     headers=headers or {}, retry=True)


def message_traceparent(message):
    """The W3C ``traceparent`` application header of a delivery (None: absent), as it came: the intake checks it."""
    return (message.headers or {}).get(TRACEPARENT_HEADER)


class SignalConsumer(ConsumerMixin):
    """Intake from the ingress queue until ``should_stop``; see the module docstring."""

    # Backoff while the database is down: the batch in hand is retried, never skipped
    # (skipping it would let the next prefetched messages overtake it).
    DB_RETRY_START, DB_RETRY_MAX = 0.5, 10.0
    # At most BATCH_MAX messages (bounded by the prefetch) are stored per transaction: what is readable when
    # the first arrives, never waited for. IDLE_WAIT bounds one blocking read while idle (the loop then checks
    # should_stop, stamps last_iteration and beats the AMQP heartbeat); it never delays a message.
    BATCH_MAX, IDLE_WAIT = 50, 0.5
    # Pause before a new connection after a lost one (kombu's own reconnect backs off from there).
    RESTART_DELAY = 1.0

    def __init__(self, connection: Connection, *, queue: Queue | None = None, dead_letter: Queue | None = None,
                 prefetch: int | None = None, standby_retry: float | None = None):
        self.connection = connection
        self.queue = queue or ingress_queue()
        self.dead_letter = dead_letter or dead_letter_queue()
        self.prefetch = prefetch or settings.SIGNAL_PREFETCH
        self.standby_retry = settings.SIGNAL_STANDBY_RETRY if standby_retry is None else standby_retry
        self.handled = 0
        self.dead_lettered = 0
        self.batch_max = max(1, min(self.BATCH_MAX, self.prefetch))
        self._pending: list = []
        self._channel = None
        # Read by the heartbeat (another thread): plain attribute writes, no lock needed.
        self.connected = False
        self.standby = False
        self.connection_error = ""
        self.last_iteration = time.monotonic()

    def create_connection(self):
        # No publisher confirms on the consuming connection: its channel runs in transaction mode
        # (dead-letter copy + ack committed together), and a channel cannot be in both modes.
        options = {**(self.connection.transport_options or {}), "confirm_publish": False}
        return self.connection.clone(transport_options=options)

    def get_consumers(self, Consumer, channel):  # noqa: N803 (kombu's signature)
        raw = channel.connection
        queue_ensure(raw, self.dead_letter)
        queue_ensure(raw, self.queue)
        intake_lock_take(raw, self.queue)  # ResourceLocked: another intake is active; run() makes us a standby
        if not queue_consumers_gone(raw, self.queue, timeout=PREVIOUS_CONSUMER_WAIT, stop=lambda: self.should_stop):
            log.warning("intake_foreign_consumer", queue=self.queue.name,
                        detail="another consumer (not a consume_signals) stays subscribed; subscribing anyway")
        channel.tx_select()
        self._channel = channel
        consumer = Consumer(queues=[self.queue], on_message=self.on_message, prefetch_count=self.prefetch,
                            auto_declare=False)
        return [consumer]

    def on_consume_ready(self, connection, channel, consumers, **kwargs):
        if self.standby:
            log.info("intake_active", queue=self.queue.name)
        self.standby = False
        log.info("intake_consuming", queue=self.queue.name)

    def on_connection_error(self, exc, interval):
        self.connected, self.connection_error = False, f"{type(exc).__name__}: {exc}"
        if self.should_stop:
            raise _Stopped() from exc
        log.warning("broker_unreachable", error=str(exc), retry_in=interval)

    def on_connection_revived(self):
        self.connected, self.connection_error = True, ""
        self.last_iteration = time.monotonic()
        if not self.standby:  # a standby reconnects every SIGNAL_STANDBY_RETRY: said once, as intake_standby
            log.info("broker_connected", queue=self.queue.name)

    def run(self, _tokens=1, **kwargs):
        """Consume until ``should_stop``: reconnect after a lost connection, wait as a standby while refused."""
        errors = self.connection.connection_errors + self.connection.channel_errors
        while not self.should_stop:
            try:
                for _ in self.consume(**kwargs):
                    pass
            except _Stopped:  # stop requested while the broker is away
                log.info("consumer_stopped_while_disconnected")
                return
            except ResourceLocked as exc:
                self._refused(exc)
            except errors as exc:
                log.warning("intake_connection_lost", error=f"{type(exc).__name__}: {exc}")
                self._pause(self.RESTART_DELAY)

    def consume(self, *args, **kwargs):
        """Latency first: block until a delivery arrives, take what else is readable now, store it at once.

        Replaces kombu's loop, which drains one frame per turn and leaves the flush to a timer. A message
        that arrives while the consumer is storing the previous batch (py-amqp delivers it during the wait
        for tx.commit-ok) is stored in the next turn without any wait.
        """
        with self.consumer_context(**kwargs) as (conn, _channel, _consumers):
            raw = conn.connection
            while not self.should_stop:
                self.on_iteration()
                try:
                    if not self._pending:
                        conn.drain_events(timeout=self.IDLE_WAIT)
                    while len(self._pending) < self.batch_max and _readable_now(raw):
                        conn.drain_events(timeout=self.IDLE_WAIT)
                except TimeoutError:
                    conn.heartbeat_check()
                    continue
                except OSError:
                    if not self.should_stop:
                        raise
                    continue
                if self._pending:
                    self._flush()
                conn.heartbeat_check()
                yield

    def _refused(self, exc) -> None:
        """Another consume_signals holds the intake lock: wait as a standby and try again."""
        if not self.standby:
            log.info("intake_standby", queue=self.queue.name, reason=str(exc), retry_every=self.standby_retry)
        self.standby, self.connected, self.connection_error = True, True, ""
        self._pause(self.standby_retry)

    def _pause(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.should_stop and time.monotonic() < deadline:
            self.last_iteration = time.monotonic()
            time.sleep(min(0.05, seconds))  # a bounded pause between broker attempts, checking should_stop

    @contextmanager
    def extra_context(self, connection, channel):
        try:
            yield
            if self._pending:  # stopping: store and ack what we hold
                self._flush()
        finally:
            # After a lost connection these deliveries cannot be acked; the broker redelivers them, in order.
            self._pending = []
            self._channel = None
            self.connected = False

    def on_message(self, message) -> None:
        # Only queued: the consume loop stores it (with what else is readable) as soon as the read returns.
        self._pending.append(message)

    def on_iteration(self) -> None:
        self.last_iteration = time.monotonic()

    def _flush(self) -> None:
        """Store the pending messages in one transaction, in delivery order; then dead-letter and ack them.

        Waiting for tx.commit-ok lets py-amqp deliver the next messages into ``on_message``; they stay
        pending for the next turn of the loop (or the next batch here, when stopping), in order.
        """
        while self._pending:
            batch, self._pending = self._pending, []
            if not self._flush_batch(batch) or not self.should_stop:
                return

    def _flush_batch(self, batch: list) -> bool:
        bodies = [m.body if isinstance(m.body, bytes) else str(m.body).encode() for m in batch]
        results = self._intake(bodies, [message_traceparent(m) for m in batch])
        if results is None:  # stopping while the database is down: unacked, the broker redelivers them in order
            return False
        channel = self._channel
        for message, body, result in zip(batch, bodies, results, strict=True):
            if result.rejected_reason:
                self._dead_letter(channel, message, body, result.rejected_reason)
        batch[-1].ack(multiple=True)  # acks every earlier delivery of this channel too
        # One AMQP transaction: the dead-letter copies and the ack take effect together or not at all.
        channel.tx_commit()
        self.handled += len(batch)
        return True

    def _intake(self, bodies: list[bytes], traceparents: list):
        delay = self.DB_RETRY_START
        while True:
            try:
                # One commit for the batch: the acks come after it, so nothing is acked that is not stored.
                # The processor's workers are handed the symbols stored (before the broker hears the ack),
                # rather than each searching the inbox on the intake's own wake-up.
                _note_local_backend()  # before the commit: its NOTIFY must find the backend known
                with processor_wakes_deferred():
                    with transaction.atomic():
                        results = self._intake_batch(bodies, traceparents)
                _wake_workers(results)
                return results
            except DatabaseError as exc:
                log.error("intake_database_error", error=str(exc), retry_in=delay)
                close_old_connections()
                if self.should_stop:
                    return None
                time.sleep(delay)
                delay = min(delay * 2, self.DB_RETRY_MAX)

    def _intake_batch(self, bodies: list[bytes], traceparents: list):
        """The batch in a few statements; message by message (each in its savepoint) if that breaks on a bug."""
        try:
            with transaction.atomic():  # a savepoint: a failure here leaves the batch transaction usable
                return signals_intake_batch(payloads=bodies, source="amqp", traceparents=traceparents)
        except IntegrityError:
            log.info("intake_batch_raced", messages=len(bodies))  # an id stored meanwhile by another door
        except DatabaseError:
            raise
        except Exception:
            log.exception("intake_batch_crashed", messages=len(bodies))
        return [self._intake_one(body, header) for body, header in zip(bodies, traceparents, strict=True)]

    @staticmethod
    def _intake_one(body: bytes, traceparent=None):
        try:
            return signal_intake(payload=body, source="amqp", traceparent=traceparent)
        except DatabaseError:
            raise
        except Exception as exc:  # a bug must not wedge the queue: dead-letter with the cause
            log.exception("intake_crashed")
            return _Crashed(f"internal error during intake: {type(exc).__name__}: {exc}")

    def _dead_letter(self, channel, message, body: bytes, reason: str) -> None:
        headers = dict(message.headers or {})
        headers.update({
            REASON_HEADER: reason[:MAX_HEADER_REASON],
            "x-original-queue": self.queue.name,
            "x-rejected-at": datetime.now(UTC).isoformat(),
        })
        properties = {"content_type": message.content_type or "application/octet-stream",
                      "content_encoding": message.content_encoding or "binary", "delivery_mode": 2,
                      "application_headers": headers}
        message_id = (message.properties or {}).get("message_id")
        if message_id:
            properties["message_id"] = message_id
        # Part of the channel's transaction (committed with the ack in _flush_batch).
        channel.basic_publish(AmqpMessage(body, **properties), exchange="", routing_key=self.dead_letter.name)
        self.dead_lettered += 1
        log.warning("signal_dead_lettered", reason=reason, queue=self.dead_letter.name)

    def close(self) -> None:
        """Nothing of its own to release (kept for callers: the consuming connection closes with ``run``)."""


class _Stopped(Exception):
    """Raised from the reconnect loop when a stop was requested while the broker is away."""


class _Crashed:
    def __init__(self, reason: str):
        self.rejected_reason = reason
        self.signal = None
        self.created = False


def _note_local_backend() -> None:
    """This thread's PostgreSQL backend stores intakes here: its NOTIFYs wake nobody in this process twice."""
    if connection.vendor == "postgresql":
        connection.ensure_connection()
        processor_local_backend(connection.connection.info.backend_pid)


def _wake_workers(results) -> None:
    """Offer the symbols of the signals just stored (in delivery order) to this process's processor workers."""
    symbols = [r.signal.asset for r in results
               if r.created and r.signal is not None and r.signal.status == SignalStatus.RECEIVED]
    if symbols:
        processor_wake(list(dict.fromkeys(symbols)))


def _readable_now(raw_connection) -> bool:
    """True when a frame (or part of one) is already here: in py-amqp's read buffer or the socket's."""
    transport = raw_connection.transport
    if getattr(transport, "_read_buffer", b""):
        return True
    sock = transport.sock
    if sock is None:
        return False
    pending = getattr(sock, "pending", None)  # TLS: bytes decrypted but not read yet
    if pending is not None and pending():
        return True
    return bool(select.select([sock], [], [], 0)[0])


def consume_until_stopped(consumer: SignalConsumer) -> None:
    try:
        consumer.run()
    except _Stopped:
        log.info("consumer_stopped_while_disconnected")
