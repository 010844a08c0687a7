"""The relay's publisher confirms against a real RabbitMQ (docs/decisions/0334): a round's events are
published, then their confirms awaited once; an event the broker refuses (nack) leaves the round unmarked."""

from __future__ import annotations

import json
import uuid

import pika
import pytest

from ordermanager import events
from ordermanager.core.models import OutboxEvent
from ordermanager.outbox import OutboxRelay, PublisherConfirms, PublishNotConfirmed
from tests.core.test_outbox_relay import _order
from tests.signals_app.e2e.test_queue_kinds_e2e import pika_parameters

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq, pytest.mark.django_db(transaction=True)]


def _write(count: int) -> None:
    from django.db import transaction

    with transaction.atomic():
        for n in range(count):
            events.publish_event_on_commit(routing_key=events.ORDER_CANCEL_REQUESTED, payload=_order(f"c{n % 5}", n))


@pytest.fixture
def exchange_and_queue(amqp_url):
    name = f"test.confirms.{uuid.uuid4().hex[:10]}"
    connection = pika.BlockingConnection(pika_parameters(amqp_url))
    channel = connection.channel()
    channel.exchange_declare(name, exchange_type="topic", durable=True)
    yield name, channel
    channel.exchange_delete(name)
    connection.close()


def test_a_round_is_published_whole_then_confirmed_once_and_marked_sent(amqp_url, exchange_and_queue, monkeypatch):
    name, channel = exchange_and_queue
    channel.queue_declare(name, auto_delete=False)
    channel.queue_bind(name, name, routing_key="#")
    _write(40)
    published_at_wait = []
    real_wait = PublisherConfirms.wait
    monkeypatch.setattr(PublisherConfirms, "wait",
                        lambda self, *a, **kw: published_at_wait.append(self._last_tag) or real_wait(self, *a, **kw))
    relay = OutboxRelay(url=amqp_url, exchange=name, batch=1000)
    try:
        assert relay.relay_once() == 40
    finally:
        relay._reset()
    assert published_at_wait == [40]  # every event of the round on the wire before its confirms were awaited, once
    assert not OutboxEvent.objects.filter(sent_at__isnull=True).exists()
    received = []
    while (got := channel.basic_get(name, auto_ack=True))[0] is not None:
        received.append(json.loads(got[2]))
    assert [m["cancel_reason"] for m in received] == [f"step {n}" for n in range(40)]  # in id order
    channel.queue_delete(name)


def test_an_event_the_broker_refuses_leaves_the_round_unsent_and_the_next_round_sends_it(
        amqp_url, exchange_and_queue):
    name, channel = exchange_and_queue
    # A queue that refuses every message routed to it: the broker nacks the publish.
    full = f"{name}.full"
    channel.queue_declare(full, arguments={"x-max-length": 0, "x-overflow": "reject-publish"})
    channel.queue_bind(full, name, routing_key="order.#")
    _write(3)
    relay = OutboxRelay(url=amqp_url, exchange=name, batch=1000)
    try:
        with pytest.raises(PublishNotConfirmed, match="refused 3 events"):
            relay.relay_once()
        assert OutboxEvent.objects.filter(sent_at__isnull=True).count() == 3  # nothing marked
        relay._reset()  # as the relay's loop does after a failed round
        channel.queue_delete(full)
        assert relay.relay_once() == 3
    finally:
        relay._reset()
    assert not OutboxEvent.objects.filter(sent_at__isnull=True).exists()
