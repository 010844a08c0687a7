"""Events out: order and signal lifecycle messages on a topic exchange.

``publish_event_on_commit`` is the only entry point for services. The event is
written to the transactional outbox in the caller's transaction (``ordermanager.outbox``):
a rolled-back change never produces an event, a committed one always has its row,
and the outbox relay publishes it at least once (no service waits on the broker).
See docs/decisions/0321-transactional-outbox.md (0305 before it).

Message: JSON object ``{"event_id": uuid, "event": <routing key>, "occurred_at": ISO-8601,
"aggregate_type": ..., "aggregate_id": ..., "sequence": n, "trace_id": ..., **payload}``,
content type application/json, persistent, message id = event id, header ``traceparent`` (W3C, built from
``trace_id``; docs/decisions/0322) when the trace id is a W3C one, on
``settings.ORDER_EVENTS_EXCHANGE`` (topic, durable); one JSON Schema per routing key in
docs/events/. After commit the same object is forwarded to the Channels group
``dashboard``, with the others that queued meanwhile, as ``{"type": "dashboard.events", "events": [<message>,
…]}`` (a convenience, at most once; the page only needs to know that something changed).
"""

from __future__ import annotations

import atexit
import json
import queue
import threading
import time
from contextlib import contextmanager
from datetime import UTC, datetime

import structlog
from django.db import transaction

from ordermanager.outbox import encode, outbox_write_many
from ordermanager.tracing import current_trace_id

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
ORDER_UPDATED = "order.updated"  # a fill or a stream/reconcile status change (orders/services/fills/order_state.py)
POSITION_UPDATED = "position.updated"  # fills applied to a position (positions/services/ledger.py)
POSITION_LOSS_WARNING = "position.loss_warning"  # unrealized loss crossed its threshold (positions/services/marks.py)
RISK_LIMIT_CHANGED = "risk_limit.changed"  # a risk limit edited (orders/services/risk_limit_changes.py)
OPS_ALERT = "ops.alert"  # an alert threshold started firing or resolved (ordermanager/ops/alerts.py)

DASHBOARD_GROUP = "dashboard"
_QUEUE_SIZE = 10_000
# Events forwarded to the dashboard group in one message at most (what queued while the last one was sent).
FORWARD_BATCH_MAX = 200
# Seconds between two forwards of a process. The page re-fetches at most once per 700 ms when told something
# changed, so a forward per commit (one Redis group send each: about a millisecond of CPU per signal in the
# consumer and the ingest at 40 signals/s) told it nothing a forward per 200 ms does not.
FORWARD_INTERVAL = 0.2
# Forwards dropped on a full queue are logged as one line per this many seconds at most, with their count.
DROPPED_LOG_EVERY = 10.0


def publish_event_on_commit(*, routing_key: str, payload: dict) -> None:
    """Publish ``payload`` under ``routing_key`` once the current transaction commits.

    The outbox row is written now, in the current transaction (outside one, at
    once); the dashboard forward follows the commit. Never waits on the broker.
    Inside ``events_grouped()`` the row is written with the block's other events when the block ends.
    """
    group = getattr(_GROUPS, "events", None)
    if group is not None:
        group.append((routing_key, _envelope(routing_key, payload)))
        return
    publish_events_on_commit([(routing_key, payload)])


def publish_events_on_commit(events: list[tuple[str, dict]]) -> None:
    """``publish_event_on_commit`` for each ``(routing_key, payload)`` of ``events``, their outbox rows written
    in a fixed number of statements (``outbox_write_many``), in their order."""
    _write([(routing_key, _envelope(routing_key, payload)) for routing_key, payload in events])


@contextmanager
def events_grouped():
    """Gather the events published in the block (this thread) and write them together when it ends, still
    inside the caller's transaction: the fixed statements of ``outbox_write_many`` instead of a round trip set
    per event (fill ingest's group apply, docs/decisions/0419). Each event keeps its envelope of the moment it
    was published (``occurred_at``, trace). If the block raises, nothing is written (its transaction rolls
    back). Use it only where a failure inside the block fails the whole transaction: an event published inside
    a savepoint that is rolled back and caught within the block would still be written. Nested blocks join the
    outer one."""
    if getattr(_GROUPS, "events", None) is not None:
        yield
        return
    _GROUPS.events = gathered = []
    try:
        yield
    finally:
        _GROUPS.events = None
    _write(gathered)


_GROUPS = threading.local()


def _write(enveloped: list[tuple[str, dict]]) -> None:
    if not enveloped:
        return
    messages = outbox_write_many(enveloped)
    keys = [routing_key for routing_key, _ in enveloped]

    def submit() -> None:
        publisher = _publisher()
        for routing_key, message in zip(keys, messages, strict=True):
            publisher.submit(routing_key, message)

    transaction.on_commit(submit)


