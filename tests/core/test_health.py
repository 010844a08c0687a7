from unittest import mock

import pytest
from django.urls import reverse

from ordermanager.core import health


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
    assert (body["status"], body["checks"]) == ("unavailable", {"database": {"ok": False, "error": "OperationalError"}})


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
