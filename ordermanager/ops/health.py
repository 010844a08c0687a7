"""Liveness and readiness.

``live`` answers as long as the process serves requests. ``ready`` checks what the service needs for trading
and names what is wrong (docs/decisions/0524):

- 503 ``unavailable``: a failure of a READINESS_CHECKS entry, which this process cannot serve without: the
  database (every page, API call and job reads it);
- 200 ``degraded`` with ``reasons``: a failure of a DEGRADING_CHECKS entry, which stops part of the trading
  but not this process: the broker (when ``SIGNAL_BROKER_URL`` is set), the exchange (last call's outcome and
  age), a process heartbeat that says it is unwell, and the alert thresholds (``ALERT_*``), evaluated here;
- 200 ``ok`` otherwise.
A load balancer that took every web process out of rotation because the broker or the exchange is away would
also take away the admin the desk needs to see and halt trading, hence 503 for the database alone.
"""

from __future__ import annotations

from urllib.parse import urlparse

from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.http import require_GET

from exchange.profile import exchange_profile
from ordermanager.core.models import Heartbeat
from ordermanager.dashboard.selectors import exchange_last_call
from ordermanager.ops.alerts import alerts_evaluate, firing_reasons


def _check_database() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return {"ok": True}
    except Exception as exc:  # any driver error means "not ready"
        return {"ok": False, "error": exc.__class__.__name__}


def _check_broker() -> dict:
    url = settings.SIGNAL_BROKER_URL
    if not url:
        return {"ok": True, "configured": False, "detail": "no broker: signals enter through the API and the inbox"}
    from kombu import Connection

    parsed = urlparse(url)
    where = f"{parsed.hostname or '127.0.0.1'}:{parsed.port or 5672}"  # never the credentials
    timeout = settings.HEALTH_BROKER_TIMEOUT
    try:
        with Connection(url, connect_timeout=timeout, transport_options={"max_retries": 0}) as broker:
            broker.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout)
        return {"ok": True, "configured": True, "broker": where}
    except Exception as exc:  # refused, timed out, bad credentials: the broker is not usable
        return {"ok": False, "configured": True, "broker": where,
                "reason": f"broker {where} unreachable within {timeout:g} s ({exc.__class__.__name__})"}


def _check_exchange() -> dict:
    last = exchange_last_call()
    if last is None:
        return {"ok": True, "last_call_at": None, "detail": "no exchange call recorded yet"}
    age = round((timezone.now() - last.created_at).total_seconds(), 1)
    body = {"last_call_at": last.created_at.isoformat(), "age_seconds": age, "path": last.path,
            "outcome": last.outcome}
    if last.failed:
        return {"ok": False, **body, "reason": f"the last exchange call failed: {last.path} {last.outcome}"}
    if age > settings.HEALTH_EXCHANGE_MAX_AGE_SECONDS:
        return {"ok": False, **body, "reason": f"no exchange call for {age:g} s "
                                               f"(HEALTH_EXCHANGE_MAX_AGE_SECONDS={settings.HEALTH_EXCHANGE_MAX_AGE_SECONDS})"}
    return {"ok": True, **body}


def _check_heartbeats() -> dict:
    """Every process that beats: its last beat's age and whether it said it is well (stale beats: alerts)."""
    now, processes, reasons = timezone.now(), {}, []
    for beat in Heartbeat.objects.order_by("component"):
        age = round((now - beat.beat_at).total_seconds(), 1)
        processes[beat.component] = {"ok": beat.ok, "age_seconds": age, "detail": beat.detail}
        if not beat.ok:
            reasons.append(f"{beat.component} reports a problem: {beat.detail}")
    body = {"ok": not reasons, "processes": processes}
    return {**body, "reason": "; ".join(reasons)[:500]} if reasons else body


def _check_alerts() -> dict:
    checks = alerts_evaluate()
    firing = [{"alert": c.key, "reason": c.reason, "since": c.since.isoformat() if c.since else None}
              for c in checks if c.firing]
    body = {"ok": not firing, "firing": firing}
    return {**body, "reason": "; ".join(firing_reasons(checks))} if firing else body


READINESS_CHECKS = {"database": _check_database}  # a failure: 503
DEGRADING_CHECKS = {  # a failure: 200 "degraded" with the reason
    "broker": _check_broker,
    "exchange": _check_exchange,
    "heartbeats": _check_heartbeats,
    "alerts": _check_alerts,
}
NEEDS_DATABASE = ("exchange", "heartbeats", "alerts")


@require_GET
def live(request):
    return JsonResponse({"status": "ok"})


@require_GET
def ready(request):
    checks = {name: check() for name, check in READINESS_CHECKS.items()}
    ready_ok = all(result["ok"] for result in checks.values())
    for name, check in DEGRADING_CHECKS.items():
        if name in NEEDS_DATABASE and not ready_ok:
            continue  # they read the database that just failed
        checks[name] = _guarded(name, check)
    reasons = [f"{name}: {result.get('reason') or result.get('error')}" for name, result in checks.items()
               if not result["ok"]]
    status = "unavailable" if not ready_ok else ("degraded" if reasons else "ok")
    body = {"status": status, "checks": checks, "exchange": exchange_profile()}
    if reasons:
        body["reasons"] = reasons
    return JsonResponse(body, status=503 if status == "unavailable" else 200)


def _guarded(name: str, check) -> dict:
    try:
        return check()
    except Exception as exc:  # a check that breaks says so; it does not turn the probe into a 500
        return {"ok": False, "error": f"{name} check failed: {exc.__class__.__name__}"}
