"""``GET /metrics``: the Prometheus text exposition, for a staff login, an API key or an allowed address.

Access (docs/decisions/0525-metrics-multiprocess.md): a client whose address is in
``METRICS_ALLOWED_NETWORKS`` scrapes without credentials (the usual Prometheus setup); anyone else
authenticates as for the API: ``Authorization: Api-Key <key>`` (Prometheus' ``authorization`` block with
``type: Api-Key``) or a staff session. Without them the answer is 401 (403 for a non-staff login), in the
API's error envelope, never the metrics.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from rest_framework.permissions import BasePermission
from rest_framework.views import APIView

from ordermanager.core.models import ApiKey
from ordermanager.ops.metrics_collector import metrics_render


def client_address_allowed(address: str | None) -> bool:
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    return any(ip in network for network in settings.METRICS_ALLOWED_NETWORKS)


class MetricsAccess(BasePermission):
    message = "Metrics need a staff login, an API key or a client address in METRICS_ALLOWED_NETWORKS."

    def has_permission(self, request, view):
        # REMOTE_ADDR is the peer (uvicorn puts a trusted local proxy's X-Forwarded-For there, nothing else).
        if client_address_allowed(request.META.get("REMOTE_ADDR")):
            return True
        user = request.user
        if not (user and user.is_authenticated):
            return False
        return isinstance(request.auth, ApiKey) or user.is_staff


class MetricsView(APIView):
    permission_classes = [MetricsAccess]

    @extend_schema(exclude=True)  # Prometheus' format, not part of the JSON API
    def get(self, request):
        # The classic text format: every Prometheus 2.x and 3.x reads it.
        return HttpResponse(metrics_render(), content_type=CONTENT_TYPE_PLAIN_0_0_4)
