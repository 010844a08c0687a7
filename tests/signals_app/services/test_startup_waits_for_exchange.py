"""Started together with the exchange, a signal process waits (bounded, saying so) before reconciling."""

import socket
import threading
import time

import pytest
from django.db import connection

from exchange.bybit.client import get_client
from exchange.simulator.server import SimulatorServer
from orders.models import ReconciliationRun
from signals_app.services import pipeline_runtime
from tests.signals_app.e2e.harness import wait_until


class Recorder:
    def __init__(self):
        self.events: list[tuple[str, dict]] = []

    def _add(self, event, **fields):
        self.events.append((event, fields))

    info = warning = debug = exception = _add

    def names(self) -> list[str]:
        return [name for name, _ in self.events]


@pytest.fixture
def recorded(monkeypatch):
    recorder = Recorder()
    monkeypatch.setattr(pipeline_runtime, "log", recorder)
    return recorder


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def silent_exchange(settings):
    port = free_port()
    settings.BYBIT_ENV = "simulator"
    settings.BYBIT_BASE_URL = f"http://127.0.0.1:{port}"
    settings.BYBIT_API_KEY, settings.BYBIT_API_SECRET = "sim-key", "sim-secret"
    get_client.cache_clear()
    yield port
    get_client.cache_clear()


@pytest.mark.django_db(transaction=True)  # the startup runs on its own thread's connection
def test_the_startup_reconciliation_waits_for_an_exchange_that_starts_late(settings, silent_exchange, recorded):
    settings.STARTUP_EXCHANGE_WAIT = 30
    result = {}

    def start():
        try:
            result["run"] = pipeline_runtime.pipeline_startup()
        finally:
            connection.close()

    starter = threading.Thread(target=start, daemon=True)
    starter.start()
    wait_until(lambda: "waiting_for_exchange" in recorded.names(), timeout=10)
    assert ReconciliationRun.objects.count() == 0, "nothing recorded while the exchange is not there yet"

    with SimulatorServer(port=silent_exchange):
        starter.join(timeout=30)
        assert not starter.is_alive()

    assert "exchange_answered" in recorded.names()
    run = result["run"]
    assert run.status == ReconciliationRun.Status.SUCCEEDED, run.error
    assert ReconciliationRun.objects.filter(status=ReconciliationRun.Status.FAILED).count() == 0


def test_the_wait_is_bounded_and_logged(silent_exchange, recorded):
    started = time.monotonic()

    answered = pipeline_runtime.exchange_wait_until_answering(timeout=0.5)

    elapsed = time.monotonic() - started
    assert answered is False
    assert 0.5 <= elapsed < 5
    assert recorded.names() == ["waiting_for_exchange", "exchange_not_answering"]
    assert recorded.events[0][1]["url"] == f"http://127.0.0.1:{silent_exchange}/v5/market/time"


def test_an_exchange_that_answers_is_not_waited_for(bybit_settings, recorded):
    assert pipeline_runtime.exchange_wait_until_answering(timeout=10) is True
    assert recorded.names() == []
