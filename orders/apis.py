"""API views for orders, fills, risk limits, reconciliation and the PnL report.

One APIView per operation: parse (Input/Filter), call one selector or
service, render (Output). Errors are raised and rendered once by
ordermanager.api.exception_handler as {"code", "message", "extra"}.

Reconciliation: runs (list, one run), a synchronous run and a queued start with its task.
POST /api/reconcile/ runs one reconciliation now and answers with the finished run.
Synchronous on purpose: a run over a whole desk takes seconds (bench/reconcile.py),
and a script that asks "are the books right?" wants the answer, not a task id.
The queued variant for people in the admin is /api/reconciliation-runs/start/.
A run that could not reach the exchange is still a run (status "failed", with
the reason): 201 either way; ``status`` in the body says how it ended. The run it
answers with is rendered by the same serializer as GET /api/reconciliation-runs/<id>/
(``ReconciliationRunDetailOutput``).
"""

from __future__ import annotations

from datetime import timedelta

from django.urls import reverse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.response import Response

from ordermanager.api.fields import MoneyField, OutputModelSerializer
from ordermanager.api.schema import errors
from ordermanager.api.utils import CURSOR_PARAMETERS, filter_parameters, paginated, paginated_response
from ordermanager.api.views import RoleApiView
from ordermanager.core.exceptions import ApplicationError, Conflict
from orders.models import (
    LEG_ROLE_HELP,
    CancelReason,
    Discrepancy,
    Execution,
    LegRole,
    Order,
    ReconciliationRun,
    RiskLimit,
)
from orders.reconcile import reconcile
from orders.reconcile.report import run_counts
from orders.reconcile.start import TaskStatus, reconciliation_queue, reconciliation_task_status
from orders.selectors.executions import ExecutionFilter, execution_list
from orders.selectors.orders import OrderFilter, order_get, order_list
from orders.selectors.pnl import GROUPINGS, pnl_report
from orders.selectors.reconciliation import ReconciliationRunFilter, reconciliation_run_get, reconciliation_run_list
from orders.selectors.risk_limits import risk_limit_get, risk_limit_list
from orders.services.cancellation import CancelResult, order_cancel
from orders.services.risk_limit_changes import (
    MSG_TOO_LARGE,
    MSG_TOO_PRECISE,
    risk_limit_create,
    risk_limit_update,
    trading_halt_set,
)

# --- orders ------------------------------------------------------------------------------


class SignalLinkOutput(serializers.Serializer):
    signal_id = serializers.UUIDField(source="signal.signal_id")
    allocation_amount = MoneyField()
    role = serializers.ChoiceField(choices=[("", "not recorded"), *LegRole.choices], help_text=LEG_ROLE_HELP)


class OrderOutput(OutputModelSerializer):
    signals = SignalLinkOutput(source="signal_links", many=True)

    class Meta:
        model = Order
        ref_name = "Order"
        fields = [
            "id", "order_link_id", "order_id", "category", "symbol", "side", "order_type", "time_in_force", "qty",
            "price", "post_only", "reduce_only", "position_idx", "leg", "status", "filled_qty", "avg_fill_price",
            "cum_exec_value", "fees", "reject_code", "reject_reason", "cancel_reason", "cancel_note", "is_dry_run",
            "is_external", "strategy_id", "trace_id", "submitted_at", "created_at", "updated_at", "signals",
        ]  # fmt: skip


class ExecutionOutput(OutputModelSerializer):
    class Meta:
        model = Execution
        ref_name = "Execution"
        fields = [
            "id", "exec_id", "order_link_id", "exchange_order_id", "category", "symbol", "side", "exec_type",
            "exec_qty", "exec_price", "exec_value", "exec_fee", "fee_currency", "is_maker", "closed_size",
            "position_idx", "exec_time", "source", "created_at",
        ]  # fmt: skip


class OrderDetailOutput(OrderOutput):
    executions = ExecutionOutput(many=True)
    cancelled_by = serializers.CharField(source="cancelled_by.username", allow_null=True, default=None)

    class Meta(OrderOutput.Meta):
        ref_name = "OrderDetail"
        fields = OrderOutput.Meta.fields + ["cancelled_by", "executions"]


