from unittest import mock

import pytest
from django.urls import reverse

from ordermanager.ops import health


@pytest.mark.django_db
def test_live_answers_without_touching_anything(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get(reverse("health-live"))

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_ready_checks_the_database(client):
    response = client.get(reverse("health-ready"))

    assert response.status_code == 200
    assert response.json()["checks"]["database"] == {"ok": True}


@pytest.mark.django_db
def test_ready_is_503_and_names_the_failing_dependency(client):
    failing = {"database": lambda: {"ok": False, "error": "OperationalError"}}
    with mock.patch.dict(health.READINESS_CHECKS, failing, clear=True):
        response = client.get(reverse("health-ready"))

    assert response.status_code == 503
    body = response.json()
    assert (body["status"], body["checks"]["database"]) == ("unavailable", {"ok": False, "error": "OperationalError"})
    assert body["reasons"] == ["database: OperationalError"]
    # What reads the database is not asked while it is away; the broker still is.
    assert set(body["checks"]) == {"database", "broker"}


def test_health_refuses_writes(client):
    assert client.post(reverse("health-live")).status_code == 405


@pytest.mark.django_db
def test_ready_names_the_exchange_environment_and_base_url_without_credentials(client, settings):
    settings.BYBIT_ENV, settings.BYBIT_BASE_URL = "testnet", "https://api-testnet.bybit.com"
    settings.BYBIT_API_KEY, settings.BYBIT_API_SECRET = "key-not-shown", "secret-not-shown"

    response = client.get(reverse("health-ready"))

    assert response.json()["exchange"] == {
        "environment": "testnet", "base_url": "https://api-testnet.bybit.com", "dry_run": False,
    }  # fmt: skip
    assert b"not-shown" not in response.content


def test_the_web_process_logs_its_exchange_profile_at_startup():
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "BYBIT_BASE_URL")}
    env.update(BYBIT_ENV="simulator", LOG_FORMAT="json", LOG_LEVEL="info")
    done = subprocess.run([sys.executable, "-c", "import ordermanager.asgi"], cwd=Path(__file__).resolve().parents[2],
                          env=env, capture_output=True, text=True, timeout=60)  # fmt: skip

    assert done.returncode == 0, done.stderr
    line = next(x for x in (done.stdout + done.stderr).splitlines() if "process_started" in x)
    assert '"environment": "simulator"' in line and '"base_url": "http://127.0.0.1:8765"' in line


# --- the parts of /health/ready (docs/decisions/0524): 503 only for the database, else 200 "degraded" ----------

def ready(client) -> tuple[int, dict]:
    response = client.get(reverse("health-ready"))
    return response.status_code, response.json()


@pytest.mark.django_db
def test_ready_is_ok_with_every_part_well(client):
    from ordermanager.core.services.heartbeat import heartbeat_beat
    from tests.exchange.factories import ExchangeCallFactory

    heartbeat_beat(component="consumer", detail="consume_signals pid 1: intake ok")
    ExchangeCallFactory(path="/v5/position/list")

    status, body = ready(client)
    assert (status, body["status"], body.get("reasons")) == (200, "ok", None)
    assert body["checks"]["broker"]["configured"] is False
    assert body["checks"]["exchange"]["ok"] and body["checks"]["exchange"]["path"] == "/v5/position/list"
    assert body["checks"]["heartbeats"]["processes"]["consumer"]["ok"] is True
    assert body["checks"]["alerts"] == {"ok": True, "firing": []}


@pytest.mark.django_db
@pytest.mark.rabbitmq
def test_ready_reaches_the_real_broker_without_showing_its_credentials(client, settings, amqp_url):
    settings.SIGNAL_BROKER_URL = amqp_url

    status, body = ready(client)
    assert (status, body["status"]) == (200, "ok")
    assert body["checks"]["broker"] == {"ok": True, "configured": True, "broker": "127.0.0.1:5672"}
    assert b"guest:guest" not in client.get(reverse("health-ready")).content


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket is closed


@pytest.mark.django_db
def test_ready_with_the_broker_on_a_closed_port_is_degraded_within_the_timeout(client, settings):
    import time

    port = _closed_port()
    settings.SIGNAL_BROKER_URL, settings.HEALTH_BROKER_TIMEOUT = f"amqp://guest:s3cret@127.0.0.1:{port}//", 1.0
    started = time.monotonic()
    response = client.get(reverse("health-ready"))
    elapsed = time.monotonic() - started

    body = response.json()
    assert (response.status_code, body["status"]) == (200, "degraded")
    assert body["checks"]["broker"]["ok"] is False
    assert any(r.startswith(f"broker: broker 127.0.0.1:{port} unreachable within 1 s") for r in body["reasons"])
    assert b"s3cret" not in response.content
    assert elapsed < 5, elapsed


@pytest.mark.django_db
def test_ready_is_degraded_when_the_last_exchange_call_failed_or_is_old(client, settings):
    from datetime import timedelta

    from django.utils import timezone

    from exchange.models import ExchangeCall
    from tests.exchange.factories import ExchangeCallFactory

    ExchangeCallFactory(path="/v5/order/create", http_status=None, ret_code=None, error="ConnectTimeout")
    status, body = ready(client)
    assert (status, body["status"]) == (200, "degraded")
    assert "exchange: the last exchange call failed: /v5/order/create ConnectTimeout" in body["reasons"]

    settings.HEALTH_EXCHANGE_MAX_AGE_SECONDS = 600
    ExchangeCall.objects.all().delete()
    ExchangeCallFactory(path="/v5/order/realtime")
    ExchangeCall.objects.update(created_at=timezone.now() - timedelta(seconds=900))
    status, body = ready(client)
    assert body["status"] == "degraded" and body["checks"]["exchange"]["age_seconds"] >= 900
    assert any(r.startswith("exchange: no exchange call for 9") for r in body["reasons"])


@pytest.mark.django_db
def test_ready_is_degraded_when_a_process_heartbeat_reports_a_problem(client):
    from ordermanager.core.services.heartbeat import heartbeat_beat

    heartbeat_beat(component="consumer", ok=False, detail="consume_signals pid 9: broker unreachable (refused)")
    heartbeat_beat(component="ws_gateway", detail="connected")

    status, body = ready(client)
    assert (status, body["status"]) == (200, "degraded")
    assert body["reasons"] == ["heartbeats: consumer reports a problem: consume_signals pid 9: broker unreachable "
                               "(refused)"]
    assert set(body["checks"]["heartbeats"]["processes"]) == {"consumer", "ws_gateway"}


@pytest.mark.django_db
def test_ready_is_degraded_with_each_firing_alert(client, settings):
    from tests.signals_app.factories import TradingSignalFactory

    settings.ALERT_INBOX_BACKLOG = 1
    TradingSignalFactory.create_batch(2)

    status, body = ready(client)
    assert (status, body["status"]) == (200, "degraded")
    assert body["checks"]["alerts"]["firing"][0]["alert"] == "inbox_backlog"
    assert body["reasons"] == ["alerts: Signal inbox backlog: 2 unfinished signals in the inbox (threshold 1); "
                               "largest: BTCUSDT 2"]


@pytest.mark.django_db
def test_a_check_that_breaks_degrades_instead_of_a_500(client):
    def broken():
        raise RuntimeError("bug")

    with mock.patch.dict(health.DEGRADING_CHECKS, {"exchange": broken}):
        status, body = ready(client)
    assert (status, body["checks"]["exchange"]) == (200, {"ok": False, "error": "exchange check failed: RuntimeError"})
