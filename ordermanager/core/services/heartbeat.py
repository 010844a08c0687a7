"""Heartbeats of long-running components, read by the dashboard and the health API.

``heartbeat_beat`` is cheap (one UPSERT) and safe to call from a loop; callers
throttle it to about once every few seconds.
"""

from __future__ import annotations

from django.utils import timezone

from ordermanager.core.models import Heartbeat

# Components the dashboard knows about; others may beat too and are shown as well.
CONSUMER = "consumer"
WS_GATEWAY = "ws_gateway"


def heartbeat_beat(*, component: str, ok: bool = True, detail: str = "") -> None:
    Heartbeat.objects.update_or_create(
        component=component, defaults={"beat_at": timezone.now(), "ok": ok, "detail": detail[:500]}
    )
