"""Signal inbox read API (list, detail with the orders each produced).

``POST /api/signals/`` (intake) is signals_app.apis; ordermanager/ops/api/urls.py
routes both methods of that path (see SignalCollectionApi there).
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from ordermanager.api.fields import MoneyField, OutputModelSerializer
from ordermanager.api.schema import errors
from ordermanager.api.utils import CURSOR_PARAMETERS, filter_parameters, paginated, paginated_response
from ordermanager.api.views import RoleApiView
from orders.models import LEG_ROLE_HELP, LegRole
from signals_app.apis import SignalCreateApi
from signals_app.models import TradingSignal
from signals_app.selectors import SignalFilter, signal_get, signal_list

SIGNAL_FIELDS = [
    "id", "signal_id", "signal_type", "asset", "amount", "confidence", "strategy_id", "model_version", "is_warmup",
    "urgency", "signal_timestamp", "snapshot_price", "snapshot_spread", "trace_id", "source", "status", "reason",
    "received_at", "processed_at",
]  # fmt: skip


class SignalOutput(OutputModelSerializer):
    class Meta:
        model = TradingSignal
        ref_name = "Signal"
        fields = SIGNAL_FIELDS


class SignalOrderOutput(serializers.Serializer):
    order_link_id = serializers.CharField(source="order.order_link_id")
    order_id = serializers.CharField(source="order.order_id")
    symbol = serializers.CharField(source="order.symbol")
    side = serializers.CharField(source="order.side")
    order_type = serializers.CharField(source="order.order_type")
    qty = MoneyField(source="order.qty")
    price = MoneyField(source="order.price", allow_null=True)
    status = serializers.CharField(source="order.status")
    filled_qty = MoneyField(source="order.filled_qty")
    avg_fill_price = MoneyField(source="order.avg_fill_price", allow_null=True)
    allocation_amount = MoneyField()
    role = serializers.ChoiceField(choices=[("", "not recorded"), *LegRole.choices], help_text=LEG_ROLE_HELP)

    class Meta:
        ref_name = "SignalOrder"


class SignalDetailOutput(SignalOutput):
    orders = SignalOrderOutput(source="order_links", many=True)

    class Meta(SignalOutput.Meta):
        ref_name = "SignalDetail"
        fields = SIGNAL_FIELDS + ["raw_payload", "orders"]


class SignalListApi(RoleApiView):
    required_permissions = {"GET": ("signals_app.view_tradingsignal",)}

    @extend_schema(
        operation_id="signals_list",
        summary="Signals in arrival order, newest first",
        parameters=filter_parameters(SignalFilter) + CURSOR_PARAMETERS,
        responses={200: paginated(SignalOutput, "PaginatedSignalList"), **errors(400)},
        tags=["signals"],
    )
    def get(self, request):
        rows = signal_list(filters=request.query_params)
        return paginated_response(queryset=rows, serializer_class=SignalOutput, request=request, view=self)


class SignalDetailApi(RoleApiView):
    required_permissions = {"GET": ("signals_app.view_tradingsignal",)}

    @extend_schema(
        operation_id="signals_retrieve",
        summary="One signal with its raw payload and the orders it produced",
        responses={200: SignalDetailOutput, **errors(404)},
        tags=["signals"],
    )
    def get(self, request, signal_id):
        return Response(SignalDetailOutput(signal_get(signal_id=signal_id)).data)


# GET (list, here) and POST (intake, signals_app.apis) share /api/signals/: one class, each method keeping its
# own permissions, parser and schema. (A comment, not a docstring: the schema would take it as a description.)
class SignalCollectionApi(SignalListApi, SignalCreateApi):
    required_permissions = {**SignalListApi.required_permissions, **SignalCreateApi.required_permissions}
