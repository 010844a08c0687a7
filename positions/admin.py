"""Positions: coloured PnL and snapshots with a chart.

"Validate now" (recompute every position from its fills) needs the fills, which belong to ``orders``:
``orders/admin_positions.py`` extends this admin with it (decision 0421), so positions imports no higher app.
"""

from __future__ import annotations

from django.contrib import admin

from ordermanager.core.admin_tools import ReadOnlyAdmin, money, signed_money, usdt
from ordermanager.core.charts import Series, svg_line_chart
from positions.models import Position, PositionDiscrepancy, PositionLedgerEntry, PositionSnapshot
from positions.selectors import position_snapshot_series


@admin.register(Position)
class PositionAdmin(ReadOnlyAdmin):
    list_display = (
        "symbol", "position_idx", "mode", "size_col", "entry_col", "mark_col", "unrealized_col", "realized_col",
        "fees_col", "funding_col", "updated_at",
    )  # fmt: skip
    list_filter = ("mode", "category", "loss_warning_active")
    search_fields = ("=symbol",)
    ordering = ("symbol", "position_idx")
    change_list_template = "admin/positions/position/change_list.html"
    change_form_template = "admin/positions/position/change_form.html"

    @admin.display(description="size")
    def size_col(self, obj):
        return money(obj.size)

    @admin.display(description="entry")
    def entry_col(self, obj):
        return money(obj.avg_entry_price)

    @admin.display(description="mark")
    def mark_col(self, obj):
        return money(obj.mark_price)

    @admin.display(description="unrealized PnL", ordering="unrealized_pnl")
    def unrealized_col(self, obj):
        return signed_money(obj.unrealized_pnl)

    @admin.display(description="realized PnL", ordering="realized_pnl")
    def realized_col(self, obj):
        return signed_money(obj.realized_pnl)

    @admin.display(description="fees")
    def fees_col(self, obj):
        return usdt(obj.fees_paid)

    @admin.display(description="funding")
    def funding_col(self, obj):
        return usdt(obj.funding_paid)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        position = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if position is not None:
            snapshots = position_snapshot_series(position=position, limit=500)
            extra["pnl_chart"] = svg_line_chart(
                [
                    Series("realized", [(s.taken_at, s.realized_pnl) for s in snapshots]),
                    Series("unrealized", [(s.taken_at, s.unrealized_pnl) for s in snapshots]),
                ],
                title=f"{position.symbol} PnL over time",
            )
            extra["recent_snapshots"] = snapshots[::-1][:20]
        return super().change_view(request, object_id, form_url, extra)


@admin.register(PositionSnapshot)
class PositionSnapshotAdmin(ReadOnlyAdmin):
    list_display = ("position", "taken_at", "size_col", "mark_col", "realized_col", "unrealized_col")
    list_select_related = ("position",)
    raw_id_fields = ("position",)
    list_filter = (("taken_at", admin.DateFieldListFilter),)
    search_fields = ("=position__symbol",)
    ordering = ("-taken_at",)

    @admin.display(description="size")
    def size_col(self, obj):
        return money(obj.size)

    @admin.display(description="mark")
    def mark_col(self, obj):
        return money(obj.mark_price)

    @admin.display(description="realized")
    def realized_col(self, obj):
        return signed_money(obj.realized_pnl)

    @admin.display(description="unrealized")
    def unrealized_col(self, obj):
        return signed_money(obj.unrealized_pnl)


@admin.register(PositionLedgerEntry)
class PositionLedgerEntryAdmin(ReadOnlyAdmin):
    list_display = ("exec_id", "position", "exec_type", "side", "qty", "price", "fee", "size_after",
                    "realized_after", "flag")  # fmt: skip
    list_select_related = ("position",)
    raw_id_fields = ("position",)
    search_fields = ("=exec_id",)
    ordering = ("-id",)


@admin.register(PositionDiscrepancy)
class PositionDiscrepancyAdmin(ReadOnlyAdmin):
    list_display = ("detected_at", "symbol", "position_idx", "kind", "repaired", "note")
    list_filter = ("kind", "repaired")
    search_fields = ("=symbol",)
    raw_id_fields = ("position",)
    ordering = ("-detected_at",)
