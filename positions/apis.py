"""API views for positions and their snapshots."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from ordermanager.api.fields import OutputModelSerializer
from ordermanager.api.schema import errors
from ordermanager.api.utils import CURSOR_PARAMETERS, filter_parameters, paginated, paginated_response
from ordermanager.api.views import RoleApiView
from positions.models import Position, PositionSnapshot
from positions.selectors import PositionFilter, SnapshotFilter, position_get, position_list, position_snapshot_list


class PositionOutput(OutputModelSerializer):
    class Meta:
        model = Position
        ref_name = "Position"
        fields = [
            "id", "category", "symbol", "position_idx", "mode", "size", "avg_entry_price", "mark_price",
            "unrealized_pnl", "realized_pnl", "fees_paid", "funding_paid", "last_exec_time", "updated_at",
        ]  # fmt: skip


class SnapshotOutput(OutputModelSerializer):
    class Meta:
        model = PositionSnapshot
        ref_name = "PositionSnapshot"
        fields = ["id", "taken_at", "size", "avg_entry_price", "mark_price", "realized_pnl", "unrealized_pnl"]


class PositionListApi(RoleApiView):
    required_permissions = {"GET": ("positions.view_position",)}

    @extend_schema(
        operation_id="positions_list",
        summary="Positions (one row per symbol in one-way mode, one per side in hedge mode)",
        parameters=filter_parameters(PositionFilter),
        responses={200: PositionOutput(many=True), **errors(400)},
        tags=["positions"],
    )
    def get(self, request):
        # Bounded by the number of symbols traded: no pagination needed.
        return Response(PositionOutput(position_list(filters=request.query_params), many=True).data)


class PositionDetailApi(RoleApiView):
    required_permissions = {"GET": ("positions.view_position",)}

    @extend_schema(
        operation_id="positions_retrieve", responses={200: PositionOutput, **errors(404)}, tags=["positions"]
    )
    def get(self, request, position_id: int):
        return Response(PositionOutput(position_get(position_id=position_id)).data)


class PositionSnapshotListApi(RoleApiView):
    required_permissions = {"GET": ("positions.view_position", "positions.view_positionsnapshot")}

    @extend_schema(
        operation_id="positions_snapshots_list",
        summary="Snapshots of one position, newest first",
        parameters=filter_parameters(SnapshotFilter) + CURSOR_PARAMETERS,
        responses={200: paginated(SnapshotOutput, "PaginatedPositionSnapshotList"), **errors(400, 404)},
        tags=["positions"],
    )
    def get(self, request, position_id: int):
        position = position_get(position_id=position_id)
        rows = position_snapshot_list(position=position, filters=request.query_params)
        return paginated_response(queryset=rows, serializer_class=SnapshotOutput, request=request, view=self)
