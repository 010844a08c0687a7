from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from orders.models import RiskLimit

pytestmark = pytest.mark.django_db


def test_bootstrap_generates_and_prints_a_working_admin_login(monkeypatch):
    monkeypatch.delenv("ADMIN_PASSWORD", raising=False)
    monkeypatch.setenv("ADMIN_USERNAME", "desk")
    out = StringIO()

    call_command("bootstrap", stdout=out)

    line = next(x for x in out.getvalue().splitlines() if x.startswith("Admin login created"))
    password = line.split(" / ")[1]
    user = get_user_model().objects.get(username="desk")
    assert user.is_superuser and user.check_password(password)


def test_bootstrap_uses_admin_password_and_is_idempotent(monkeypatch):
    monkeypatch.setenv("ADMIN_USERNAME", "desk")
    monkeypatch.setenv("ADMIN_PASSWORD", "correct horse")

    call_command("bootstrap", stdout=StringIO())
    call_command("bootstrap", stdout=StringIO())

    users = get_user_model().objects.filter(username="desk")
    assert users.count() == 1 and users.get().check_password("correct horse")


def test_bootstrap_seeds_global_risk_limits_from_settings_once(settings):
    settings.MAX_ORDER_SIZE_RATIO = __import__("decimal").Decimal("0.25")

    call_command("bootstrap", stdout=StringIO())
    RiskLimit.objects.filter(symbol="").update(max_order_size_ratio="0.1")
    call_command("bootstrap", stdout=StringIO())

    limit = RiskLimit.objects.get(symbol="")
    assert str(limit.max_order_size_ratio) == "0.10000"  # the edit survives a second bootstrap


def test_bootstrap_prints_the_admin_url_on_the_web_port(settings):
    settings.WEB_PORT = 8123
    out = StringIO()

    call_command("bootstrap", stdout=out)

    assert "Admin: http://127.0.0.1:8123/admin/" in out.getvalue()
