"""Issue 15's metrics test: the real processes, then a scrape of ``GET /metrics`` over HTTP.

uvicorn runs the Procfile's web line, ``consume_signals`` takes signals from RabbitMQ, ``start_ingest``
registers our ``ws/gateway/`` endpoint with the simulator (which plays Bybit and ws-gateway), and qcluster
runs; all of them on this test's committed PostgreSQL database and one private metrics directory. Signals
are published, their fills arrive over the WebSocket, a reconciliation runs (``manage.py reconcile``, another
process), and the scrape before and after must show the counts moving by what happened, the state read from
the database, and a heartbeat per process.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import uuid
from decimal import Decimal as D

import httpx
import pytest

from ordermanager.core.models import Heartbeat
from orders.models import Discrepancy, Execution, Order, OrderStatus, ReconciliationRun
from signals_app.models import SignalStatus, TradingSignal
from tests.browser.test_static_under_procfile_uvicorn import child_env, free_port, procfile_web_command
from tests.core.metrics_scrape import parse
from tests.signals_app.e2e.harness import ROOT, Broker, random_signal, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SIGNALS = 4
SYMBOLS = ["BTCUSDT", "ETHUSDT"]
PROCESSES = {"web", "consume_signals", "start_ingest", "qcluster"}
GATEWAY_KEY = "sim-gateway-key"


class Service:
    def __init__(self, name: str, argv: list[str], env: dict, log_dir):
        self.name, self.log_path = name, log_dir / f"{name}.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop)
        # Own session: the whole tree (keep_running.sh and its child, sh and qcluster's workers) is stopped.
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)  # fmt: skip

    def terminate(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.log.close()

    def tail(self) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])


@pytest.fixture
def service(simulator, amqp_url, tmp_path):
    """Every process of the service, started as `make run` starts them, sharing one metrics directory."""
    web_port = free_port()
    queue = f"metrics-e2e-{uuid.uuid4().hex[:8]}"
    env = child_env(
        WEB_PORT=str(web_port), METRICS_DIR=str(tmp_path / "metrics"), METRICS_ALLOWED_NETWORKS="127.0.0.1/32",
        PROCESS_HEARTBEAT_INTERVAL="1", SIGNAL_BROKER_URL=amqp_url, SIGNAL_QUEUE=queue,
        SIGNAL_DEAD_LETTER_QUEUE=f"{queue}.dead", ORDER_EVENTS_EXCHANGE=f"{queue}.events",
        BYBIT_BASE_URL=simulator.url, SIMULATOR_API_KEY=simulator.api_key, SIMULATOR_API_SECRET=simulator.api_secret,
        WS_GATEWAY_HOST="127.0.0.1", WS_GATEWAY_PORT=str(simulator.port), WS_GATEWAY_API_KEY=GATEWAY_KEY,
        WS_GATEWAY_CALLBACK_URL=f"ws://127.0.0.1:{web_port}/ws/gateway/", QCLUSTER_WORKERS="1", REDIS_URL="",
        # The reconciliation this test runs is the last run: no continuous passes in between.
        RECONCILE_LIGHT_INTERVAL="0", RECONCILE_INFLIGHT_CHECK_INTERVAL="0",
    )  # fmt: skip
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    broker = Broker(amqp_url, queue)
    python = sys.executable
    services = [
        Service("web", ["bash", "-c", "exec " + procfile_web_command()], env, tmp_path),
        Service("consumer", [python, "manage.py", "consume_signals"], env, tmp_path),
        Service("ingest", [python, "manage.py", "start_ingest"], env, tmp_path),
        Service("qcluster", ["sh", "-c", f"{python} manage.py wait_for_services --no-broker && "
                                         f"exec {python} manage.py qcluster"], env, tmp_path),
    ]  # fmt: skip
    try:
        yield f"http://127.0.0.1:{web_port}", broker, env, services
    finally:
        for item in services:  # all at once: each takes a moment to finish what it holds
            item.terminate()
        for item in services:
            item.stop()
        broker.close()


def _ready(base: str, simulator, services) -> None:
    def up() -> bool:
        for item in services:
            assert item.proc.poll() is None, f"{item.name} exited:\n{item.tail()}"
        try:
            return httpx.get(f"{base}/health/live", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(up, timeout=60, what="uvicorn answering")
    wait_until(lambda: ReconciliationRun.objects.filter(trigger="startup").exclude(status="running").exists(),
               timeout=60, what="consume_signals' startup reconciliation")  # fmt: skip

    def gateway_connected() -> bool:
        subs = httpx.get(f"{simulator.url}/ws-gateway/api/v1/subscriptions", headers={"X-API-Key": GATEWAY_KEY})
        return any(s["connected"] for s in subs.json()["subscriptions"])

    wait_until(gateway_connected, timeout=60, what="the simulator's ws-gateway connected to our endpoint")
    wait_until(lambda: {c.removeprefix("process:") for c in Heartbeat.objects.values_list("component", flat=True)}
               >= PROCESSES, timeout=60, what="a heartbeat from every process")  # fmt: skip


def _scrape(base: str):
    response = httpx.get(f"{base}/metrics", timeout=10)
    assert response.status_code == 200, response.text
    return parse(response.text)


def test_a_scrape_after_signals_fills_and_a_reconciliation_shows_what_happened(service, simulator):
    base, broker, env, services = service
    _ready(base, simulator, services)
    before = _scrape(base)
    rng = random.Random(15)
    sent = []
    for index in range(SIGNALS):
        symbol = SYMBOLS[index % len(SYMBOLS)]
        price = D(simulator.engine.prices[symbol])
        snapshot = {"price": str(price), "spread": str(price * D("0.0001"))}  # a market order: fills at once
        body = random_signal(rng, SYMBOLS, {}, asset=symbol, signal_type="buy", amount="200", confidence=0.95,
                             market_data_snapshot=snapshot)  # fmt: skip
        broker.publish(body)
        sent.append(body["signal_id"])

    def done() -> bool:
        return TradingSignal.objects.filter(signal_id__in=sent, status=SignalStatus.EXECUTED).count() == SIGNALS

    wait_until(done, timeout=30, what=f"{SIGNALS} signals executed")
    orders = Order.objects.filter(signal_links__signal__signal_id__in=sent)
    wait_until(lambda: Execution.objects.filter(order__in=orders, source="ws").count() >= SIGNALS
               and not orders.exclude(status=OrderStatus.FILLED).exists(), timeout=30,
               what="the fills over ws-gateway")  # fmt: skip
    # A difference for the reconciliation to find: one filled order made to look open in our book.
    Order.objects.filter(pk=orders.first().pk).update(status=OrderStatus.NEW)
    done = subprocess.run([sys.executable, "manage.py", "reconcile"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode in (0, 2), done.stdout + done.stderr
    after = _scrape(base)
    fills_in_db = Execution.objects.filter(source="ws").count()  # all from this test (transactional database)

    def delta(name, **labels):
        return after.total(name, **labels) - before.total(name, **labels)

    assert delta("ordermanager_signals_total", status="executed") == SIGNALS
    assert delta("ordermanager_signal_to_ack_seconds_count") == SIGNALS
    assert delta("ordermanager_signal_own_seconds_count") == SIGNALS
    assert 0 < delta("ordermanager_signal_own_seconds_sum") <= delta("ordermanager_signal_to_ack_seconds_sum")
    assert delta("ordermanager_exchange_request_seconds_count", endpoint="/v5/order/create") >= SIGNALS
    assert delta("ordermanager_exchange_request_seconds_count", endpoint="/v5/order/realtime") >= 1  # reconcile
    assert delta("ordermanager_fills_total", exec_type="Trade") == fills_in_db >= SIGNALS
    assert delta("ordermanager_fill_lag_seconds_count") == fills_in_db
    assert after.value("ordermanager_gateway_connections") >= 1

    last = ReconciliationRun.objects.exclude(status="running").order_by("-started_at", "-id").first()
    found = {k: float(n) for k, n in _kinds(last)}
    assert found and after.labels_of("ordermanager_reconciliation_discrepancies", "kind") == found

    backlog = after.labels_of("ordermanager_signal_inbox_backlog", "symbol")
    assert set(SYMBOLS) <= set(backlog) and set(backlog.values()) == {0}
    assert after.value("ordermanager_signal_inbox_oldest_age_seconds") == 0
    assert after.value("ordermanager_signal_queue_messages") == 0
    assert set(SYMBOLS) <= set(after.labels_of("ordermanager_unrealized_pnl", "symbol"))
    assert after.value("ordermanager_exposure_usdt") > 0
    assert after.value("ordermanager_position_validation_discrepancies") is not None
    ages = after.labels_of("ordermanager_process_heartbeat_age_seconds", "process")
    assert PROCESSES <= set(ages) and max(ages[p] for p in PROCESSES) < 15, ages


def _kinds(run):
    from django.db.models import Count

    return Discrepancy.objects.filter(run=run).values_list("kind").annotate(n=Count("id")).order_by()
