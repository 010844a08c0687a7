"""The signal inbox: status, reason, the orders each signal produced, the raw payload."""

from __future__ import annotations

import uuid

from django.contrib import admin
from django.db.models import Count, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils.html import format_html
from django.utils.text import Truncator

from ordermanager.core.admin_tools import ReadOnlyAdmin, choices_filter, money, pretty_json, status_badge, usdt
from orders.models import SignalOrderRelationship
from signals_app.models import TradingSignal


class OrdersInline(admin.TabularInline):
    model = SignalOrderRelationship
    fk_name = "signal"
    extra = 0
    can_delete = False
    verbose_name = "order produced"
    verbose_name_plural = "orders produced"
    fields = ("order_col", "symbol", "side", "order_type", "qty", "price", "status", "filled", "allocation_amount",
              "role")
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("order")

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="order")
    def order_col(self, obj):
        url = reverse("admin:orders_order_change", args=[obj.order_id])
        return format_html('<a href="{}">{}</a>', url, obj.order.order_link_id)

    def symbol(self, obj):
        return obj.order.symbol

    def side(self, obj):
        return obj.order.side

    def order_type(self, obj):
        return obj.order.order_type

    def qty(self, obj):
        return money(obj.order.qty)

    def price(self, obj):
        return money(obj.order.price)

    def status(self, obj):
        return status_badge(obj.order.status, obj.order.get_status_display())

    def filled(self, obj):
        return money(obj.order.filled_qty)


@admin.register(TradingSignal)
class TradingSignalAdmin(ReadOnlyAdmin):
    list_display = (
        "signal_id", "signal_type", "asset", "amount_col", "confidence", "strategy_id", "status_col", "reason_col",
        "orders_col", "received_at",
    )  # fmt: skip
    list_filter = (
        "status", choices_filter("signal_type", [("buy", "buy"), ("sell", "sell")], "signal type"),
        choices_filter("source", [("amqp", "amqp"), ("api", "api"), ("cli", "cli")]), "is_warmup",
        ("received_at", admin.DateFieldListFilter),
    )  # fmt: skip
    search_fields = ("=signal_id",)
    search_help_text = "Exact signal id (UUID) or trace id."
    ordering = ("-id",)
    inlines = (OrdersInline,)
    exclude = ("raw_payload",)
    readonly_fields = ("payload",)

    def get_queryset(self, request):
        # Orders per signal as a correlated COUNT on the (signal) index, only for the rows shown.
        count = (
            SignalOrderRelationship.objects.filter(signal=OuterRef("pk"))
            .order_by()
            .values("signal")
            .annotate(n=Count("id"))
            .values("n")
        )
        return super().get_queryset(request).defer("raw_payload").annotate(orders_n=Coalesce(Subquery(count), 0))

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        match = Q(trace_id=term)  # partial index signal_trace
        try:
            match |= Q(signal_id=uuid.UUID(term))  # a 32-hex trace id parses as a UUID too: try both
        except ValueError:
            pass
        return queryset.filter(match), False

    @admin.display(description="amount")
    def amount_col(self, obj):
        return usdt(obj.amount)

    @admin.display(description="status", ordering="status")
    def status_col(self, obj):
        return status_badge(obj.status, obj.get_status_display())

    @admin.display(description="reason")
    def reason_col(self, obj):
        return Truncator(obj.reason).chars(80)

    @admin.display(description="orders")
    def orders_col(self, obj):
        if not obj.orders_n:
            return 0
        url = reverse("admin:orders_order_changelist") + f"?q={obj.signal_id}"
        return format_html('<a href="{}">{}</a>', url, obj.orders_n)

    @admin.display(description="raw payload")
    def payload(self, obj):
        return pretty_json(obj.raw_payload)
