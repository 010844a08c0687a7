"""The reconciliation API: runs (list, one run), a synchronous run, and a queued start with its task.

POST /api/reconcile/ runs one reconciliation now and answers with the finished run.
Synchronous on purpose: a run over a whole desk takes seconds (bench/reconcile.py),
and a script that asks "are the books right?" wants the answer, not a task id.
The queued variant for people in the admin is /api/reconciliation-runs/start/.
A run that could not reach the exchange is still a run (status "failed", with
the reason): 201 either way; ``status`` in the body says how it ended.

The run it answers with is rendered by the same serializer as
GET /api/reconciliation-runs/<id>/ (``ReconciliationRunDetailOutput``).
"""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.response import Response

from ordermanager.api.fields import OutputModelSerializer
from ordermanager.api.schema import errors
from ordermanager.api.utils import CURSOR_PARAMETERS, filter_parameters, paginated, paginated_response
from ordermanager.api.views import RoleApiView
from orders.models import Discrepancy, ReconciliationRun
from orders.reconcile import reconcile
from orders.reconcile.report import run_counts
from orders.reconcile.start import TaskStatus, reconciliation_queue, reconciliation_task_status
from orders.selectors.reconciliation import ReconciliationRunFilter, reconciliation_run_get, reconciliation_run_list

MAX_WAIT_SECONDS = 60


class DiscrepancyOutput(OutputModelSerializer):
    class Meta:
        model = Discrepancy
        ref_name = "Discrepancy"
        fields = ["id", "kind", "symbol", "order_link_id", "before", "after", "resolved", "note"]


class ReconciliationRunOutput(OutputModelSerializer):
    started_by = serializers.CharField(source="started_by.username", allow_null=True, default=None)

    class Meta:
        model = ReconciliationRun
        ref_name = "ReconciliationRun"
        fields = [
            "id", "trigger", "started_by", "status", "symbol", "dry_run", "started_at", "finished_at", "checked",
            "updated", "backfilled", "external", "failed", "error", "passes", "last_pass_at",
        ]  # fmt: skip


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


class ReconciliationRunDetailOutput(ReconciliationRunOutput):
    """One run with its discrepancies: the answer of GET /api/reconciliation-runs/<id>/ and of POST /api/reconcile/."""

    counts = serializers.SerializerMethodField()
    discrepancies = DiscrepancyOutput(many=True)

    class Meta(ReconciliationRunOutput.Meta):
        ref_name = "ReconciliationRunDetail"
        fields = ReconciliationRunOutput.Meta.fields + ["counts", "discrepancies"]

    @extend_schema_field(_CountsOutput)
    def get_counts(self, run: ReconciliationRun) -> dict:
        return run_counts(run, list(run.discrepancies.all()))


class ReconciliationRunListApi(RoleApiView):
    required_permissions = {"GET": ("orders.view_reconciliationrun",)}

    @extend_schema(
        operation_id="reconciliation_runs_list",
        parameters=filter_parameters(ReconciliationRunFilter) + CURSOR_PARAMETERS,
        responses={200: paginated(ReconciliationRunOutput, "PaginatedReconciliationRunList"), **errors(400)},
        tags=["reconciliation"],
    )
    def get(self, request):
        runs = reconciliation_run_list(filters=request.query_params)
        return paginated_response(queryset=runs, serializer_class=ReconciliationRunOutput, request=request, view=self)


class ReconciliationRunDetailApi(RoleApiView):
    required_permissions = {"GET": ("orders.view_reconciliationrun",)}

    @extend_schema(
        operation_id="reconciliation_runs_retrieve",
        summary="One run with its discrepancies",
        responses={200: ReconciliationRunDetailOutput, **errors(404)},
        tags=["reconciliation"],
    )
    def get(self, request, run_id: int):
        return Response(ReconciliationRunDetailOutput(reconciliation_run_get(run_id=run_id)).data)


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
        responses={201: ReconciliationRunDetailOutput, **errors(400, 409)},
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
        body = ReconciliationRunDetailOutput(reconciliation_run_get(run_id=run.pk)).data
        return Response(body, status=status.HTTP_201_CREATED)


class ReconciliationTaskOutput(serializers.Serializer):
    task = serializers.CharField()
    state = serializers.ChoiceField(choices=["queued", "succeeded", "failed"])
    run_id = serializers.IntegerField(allow_null=True)
    error = serializers.CharField(allow_blank=True)
    status_url = serializers.CharField()

    class Meta:
        ref_name = "ReconciliationTask"


def _task_body(task_status: TaskStatus) -> dict:
    url = reverse("api:reconciliation-task", kwargs={"task": task_status.task})
    return {**task_status.__dict__, "status_url": url}


class ReconciliationStartApi(RoleApiView):
    required_permissions = {"POST": ("orders.run_reconciliation",)}

    class InputSerializer(serializers.Serializer):
        symbol = serializers.CharField(max_length=30, required=False, allow_blank=True, default="")

        class Meta:
            ref_name = "ReconciliationStartInput"

    @extend_schema(
        operation_id="reconciliation_runs_start",
        summary="Queue a reconciliation run (django-q2); poll status_url for its result",
        request=InputSerializer,
        responses={202: ReconciliationTaskOutput, **errors(400, 409)},
        tags=["reconciliation"],
    )
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        symbol = data.validated_data["symbol"].strip().upper() or None
        task = reconciliation_queue(trigger=ReconciliationRun.Trigger.API, user=request.user, symbol=symbol)
        queued = TaskStatus(task=task, state="queued", run_id=None, error="")
        return Response(_task_body(queued), status=status.HTTP_202_ACCEPTED)


class ReconciliationTaskApi(RoleApiView):
    required_permissions = {"GET": ("orders.view_reconciliationrun",)}

    @extend_schema(
        operation_id="reconciliation_tasks_retrieve",
        summary="State of a queued reconciliation and the run it produced",
        responses={200: ReconciliationTaskOutput, **errors(404)},
        tags=["reconciliation"],
    )
    def get(self, request, task: str):
        return Response(_task_body(reconciliation_task_status(task=task)))
