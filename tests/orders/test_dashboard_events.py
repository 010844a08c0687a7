"""Events reach the Channels group "dashboard": from sync code, from the ws-gateway consumer path, and
when a short-lived process publishes just before it exits (the atexit flush), with no warning.

The old forward called ``async_to_sync`` on the publisher thread: a new loop in a new executor thread
per event, refused at interpreter exit ("coroutine ... was never awaited", ``dashboard_forward_failed``).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
import uuid
import warnings
from decimal import Decimal as D
from pathlib import Path
from unittest import mock

import pytest
import structlog
from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.db import transaction

from ordermanager import events
from ordermanager.dashboard.consumers import DashboardConsumer
from orders.models import Execution
from tests.orders.factories import OrderFactory
from tests.orders.test_consumers import communicator, run
from tests.positions import bybit_messages as bm

ROOT = Path(__file__).resolve().parents[2]


def _collect(layer, channel: str, wanted, timeout: float = 10.0) -> list[dict]:
    """Messages on ``channel`` until ``wanted(messages)`` holds (other test runs share a Redis group)."""

    async def receive() -> list[dict]:
        got: list[dict] = []
        deadline = time.monotonic() + timeout
        while not wanted(got):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"dashboard group did not receive the events; got {got}")
            try:
                got.append(await asyncio.wait_for(layer.receive(channel), min(remaining, 0.5)))
            except TimeoutError:
                continue
        return got

    return async_to_sync(receive)()


@pytest.fixture
def dashboard_member():
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)("test-dashboard.")
    async_to_sync(layer.group_add)(events.DASHBOARD_GROUP, channel)
    yield layer, channel
    async_to_sync(layer.group_discard)(events.DASHBOARD_GROUP, channel)


@pytest.fixture
def no_warnings():
    with warnings.catch_warnings(record=True) as caught, structlog.testing.capture_logs() as logs:
        warnings.simplefilter("always")
        yield
        assert events.events_flush(10)
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)], [str(w.message) for w in caught]
    assert not [e for e in logs if e["event"] == "dashboard_forward_failed"], logs


def _events_named(messages: list[dict], marker: str) -> list[dict]:
    """The events (of the batches the group received) that carry ``marker``."""
    return [e for m in messages for e in m.get("events", []) if marker in str(e)]


@pytest.mark.django_db
def test_sync_publish_reaches_the_dashboard_group(
    dashboard_member, no_warnings, django_capture_on_commit_callbacks, settings
):
    settings.OUTBOX_VALIDATE = False  # a made-up event type, with no schema in docs/events/
    layer, channel = dashboard_member
    marker = f"sync-{uuid.uuid4()}"
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        for n in range(3):
            payload = {"marker": marker, "n": n, "amount": D("1.10")}
            events.publish_event_on_commit(routing_key="test.dashboard", payload=payload)
    assert events.events_flush(10)
    got = _events_named(_collect(layer, channel, lambda got: len(_events_named(got, marker)) == 3), marker)
    assert [(e["event"], e["n"], e["amount"]) for e in got] == [("test.dashboard", n, "1.10") for n in range(3)]


@pytest.mark.django_db
def test_an_in_process_layer_is_forwarded_to_only_while_this_process_has_a_dashboard_member(
    django_capture_on_commit_callbacks, settings
):
    """The embedded default has no Redis: a process's events can reach only its own consumers, and the processor
    and ingest processes serve no browser. Their forwards are skipped until a dashboard joins in the process."""
    settings.OUTBOX_VALIDATE = False  # a made-up event type, with no schema in docs/events/
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    layer = get_channel_layer()
    sent: list[str] = []
    real = InMemoryChannelLayer.group_send

    async def group_send(self, group, message):
        sent.extend(e["marker"] for e in message["events"])
        await real(self, group, message)

    def publish(marker: str) -> None:
        with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
            events.publish_event_on_commit(routing_key="test.dashboard", payload={"marker": marker})
        assert events.events_flush(10)

    with mock.patch.object(InMemoryChannelLayer, "group_send", group_send):
        publish("nobody-listens")
        channel = async_to_sync(layer.new_channel)("test-dashboard.")
        async_to_sync(layer.group_add)(events.DASHBOARD_GROUP, channel)
        publish("a-member")
        got = _collect(layer, channel, lambda got: len(got) == 1)
        async_to_sync(layer.group_discard)(events.DASHBOARD_GROUP, channel)
        publish("left-again")

    assert sent == ["a-member"]
    assert got[0]["events"][0]["marker"] == "a-member"


@pytest.mark.django_db
def test_what_queued_while_a_forward_ran_goes_as_one_group_message(settings):
    """Under load a send per event cost the signal path's interpreter more than the forward was worth: the
    events waiting when the publisher thread takes its next turn go in one message, in their order."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)("test-dashboard.")
    async_to_sync(layer.group_add)(events.DASHBOARD_GROUP, channel)
    publisher = events.EventPublisher()
    count = events.FORWARD_BATCH_MAX + 5
    for n in range(count):  # queued before its thread starts: all of them wait for its first turn
        publisher._queue.put_nowait(("test.dashboard", {"event": "test.dashboard", "n": n, "amount": D("1.5")}))
    publisher._ensure_thread()
    assert publisher.flush(10)

    got = _collect(layer, channel, lambda got: sum(len(m["events"]) for m in got) == count)
    assert [len(m["events"]) for m in got] == [events.FORWARD_BATCH_MAX, 5]
    assert [e["n"] for m in got for e in m["events"]] == list(range(count))
    assert got[0]["events"][0]["amount"] == "1.5"
    async_to_sync(layer.group_discard)(events.DASHBOARD_GROUP, channel)


