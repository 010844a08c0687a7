"""POST /api/reconcile/: run one reconciliation now and answer with the finished run.

Synchronous on purpose: a run over a whole desk takes seconds (bench/reconcile.py),
and a script that asks "are the books right?" wants the answer, not a task id.
The queued variant for people in the admin is /api/reconciliation-runs/start/.
A run that could not reach the exchange is still a run (status "failed", with
the reason): 201 either way; ``status`` in the body says how it ended.
"""

from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from ordermanager.api.schema import errors
from ordermanager.api.views import RoleApiView
from orders.models import ReconciliationRun
from orders.reconcile import reconcile
from orders.reconcile.report import reconcile_run_as_dict

MAX_WAIT_SECONDS = 60


class _CountsOutput(serializers.Serializer):
    checked = serializers.IntegerField()
    updated = serializers.IntegerField()
    backfilled = serializers.IntegerField()
    external = serializers.IntegerField()
    failed = serializers.IntegerField()
    discrepancies = serializers.IntegerField()
    unresolved = serializers.IntegerField()

    class Meta:
        ref_name = "ReconcileCounts"


class _DiscrepancyOutput(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    symbol = serializers.CharField()
    order_link_id = serializers.CharField()
    before = serializers.DictField(help_text="Our values (and the exchange's under 'exchange') before the run.")
    after = serializers.DictField(help_text="Our values after the run (decimals as strings).")
    resolved = serializers.BooleanField()
    note = serializers.CharField()

    class Meta:
        ref_name = "ReconcileDiscrepancy"


class ReconcileRunOutput(serializers.Serializer):
    id = serializers.IntegerField()
    trigger = serializers.ChoiceField(choices=ReconciliationRun.Trigger.choices)
    started_by = serializers.CharField(allow_null=True)
    status = serializers.ChoiceField(choices=ReconciliationRun.Status.choices)
    symbol = serializers.CharField(allow_null=True)
    dry_run = serializers.BooleanField()
    started_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    counts = _CountsOutput()
    error = serializers.CharField()
    discrepancies = _DiscrepancyOutput(many=True)

    class Meta:
        ref_name = "ReconcileRunResult"


class ReconcileApi(RoleApiView):
    required_permissions = {"POST": ("orders.run_reconciliation",)}

    class InputSerializer(serializers.Serializer):
        symbol = serializers.CharField(max_length=30, required=False, allow_blank=True, default="")
        dry_run = serializers.BooleanField(default=False, help_text="Record what differs; change nothing.")
        fix_positions = serializers.BooleanField(
            default=True, help_text="False = --no-fix: leave positions the fills cannot explain (still reduce-only)."
        )
        wait = serializers.IntegerField(
            min_value=0, max_value=MAX_WAIT_SECONDS, default=0,
            help_text="Seconds to wait for a run in progress before answering 409.",
        )  # fmt: skip

        class Meta:
            ref_name = "ReconcileInput"

    @extend_schema(
        operation_id="reconcile_run",
        summary="Run a reconciliation now (synchronous) and return the finished run",
        request=InputSerializer,
        responses={201: ReconcileRunOutput, **errors(400, 409)},
        tags=["reconciliation"],
    )
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        run = reconcile(
            trigger=ReconciliationRun.Trigger.API,
            user=request.user,
            symbol=values["symbol"] or None,
            dry_run=values["dry_run"],
            fix_positions=values["fix_positions"],
            wait=values["wait"],
        )
        return Response(reconcile_run_as_dict(run), status=status.HTTP_201_CREATED)


# Included under /api/ by ordermanager/api/urls.py (see the RECON report).
urlpatterns = [path("reconcile/", ReconcileApi.as_view(), name="reconcile")]
