"""Liveness and readiness.

``live`` answers as long as the process serves requests. ``ready`` checks
every dependency the service needs for trading and returns 503 when one
fails, naming it, so a load balancer or a person sees what is wrong.
"""

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
    return JsonResponse({"status": "ok" if ok else "unavailable", "checks": checks}, status=200 if ok else 503)