class OrderListApi(RoleApiView):
    required_permissions = {"GET": ("orders.view_order",)}

    @extend_schema(
        operation_id="orders_list",
        summary="List orders, newest first",
        parameters=filter_parameters(OrderFilter) + CURSOR_PARAMETERS,
        responses={200: paginated(OrderOutput, "PaginatedOrderList"), **errors(400)},
        tags=["orders"],
    )
    def get(self, request):
        orders = order_list(filters=request.query_params)
        return paginated_response(queryset=orders, serializer_class=OrderOutput, request=request, view=self)


class OrderDetailApi(RoleApiView):
    required_permissions = {"GET": ("orders.view_order",)}

    @extend_schema(
        operation_id="orders_retrieve",
        summary="One order with its fills and signals",
        responses={200: OrderDetailOutput, **errors(404)},
        tags=["orders"],
    )
    def get(self, request, order_link_id: str):
        return Response(OrderDetailOutput(order_get(order_link_id=order_link_id)).data)


class OrderNotCancellable(Conflict):
    code = "order_not_cancellable"


class ExchangeError(ApplicationError):
    code = "exchange_error"
    http_status = 503


# The API's one mapping of cancel results: a settled request answers with a status, the others raise the
# error the exception handler renders.
_CANCEL_SETTLED = {
    CancelResult.CANCELLED: status.HTTP_202_ACCEPTED,
    CancelResult.ALREADY_CLOSED: status.HTTP_200_OK,
    CancelResult.DRY_RUN: status.HTTP_200_OK,
}
_CANCEL_REFUSED = {
    CancelResult.NOT_CANCELLABLE: (OrderNotCancellable, "Order {order_link_id} cannot be cancelled: {why}."),
    CancelResult.ERROR: (ExchangeError, "The exchange refused or did not answer the cancel: {why}"),
}


class OrderCancelApi(RoleApiView):
    required_permissions = {"POST": ("orders.cancel_order",)}

    class InputSerializer(serializers.Serializer):
        reason = serializers.ChoiceField(choices=CancelReason.choices, default=CancelReason.MANUAL)
        note = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")

        class Meta:
            ref_name = "OrderCancelInput"

    class OutputSerializer(serializers.Serializer):
        order_link_id = serializers.CharField()
        result = serializers.ChoiceField(choices=[result.value for result in _CANCEL_SETTLED])
        message = serializers.CharField()
        status = serializers.CharField(help_text="The order's status after the request (pending_cancel until the "
                                                 "exchange confirms).")

        class Meta:
            ref_name = "OrderCancelOutcome"

    @extend_schema(
        operation_id="orders_cancel",
        summary="Cancel an open order on the exchange",
        request=InputSerializer,
        responses={
            202: OpenApiResponse(OutputSerializer, description="The exchange accepted the cancel."),
            200: OpenApiResponse(OutputSerializer, description="Nothing to cancel (already closed) or dry-run."),
            **errors(400, 404, 409, 503),
        },
        tags=["orders"],
    )
    def post(self, request, order_link_id: str):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        order = order_get(order_link_id=order_link_id)
        outcome = order_cancel(order=order, user=request.user, **data.validated_data)
        if outcome.result in _CANCEL_REFUSED:
            error, text = _CANCEL_REFUSED[outcome.result]
            raise error(text.format(order_link_id=order_link_id, why=outcome.message))
        order.refresh_from_db(fields=["status"])
        body = {**outcome.__dict__, "status": order.status}
        return Response(body, status=_CANCEL_SETTLED[outcome.result])


# --- executions ----------------------------------------------------------------------------


class ExecutionListApi(RoleApiView):
    required_permissions = {"GET": ("orders.view_execution",)}

    @extend_schema(
        operation_id="executions_list",
        summary="List fills and other executions (funding, ...), newest first",
        parameters=filter_parameters(ExecutionFilter) + CURSOR_PARAMETERS,
        responses={200: paginated(ExecutionOutput, "PaginatedExecutionList"), **errors(400)},
        tags=["executions"],
    )
    def get(self, request):
        rows = execution_list(filters=request.query_params)
        return paginated_response(queryset=rows, serializer_class=ExecutionOutput, request=request, view=self)


# --- risk limits ------------------------------------------------------------------------------


