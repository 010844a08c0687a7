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
    assert response.json() == {
        "status": "unavailable",
        "checks": {"database": {"ok": False, "error": "OperationalError"}},
    }


def test_health_refuses_writes(client):
    assert client.post(reverse("health-live")).status_code == 405
