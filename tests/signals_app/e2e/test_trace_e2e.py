"""One signal followed across services (docs/decisions/0322), on the real broker and the simulator over HTTP.

A pika producer (as the model service is) publishes a signal with a W3C ``traceparent`` header; the intake
consumer stores it; the processor reads market data, cancels another signal's resting order and places its
own; the private stream then brings the fills; the outbox relay publishes every event to a topic exchange a
pika consumer reads. The signal, every exchange call made on its behalf, every event its handling produced
and every relayed message of them carry the header's trace id; later events of an order carry the trace of
the signal that placed it. Invalid headers over the broker: accepted, warned about, the body's or a fresh id.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from decimal import Decimal as D

import pika
import pytest
from django.db import connections
from kombu import Connection

from exchange.market_data import market_data_cache_clear
from exchange.models import ExchangeCall
from ordermanager.core.models import OutboxEvent
from ordermanager.outbox import OutboxRelay
from orders.models import Order, OrderStatus
from signals_app.amqp import SignalConsumer, dead_letter_queue, ingress_queue
from signals_app.models import SignalStatus, TradingSignal
from signals_app.services.intake import signal_intake
from signals_app.services.signal_processor import process_pending
from tests.orders.reconcile.conftest import Stream
from tests.signals_app.conftest import signal_message
from tests.signals_app.e2e.harness import wait_until
from tests.signals_app.e2e.test_queue_kinds_e2e import pika_parameters
from tests.signals_app.services.test_intake_traceparent import logs_captured

pytestmark = [pytest.mark.rabbitmq, pytest.mark.django_db(transaction=True)]

TRACE_A = "a1" * 16
TRACE_B = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_B = "00f067aa0ba902b7"


class Producer:
    """The model service's side: pika, its own durable queue, confirmed publishes with application headers."""

    def __init__(self, amqp_url: str, queue: str):
        self.queue = queue
        self.connection = pika.BlockingConnection(pika_parameters(amqp_url))
        self.channel = self.connection.channel()
        self.channel.confirm_delivery()
        self.channel.queue_declare(queue, durable=True)

    def publish(self, body: dict, headers: dict | None) -> None:
        self.channel.basic_publish("", self.queue, json.dumps(body).encode(), pika.BasicProperties(
            content_type="application/json", delivery_mode=2, message_id=body["signal_id"], headers=headers))

    def close(self) -> None:
        self.connection.close()


@pytest.fixture
def broker(amqp_url):
    """A private ingress queue (with its dead-letter queue) and a private events exchange, removed afterwards."""
    name = f"test.trace.{uuid.uuid4().hex[:8]}"
    producer = Producer(amqp_url, name)
    yield producer, name
    producer.channel.queue_delete(name)
    producer.channel.queue_delete(f"{name}.dead")
    producer.channel.queue_delete(f"{name}.events")
    producer.channel.exchange_delete(f"{name}.events")
    producer.close()


def consume(amqp_url: str, name: str, count: int) -> None:
    """Run the intake consumer until ``count`` messages are stored, then stop it."""
    consumer = SignalConsumer(Connection(amqp_url), queue=ingress_queue(name),
                              dead_letter=dead_letter_queue(f"{name}.dead"), prefetch=10)

    def run() -> None:
        try:
            consumer.run()
        finally:
            connections.close_all()  # the thread's database session, before the test database is dropped

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: consumer.handled >= count, timeout=30, what=f"{count} message(s) handled")
    finally:
        consumer.should_stop = True
        thread.join(15)
    assert not thread.is_alive() and consumer.dead_lettered == 0


