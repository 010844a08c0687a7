"""The signals API: POST /api/signals/, the HTTP door of signal intake (same contract, same service as AMQP),
and the inbox read API (list, detail with the orders each produced). GET and POST share /api/signals/:
``SignalCollectionApi`` is one class whose methods each keep their own permissions, parser and schema."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import parsers, serializers, status
from rest_framework.response import Response

from ordermanager.api.fields import MoneyField, OutputModelSerializer
from ordermanager.api.schema import errors
from ordermanager.api.utils import CURSOR_PARAMETERS, filter_parameters, paginated, paginated_response
from ordermanager.api.views import RoleApiView
from ordermanager.core.exceptions import ApplicationError
from ordermanager.tracing import HEADER as TRACEPARENT_HEADER
from orders.models import LEG_ROLE_HELP, LegRole
from signals_app.models import TradingSignal
from signals_app.selectors import SignalFilter, signal_get, signal_list
from signals_app.services.intake import signal_intake


class RawJSONParser(parsers.BaseParser):
    """Hands the request body to the intake untouched: DRF's JSON parser would turn numbers into floats."""

    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        return stream.read() if stream is not None else b""


class SignalInvalidError(ApplicationError):
    code = "invalid_signal"
    http_status = 400


class SignalCreateApi(RoleApiView):
    required_permissions = {"POST": ("signals_app.add_tradingsignal",)}
    parser_classes = [RawJSONParser]

    class InputSerializer(serializers.Serializer):
        """Documentation only: the body is validated by the contract parser (numbers may be strings)."""

        signal_id = serializers.UUIDField()
        signal_type = serializers.ChoiceField(choices=["buy", "sell"])
        asset = serializers.RegexField(r"^[A-Z0-9]{2,20}$")
        amount = serializers.CharField(help_text="USDT, > 0; JSON number or decimal string")
        confidence = serializers.DecimalField(max_digits=12, decimal_places=10, min_value=0, max_value=1)
        timestamp = serializers.DateTimeField()
        strategy_id = serializers.CharField(max_length=100)
        model_version = serializers.CharField(required=False, allow_null=True)
        is_warmup = serializers.BooleanField(required=False)
        market_data_snapshot = serializers.DictField(required=False, allow_null=True)
        metadata = serializers.DictField(required=False, allow_null=True)
        trace_id = serializers.CharField(required=False, allow_null=True, max_length=64)

        class Meta:
            ref_name = "SignalInput"

    class OutputSerializer(serializers.Serializer):
        signal_id = serializers.UUIDField()
        status = serializers.CharField()
        reason = serializers.CharField()
        created = serializers.BooleanField(help_text="False when the signal_id was already in the inbox.")

        class Meta:
            ref_name = "SignalAccepted"

    @extend_schema(
        operation_id="signals_create",
        summary="Submit a trading signal (the message contract of the signal queue)",
        request=InputSerializer,
        parameters=[OpenApiParameter(
            TRACEPARENT_HEADER, str, OpenApiParameter.HEADER, required=False,
            description="W3C trace context (version-traceid-parentid-flags, lowercase hex). When valid its trace-id "
                        "becomes the signal's trace id (over the body's trace_id); a missing or invalid header never "
                        "refuses the signal (docs/decisions/0322).")],
        responses={201: OutputSerializer, 200: OutputSerializer, **errors(400)},
        examples=[OpenApiExample("limit buy", request_only=True, value={
            "signal_id": "0b7f3c2e-6a51-4c1d-9a0e-3f1d2b7c9e10", "signal_type": "buy", "asset": "BTCUSDT",
            "amount": "1000.00", "confidence": 0.72, "timestamp": "2026-11-23T10:15:00.123Z",
            "strategy_id": "momentum_v1", "market_data_snapshot": {"price": "64250.5", "spread": "1.5"}})],
        tags=["signals"],
    )
    def post(self, request):
        result = signal_intake(payload=request.data or b"", source="api",
                               traceparent=request.headers.get(TRACEPARENT_HEADER))
        if result.rejected_reason:
            extra = {"signal_id": str(result.signal.signal_id) if result.signal else None,
                     "stored": bool(result.signal and result.created)}
            raise SignalInvalidError(result.rejected_reason, extra=extra)
        signal = result.signal
        body = {"signal_id": signal.signal_id, "status": signal.status, "reason": signal.reason,
                "created": result.created}
        code = status.HTTP_201_CREATED if result.created else status.HTTP_200_OK
        return Response(self.OutputSerializer(body).data, status=code)


# --- the inbox, read ------------------------------------------------------------------------------

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


# /api/signals/: GET lists the inbox, POST is the intake (no docstring: it would become both operations' text).
class SignalCollectionApi(SignalListApi, SignalCreateApi):
    required_permissions = {**SignalListApi.required_permissions, **SignalCreateApi.required_permissions}
