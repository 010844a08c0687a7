import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command

from ordermanager.core.models import ApiKey
from ordermanager.core.roles import RISK_STAFF, VIEWER
from ordermanager.core.services.api_keys import api_key_create

pytestmark = pytest.mark.django_db


def _perms(name):
    return {f"{p.content_type.app_label}.{p.codename}" for p in Group.objects.get(name=name).permissions.all()}


def test_roles_hold_exactly_their_permissions():
    viewer, risk = _perms(VIEWER), _perms(RISK_STAFF)
    assert all(p.split(".")[1].startswith("view_") for p in viewer)
    assert {"orders.view_order", "positions.view_position", "signals_app.view_tradingsignal"} <= viewer
    assert "core.view_apikey" not in viewer | risk
    assert risk - viewer == {
        "orders.add_risklimit", "orders.change_risklimit", "orders.cancel_order", "orders.run_reconciliation"
    }  # fmt: skip


def test_a_permission_granted_by_hand_is_taken_back_on_migrate():
    from django.contrib.auth.models import Permission

    Group.objects.get(name=VIEWER).permissions.add(Permission.objects.get(codename="cancel_order"))
    call_command("migrate", verbosity=0)
    assert "orders.cancel_order" not in _perms(VIEWER)


@pytest.mark.django_db(transaction=True)
def test_flush_keeps_the_roles_exact():
    # `flush` (between transactional tests, and by hand) sends post_migrate without `apps`.
    from django.contrib.auth.models import Permission

    Group.objects.get(name=VIEWER).permissions.add(Permission.objects.get(codename="cancel_order"))
    call_command("flush", interactive=False, verbosity=0)
    assert "orders.cancel_order" not in _perms(VIEWER)
    assert "orders.cancel_order" in _perms(RISK_STAFF) and "orders.view_order" in _perms(VIEWER)


def test_api_keys_are_for_superusers_only_and_never_show_the_digest(client, risk_staff, risk_admin):
    key, raw = api_key_create(user=risk_admin, name="svc")
    client.force_login(risk_staff)
    assert client.get("/admin/core/apikey/").status_code == 403
    client.force_login(risk_admin)
    page = client.get(f"/admin/core/apikey/{key.pk}/change/").content.decode()
    assert key.prefix in page
    assert key.key_hash not in page and raw not in page


def test_revoke_from_the_admin(client, risk_admin):
    key, _ = api_key_create(user=risk_admin, name="svc")
    client.force_login(risk_admin)
    client.post("/admin/core/apikey/", {"action": "revoke", "_selected_action": [key.pk]})
    key.refresh_from_db()
    assert key.revoked_by == risk_admin


def test_the_command_prints_the_key_once_and_stores_its_digest(capsys):
    call_command("api_key_create", "--user", "model-service", "--name", "prod")
    raw = capsys.readouterr().out.splitlines()[1]
    key = ApiKey.objects.get()
    assert raw.startswith(f"om_{key.prefix}.") and raw not in key.key_hash
    assert key.user.groups.filter(name=VIEWER).exists() and not key.user.is_staff