class RiskLimitOutput(OutputModelSerializer):
    updated_by = serializers.CharField(source="updated_by.username", allow_null=True, default=None)
    is_global = serializers.SerializerMethodField()

    class Meta:
        model = RiskLimit
        ref_name = "RiskLimit"
        fields = [
            "id", "symbol", "is_global", "max_position_size", "max_position_value", "max_exposure",
            "max_order_size_ratio",
            "trading_halted", "reduce_only", "halt_reason", "updated_by", "updated_at",
        ]  # fmt: skip

    def get_is_global(self, obj) -> bool:
        return obj.symbol == ""


def _amount_errors(name: str) -> dict:
    # DRF's digit checks name no unit nor the largest amount the column holds: say both (decision 0317).
    return {"max_digits": MSG_TOO_LARGE[name], "max_whole_digits": MSG_TOO_LARGE[name],
            "max_decimal_places": MSG_TOO_PRECISE}


class _RiskLimitFields(serializers.Serializer):
    max_position_size = serializers.DecimalField(
        max_digits=36, decimal_places=18, required=False, allow_null=True,
        error_messages=_amount_errors("max_position_size"),
        help_text="Largest position per symbol in base-currency units (e.g. BTC for BTCUSDT), resting orders on "
                  "the same side included; null = no limit in base units.",
    )  # fmt: skip
    max_position_value = serializers.DecimalField(
        max_digits=36, decimal_places=18, required=False, allow_null=True,
        error_messages=_amount_errors("max_position_value"),
        help_text="Largest position value per symbol in USDT, resting orders on the same side included; "
                  "null = no limit in USDT.",
    )  # fmt: skip
    max_exposure = serializers.DecimalField(
        max_digits=36, decimal_places=18, required=False, error_messages=_amount_errors("max_exposure"),
        help_text="Largest total value across symbols in USDT: positions plus resting orders.",
    )
    max_order_size_ratio = serializers.DecimalField(max_digits=6, decimal_places=5, required=False)
    trading_halted = serializers.BooleanField(required=False)
    reduce_only = serializers.BooleanField(required=False)
    halt_reason = serializers.CharField(max_length=500, required=False, allow_blank=True)
    reason = serializers.CharField(
        max_length=500, required=False, allow_blank=True, default="", help_text="Why; kept in the audit trail."
    )


class RiskLimitListApi(RoleApiView):
    required_permissions = {"GET": ("orders.view_risklimit",)}

    @extend_schema(
        operation_id="risk_limits_list",
        summary="Global risk limits and per-symbol overrides",
        responses={200: RiskLimitOutput(many=True), **errors()},
        tags=["risk limits"],
    )
    def get(self, request):
        return Response(RiskLimitOutput(risk_limit_list(), many=True).data)


class RiskLimitCreateApi(RoleApiView):
    required_permissions = {"POST": ("orders.add_risklimit",)}

    class InputSerializer(_RiskLimitFields):
        symbol = serializers.CharField(max_length=30)

        class Meta:
            ref_name = "RiskLimitCreateInput"

    @extend_schema(
        operation_id="risk_limits_create",
        summary="Add a per-symbol override (unset amounts start from the global row)",
        request=InputSerializer,
        responses={201: RiskLimitOutput, **errors(400)},
        tags=["risk limits"],
    )
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        symbol, reason = values.pop("symbol"), values.pop("reason")
        row = risk_limit_create(symbol=symbol, values=values, user=request.user, reason=reason, source="api")
        return Response(RiskLimitOutput(row).data, status=status.HTTP_201_CREATED)


class RiskLimitDetailApi(RoleApiView):
    required_permissions = {"GET": ("orders.view_risklimit",)}

    @extend_schema(
        operation_id="risk_limits_retrieve", responses={200: RiskLimitOutput, **errors(404)}, tags=["risk limits"]
    )
    def get(self, request, risk_limit_id: int):
        return Response(RiskLimitOutput(risk_limit_get(risk_limit_id=risk_limit_id)).data)