@pytest.mark.django_db
def test_a_forward_goes_at_once_after_a_quiet_spell_and_then_at_most_once_per_interval(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    sends: list[tuple[float, list[int]]] = []
    sent = threading.Condition()

    async def group_send(self, group, message):  # the edge: when each group message leaves, and what it holds
        with sent:
            sends.append((time.monotonic(), [e["n"] for e in message["events"]]))
            sent.notify_all()

    def sends_reach(count: int) -> None:
        with sent:
            assert sent.wait_for(lambda: len(sends) >= count, timeout=10), sends

    publisher = events.EventPublisher()
    with mock.patch.object(InMemoryChannelLayer, "group_send", group_send):
        publisher._ensure_thread()
        publisher._queue.put_nowait(("test.dashboard", {"event": "test.dashboard", "n": 1}))
        sends_reach(1)
        for n in (2, 3):  # while the pace runs: gathered, and sent together once the interval is over
            publisher._queue.put_nowait(("test.dashboard", {"event": "test.dashboard", "n": n}))
        sends_reach(2)

    assert [batch for _, batch in sends] == [[1], [2, 3]]
    assert sends[1][0] - sends[0][0] >= events.FORWARD_INTERVAL * 0.9


def test_the_dashboard_consumer_tells_the_page_each_distinct_change_of_a_batch_once():
    consumer = DashboardConsumer()
    frames: list[dict] = []

    async def send_json(content, close=False):
        frames.append(content)

    consumer.send_json = send_json
    batch = [
        {"event": "order.updated", "symbol": "BTCUSDT", "n": 1},
        {"event": "position.updated", "symbol": "BTCUSDT"},
        {"event": "order.updated", "symbol": "BTCUSDT", "n": 2},
        {"event": "order.updated", "symbol": "ETHUSDT"},
    ]
    async_to_sync(consumer.dashboard_events)({"type": "dashboard.events", "events": batch})
    async_to_sync(consumer.dashboard_event)({"type": "dashboard.event", "event": {"event": "signal.received"}})

    assert frames == [
        {"op": "changed", "event": "order.updated", "symbol": "BTCUSDT"},
        {"op": "changed", "event": "position.updated", "symbol": "BTCUSDT"},
        {"op": "changed", "event": "order.updated", "symbol": "ETHUSDT"},
        {"op": "changed", "event": "signal.received", "symbol": ""},
    ]


@pytest.mark.django_db(transaction=True)
def test_gateway_consumer_path_reaches_the_dashboard_group(dashboard_member, no_warnings, settings):
    settings.WS_GATEWAY_API_KEY = "gateway-test-key"
    layer, channel = dashboard_member
    symbol = "DASH" + uuid.uuid4().hex[:6].upper() + "USDT"
    order = OrderFactory(symbol=symbol, qty=D("0.5"), price=D("100"))
    item = bm.execution_item(symbol=symbol, qty="0.5", price="100", fee="0.03", order_link_id=order.order_link_id)
    message = bm.message("execution", [item])

    async def scenario():
        ws = communicator()
        await ws.connect()
        await ws.send_json_to(message)
        await ws.send_json_to({"op": "ping"})  # answered after the message was applied (frames in order)
        pong = await ws.receive_json_from()
        await ws.disconnect()
        return pong

    assert run(scenario)["op"] == "pong"
    assert Execution.objects.filter(symbol=symbol).count() == 1
    assert events.events_flush(10)

    def both(got):
        names = {e["event"] for e in _events_named(got, symbol)}
        return {"position.updated", "order.updated"} <= names

    got = _events_named(_collect(layer, channel, both), symbol)
    position = next(e for e in got if e["event"] == "position.updated")
    assert (D(position["size"]), D(position["fees_paid"])) == (D("0.5"), D("0.03"))


def test_events_published_just_before_exit_are_forwarded(redis_url):
    """A command that publishes and exits: the atexit flush forwards on the publisher thread's own loop."""
    from channels_redis.core import RedisChannelLayer

    marker = f"exit-{uuid.uuid4()}"
    code = (
        "import django; django.setup()\n"
        # Events are outbox rows now: the in-memory database needs its tables.
        "from django.core.management import call_command; call_command('migrate', verbosity=0)\n"
        "from ordermanager import events\n"
        "for n in range(3):\n"
        f"    events.publish_event_on_commit(routing_key='test.exit', payload={{'marker': '{marker}'}})\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "ordermanager.settings.base", "REDIS_URL": redis_url,
           "DATABASE_URL": "sqlite://:memory:", "SIGNAL_BROKER_URL": "",
           "PYTHONWARNINGS": "always::RuntimeWarning"}  # fmt: skip
    layer = RedisChannelLayer(hosts=[redis_url])

    async def scenario():
        channel = await layer.new_channel("test-dashboard-exit.")
        await layer.group_add(events.DASHBOARD_GROUP, channel)
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", code, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            out, err = await asyncio.wait_for(proc.communicate(), 60)
            got = []
            deadline = time.monotonic() + 10
            while len(_events_named(got, marker)) < 3 and time.monotonic() < deadline:
                try:
                    got.append(await asyncio.wait_for(layer.receive(channel), 0.5))
                except TimeoutError:
                    continue
            return proc.returncode, (out + err).decode(), _events_named(got, marker)
        finally:
            await layer.group_discard(events.DASHBOARD_GROUP, channel)

    returncode, output, got = asyncio.run(scenario())
    assert returncode == 0, output
    assert "never awaited" not in output and "dashboard_forward_failed" not in output, output
    assert [e["event"] for e in got] == ["test.exit"] * 3
