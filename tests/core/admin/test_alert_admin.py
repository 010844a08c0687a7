"""The admin shows which alerts fire; a retired component's heartbeat (and so its alert) can be removed."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from ordermanager.core.models import Heartbeat
from ordermanager.core.services.heartbeat import heartbeat_beat
from ordermanager.ops.alerts import alerts_evaluate

pytestmark = pytest.mark.django_db


def test_the_alert_states_are_listed_read_only(client, readonly_staff, settings):
    heartbeat_beat(component="old_worker", detail="gone")
    Heartbeat.objects.update(beat_at=timezone.now() - timedelta(hours=1))
    alerts_evaluate()
    client.force_login(readonly_staff)

    page = client.get(reverse("admin:core_alertstate_changelist"))
    assert page.status_code == 200 and b"heartbeat_age:old_worker" in page.content
    assert client.get(reverse("admin:core_alertstate_add")).status_code == 403


def test_only_a_superuser_removes_a_heartbeat(client, risk_staff, risk_admin):
    heartbeat_beat(component="old_worker")
    beat = Heartbeat.objects.get()
    url = reverse("admin:core_heartbeat_delete", args=[beat.pk])

    client.force_login(risk_staff)
    assert client.post(url, {"post": "yes"}).status_code == 403
    client.force_login(risk_admin)
    assert client.post(url, {"post": "yes"}).status_code == 302
    assert not Heartbeat.objects.exists()