def relayed(amqp_url: str, name: str) -> list[tuple[dict, dict]]:
    """Every outbox event, published by the relay to ``<name>.events``, as a pika consumer receives it."""
    exchange, queue = f"{name}.events", f"{name}.events"
    connection = pika.BlockingConnection(pika_parameters(amqp_url))
    channel = connection.channel()
    channel.exchange_declare(exchange, exchange_type="topic", durable=True)
    channel.queue_declare(queue, durable=True)
    channel.queue_bind(queue, exchange, routing_key="#")
    relay = OutboxRelay(url=amqp_url, exchange=exchange, batch=1000)
    try:
        while relay.relay_once():
            pass
    finally:
        relay._reset()
    messages = []
    while True:
        method, properties, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            break
        messages.append((json.loads(body), properties.headers or {}))
    connection.close()
    return messages


def test_a_signal_is_followed_by_its_traceparent_through_calls_events_and_later_fills(
        pipeline, simulator, amqp_url, broker):
    producer, name = broker
    pipeline.MARKET_ORDER_SPREAD_THRESHOLD = D("0")
    stream = Stream(simulator.engine, faults=False)
    try:
        _follow_one_signal(pipeline, simulator, amqp_url, producer, name, stream)
    finally:
        simulator.engine.remove_listener(stream.sink)


def _follow_one_signal(pipeline, simulator, amqp_url, producer, name, stream) -> None:
    # Signal A (another producer's trace) leaves a resting limit buy.
    a = signal_intake(payload=signal_message(trace_id=TRACE_A, market_data_snapshot={"price": "64250.5",
                                                                                     "spread": "1.5"}),
                      source="api").signal
    process_pending(symbol="BTCUSDT")
    order_a = Order.objects.get(signal_links__signal=a)
    assert order_a.status == OrderStatus.NEW and order_a.trace_id == TRACE_A
    stream.pump()

    # Signal B over the broker with a traceparent (and a different body trace id): urgent, so it cancels A's
    # limit order and places a market order.
    body = signal_message(confidence=0.95, amount="650", trace_id="body-of-b")
    producer.publish(body, {"traceparent": f"00-{TRACE_B}-{SPAN_B}-01"})
    consume(amqp_url, name, 1)
    b = TradingSignal.objects.get(signal_id=body["signal_id"])
    assert (b.trace_id, b.trace_parent_id, b.source) == (TRACE_B, SPAN_B, "amqp")

    calls_before = ExchangeCall.objects.order_by("-id").values_list("id", flat=True).first() or 0
    events_before = OutboxEvent.objects.order_by("-id").values_list("id", flat=True).first()
    market_data_cache_clear()  # B reads the ticker itself (A's read would otherwise still be cached)
    process_pending(symbol="BTCUSDT")
    b.refresh_from_db()
    assert b.status == SignalStatus.EXECUTED, b.reason
    order_b = Order.objects.get(signal_links__signal=b)

    # (b) Every exchange call made on B's behalf: the ticker read, the cancel of A's order, B's create.
    calls = wait_until(lambda: (rows := list(ExchangeCall.objects.filter(id__gt=calls_before)))
                       and {r.path for r in rows} >= {"/v5/market/tickers", "/v5/order/cancel", "/v5/order/create"}
                       and rows, timeout=15, what="the audit rows of B's calls")
    assert {(r.path, r.trace_id) for r in calls} == {(r.path, TRACE_B) for r in calls}
    [cancel] = [r for r in calls if r.path == "/v5/order/cancel"]
    assert cancel.order_link_id == order_a.order_link_id  # A's order, cancelled on B's behalf, in B's trace
    assert [r.order_link_id for r in calls if r.path == "/v5/order/create"] == [order_b.order_link_id]

    # (a) Every event B's handling produced, A's cancel included; B's intake event too.
    during = list(OutboxEvent.objects.filter(id__gt=events_before).order_by("id"))
    assert {e.routing_key for e in during} >= {"order.cancel_requested", "order.created", "signal.executed"}
    assert {(e.routing_key, e.payload.get("trace_id")) for e in during} == {(e.routing_key, TRACE_B) for e in during}
    received = OutboxEvent.objects.get(aggregate_id=str(b.signal_id), routing_key="signal.received")
    assert received.payload["trace_id"] == TRACE_B

    # Later, outside any signal's work: the fills and the cancel confirmation from the private stream.
    after_processing = OutboxEvent.objects.order_by("-id").values_list("id", flat=True).first()
    assert stream.pump() > 0
    later = {(e.aggregate_id, e.payload["status"]): e.payload.get("trace_id")
             for e in OutboxEvent.objects.filter(id__gt=after_processing, routing_key="order.updated")}
    assert later[(order_b.order_link_id, OrderStatus.FILLED)] == TRACE_B
    assert later[(order_a.order_link_id, OrderStatus.CANCELLED)] == TRACE_A  # the order's own trace

    # Out: each relayed message of a W3C trace carries a traceparent joining that trace, the event as its span.
    messages = relayed(amqp_url, name)
    assert len(messages) == OutboxEvent.objects.count()
    traced = 0
    for message, headers in messages:
        trace_id = message.get("trace_id") or ""
        if re.fullmatch("[0-9a-f]{32}", trace_id):
            span = uuid.UUID(message["event_id"]).hex[:16]
            assert headers.get("traceparent") == f"00-{trace_id}-{span}-01", message
            traced += 1
        else:
            assert "traceparent" not in headers, message  # e.g. a position event: the position's, no trace
    of_b = [m for m, h in messages if m.get("trace_id") == TRACE_B]
    assert {m["event"] for m in of_b} >= {"signal.received", "order.cancel_requested", "order.created",
                                          "signal.executed", "order.updated"}
    assert traced >= len(of_b) + 2  # A's events too


