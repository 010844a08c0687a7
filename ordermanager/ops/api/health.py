"""GET /api/health/: every moving part, for other services and monitoring."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from ordermanager.api.schema import errors
from ordermanager.api.views import RoleApiView
from ordermanager.dashboard.selectors import DOWN, health_components
from ordermanager.ops.alerts import alerts_evaluate

COMPONENT_STATES = ["ok", "stale", "down", "unknown"]
OVERALL_STATES = ["ok", "degraded"]


class ComponentOutput(serializers.Serializer):
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=COMPONENT_STATES)
    last_seen = serializers.DateTimeField(allow_null=True)
    detail = serializers.CharField(allow_blank=True)

    class Meta:
        ref_name = "ComponentHealth"


class AlertOutput(serializers.Serializer):
    key = serializers.CharField(help_text="the alert, or alert:subject (e.g. heartbeat_age:consumer)")
    title = serializers.CharField()
    reason = serializers.CharField(help_text="what was measured against which ALERT_* threshold")
    since = serializers.DateTimeField(allow_null=True, help_text="when it started firing")

    class Meta:
        ref_name = "FiringAlert"


class HealthOutput(serializers.Serializer):
    status = serializers.ChoiceField(choices=OVERALL_STATES,
                                     help_text="degraded when a component is down or an alert fires.")
    components = ComponentOutput(many=True)
    alerts = AlertOutput(many=True, help_text="the alert thresholds that fire now (docs/decisions/0524)")

    class Meta:
        ref_name = "Health"


class HealthApi(RoleApiView):
    required_permissions = {"GET": ()}  # any authenticated caller

    @extend_schema(operation_id="health",
                   summary="Health of database, consumer, ws-gateway link, exchange, jobs; firing alerts",
                   responses={200: HealthOutput, **errors()}, tags=["health"])
    def get(self, request):
        components = health_components()
        alerts = [c for c in alerts_evaluate() if c.firing]
        overall = "degraded" if alerts or any(c.status == DOWN for c in components) else "ok"
        return Response(HealthOutput({"status": overall, "components": components, "alerts": alerts}).data)
