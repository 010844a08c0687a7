"""Events out: order and signal lifecycle messages on a topic exchange.

``publish_event_on_commit`` is the only entry point for services. The event is
handed to a background publisher thread after the surrounding transaction
commits, so a rolled-back change never produces an event and no service waits
on the broker. The database is the record; events are notifications, delivered
at most once per process (a crash between commit and publish loses the event,
never the state). See docs/decisions/0305-events-after-commit.md.

Message: JSON object ``{"event": <routing key>, "occurred_at": ISO-8601, "trace_id": ..., **payload}``,
content type application/json, persistent, on ``settings.ORDER_EVENTS_EXCHANGE``
(topic, durable). The same object is forwarded to the Channels group
``dashboard`` as ``{"type": "dashboard.event", "event": <message>}``.
"""

from __future__ import annotations

import atexit
import json
import queue
import threading
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import structlog
from django.conf import settings
from django.db import transaction

log = structlog.get_logger(__name__)

# Routing keys (consumers bind with patterns such as "order.*").
ORDER_CREATED = "order.created"  # acknowledged by the exchange
ORDER_REJECTED = "order.rejected"  # refused by the exchange (retCode/retMsg) or before sending
ORDER_FAILED = "order.failed"  # could not be placed; outcome known to be "not placed"
ORDER_UNKNOWN = "order.unknown"  # outcome unknown after retries; reconciliation resolves it
ORDER_DRY_RUN = "order.dry_run"
ORDER_CANCEL_REQUESTED = "order.cancel_requested"
ORDER_CANCEL_FAILED = "order.cancel_failed"
SIGNAL_RECEIVED = "signal.received"
SIGNAL_REJECTED = "signal.rejected"
SIGNAL_SKIPPED = "signal.skipped"
SIGNAL_EXECUTED = "signal.executed"
SIGNAL_FAILED = "signal.failed"
SIGNAL_DRY_RUN = "signal.dry_run"

DASHBOARD_GROUP = "dashboard"
_QUEUE_SIZE = 10_000


def publish_event_on_commit(*, routing_key: str, payload: dict) -> None:
    """Publish ``payload`` under ``routing_key`` once the current transaction commits.

    Outside a transaction the event is queued at once. Never raises because of
    the broker: a failed publish is logged with the event.
    """
    message = _envelope(routing_key, payload)
    transaction.on_commit(lambda: _publisher().submit(routing_key, message))


def _envelope(routing_key: str, payload: dict) -> dict:
    message = {"event": routing_key, "occurred_at": datetime.now(UTC).isoformat(), **payload}
    if not message.get("trace_id"):
        trace_id = structlog.contextvars.get_contextvars().get("trace_id")
        if trace_id:
            message["trace_id"] = trace_id
    return message


def _json_default(value: Any) -> str:
    # Money stays exact on the wire: Decimal → string, never float.
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def encode(message: dict) -> bytes:
    return json.dumps(message, default=_json_default, separators=(",", ":")).encode()


class EventPublisher:
    """One daemon thread per process that owns the AMQP connection for events.

    kombu connections are not thread-safe; funnelling every publish through one
    thread keeps a single connection and keeps broker latency out of the
    signal path. The queue is bounded: when the broker is down for long, the
    oldest pending events are dropped with a log line rather than growing
    memory without limit.
    """

    def __init__(self) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=_QUEUE_SIZE)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._connection = None
        self._producer = None

    def submit(self, routing_key: str, message: dict) -> None:
        self._ensure_thread()
        try:
            self._queue.put_nowait((routing_key, message))
        except queue.Full:
            log.error("event_dropped_queue_full", routing_key=routing_key, message=message)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued event has been handled (tests, shutdown)."""
        done = threading.Event()
        if self._thread is None:
            return True
        self._queue.put((None, done))
        return done.wait(timeout)

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="event-publisher", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            routing_key, message = self._queue.get()
            if routing_key is None:
                message.set()
                continue
            self._deliver(routing_key, message)

    def _deliver(self, routing_key: str, message: dict) -> None:
        body = encode(message)
        if settings.SIGNAL_BROKER_URL:
            try:
                self._publish_amqp(routing_key, body)
            except Exception as exc:  # broker trouble must never break trading
                self._reset()
                log.error("event_publish_failed", routing_key=routing_key, error=str(exc), message=message)
        else:
            log.debug("event", routing_key=routing_key, message=message)
        _forward_to_dashboard(message)

    def _publish_amqp(self, routing_key: str, body: bytes) -> None:
        from kombu import Exchange, Producer

        from ordermanager.celery import configure_from_settings

        if self._producer is None:
            self._connection = configure_from_settings().connection_for_write()
            exchange = Exchange(settings.ORDER_EVENTS_EXCHANGE, type="topic", durable=True)
            self._producer = Producer(self._connection.channel(), exchange=exchange)
            exchange.declare(channel=self._producer.channel)
        self._producer.publish(
            body,
            routing_key=routing_key,
            content_type="application/json",
            content_encoding="utf-8",
            delivery_mode=2,
            retry=True,
            retry_policy={"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5},
        )

    def _reset(self) -> None:
        try:
            if self._connection is not None:
                self._connection.release()
        except Exception:  # already broken; nothing more to release
            pass
        self._connection = None
        self._producer = None


# One event loop per thread that forwards (normally only the publisher thread), kept for the process.
_DASHBOARD_LOOPS = threading.local()
_DASHBOARD_TASKS: set = set()


def _forward_to_dashboard(message: dict) -> None:
    # Not async_to_sync: from a thread without a loop it starts a new loop in a new executor thread for
    # every event (and channels-redis a new connection per loop), and at interpreter exit, when the
    # atexit flush delivers the last events, the executor refuses work ("cannot schedule new futures
    # after interpreter shutdown"), leaving the coroutine never awaited. The calling thread keeps one
    # loop of its own instead; from inside a running loop the send is scheduled on that loop.
    try:
        import asyncio

        from channels.layers import get_channel_layer

        layer = get_channel_layer()
        if layer is None:
            return
        # Serialise Decimals first: channel layers use msgpack, which has no Decimal.
        send = layer.group_send(DASHBOARD_GROUP, {"type": "dashboard.event", "event": json.loads(encode(message))})
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not None:
            task = running.create_task(send)
            _DASHBOARD_TASKS.add(task)
            task.add_done_callback(_dashboard_sent)
            return
        loop = getattr(_DASHBOARD_LOOPS, "loop", None)
        if loop is None or loop.is_closed():
            loop = _DASHBOARD_LOOPS.loop = asyncio.new_event_loop()
        loop.run_until_complete(send)
    except Exception as exc:  # the dashboard is a convenience; never fail the publisher on it
        log.warning("dashboard_forward_failed", error=str(exc))


def _dashboard_sent(task) -> None:
    _DASHBOARD_TASKS.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.warning("dashboard_forward_failed", error=str(task.exception()))


_PUBLISHER = EventPublisher()
atexit.register(lambda: _PUBLISHER.flush(timeout=2.0))


def _publisher() -> EventPublisher:
    return _PUBLISHER


def events_flush(timeout: float = 5.0) -> bool:
    """Block until the events queued so far are published (shutdown and tests)."""
    return _PUBLISHER.flush(timeout)
