"""Exchange rule cache and the audit of every exchange request (secrets are never stored)."""

from __future__ import annotations

import json
import re

from django.contrib import admin
from django.db.models import Q
from django.utils.html import format_html

from exchange.models import EXCHANGE_CALL_FAILED, ExchangeCall, Instrument
from ordermanager.core.admin_tools import ReadOnlyAdmin, choices_filter, money, pretty_json, usdt

# Belt and braces: the client redacts before storing; the admin redacts again on display.
_SECRET_KEYS = re.compile(r"(secret|sign|api[_-]?key|password|token)", re.IGNORECASE)


def _redacted(value):
    if isinstance(value, dict):
        return {k: "***" if _SECRET_KEYS.search(str(k)) else _redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v) for v in value]
    return value


@admin.register(Instrument)
class InstrumentAdmin(ReadOnlyAdmin):
    list_display = ("symbol", "category", "status", "tick", "step", "min_qty", "min_notional_col", "fetched_at")
    list_filter = ("category", "status")
    search_fields = ("=symbol",)
    ordering = ("category", "symbol")
    exclude = ("raw",)

    @admin.display(description="tick size")
    def tick(self, obj):
        return money(obj.tick_size)

    @admin.display(description="qty step")
    def step(self, obj):
        return money(obj.qty_step)

    @admin.display(description="min qty")
    def min_qty(self, obj):
        return money(obj.min_order_qty)

    @admin.display(description="min notional")
    def min_notional_col(self, obj):
        return usdt(obj.min_notional)


class FailedFilter(admin.SimpleListFilter):
    title = "outcome"
    parameter_name = "outcome"

    def lookups(self, request, model_admin):
        return [("failed", "failed"), ("ok", "ok")]

    def queryset(self, request, queryset):
        if self.value() == "failed":
            return queryset.filter(EXCHANGE_CALL_FAILED)  # the partial index exchangecall_failed_created
        if self.value() == "ok":
            return queryset.exclude(EXCHANGE_CALL_FAILED)
        return queryset


@admin.register(ExchangeCall)
class ExchangeCallAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "method", "path", "http_status", "ret_code", "ret_msg", "latency_ms", "attempt",
                    "order_link_id", "trace_id", "dry_run")  # fmt: skip
    list_filter = (
        FailedFilter, choices_filter("method", [("GET", "GET"), ("POST", "POST")]), "dry_run",
        ("created_at", admin.DateFieldListFilter),
    )  # fmt: skip
    search_fields = ("=order_link_id",)
    search_help_text = "Exact orderLinkId or trace id."
    ordering = ("-created_at",)
    exclude = ("params", "response_body")
    readonly_fields = ("params_col", "response_col")

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(Q(order_link_id=term) | Q(trace_id=term)), False  # both indexed

    @admin.display(description="params")
    def params_col(self, obj):
        return pretty_json(_redacted(obj.params))

    @admin.display(description="response")
    def response_col(self, obj):
        """The answer as stored (already redacted by the client; keys redacted again here when it is JSON)."""
        if obj.response_bytes is None:
            return "(no answer)"
        note = f"{obj.response_bytes} bytes received"
        if obj.response_truncated:
            note += f"; cut to the first {len(obj.response_body.encode())} bytes (EXCHANGE_CALL_RESPONSE_MAX_BYTES)"
        try:
            body = pretty_json(_redacted(json.loads(obj.response_body)))
        except ValueError:  # cut, or not JSON
            body = format_html('<pre style="white-space:pre-wrap;max-width:70em">{}</pre>', obj.response_body)
        return format_html("<p>{}</p>{}", note, body)
