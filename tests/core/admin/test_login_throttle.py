"""The admin login refuses a username after repeated wrong passwords, even with the right one (issue 13)."""

import pytest
from django.core.cache import cache

from tests.fixtures.personas import PASSWORD


@pytest.fixture(autouse=True)
def clean_counts():
    cache.clear()
    yield
    cache.clear()  # the browser tests log in as the same personas


def attempt(client, username, password):
    return client.post("/admin/login/?next=/admin/", {"username": username, "password": password})


def test_the_attempt_after_the_limit_is_refused_even_with_the_right_password(client, readonly_staff, settings):
    settings.ADMIN_LOGIN_MAX_FAILURES = 3
    for _ in range(3):
        response = attempt(client, readonly_staff.username, "wrong")
        assert response.status_code == 200 and not response.wsgi_request.user.is_authenticated

    response = attempt(client, readonly_staff.username, PASSWORD)

    assert response.status_code == 429
    assert b"Too many failed logins" in response.content
    assert "_auth_user_id" not in client.session


def test_other_usernames_are_not_locked(client, readonly_staff, risk_staff, settings):
    settings.ADMIN_LOGIN_MAX_FAILURES = 2
    for _ in range(2):
        attempt(client, readonly_staff.username, "wrong")

    response = attempt(client, risk_staff.username, PASSWORD)

    assert response.status_code == 302 and response["Location"] == "/admin/"


def test_fewer_failures_than_the_limit_still_let_the_right_password_in_and_reset_the_count(
    client, readonly_staff, settings
):
    settings.ADMIN_LOGIN_MAX_FAILURES = 3
    for _ in range(2):
        attempt(client, readonly_staff.username, "wrong")
    assert attempt(client, readonly_staff.username, PASSWORD).status_code == 302
    client.logout()
    for _ in range(2):
        attempt(client, readonly_staff.username, "wrong")

    assert attempt(client, readonly_staff.username, PASSWORD).status_code == 302


def test_the_lock_ends_with_its_window(client, readonly_staff, settings, monkeypatch):
    import time

    settings.ADMIN_LOGIN_MAX_FAILURES = 1
    settings.ADMIN_LOGIN_LOCKOUT_SECONDS = 60
    attempt(client, readonly_staff.username, "wrong")
    assert attempt(client, readonly_staff.username, PASSWORD).status_code == 429
    later = time.time() + 61
    monkeypatch.setattr("ordermanager.core.login_throttle.time.time", lambda: later)

    assert attempt(client, readonly_staff.username, PASSWORD).status_code == 302
