"""GET /metrics: the series the issue names, the state read from the database and the broker at scrape time,
the recorders, who may scrape, and the multiprocess directory's housekeeping."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.db import transaction
from django.utils import timezone

from ordermanager import metrics
from ordermanager.core.models import Heartbeat
from ordermanager.env import ConfigError, env_networks
from ordermanager.metrics_process import dead_processes_forget
from ordermanager.ops.metrics_collector import metrics_render
from orders.models import ReconciliationRun
from positions.models import PositionDiscrepancy
from signals_app.models import SignalStatus, TradingSignal
from tests.orders.factories import DiscrepancyFactory, ExecutionFactory, ReconciliationRunFactory
from tests.positions.factories import PositionFactory
from tests.signals_app.factories import TradingSignalFactory

from .metrics_scrape import parse

ISSUE_SERIES = {
    "ordermanager_signal_inbox_backlog", "ordermanager_signal_inbox_oldest_age_seconds",
    "ordermanager_signal_queue_messages", "ordermanager_signals_total", "ordermanager_signal_to_ack_seconds",
    "ordermanager_signal_own_seconds", "ordermanager_exchange_request_seconds", "ordermanager_exchange_errors_total",
    "ordermanager_exchange_rate_limit_wait_seconds_total", "ordermanager_fills_total", "ordermanager_fill_lag_seconds",
    "ordermanager_gateway_connections", "ordermanager_reconciliation_discrepancies",
    "ordermanager_position_validation_discrepancies", "ordermanager_unrealized_pnl", "ordermanager_exposure_usdt",
    "ordermanager_process_heartbeat_age_seconds",
}  # fmt: skip


def scrape():
    return parse(metrics_render().decode())


def test_the_module_exports_exactly_the_series_the_issue_names():
    assert len(metrics.METRIC_NAMES) == len(set(metrics.METRIC_NAMES)) == 17
    assert set(metrics.METRIC_NAMES) == ISSUE_SERIES


# ------------------------------------------------------------------ state read at scrape time


def _aged(model, pk, **fields):
    model.objects.filter(pk=pk).update(**fields)


@pytest.mark.django_db
def test_inbox_backlog_and_oldest_age_come_from_unfinished_signals(settings):
    settings.SIGNAL_BROKER_URL = ""
    old = TradingSignalFactory(asset="BTCUSDT")
    _aged(TradingSignal, old.pk, received_at=timezone.now() - timedelta(seconds=30))
    TradingSignalFactory(asset="BTCUSDT")
    TradingSignalFactory(asset="ETHUSDT", status=SignalStatus.PROCESSING)
    TradingSignalFactory(asset="SOLUSDT", status=SignalStatus.EXECUTED)
    PositionFactory(symbol="XRPUSDT")

    result = scrape()

    assert result.labels_of("ordermanager_signal_inbox_backlog", "symbol") == {
        "BTCUSDT": 2, "ETHUSDT": 1, "XRPUSDT": 0}  # fmt: skip
    assert 30 <= result.value("ordermanager_signal_inbox_oldest_age_seconds") < 60
    assert "ordermanager_signal_queue_messages" not in result.names()  # no broker, no queue


@pytest.mark.django_db
def test_an_empty_inbox_reads_zero_age():
    TradingSignalFactory(status=SignalStatus.EXECUTED)
    assert scrape().value("ordermanager_signal_inbox_oldest_age_seconds") == 0


@pytest.mark.django_db
def test_reconciliation_discrepancies_are_those_of_the_last_finished_run():
    older = ReconciliationRunFactory(status=ReconciliationRun.Status.UNRESOLVED)
    DiscrepancyFactory(run=older, kind="position_mismatch")
    last = ReconciliationRunFactory(status=ReconciliationRun.Status.SUCCEEDED)
    DiscrepancyFactory.create_batch(2, run=last, kind="order_status")
    DiscrepancyFactory(run=last, kind="external_order")
    running = ReconciliationRunFactory(status=ReconciliationRun.Status.RUNNING)
    DiscrepancyFactory(run=running, kind="lookup_failed")

    result = scrape()

    assert result.labels_of("ordermanager_reconciliation_discrepancies", "kind") == {
        "order_status": 2, "external_order": 1}  # fmt: skip


@pytest.mark.django_db
def test_position_validation_counts_the_last_interval(settings):
    settings.POSITION_VALIDATION_INTERVAL = 3600
    for _ in range(2):
        PositionDiscrepancy.objects.create(symbol="BTCUSDT")
    old = PositionDiscrepancy.objects.create(symbol="ETHUSDT")
    _aged(PositionDiscrepancy, old.pk, detected_at=timezone.now() - timedelta(hours=2))

    assert scrape().value("ordermanager_position_validation_discrepancies") == 2


@pytest.mark.django_db
def test_unrealized_pnl_per_open_position_and_total_exposure_at_the_mark():
    PositionFactory(symbol="BTCUSDT", size=Decimal("0.010"), avg_entry_price=Decimal("64000"),
                    mark_price=Decimal("64100"), unrealized_pnl=Decimal("1.0"))  # fmt: skip
    PositionFactory(symbol="ETHUSDT", size=Decimal("-2"), avg_entry_price=Decimal("3000"), mark_price=None,
                    unrealized_pnl=Decimal("-4.5"))  # fmt: skip
    PositionFactory(symbol="SOLUSDT", size=Decimal("0"))

    result = scrape()

    assert result.labels_of("ordermanager_unrealized_pnl", "symbol") == {"BTCUSDT": 1.0, "ETHUSDT": -4.5}
    assert result.value("ordermanager_exposure_usdt") == pytest.approx(641.0 + 6000.0)


@pytest.mark.django_db
def test_heartbeat_age_per_process_row():
    now = timezone.now()
    Heartbeat.objects.create(component="process:web", beat_at=now - timedelta(seconds=3))
    Heartbeat.objects.create(component="process:qcluster", beat_at=now - timedelta(seconds=100))
    Heartbeat.objects.create(component="ws_gateway", beat_at=now - timedelta(seconds=20))  # a component beats too

    ages = scrape().labels_of("ordermanager_process_heartbeat_age_seconds", "process")

    assert set(ages) == {"web", "qcluster", "ws_gateway"}
    assert 20 <= ages["ws_gateway"] < 50
    assert 3 <= ages["web"] < 30
    assert 100 <= ages["qcluster"] < 130


@pytest.mark.rabbitmq
@pytest.mark.django_db
def test_queue_depth_is_read_passively_from_the_broker(settings, amqp_url):
    from kombu import Connection

    from signals_app.amqp import ingress_queue, queue_ensure, signal_publish

    name = f"metrics-test-{uuid.uuid4().hex[:8]}"
    settings.SIGNAL_BROKER_URL, settings.SIGNAL_QUEUE = amqp_url, name
    with Connection(amqp_url) as conn:
        queue = ingress_queue(name)
        queue_ensure(conn.connection, queue)
        try:
            for _ in range(3):
                signal_publish(body=b"{}", connection=conn, queue=queue)
            assert scrape().value("ordermanager_signal_queue_messages") == 3
        finally:
            queue.bind(conn.default_channel).delete()


@pytest.mark.django_db
def test_a_broker_away_leaves_only_the_queue_series_out(settings, caplog):
    with __import__("socket").socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # nobody listens there once the socket closes
    settings.SIGNAL_BROKER_URL = f"amqp://guest:guest@127.0.0.1:{port}//"
    TradingSignalFactory(asset="BTCUSDT")

    started = time.monotonic()
    result = scrape()

    assert time.monotonic() - started < 5
    assert "ordermanager_signal_queue_messages" not in result.names()
    assert result.labels_of("ordermanager_signal_inbox_backlog", "symbol") == {"BTCUSDT": 1}


# ------------------------------------------------------------------ recorders


def _delta(before, after, name, **labels):
    return after.total(name, **labels) - before.total(name, **labels)


@pytest.mark.django_db(transaction=True)
def test_an_executed_signal_counts_its_latencies_once_committed():
    received = timezone.now() - timedelta(seconds=1)
    signal = TradingSignalFactory.build(status=SignalStatus.EXECUTED, received_at=received,
                                        processed_at=received + timedelta(seconds=1))  # fmt: skip
    before = scrape()
    metrics.signal_work_started()
    metrics.exchange_request_observe(endpoint="/v5/order/create", seconds=0.25, http_status=200, ret_code=0,
                                     failed=False)  # fmt: skip
    with pytest.raises(RuntimeError), transaction.atomic():
        metrics.signal_finished_on_commit(signal)
        raise RuntimeError("rolled back: the status never committed")
    with transaction.atomic():
        metrics.signal_finished_on_commit(signal)
    after = scrape()

    assert _delta(before, after, "ordermanager_signals_total", status="executed") == 1
    assert _delta(before, after, "ordermanager_signal_to_ack_seconds_count") == 1
    assert _delta(before, after, "ordermanager_signal_to_ack_seconds_sum") == pytest.approx(1.0)
    assert _delta(before, after, "ordermanager_signal_own_seconds_sum") == pytest.approx(0.75)


@pytest.mark.django_db(transaction=True)
def test_a_rejected_signal_counts_its_status_only():
    signal = TradingSignalFactory.build(status=SignalStatus.REJECTED, received_at=timezone.now(),
                                        processed_at=timezone.now())  # fmt: skip
    before = scrape()
    metrics.signal_finished_on_commit(signal)
    after = scrape()
    assert _delta(before, after, "ordermanager_signals_total", status="rejected") == 1
    assert _delta(before, after, "ordermanager_signal_to_ack_seconds_count") == 0


@pytest.mark.django_db
def test_fills_count_by_exec_type_with_their_lag():
    now_ms = int(time.time() * 1000)
    items = [SimpleNamespace(exec_id="e1", exec_type="Trade", exec_time_ms=now_ms - 2000),
             SimpleNamespace(exec_id="e1", exec_type="Trade", exec_time_ms=now_ms - 2000),  # repeated in the batch
             SimpleNamespace(exec_id="e2", exec_type="Funding", exec_time_ms=now_ms - 4000)]  # fmt: skip
    message = SimpleNamespace(topic="execution", items=items)
    trades = SimpleNamespace(topic="execution", items=[
        SimpleNamespace(exec_id=f"t{k}", exec_type="Trade", exec_time_ms=now_ms) for k in range(3)])
    before = scrape()
    metrics.fills_applied(message, SimpleNamespace(applied=2))
    metrics.fills_applied(trades, SimpleNamespace(applied=3))  # three of a type: counted three, in one write
    metrics.fills_applied(message, SimpleNamespace(applied=0))  # a resend: nothing new
    metrics.fills_applied(SimpleNamespace(topic="order", items=[]), SimpleNamespace(applied=3))
    after = scrape()

    assert _delta(before, after, "ordermanager_fills_total", exec_type="Trade") == 4
    assert _delta(before, after, "ordermanager_fills_total", exec_type="Funding") == 1
    assert _delta(before, after, "ordermanager_fill_lag_seconds_count") == 5
    assert 6 <= _delta(before, after, "ordermanager_fill_lag_seconds_sum") < 20


@pytest.mark.django_db
def test_a_partial_resend_counts_only_the_executions_stored_just_now():
    # The executions are orders' table and ordermanager.metrics is below every app: OrdersConfig.ready installs
    # the lookup (docs/decisions/0422). e1 was stored an hour ago (the resent one), e2 now.
    now_ms = int(time.time() * 1000)
    old, new = ExecutionFactory(exec_type="Trade"), ExecutionFactory(exec_type="Funding")
    type(old).objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(hours=1))
    items = [SimpleNamespace(exec_id=old.exec_id, exec_type="Trade", exec_time_ms=now_ms - 1000),
             SimpleNamespace(exec_id=new.exec_id, exec_type="Funding", exec_time_ms=now_ms - 1000)]  # fmt: skip
    before = scrape()
    metrics.fills_applied(SimpleNamespace(topic="execution", items=items), SimpleNamespace(applied=1))
    after = scrape()

    assert _delta(before, after, "ordermanager_fills_total", exec_type="Funding") == 1
    assert _delta(before, after, "ordermanager_fills_total", exec_type="Trade") == 0


@pytest.mark.parametrize(
    ("http_status", "ret_code", "failed", "code"),
    [(200, 0, False, None), (200, 10001, True, "10001"), (503, None, True, "503"), (None, None, True, "no_answer"),
     (200, None, True, "no_answer")],
)  # fmt: skip
def test_exchange_error_code(http_status, ret_code, failed, code):
    assert metrics.exchange_error_code(http_status=http_status, ret_code=ret_code, failed=failed) == code


def test_a_recorder_never_raises(monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(metrics._gateway_connections, "inc", broken)
    metrics.gateway_connection_opened()  # logged, not raised


# ------------------------------------------------------------------ who may scrape


@pytest.mark.django_db
def test_without_credentials_the_answer_is_401_without_metrics(client):
    response = client.get("/metrics")
    assert response.status_code == 401
    assert b"ordermanager_" not in response.content
    assert response["WWW-Authenticate"] == "Api-Key"


@pytest.mark.django_db
def test_an_api_key_or_a_staff_login_scrapes(api_trader_client, api_client, readonly_staff):
    for caller in (api_trader_client, api_client(readonly_staff)):
        response = caller.get("/metrics")
        assert response.status_code == 200
        assert response["Content-Type"].startswith("text/plain; version=0.0.4")
        assert b"ordermanager_exposure_usdt" in response.content


@pytest.mark.django_db
def test_a_wrong_key_or_a_non_staff_login_is_refused(api_client, api_trader):
    from rest_framework.test import APIClient

    wrong = APIClient()
    wrong.credentials(HTTP_AUTHORIZATION="Api-Key omk_00000000.nope")
    assert wrong.get("/metrics").status_code == 401
    response = api_client(api_trader).get("/metrics")  # a service account's login, not staff
    assert response.status_code == 403
    assert b"ordermanager_" not in response.content


@pytest.mark.django_db
def test_an_allowed_network_scrapes_without_credentials(client, settings):
    settings.METRICS_ALLOWED_NETWORKS = (ipaddress.ip_network("10.0.0.0/8"),)
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="192.168.1.9").status_code == 401


def test_allowed_networks_setting_is_read_as_cidr():
    os.environ["METRICS_TEST_NETS"] = "10.0.0.0/8, 127.0.0.1 ,::1"
    try:
        assert [str(n) for n in env_networks("METRICS_TEST_NETS")] == ["10.0.0.0/8", "127.0.0.1/32", "::1/128"]
        os.environ["METRICS_TEST_NETS"] = "10.0.0.0/8,intranet"
        with pytest.raises(ConfigError, match="METRICS_TEST_NETS=.*'intranet' is not an IP network"):
            env_networks("METRICS_TEST_NETS")
    finally:
        del os.environ["METRICS_TEST_NETS"]


# ------------------------------------------------------------------ the directory of every process's values

_CHILD = """
from prometheus_client import Counter, Gauge
Counter("child_work_total", "w").inc(5)
Gauge("child_links", "l", multiprocess_mode="livesum").inc()
"""


def test_a_dead_process_keeps_its_counts_but_not_its_live_gauges(tmp_path):
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    subprocess.run([sys.executable, "-c", _CHILD], env=env, check=True, timeout=60)
    assert any(f.name.startswith("gauge_livesum_") for f in tmp_path.iterdir())

    dead = dead_processes_forget(str(tmp_path))

    assert len(dead) == 1
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(tmp_path))
    result = parse(generate_latest(registry).decode())
    assert result.value("child_work_total") == 5
    assert "child_links" not in result.names()


def test_metrics_reset_keeps_the_files_of_a_running_process(tmp_path, settings):
    from io import StringIO

    from django.core.management import call_command

    settings.METRICS_DIR = str(tmp_path)
    (tmp_path / "counter_1.db").write_bytes(b"")  # pid 1 always runs
    out = StringIO()
    call_command("metrics_reset", stdout=out)
    assert "processes [1] still write" in out.getvalue()
    assert (tmp_path / "counter_1.db").exists()
    (tmp_path / "counter_999999999.db").write_bytes(b"")
    call_command("metrics_reset", "--force", stdout=out)
    assert list(tmp_path.iterdir()) == []
