"""GET /api/health/: every moving part, for other services and monitoring."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from ordermanager.api.schema import errors
from ordermanager.api.views import RoleApiView
from ordermanager.dashboard.selectors import DOWN, health_components

COMPONENT_STATES = ["ok", "stale", "down", "unknown"]
OVERALL_STATES = ["ok", "degraded"]


class ComponentOutput(serializers.Serializer):
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=COMPONENT_STATES)
    last_seen = serializers.DateTimeField(allow_null=True)
    detail = serializers.CharField(allow_blank=True)

    class Meta:
        ref_name = "ComponentHealth"


class HealthOutput(serializers.Serializer):
    status = serializers.ChoiceField(choices=OVERALL_STATES, help_text="degraded when a component is down.")
    components = ComponentOutput(many=True)

    class Meta:
        ref_name = "Health"


class HealthApi(RoleApiView):
    required_permissions = {"GET": ()}  # any authenticated caller

    @extend_schema(operation_id="health", summary="Health of database, consumer, ws-gateway link, exchange, jobs",
                   responses={200: HealthOutput, **errors()}, tags=["health"])
    def get(self, request):
        components = health_components()
        overall = "degraded" if any(c.status == DOWN for c in components) else "ok"
        return Response(HealthOutput({"status": overall, "components": components}).data)