INVALID = {
    "uppercase": f"00-{TRACE_B.upper()}-{SPAN_B}-01",
    "wrong length": f"00-{TRACE_B}-{SPAN_B}0-01",
    "all zeros": f"00-{'0' * 32}-{'0' * 16}-01",
    "version ff": f"ff-{TRACE_B}-{SPAN_B}-01",
    "extra spaces": f"00-{TRACE_B}-{SPAN_B}-01  ",
}


def test_invalid_traceparent_headers_over_the_broker_never_refuse_a_signal(amqp_url, broker):
    producer, name = broker
    bodies = {}
    for variant, header in INVALID.items():
        bodies[variant] = signal_message(trace_id=f"body-{variant.replace(' ', '-')}")
        producer.publish(bodies[variant], {"traceparent": header})
    fresh = signal_message()
    del fresh["trace_id"]
    producer.publish(fresh, {"traceparent": INVALID["version ff"]})
    with logs_captured() as logs:
        consume(amqp_url, name, len(INVALID) + 1)
    warnings = {e["signal_id"]: e for e in list(logs) if e["event"] == "traceparent_invalid"}
    for variant, body in bodies.items():
        signal = TradingSignal.objects.get(signal_id=body["signal_id"])
        assert (signal.status, signal.trace_id) == (SignalStatus.RECEIVED, body["trace_id"]), variant
        warning = warnings[body["signal_id"]]
        assert (warning["log_level"], warning["traceparent"], warning["trace_id"]) == (
            "warning", INVALID[variant], body["trace_id"]), variant
    assert "uppercase hex" in warnings[bodies["uppercase"]["signal_id"]]["reason"]
    assert "version ff is forbidden" in warnings[bodies["version ff"]["signal_id"]]["reason"]
    assert "trace-id is all zeros" in warnings[bodies["all zeros"]["signal_id"]]["reason"]
    assert "56 characters" in warnings[bodies["wrong length"]["signal_id"]]["reason"]
    assert "whitespace" in warnings[bodies["extra spaces"]["signal_id"]]["reason"]
    signal = TradingSignal.objects.get(signal_id=fresh["signal_id"])
    assert signal.status == SignalStatus.RECEIVED and re.fullmatch("[0-9a-f]{32}", signal.trace_id)
    assert warnings[fresh["signal_id"]]["trace_source"] == "new"
