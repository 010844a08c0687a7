"""Alert thresholds: each breach turns health degraded with its reason, publishes one ops.alert event, shows a
dashboard banner; its recovery publishes one resolved event; several evaluators never announce it twice."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from exchange.models import ExchangeCall
from ordermanager.core.models import AlertState, Heartbeat, OutboxEvent
from ordermanager.core.services.heartbeat import heartbeat_beat
from ordermanager.ops import alerts
from ordermanager.ops.alerts import alerts_evaluate
from orders.models import Order, OrderStatus, OrderType
from signals_app.models import SignalStatus, TradingSignal
from tests.exchange.factories import ExchangeCallFactory
from tests.orders.factories import ExecutionFactory, OrderFactory
from tests.signals_app.factories import TradingSignalFactory

pytestmark = pytest.mark.django_db


def alert_events(key: str) -> list[dict]:
    rows = OutboxEvent.objects.filter(routing_key="ops.alert", aggregate_id=key).order_by("sequence")
    return [row.payload for row in rows]


def firing(key: str, **kwargs):
    return next((c for c in alerts_evaluate(**kwargs) if c.key == key and c.firing), None)


def assert_fires_once_with(key: str, reason: str, client) -> None:
    """The alert fires with ``reason``: health degraded, one event (however often evaluated), the banner."""
    check = firing(key)
    assert check is not None and reason in check.reason, check
    ready = client.get(reverse("health-ready")).json()
    assert ready["status"] == "degraded"
    assert any(reason in r for r in ready["reasons"]), ready["reasons"]
    banner = client.get(reverse("admin-dashboard-live")).content.decode()
    assert 'id="alerts-banner"' in banner and reason in banner, banner[:2000]
    alerts_evaluate()

    events = alert_events(key)
    assert [(e["state"], e["alert_key"]) for e in events] == [("firing", key)]
    assert reason in events[0]["reason"] and events[0]["sequence"] == 1 and events[0]["since"]
    assert AlertState.objects.get(key=key).firing


def assert_resolved_once(key: str, client=None, **kwargs) -> None:
    assert firing(key, **kwargs) is None
    alerts_evaluate(**kwargs)
    assert [e["state"] for e in alert_events(key)] == ["firing", "resolved"]
    assert not AlertState.objects.get(key=key).firing
    if client is not None:
        assert 'id="alerts-banner"' not in client.get(reverse("admin-dashboard-live")).content.decode()


def test_nothing_fires_on_a_quiet_book(admin_client):
    assert [c.key for c in alerts_evaluate() if c.firing] == []
    assert OutboxEvent.objects.filter(routing_key="ops.alert").count() == 0
    assert client_ready(admin_client)["status"] == "ok"


def client_ready(client) -> dict:
    return client.get(reverse("health-ready")).json()


def test_inbox_backlog_fires_once_and_resolves(admin_client, settings):
    settings.ALERT_INBOX_BACKLOG = 2
    signals = TradingSignalFactory.create_batch(2, asset="ETHUSDT") + [TradingSignalFactory(asset="BTCUSDT")]
    assert_fires_once_with("inbox_backlog", "3 unfinished signals in the inbox (threshold 2); largest: ETHUSDT 2",
                           admin_client)
    assert alert_events("inbox_backlog")[0]["value"] == "3" and alert_events("inbox_backlog")[0]["threshold"] == "2"

    TradingSignal.objects.filter(pk=signals[0].pk).update(status=SignalStatus.EXECUTED)
    assert_resolved_once("inbox_backlog", admin_client)


def test_oldest_signal_age_fires_once_and_resolves(admin_client, settings):
    settings.ALERT_SIGNAL_AGE_SECONDS = 120
    signal = TradingSignalFactory(asset="SOLUSDT", status=SignalStatus.PROCESSING)
    TradingSignal.objects.filter(pk=signal.pk).update(received_at=timezone.now() - timedelta(seconds=300))

    assert_fires_once_with("signal_age", f"(threshold 120 s): SOLUSDT signal {signal.signal_id} (processing)",
                           admin_client)
    TradingSignal.objects.filter(pk=signal.pk).update(status=SignalStatus.FAILED)
    assert_resolved_once("signal_age", admin_client)


def test_fill_lag_of_a_late_stream_fill_fires_and_resolves_when_the_window_passes(admin_client, settings):
    settings.ALERT_FILL_LAG_SECONDS, settings.ALERT_FILL_LAG_WINDOW_SECONDS = 60, 300
    order = OrderFactory(symbol="XRPUSDT", status=OrderStatus.FILLED, filled_qty=Decimal("0.010"))
    ExecutionFactory(order=order, exec_time=timezone.now() - timedelta(seconds=200))  # applied now, 200 s late
    ExecutionFactory(order=order, source="rest", exec_time=timezone.now() - timedelta(hours=5))  # a backfill

    assert_fires_once_with("fill_lag", "a XRPUSDT fill arrived 200", admin_client)
    assert Decimal(alert_events("fill_lag")[0]["value"]) >= 200

    assert_resolved_once("fill_lag", now=timezone.now() + timedelta(seconds=301))  # no late fill in the window


def test_fill_lag_of_a_market_order_still_waiting_for_its_fill(admin_client, settings):
    settings.ALERT_FILL_LAG_SECONDS = 60
    order = OrderFactory(order_type=OrderType.MARKET, price=None, time_in_force="IOC", post_only=False,
                         status=OrderStatus.NEW, submitted_at=timezone.now() - timedelta(seconds=90))
    OrderFactory(status=OrderStatus.NEW, submitted_at=timezone.now() - timedelta(hours=2))  # a resting limit order

    assert_fires_once_with("fill_lag", f"market order {order.order_link_id} (BTCUSDT) acknowledged 90", admin_client)

    ExecutionFactory(order=order)
    Order.objects.filter(pk=order.pk).update(status=OrderStatus.FILLED, filled_qty=order.qty)
    assert_resolved_once("fill_lag", admin_client)


def test_exchange_error_rate_fires_once_and_resolves(admin_client, settings):
    settings.ALERT_EXCHANGE_ERROR_RATE, settings.ALERT_EXCHANGE_ERROR_MIN_CALLS = Decimal("0.2"), 4
    settings.ALERT_EXCHANGE_ERROR_WINDOW_SECONDS = 300
    ok = ExchangeCallFactory.create_batch(2)
    bad = [ExchangeCallFactory(http_status=503, ret_code=None, ret_msg="", error="HTTP 503 from the exchange"),
           ExchangeCallFactory(http_status=200, ret_code=10006, ret_msg="Too many visits")]
    # Audit rows a moment old: the newest seconds are left out (rows may be written after the call).
    ExchangeCall.objects.filter(pk__in=[c.pk for c in ok + bad]).update(
        created_at=timezone.now() - timedelta(seconds=30))
    ExchangeCallFactory(dry_run=True, http_status=None, ret_code=None)  # never reached the exchange: not counted

    assert_fires_once_with("exchange_error_rate", "2 of 4 exchange calls failed in the last 300 s (threshold 20%)",
                           admin_client)
    assert alert_events("exchange_error_rate")[0]["value"] == "0.500"

    ExchangeCallFactory.create_batch(8)
    ExchangeCall.objects.filter(created_at__gt=timezone.now() - timedelta(seconds=5)).update(
        created_at=timezone.now() - timedelta(seconds=20))
    assert_resolved_once("exchange_error_rate", admin_client)  # 2 of 12 = 17%


def test_exchange_error_rate_is_not_judged_on_too_few_calls(settings):
    settings.ALERT_EXCHANGE_ERROR_MIN_CALLS = 10
    ExchangeCallFactory(http_status=None, ret_code=None, error="ConnectError")
    ExchangeCall.objects.update(created_at=timezone.now() - timedelta(seconds=30))

    check = next(c for c in alerts_evaluate() if c.key == "exchange_error_rate")
    assert not check.firing and "fewer than 10 calls: not judged" in check.reason


def test_a_stale_heartbeat_fires_per_process_and_resolves_when_it_beats_again(admin_client, settings):
    settings.ALERT_HEARTBEAT_AGE_SECONDS = 60
    heartbeat_beat(component="consumer", detail="consume_signals pid 7: intake ok")
    heartbeat_beat(component="ws_gateway", detail="connected")
    Heartbeat.objects.filter(component="consumer").update(beat_at=timezone.now() - timedelta(seconds=120))

    assert_fires_once_with("heartbeat_age:consumer", "consumer last beat 120", admin_client)
    assert firing("heartbeat_age:ws_gateway") is None

    heartbeat_beat(component="consumer", detail="consume_signals pid 8: intake ok")
    assert_resolved_once("heartbeat_age:consumer", admin_client)


def test_a_firing_heartbeat_alert_resolves_when_its_record_is_removed(settings):
    heartbeat_beat(component="old_worker")
    Heartbeat.objects.update(beat_at=timezone.now() - timedelta(hours=1))
    assert firing("heartbeat_age:old_worker")

    Heartbeat.objects.all().delete()  # a process that is gone for good, removed in the admin
    alerts_evaluate()
    assert [e["state"] for e in alert_events("heartbeat_age:old_worker")] == ["firing", "resolved"]


def test_an_earlier_measurement_never_undoes_a_later_flip(settings):
    settings.ALERT_INBOX_BACKLOG = 1
    signals = TradingSignalFactory.create_batch(2)
    now = timezone.now()
    alerts_evaluate(now=now)
    TradingSignal.objects.filter(pk=signals[0].pk).update(status=SignalStatus.EXECUTED)

    alerts_evaluate(now=now - timedelta(seconds=1))  # a process that measured before the flip commits late
    assert [e["state"] for e in alert_events("inbox_backlog")] == ["firing"]
    alerts_evaluate(now=now + timedelta(seconds=1))
    assert [e["state"] for e in alert_events("inbox_backlog")] == ["firing", "resolved"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_several_processes_evaluating_at_once_announce_an_alert_once(settings):
    settings.ALERT_INBOX_BACKLOG = 1
    TradingSignalFactory.create_batch(2)
    start, errors = threading.Barrier(6), []

    def evaluate() -> None:
        try:
            start.wait(timeout=10)
            alerts_evaluate()
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=evaluate) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    assert [e["state"] for e in alert_events("inbox_backlog")] == ["firing"]
    assert AlertState.objects.filter(key="inbox_backlog").count() == 1


def test_the_schedule_is_set_up_and_the_job_counts_firing_alerts(settings):
    from io import StringIO

    from django.core.management import call_command
    from django_q.models import Schedule

    settings.ALERT_EVALUATION_INTERVAL, settings.ALERT_INBOX_BACKLOG = 120, 1
    out = StringIO()
    call_command("setup_schedules", stdout=out)
    call_command("setup_schedules", stdout=out)
    row = Schedule.objects.get(name=alerts.SCHEDULE_NAME)
    assert (row.func, row.minutes, row.repeats) == (alerts.SCHEDULE_FUNC, 2, -1)
    assert "alerts: created (every 2 min)" in out.getvalue() and "alerts: unchanged" in out.getvalue()

    TradingSignalFactory.create_batch(2)
    assert alerts.job_alerts_evaluate() == 1
    assert len(alert_events("inbox_backlog")) == 1


def test_api_health_is_degraded_with_the_firing_alert(api_trader_client, settings):
    settings.ALERT_INBOX_BACKLOG = 1
    TradingSignalFactory.create_batch(2)

    body = api_trader_client.get("/api/health/").json()
    assert body["status"] == "degraded"
    assert [(a["key"], a["title"]) for a in body["alerts"]] == [("inbox_backlog", "Signal inbox backlog")]
    assert "2 unfinished signals in the inbox (threshold 1)" in body["alerts"][0]["reason"]
    assert body["alerts"][0]["since"] is not None
