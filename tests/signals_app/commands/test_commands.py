import json
import uuid
from decimal import Decimal as D

import pytest
from django.core.management import CommandError, call_command

from orders.models import Order
from signals_app.models import SignalStatus, TradingSignal

pytestmark = pytest.mark.django_db


def test_send_signal_without_a_broker_writes_the_inbox(settings, capsys):
    settings.SIGNAL_BROKER_URL = ""
    sid = str(uuid.uuid4())
    call_command("send_signal", "--asset", "btcusdt", "--side", "buy", "--amount", "100.5", "--confidence",
                 "0.123456789", "--price", "64000", "--spread", "1", "--signal-id", sid)
    row = TradingSignal.objects.get(signal_id=sid)
    assert (row.asset, row.source, row.status) == ("BTCUSDT", "cli", SignalStatus.RECEIVED)
    assert (row.amount, row.confidence, row.snapshot_price) == (D("100.5"), D("0.123456789"), D("64000"))
    assert f"signal {sid} stored" in capsys.readouterr().out


def test_send_signal_refuses_a_bad_number():
    with pytest.raises(CommandError, match="'abc' is not a decimal number"):
        call_command("send_signal", "--asset", "BTCUSDT", "--side", "buy", "--amount", "abc")


def test_send_signal_reports_a_contract_rejection(settings):
    settings.SIGNAL_BROKER_URL = ""
    with pytest.raises(CommandError, match="amount: must be greater than 0"):
        call_command("send_signal", "--asset", "BTCUSDT", "--side", "buy", "--amount", "-1")


def test_consume_signals_needs_a_broker(settings):
    settings.SIGNAL_BROKER_URL = ""
    with pytest.raises(CommandError, match="SIGNAL_BROKER_URL is empty"):
        call_command("consume_signals")


def test_process_signals_once_turns_the_inbox_into_orders(settings, pipeline, simulator, capsys):
    settings.SIGNAL_BROKER_URL = ""
    call_command("send_signal", "--asset", "BTCUSDT", "--side", "buy", "--amount", "650", "--urgent")
    call_command("process_signals", "--once")
    signal = TradingSignal.objects.get()
    assert signal.status == SignalStatus.EXECUTED, signal.reason
    assert Order.objects.get().order_link_id in simulator.engine.orders_by_link
    assert "processed 1 signal(s)" in capsys.readouterr().out


@pytest.mark.rabbitmq
def test_send_signal_publishes_to_the_broker(settings, amqp_url):
    from kombu import Connection

    from signals_app.amqp import ingress_queue

    queue_name = f"test.send.{uuid.uuid4().hex[:8]}"
    settings.SIGNAL_BROKER_URL = amqp_url
    settings.SIGNAL_QUEUE = queue_name
    call_command("send_signal", "--asset", "ETHUSDT", "--side", "sell", "--amount", "25", "--confidence", "0.91")
    with Connection(amqp_url) as conn:
        queue = ingress_queue(queue_name).bind(conn.default_channel)
        message = queue.get(no_ack=True)
        queue.delete()
    raw = message.body if isinstance(message.body, str) else message.body.decode()
    body = json.loads(raw)
    assert (body["asset"], body["signal_type"], body["amount"]) == ("ETHUSDT", "sell", "25")
    assert '"confidence": 0.91' in raw  # a JSON number, spliced in exactly
    assert not TradingSignal.objects.exists()


TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_send_signal_passes_a_traceparent_into_the_inbox(settings):
    settings.SIGNAL_BROKER_URL = ""
    sid = str(uuid.uuid4())
    call_command("send_signal", "--asset", "BTCUSDT", "--side", "buy", "--amount", "100", "--signal-id", sid,
                 "--traceparent", TRACEPARENT)
    row = TradingSignal.objects.get(signal_id=sid)
    assert (row.trace_id, row.trace_parent_id) == ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
    assert len(row.raw_payload["trace_id"]) == 32  # the body's own default id: a W3C one too


@pytest.mark.rabbitmq
def test_send_signal_publishes_the_traceparent_as_a_header(settings, amqp_url):
    from kombu import Connection

    from signals_app.amqp import ingress_queue, message_traceparent

    queue_name = f"test.send.{uuid.uuid4().hex[:8]}"
    settings.SIGNAL_BROKER_URL = amqp_url
    settings.SIGNAL_QUEUE = queue_name
    call_command("send_signal", "--asset", "ETHUSDT", "--side", "buy", "--amount", "25", "--traceparent", TRACEPARENT)
    with Connection(amqp_url) as conn:
        queue = ingress_queue(queue_name).bind(conn.default_channel)
        message = queue.get(no_ack=True)
        queue.delete()
    assert message_traceparent(message) == TRACEPARENT
