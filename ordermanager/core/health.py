"""Liveness and readiness.

``live`` answers as long as the process serves requests. ``ready`` checks
every dependency the service needs for trading and returns 503 when one
fails, naming it, so a load balancer or a person sees what is wrong.
"""

from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.http import require_GET


def _check_database() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return {"ok": True}
    except Exception as exc:  # any driver error means "not ready"
        return {"ok": False, "error": exc.__class__.__name__}


READINESS_CHECKS = {"database": _check_database}


@require_GET
def live(request):
    return JsonResponse({"status": "ok"})


@require_GET
def ready(request):
    checks = {name: check() for name, check in READINESS_CHECKS.items()}
    ok = all(result["ok"] for result in checks.values())
    body = {"status": "ok" if ok else "unavailable", "checks": checks, "exchange": exchange_profile()}
    return JsonResponse(body, status=200 if ok else 503)


def exchange_profile() -> dict:
    """Which exchange this process trades on (no credentials): also logged at startup."""
    from exchange.bybit.client import base_url_from_settings

    return {"environment": settings.BYBIT_ENV, "base_url": base_url_from_settings(), "dry_run": settings.ENABLE_DRY_RUN}


def log_startup_profile(process: str) -> None:
    import structlog

    structlog.get_logger("ordermanager.startup").info("process_started", process=process, **exchange_profile())