def _envelope(routing_key: str, payload: dict) -> dict:
    message = {"event": routing_key, "occurred_at": datetime.now(UTC).isoformat(), **payload}
    # The trace of the work that produces the event (a signal being handled) wins over the payload's own (the
    # order's, for an order of another signal cancelled by this one); outside a signal's work, the payload's
    # (a fill of the order, its reconciliation). docs/decisions/0322.
    trace_id = current_trace_id() or message.get("trace_id")
    if trace_id:
        message["trace_id"] = trace_id
    return message


class EventPublisher:
    """One daemon thread per process that forwards committed events to the dashboard (Channels).

    The broker is the outbox relay's business; this thread keeps the channel layer's latency out of the
    signal path. The queue is bounded: when it is full the forward is dropped (the event itself is safe in the
    outbox) and counted; the count goes to the log at most once per ``DROPPED_LOG_EVERY`` seconds. A line per
    dropped event, each with the whole event, flooded the log under load (tens of thousands of lines a
    minute in the fill bench) and cost the process more than the forwards it spared.
    """

    def __init__(self) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=_QUEUE_SIZE)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.dropped = 0  # since the process started
        self._dropped_unlogged = 0
        self._dropped_key = ""
        self._dropped_logged_at: float | None = None

    def submit(self, routing_key: str, message: dict) -> None:
        if not _dashboard_reachable():
            return
        self._ensure_thread()
        try:
            self._queue.put_nowait((routing_key, message))
        except queue.Full:
            self._note_dropped(routing_key)

    def _note_dropped(self, routing_key: str) -> None:
        with self._lock:
            self.dropped += 1
            self._dropped_unlogged += 1
            self._dropped_key = routing_key
        self._log_dropped()

    def _log_dropped(self) -> None:
        """One line for the drops not logged yet, unless a line went out less than DROPPED_LOG_EVERY ago (the
        publisher thread calls it too, so the last drops of a burst are logged once the interval has passed)."""
        with self._lock:
            now = time.monotonic()
            if not self._dropped_unlogged or (
                self._dropped_logged_at is not None and now - self._dropped_logged_at < DROPPED_LOG_EVERY
            ):
                return
            count, self._dropped_unlogged, self._dropped_logged_at = self._dropped_unlogged, 0, now
            total, key = self.dropped, self._dropped_key
        log.warning(
            "dashboard_forward_dropped",
            dropped=count,
            total=total,
            last_routing_key=key,
            queue_size=_QUEUE_SIZE,
            detail="the dashboard's queue is full; the events are in the outbox",
        )

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
        # Events go as batches (up to FORWARD_BATCH_MAX): what is waiting when the thread takes its turn, at once
        # after a quiet spell, then at most one send per FORWARD_INTERVAL while events keep coming. A flush
        # marker sends what waits at once and is answered once everything before it was sent.
        batch: list[dict] = []
        markers: list[threading.Event] = []
        next_send = 0.0
        while True:
            timeout = 0.0 if markers else max(0.0, next_send - time.monotonic()) if batch else None
            try:
                waiting = [self._queue.get(timeout=timeout)]
            except queue.Empty:
                waiting = []
            while waiting and len(waiting) < FORWARD_BATCH_MAX:
                try:
                    waiting.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            for routing_key, message in waiting:
                (markers if routing_key is None else batch).append(message)
            if batch and (markers or len(batch) >= FORWARD_BATCH_MAX or time.monotonic() >= next_send):
                self._deliver(batch[:FORWARD_BATCH_MAX])
                del batch[:FORWARD_BATCH_MAX]
                next_send = time.monotonic() + FORWARD_INTERVAL
                if markers and batch:
                    continue  # a flush waits for all of it: the rest goes on the next turn
            for marker in markers:
                marker.set()
            markers.clear()
            if self._dropped_unlogged:
                self._log_dropped()

    def _deliver(self, batch: list[dict]) -> None:
        if batch:
            log.debug("events_forwarded", events=len(batch), last=batch[-1].get("event_id"))
            _forward_to_dashboard(batch)


def _dashboard_reachable() -> bool:
    """Whether a forward from this process can reach a dashboard. Not over an in-process channel layer (the
    embedded default, without Redis) on which no consumer of this process is in the group: the processor and
    ingest processes serve no browser, and a forward there cost the publisher thread's work and a thread
    switch per event, for no one."""
    from channels.layers import InMemoryChannelLayer, get_channel_layer

    layer = get_channel_layer()
    if isinstance(layer, InMemoryChannelLayer):
        return bool(layer.groups.get(DASHBOARD_GROUP))
    return layer is not None


# One event loop per thread that forwards (normally only the publisher thread), kept for the process.
_DASHBOARD_LOOPS = threading.local()
_DASHBOARD_TASKS: set = set()


def _forward_to_dashboard(batch: list[dict]) -> None:
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
        send = layer.group_send(DASHBOARD_GROUP, {"type": "dashboard.events", "events": json.loads(encode(batch))})
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
    """Block until the events committed so far are forwarded to the dashboard (shutdown and tests)."""
    return _PUBLISHER.flush(timeout)