class RiskLimitUpdateApi(RoleApiView):
    required_permissions = {"POST": ("orders.change_risklimit",)}

    class InputSerializer(_RiskLimitFields):
        class Meta:
            ref_name = "RiskLimitUpdateInput"

    @extend_schema(
        operation_id="risk_limits_update",
        summary="Change some fields of one risk-limit row (audited with before/after)",
        request=InputSerializer,
        responses={200: RiskLimitOutput, **errors(400, 404)},
        tags=["risk limits"],
    )
    def post(self, request, risk_limit_id: int):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        changes = dict(data.validated_data)
        reason = changes.pop("reason")
        row = risk_limit_get(risk_limit_id=risk_limit_id)
        row = risk_limit_update(risk_limit=row, changes=changes, user=request.user, reason=reason, source="api")
        return Response(RiskLimitOutput(risk_limit_get(risk_limit_id=row.pk)).data)


class TradingHaltApi(RoleApiView):
    required_permissions = {"POST": ("orders.change_risklimit",)}

    class InputSerializer(serializers.Serializer):
        halted = serializers.BooleanField(help_text="true halts all trading, false resumes it.")
        reason = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")

        class Meta:
            ref_name = "TradingHaltInput"

    @extend_schema(
        operation_id="trading_halt_set",
        summary="Halt or resume all trading (the global switch)",
        request=InputSerializer,
        responses={200: RiskLimitOutput, **errors(400)},
        tags=["risk limits"],
    )
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        row = trading_halt_set(user=request.user, source="api", **data.validated_data)
        return Response(RiskLimitOutput(risk_limit_get(risk_limit_id=row.pk)).data)


# --- reconciliation ----------------------------------------------------------------------------

MAX_WAIT_SECONDS = 60  # POST /api/reconcile/: longest wait for a run in progress


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


# --- PnL report ----------------------------------------------------------------------------------


class PnlRowOutput(serializers.Serializer):
    symbol = serializers.CharField(help_text="Blank when grouped by strategy only, and in the total.")
    strategy = serializers.CharField(help_text="Blank when grouped by symbol only; '(none)' for orders without one.")
    realized_pnl = MoneyField(help_text="Gross realized PnL of fills in the period (average-cost method).")
    unrealized_pnl = MoneyField(allow_null=True, help_text="Open positions now; by symbol only (null otherwise).")
    fees = MoneyField(help_text="Trading fees paid in the period (negative = rebates).")
    funding = MoneyField(help_text="Funding paid in the period (negative = received).")
    net_pnl = MoneyField(help_text="realized_pnl - fees - funding.")
    volume = MoneyField(help_text="Traded notional in the period.")
    trades = serializers.IntegerField()

    class Meta:
        ref_name = "PnlRow"


class PnlReportApi(RoleApiView):
    required_permissions = {"GET": ("orders.view_execution", "positions.view_position")}

    class FilterSerializer(serializers.Serializer):
        start = serializers.DateTimeField(required=False, help_text="Inclusive, ISO 8601. Default: 24 h ago.")
        end = serializers.DateTimeField(required=False, help_text="Exclusive, ISO 8601. Default: now.")
        group_by = serializers.ChoiceField(choices=GROUPINGS, default="symbol")
        symbol = serializers.CharField(required=False, max_length=30)
        strategy = serializers.CharField(required=False, max_length=100)

    class OutputSerializer(serializers.Serializer):
        start = serializers.DateTimeField()
        end = serializers.DateTimeField()
        group_by = serializers.CharField()
        rows = PnlRowOutput(many=True)
        total = PnlRowOutput()

        class Meta:
            ref_name = "PnlReport"

    @extend_schema(
        operation_id="reports_pnl",
        summary="Realized and unrealized PnL, fees and funding by symbol and/or strategy over a period",
        parameters=[
            OpenApiParameter("start", OpenApiTypes.DATETIME, description="Inclusive. Default: 24 h ago."),
            OpenApiParameter("end", OpenApiTypes.DATETIME, description="Exclusive. Default: now."),
            OpenApiParameter("group_by", OpenApiTypes.STR, enum=list(GROUPINGS), description="Default: symbol."),
            OpenApiParameter("symbol", OpenApiTypes.STR),
            OpenApiParameter("strategy", OpenApiTypes.STR),
        ],
        responses={200: OutputSerializer, **errors(400)},
        tags=["reports"],
    )
    def get(self, request):
        params = self.FilterSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        args = dict(params.validated_data)
        args.setdefault("end", timezone.now())
        args.setdefault("start", args["end"] - timedelta(days=1))
        if args.get("symbol"):
            args["symbol"] = args["symbol"].upper()
        return Response(self.OutputSerializer(pnl_report(**args)).data)

