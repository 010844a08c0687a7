"""Transactional outbox: events are rows written with the change; a relay publishes them, at least once.

- ``outbox_write`` (called by ``events.publish_event_on_commit``) stores the event in the caller's
  transaction: a rolled-back change leaves no event, a committed one always has its row. It gives the event an
  ``event_id`` and the next ``sequence`` of its aggregate (the order link id, the position key, the signal id).
  ``outbox_write_many`` does the same for N events in two statements (one sequence upsert for all their
  aggregates, one insert); ``outbox_write`` is the many of one (docs/decisions/0419).
- ``OutboxRelay`` publishes the unsent rows in id order to ``ORDER_EVENTS_EXCHANGE`` with publisher confirms,
  then marks them sent. One relay is active at a time (a PostgreSQL session advisory lock; the others wait):
  it runs as a thread of ``consume_signals`` and ``process_signals`` (``OUTBOX_RELAY``) or as
  ``manage.py relay_events``. A relay killed between the confirm and the mark publishes those rows again:
  consumers drop repeats by ``event_id``. While the broker is away nothing is marked and the rows wait.
- Sent rows older than ``OUTBOX_RETENTION_HOURS`` are pruned by the relay (without a broker, the unsent ones
  too: with no bus they are a record to look at in the admin, never delivered).

See docs/decisions/0321-transactional-outbox.md.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import structlog
from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection, transaction
from django.db.models import TextField
from django.db.models.fields.json import KT
from django.db.models.functions import Cast
from django.utils import timezone
from kombu import Exchange, Producer

from ordermanager.celery import broker_connection
from ordermanager.core.models import OutboxEvent, OutboxSequence
from ordermanager.core.pg_arrays import pg_array_literal, pg_text_array_literal
from ordermanager.core.sql_once import fixed_cursor
from ordermanager.tracing import HEADER, traceparent_for

log = structlog.get_logger(__name__)

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "docs" / "events"
RELAY_LOCK = (0x0B0C, 1)  # two-int advisory lock key of the active relay
PRUNE_EVERY = 60.0


def event_aggregate(routing_key: str, message: dict) -> tuple[str, str]:
    """The aggregate an event belongs to: (type, id)."""
    family = routing_key.split(".", 1)[0]
    if family == "position":
        return "position", f"{message.get('category')}:{message.get('symbol')}:{message.get('position_idx')}"
    if message.get("order_link_id"):
        return "order", str(message["order_link_id"])
    if family == "signal" and message.get("signal_id"):
        return "signal", str(message["signal_id"])
    if family == "ops":  # ops.alert: one alert's firing/resolved events in order
        return "alert", str(message.get("alert_key") or message["event_id"])
    if family == "risk_limit":
        return "risk_limit", str(message.get("symbol") or "*")
    return family, str(message["event_id"])  # nothing to order it with: an aggregate of its own


def outbox_write(*, routing_key: str, message: dict) -> dict:
    """Add ``event_id``, the aggregate and its sequence to ``message`` and store its wire form; returns the
    message with those fields (its values as given: Decimals stay Decimals for in-process callers)."""
    return outbox_write_many([(routing_key, message)])[0]


def outbox_write_many(events: Sequence[tuple[str, dict]]) -> list[dict]:
    """``outbox_write`` for each ``(routing_key, message)`` of ``events``, in a fixed number of statements
    whatever their number: one sequence upsert for all their aggregates (``last = last + k``, rows taken in
    aggregate order so two writers never wait on each other crosswise), one insert of all the rows. Each
    aggregate's events get consecutive sequences in the order given; rows get ids in that order. Every event
    is checked against its schema (``OUTBOX_VALIDATE``) before anything is written: an invalid one raises
    ``EventSchemaError`` and takes no sequence. Returns the messages with their added fields."""
    prepared: list[tuple[str, dict, str]] = []
    counts: dict[str, int] = {}
    for routing_key, original in events:
        message = {"event_id": str(uuid.uuid4()), **original}
        aggregate_type, aggregate_id = event_aggregate(routing_key, message)
        message.update(aggregate_type=aggregate_type, aggregate_id=aggregate_id)
        key = f"{aggregate_type}:{aggregate_id}"[:160]
        counts[key] = counts.get(key, 0) + 1
        prepared.append((routing_key, message, key))
    if not prepared:
        return []
    # What goes on the wire: Decimals as strings, times ISO-8601, encoded once; checked with a stand-in
    # sequence (an int either way), so a bad event is refused before any statement.
    texts = [encode({**message, "sequence": 1}).decode() for _, message, _ in prepared]
    if settings.OUTBOX_VALIDATE:
        for (routing_key, _, _), text in zip(prepared, texts, strict=True):
            event_validate(routing_key, json.loads(text))
    now = timezone.now()
    if connection.vendor == "postgresql":
        # The sequences and the rows in one statement (docs/decisions/0333); the texts go as they are.
        sequences = _rows_insert_numbered_pg(prepared, texts, counts, now)
        for (_, message, _), sequence in zip(prepared, sequences, strict=True):
            message["sequence"] = sequence
        return [message for _, message, _ in prepared]
    wires = [json.loads(text) for text in texts]
    # The sequences and the rows together; inside the caller's transaction no savepoint is needed (nothing
    # between them is expected to fail and be caught), outside one this is the transaction.
    with transaction.atomic(savepoint=False):
        last = _next_sequences(counts)
        following = {key: last[key] - count + 1 for key, count in counts.items()}
        rows = []
        for (routing_key, message, key), wire in zip(prepared, wires, strict=True):
            message["sequence"] = wire["sequence"] = following[key]
            following[key] += 1
            rows.append(OutboxEvent(
                event_id=wire["event_id"], routing_key=routing_key, aggregate_type=message["aggregate_type"],
                aggregate_id=message["aggregate_id"][:128], sequence=wire["sequence"], payload=wire,
                created_at=now,
            ))
        OutboxEvent.objects.bulk_create(rows)
    return [message for _, message, _ in prepared]


def _rows_insert_numbered_pg(prepared: list, texts: list[str], counts: dict[str, int], now) -> list[int]:
    """PostgreSQL: the aggregates' sequence upsert and the rows' insert as ONE statement (a data-modifying
    CTE), each row numbered from its aggregate's new last (``last - back``, ``back`` = how many of its
    aggregate's events follow it in this batch) in the payload too; the sequences in the order given.

    One round trip instead of two on every transaction that publishes an event (an intake, each step of a
    signal, a fill group). Locks as before: the upsert takes the aggregates' rows in aggregate order and
    holds them to commit (0321), so events of one aggregate still commit in sequence order."""
    keys = sorted(counts)
    remaining = dict(counts)
    backs = []
    for _, _, key in prepared:
        remaining[key] -= 1
        backs.append(remaining[key])
    fields = _numbered_fields()
    rows = [
        (message["event_id"], routing_key, message["aggregate_type"], message["aggregate_id"][:128], key, back, now)
        for (routing_key, message, key), back in zip(prepared, backs, strict=True)
    ]
    columns = [pg_array_literal(field, list(column)) for field, column in zip(fields, zip(*rows, strict=True),
                                                                                strict=True)]  # fmt: skip
    columns.insert(_PAYLOAD_COLUMN, pg_text_array_literal(texts))  # JSON texts, cast to jsonb[] by the statement
    sequence_keys = [pg_array_literal(OutboxSequence._meta.get_field("aggregate"), keys),
                     "{" + ",".join(str(counts[k]) for k in keys) + "}"]  # fmt: skip
    with fixed_cursor() as cursor:
        cursor.execute(_numbered_insert_sql(), [*sequence_keys, *columns])
        numbered = cursor.fetchall()
    numbered.sort()  # by id: ids follow the order given
    return [int(sequence) for _, sequence in numbered]


@cache
def _numbered_fields() -> tuple:
    """The model fields whose array literal encoding each unnested column uses (event_id … created_at), the
    payload aside: it goes as JSON text, at ``_PAYLOAD_COLUMN``."""
    get = OutboxEvent._meta.get_field
    return (get("event_id"), get("routing_key"), get("aggregate_type"), get("aggregate_id"),
            OutboxSequence._meta.get_field("aggregate"), get("sequence"), get("created_at"))


_PAYLOAD_COLUMN = 6


@cache
def _numbered_insert_sql() -> str:
    qn = connection.ops.quote_name
    seq_table, table = qn(OutboxSequence._meta.db_table), qn(OutboxEvent._meta.db_table)
    types = [f.db_type(connection) for f in _numbered_fields()]
    types.insert(_PAYLOAD_COLUMN, OutboxEvent._meta.get_field("payload").db_type(connection))
    get = OutboxEvent._meta.get_field
    col = {name: qn(get(name).column) for name in _INSERTED}
    return (
        f"WITH seq AS ("
        f"INSERT INTO {seq_table} (aggregate, last) "
        f"SELECT a, k FROM unnest(%s::varchar[], %s::bigint[]) AS s(a, k) ORDER BY a "
        f"ON CONFLICT (aggregate) DO UPDATE SET last = {seq_table}.last + EXCLUDED.last "
        f"RETURNING aggregate, last"
        f"), v AS ("
        f"SELECT * FROM unnest({', '.join(f'%s::{t}[]' for t in types)}) WITH ORDINALITY "
        f"AS v(event_id, routing_key, aggregate_type, aggregate_id, agg, back, payload, created_at, ord)"
        f") "
        f"INSERT INTO {table} ({col['event_id']}, {col['routing_key']}, {col['aggregate_type']}, "
        f"{col['aggregate_id']}, {col['sequence']}, {col['payload']}, {col['created_at']}) "
        f"SELECT v.event_id, v.routing_key, v.aggregate_type, v.aggregate_id, seq.last - v.back, "
        f"jsonb_set(v.payload, '{{sequence}}', to_jsonb(seq.last - v.back)), v.created_at "
        f"FROM v JOIN seq ON seq.aggregate = v.agg ORDER BY v.ord "
        f"RETURNING {qn(OutboxEvent._meta.pk.column)}, {col['sequence']}"
    )


_INSERTED = ["event_id", "routing_key", "aggregate_type", "aggregate_id", "sequence", "payload", "created_at"]


# --- the wire: Decimals as strings, times ISO-8601 ------------------------------------------------------------

def _json_default(value: Any) -> str:
    # Money stays exact on the wire: Decimal → string, never float.
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def encode(message: dict) -> bytes:
    return json.dumps(message, default=_json_default, separators=(",", ":")).encode()


def _next_sequences(counts: dict[str, int]) -> dict[str, int]:
    """SQLite: move each aggregate's last sequence on by its count; the new last of each (PostgreSQL does
    this inside the insert's statement, ``_rows_insert_numbered_pg``). SQLite (>= 3.35 for RETURNING) has
    one writer at a time, so the order is moot; chunks keep the bound parameters under its limit."""
    table = OutboxSequence._meta.db_table
    keys = sorted(counts)
    result: dict[str, int] = {}
    with fixed_cursor() as cursor:
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            cursor.execute(
                f"INSERT INTO {table} (aggregate, last) VALUES {', '.join(['(%s, %s)'] * len(chunk))} "
                f"ON CONFLICT (aggregate) DO UPDATE SET last = {table}.last + excluded.last RETURNING aggregate, last",
                [v for k in chunk for v in (k, counts[k])],
            )
            result.update({aggregate: int(value) for aggregate, value in cursor.fetchall()})
    return result


# --- schemas -----------------------------------------------------------------------------------------------

@cache
def event_schema(routing_key: str) -> dict:
    path = SCHEMA_DIR / f"{routing_key}.schema.json"
    if not path.is_file():
        raise EventSchemaError(f"no JSON Schema for event {routing_key!r}: add docs/events/{path.name}")
    return json.loads(path.read_text())


@cache
def _validator(routing_key: str):
    import jsonschema

    return jsonschema.Draft202012Validator(event_schema(routing_key),
                                           format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def event_validate(routing_key: str, message: dict) -> None:
    """Raise ``EventSchemaError`` naming the field when ``message`` does not match its type's schema."""
    validator = _validator(routing_key)
    errors = sorted(validator.iter_errors(message), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = ".".join(str(p) for p in first.absolute_path) or "(message)"
        raise EventSchemaError(f"event {routing_key}: {where}: {first.message}")


class EventSchemaError(ValueError):
    """An event does not match its documented schema."""


# --- lag (health) ------------------------------------------------------------------------------------------

def outbox_lag(*, now=None) -> tuple[float | None, int]:
    """(age in seconds of the oldest unsent event or None, number of unsent events)."""
    now = now or timezone.now()
    unsent = OutboxEvent.objects.filter(sent_at__isnull=True)
    oldest = unsent.order_by("id").values_list("created_at", flat=True).first()
    if oldest is None:
        return None, 0
    return max(0.0, (now - oldest).total_seconds()), unsent.count()


def outbox_prune(*, now=None) -> int:
    """Delete events older than the retention: sent ones; without a broker, unsent ones too."""
    cutoff = (now or timezone.now()) - timedelta(hours=settings.OUTBOX_RETENTION_HOURS)
    old = OutboxEvent.objects.filter(created_at__lt=cutoff)
    if settings.SIGNAL_BROKER_URL:
        old = old.filter(sent_at__isnull=False)
    deleted, _ = old.delete()
    if deleted:
        log.info("outbox_pruned", deleted=deleted, older_than=cutoff.isoformat())
    return deleted


# --- relay ---------------------------------------------------------------------------------------------------

class OutboxRelay:
    """Publishes unsent outbox rows in id order, confirmed, then marks them sent. ``run`` until ``stop``."""

    RETRY_START, RETRY_MAX = 0.5, 5.0

    def __init__(self, *, url: str | None = None, exchange: str | None = None, batch: int | None = None,
                 poll: float | None = None):
        self.url = settings.SIGNAL_BROKER_URL if url is None else url
        self.exchange_name = exchange or settings.ORDER_EVENTS_EXCHANGE
        self.batch = batch or settings.OUTBOX_BATCH
        self.poll = settings.OUTBOX_POLL_INTERVAL if poll is None else poll
        self.published = 0
        self.active = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._connection = None
        self._producer = None
        self._confirms: PublisherConfirms | None = None
        self._next_prune = 0.0

    # lifecycle
    def start(self) -> OutboxRelay:
        self._thread = threading.Thread(target=self.run, name="outbox-relay", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 20.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        delay = self.RETRY_START
        try:
            while not self._stop.is_set():
                try:
                    if not self._hold_lock():
                        self._stop.wait(max(self.poll, 0.5))  # a standby: another relay is active
                        continue
                    self._maybe_prune()
                    sent = self.relay_once() if self.url else 0
                    delay = self.RETRY_START
                    if sent < self.batch:
                        self._stop.wait(self.poll)
                except DatabaseError as exc:
                    log.error("outbox_relay_database_error", error=str(exc), retry_in=delay)
                    self.active = False
                    close_old_connections()
                    connection.close()  # the session lock goes with it; taken again on the next round
                    self._stop.wait(delay)
                    delay = min(delay * 2, self.RETRY_MAX)
                except Exception as exc:  # the broker away, a confirm refused: nothing is marked, retried later
                    log.warning("outbox_publish_failed", error=f"{type(exc).__name__}: {exc}", retry_in=delay)
                    self._reset()
                    self._stop.wait(delay)
                    delay = min(delay * 2, self.RETRY_MAX)
            self._final_round()
        finally:
            self._reset()
            if self.active:
                try:
                    with connection.cursor() as cursor:
                        cursor.execute("SELECT pg_advisory_unlock(%s, %s)", list(RELAY_LOCK))
                except DatabaseError:
                    pass
            connection.close()

    def _final_round(self) -> None:
        """Stopping: publish what the process wrote last (bounded), so a clean stop leaves nothing behind."""
        if not (self.active and self.url):
            return
        deadline = time.monotonic() + 10
        try:
            while time.monotonic() < deadline and self.relay_once():
                pass
        except Exception as exc:  # the next relay publishes them
            log.warning("outbox_final_round_failed", error=f"{type(exc).__name__}: {exc}")

    def _hold_lock(self) -> bool:
        """One active relay across processes (PostgreSQL); SQLite has one process anyway."""
        if self.active or connection.vendor != "postgresql":
            self.active = True
            return True
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", list(RELAY_LOCK))
            self.active = bool(cursor.fetchone()[0])
        if self.active:
            log.info("outbox_relay_active", exchange=self.exchange_name)
        return self.active

    def _maybe_prune(self) -> None:
        if time.monotonic() >= self._next_prune:
            self._next_prune = time.monotonic() + PRUNE_EVERY
            outbox_prune()

    def relay_once(self) -> int:
        """Publish up to ``batch`` unsent events (confirmed, in id order) and mark them sent; how many."""
        rows = outbox_unsent(self.batch)
        if not rows:
            return 0
        producer = self._ensure_producer()
        for _, routing_key, event_id, body, trace_id in rows:
            producer.publish(body.encode(), routing_key=routing_key, content_type="application/json",
                             content_encoding="utf-8", delivery_mode=2, message_id=str(event_id),
                             type=routing_key, retry=False, headers=event_headers(trace_id, event_id))
            self._confirms.published()
        # Marked sent only once the broker confirmed every one of them (raises if it refused one or did not
        # answer in time: nothing is marked, the next round publishes them again).
        self._confirms.wait(self._connection, timeout=CONFIRM_TIMEOUT)
        self.published += len(rows)
        OutboxEvent.objects.filter(id__in=[r[0] for r in rows]).update(sent_at=timezone.now())
        return len(rows)

    def _ensure_producer(self):
        if self._producer is None:
            self._connection = broker_connection(self.url, confirm_each=False)
            self._connection.ensure_connection(max_retries=1)
            exchange = Exchange(self.exchange_name, type="topic", durable=True)
            channel = self._connection.channel()
            exchange.declare(channel=channel)
            self._confirms = PublisherConfirms(channel)
            self._producer = Producer(channel, exchange=exchange)
        return self._producer

    def _reset(self) -> None:
        try:
            if self._connection is not None:
                self._connection.release()
        except Exception:  # already broken
            pass
        self._connection = self._producer = self._confirms = None


# Seconds the relay waits for the broker to confirm a round's events before it gives the round up (retried).
CONFIRM_TIMEOUT = 30.0


class PublisherConfirms:
    """The broker's confirms (RabbitMQ publisher confirms) of one channel, awaited once per round of messages
    instead of once per message (docs/decisions/0334): the channel is put in confirm mode, the broker numbers
    its messages 1, 2, … and acks or nacks them, one or many (``multiple``) at a time."""

    def __init__(self, channel) -> None:
        channel.confirm_select()
        channel.events["basic_ack"].add(self._ack)
        channel.events["basic_nack"].add(self._nack)
        self._last_tag = 0
        self._unconfirmed: set[int] = set()
        self._refused = 0

    def published(self) -> None:
        self._last_tag += 1
        self._unconfirmed.add(self._last_tag)

    def wait(self, connection, *, timeout: float) -> None:
        """Until the broker has answered for every message published so far; raises ``PublishNotConfirmed``
        if it refused any (nack) or did not answer within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while self._unconfirmed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PublishNotConfirmed(f"{len(self._unconfirmed)} events not confirmed within {timeout:g}s")
            try:
                connection.drain_events(timeout=remaining)
            except TimeoutError:  # socket.timeout: checked against the deadline above
                continue
        if self._refused:
            refused, self._refused = self._refused, 0
            raise PublishNotConfirmed(f"the broker refused {refused} events (nack)")

    def _settled(self, tag: int, multiple: bool) -> int:
        settled = {t for t in self._unconfirmed if t <= tag} if multiple else {tag} & self._unconfirmed
        self._unconfirmed -= settled
        return len(settled)

    def _ack(self, tag: int, multiple: bool) -> None:
        self._settled(tag, multiple)

    def _nack(self, tag: int, multiple: bool) -> None:
        self._refused += self._settled(tag, multiple)


class PublishNotConfirmed(Exception):
    """The broker refused a published event or did not confirm it in time: the round is not marked sent."""


def event_headers(trace_id: str | None, event_id) -> dict:
    """AMQP headers of an event: ``traceparent`` (W3C) when its ``trace_id`` is a W3C trace id, with the event as
    the span (span id = the first 16 hex digits of ``event_id``: a republished copy carries the same one), so a
    consumer downstream joins the signal's trace. docs/decisions/0322."""
    header = traceparent_for(str(trace_id or ""), uuid.UUID(str(event_id)).hex[:16])
    return {HEADER: header} if header else {}


def outbox_unsent(limit: int) -> list[tuple[int, str, Any, str, str | None]]:
    """Up to ``limit`` unsent events in id order: (id, routing key, event id, the payload as the database's JSON
    text, its trace id). The text is what the relay publishes, as it is: decoding it into a dict to encode it
    again was a quarter of the relay's CPU (docs/decisions/0334)."""
    return list(OutboxEvent.objects.filter(sent_at__isnull=True).order_by("id")
                .values_list("id", "routing_key", "event_id", Cast("payload", TextField()),
                             KT("payload__trace_id"))[:limit])  # fmt: skip


def relay_thread_start() -> OutboxRelay | None:
    """The relay as a thread of this process, when ``OUTBOX_RELAY`` is on."""
    if not settings.OUTBOX_RELAY:
        return None
    return OutboxRelay().start()
