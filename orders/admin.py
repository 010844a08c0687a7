"""Admin for orders, fills, risk limits and reconciliation (the desk's daily tool).

Changelists are built for tables of millions of rows: joins/subqueries for
every related column (no N+1), capped counts, exact-match search on indexed
columns, and filters whose choices never come from a DISTINCT over a big table.
Nothing here writes a row directly: cancels, limit changes, the halt and
reconciliation go through their services.
"""

from __future__ import annotations

import uuid
from typing import NamedTuple

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import OuterRef, Q, Subquery
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from exchange.models import Instrument
from ordermanager.core.admin_tools import (
    ReadOnlyAdmin,
    before_after_table,
    choices_filter,
    money,
    status_badge,
    usdt,
)
from ordermanager.core.decimals import plain_decimal
from ordermanager.core.exceptions import ApplicationError
from ordermanager.core.models import AuditEntry
from orders import admin_positions  # noqa: F401  (registers the Position admin with "Validate now")
from orders.models import (
    CancelReason,
    Discrepancy,
    ExecType,
    Execution,
    Order,
    OrderHold,
    OrderStatus,
    ReconciliationRun,
    RiskLimit,
    SignalOrderRelationship,
)
from orders.reconcile.start import reconciliation_active, reconciliation_queue
from orders.services.cancellation import CancelResult, order_cancel
from orders.services.risk_limit_changes import (
    EDITABLE_FIELDS,
    MSG_TOO_LARGE,
    MSG_TOO_PRECISE,
    risk_limit_create,
    risk_limit_update,
    risk_limit_validate,
    trading_halt_set,
)
from positions.selectors import position_rows

MAX_CANCEL_BATCH = 200
CANCELLABLE = (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED)


class CancelReportLine(NamedTuple):
    label: str
    settled: bool  # counted in "n of m orders settled"


# The admin's one mapping of cancel results: the report's wording, and whether the order counts as settled.
CANCEL_REPORT = {
    CancelResult.CANCELLED: CancelReportLine("Cancel accepted by the exchange", settled=True),
    CancelResult.ALREADY_CLOSED: CancelReportLine("Already closed (filled or cancelled)", settled=True),
    CancelResult.DRY_RUN: CancelReportLine("Dry run: nothing sent", settled=True),
    CancelResult.NOT_CANCELLABLE: CancelReportLine("Not cancellable", settled=False),
    CancelResult.ERROR: CancelReportLine("Exchange error", settled=False),
}


class SymbolFilter(admin.SimpleListFilter):
    """Choices from the small tables (instruments, positions, limits), never a DISTINCT over orders."""

    title = "symbol"
    parameter_name = "symbol"

    def lookups(self, request, model_admin):
        symbols = set(position_rows().values_list("symbol", flat=True))
        symbols |= set(Instrument.objects.values_list("symbol", flat=True)[:500])
        symbols |= set(RiskLimit.objects.exclude(symbol="").values_list("symbol", flat=True))
        return [(s, s) for s in sorted(symbols)]

    def queryset(self, request, queryset):
        return queryset.filter(symbol=self.value()) if self.value() else queryset


# --- orders -------------------------------------------------------------------------------


class ExecutionInline(admin.TabularInline):
    model = Execution
    fk_name = "order"
    extra = 0
    can_delete = False
    show_change_link = True
    fields = ("exec_id", "exec_type", "side", "exec_qty", "exec_price", "exec_fee", "is_maker", "exec_time", "source")
    readonly_fields = fields
    ordering = ("exec_time",)

    def has_add_permission(self, request, obj=None):
        return False


class SignalLinkInline(admin.TabularInline):
    model = SignalOrderRelationship
    fk_name = "order"
    extra = 0
    can_delete = False
    fields = ("signal_link", "allocation_amount", "role", "created_at")
    readonly_fields = fields
    verbose_name = "signal"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("signal")

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="signal")
    def signal_link(self, obj):
        url = reverse("admin:signals_app_tradingsignal_change", args=[obj.signal_id])
        return format_html('<a href="{}">{}</a> ({})', url, obj.signal.signal_id, obj.signal.status)


class CancelForm(forms.Form):
    reason = forms.CharField(
        label="Reason",
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Kept on each order and in the admin log, e.g. 'runaway model, desk decision'.",
    )


@admin.register(Order)
class OrderAdmin(ReadOnlyAdmin):
    list_display = (
        "order_link_id", "symbol", "side", "order_type", "status_col", "qty_col", "filled_col", "price_col",
        "avg_fill_col", "fees_col", "is_dry_run", "signal_col", "created_at",
    )  # fmt: skip
    list_filter = (
        "status", SymbolFilter, "side", "order_type", "is_dry_run", "is_external",
        ("created_at", admin.DateFieldListFilter),
    )  # fmt: skip
    search_fields = ("order_link_id",)  # replaced by exact matching below; kept so the search box shows
    search_help_text = "Exact orderLinkId, exchange order id, or signal id (UUID)."
    ordering = ("-created_at",)
    list_select_related = ("cancelled_by",)
    raw_id_fields = ("cancelled_by",)
    inlines = (SignalLinkInline, ExecutionInline)
    actions = ("cancel_on_exchange",)
    fieldsets = (
        (None, {"fields": ("order_link_id", "order_id", "status", "symbol", "category", "side", "order_type",
                           "time_in_force", "post_only", "reduce_only", "position_idx", "leg")}),
        ("Quantities and money", {"fields": ("qty", "price", "filled_qty", "booked_qty", "avg_fill_price",
                                             "cum_exec_value", "fees")}),
        ("Outcome", {"fields": ("reject_code", "reject_reason", "cancel_reason", "cancel_note", "cancelled_by")}),
        ("Context", {"fields": ("is_dry_run", "is_external", "strategy_id", "trace_id", "exchange_updated_ms",
                                "submitted_at", "created_at", "updated_at")}),
    )  # fmt: skip

    def get_queryset(self, request):
        # One subquery per displayed row (LIMIT page size) instead of one query per row.
        first_link = SignalOrderRelationship.objects.filter(order=OuterRef("pk")).order_by("id")
        return (
            super()
            .get_queryset(request)
            .annotate(
                first_signal_pk=Subquery(first_link.values("signal_id")[:1]),
                first_signal_uuid=Subquery(first_link.values("signal__signal_id")[:1]),
            )
        )

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        match = Q(order_link_id=term) | Q(order_id=term)  # unique index / index
        try:
            signal_uuid = uuid.UUID(term)
        except ValueError:
            pass
        else:
            # The signal's orders (a handful) fetched first: an IN (subquery) inside an OR keeps PostgreSQL
            # from combining the indexes and it scans every order instead (bench/admin_scale.py).
            links = SignalOrderRelationship.objects.filter(signal__signal_id=signal_uuid)
            match |= Q(pk__in=list(links.values_list("order_id", flat=True)[:MAX_CANCEL_BATCH]))
        return queryset.filter(match), False

    @admin.display(description="status", ordering="status")
    def status_col(self, obj):
        return status_badge(obj.status, obj.get_status_display())

    @admin.display(description="qty")
    def qty_col(self, obj):
        return money(obj.qty)

    @admin.display(description="filled")
    def filled_col(self, obj):
        return money(obj.filled_qty)

    @admin.display(description="price")
    def price_col(self, obj):
        return money(obj.price)

    @admin.display(description="avg fill")
    def avg_fill_col(self, obj):
        return money(obj.avg_fill_price)

    @admin.display(description="fees")
    def fees_col(self, obj):
        return usdt(obj.fees)

    @admin.display(description="signal")
    def signal_col(self, obj):
        if not getattr(obj, "first_signal_pk", None):
            return "—"
        url = reverse("admin:signals_app_tradingsignal_change", args=[obj.first_signal_pk])
        return format_html('<a href="{}">{}…</a>', url, str(obj.first_signal_uuid)[:8])

    # --- Cancel on exchange: confirmation page with a reason, then a per-order report ---

    def has_cancel_permission(self, request):
        return request.user.has_perm("orders.cancel_order")

    def change_view(self, request, object_id, form_url="", extra_context=None):
        # The order's own page offers the cancel too: a person who found one order should not have
        # to go back to the list, tick it and pick an action.
        order = self.get_object(request, object_id)
        can_cancel = order is not None and order.status in CANCELLABLE and self.has_cancel_permission(request)
        extra = {**(extra_context or {}), "can_cancel_on_exchange": can_cancel}
        return super().change_view(request, object_id, form_url, extra)

    def get_urls(self):
        view = self.admin_site.admin_view(self.cancel_one_view)
        return [path("<int:order_pk>/cancel/", view, name="orders_order_cancel"), *super().get_urls()]

    def cancel_one_view(self, request, order_pk: int):
        """The same two steps as the action, for one order (the confirmation posts back here)."""
        if not self.has_cancel_permission(request):
            raise PermissionDenied("Cancelling orders on the exchange needs the Risk staff role.")
        orders = Order.objects.filter(pk=order_pk)
        if not orders.exists():
            raise Http404(f"No order with id {order_pk}.")
        return self.cancel_on_exchange(request, orders)

    @admin.action(description="Cancel on exchange", permissions=["cancel"])
    def cancel_on_exchange(self, request, queryset):
        """Two steps: list exactly what will be cancelled and ask why; then cancel each order
        through the cancellation service and report per order what happened."""
        orders = list(queryset.order_by("created_at")[: MAX_CANCEL_BATCH + 1])
        if len(orders) > MAX_CANCEL_BATCH:
            self.message_user(request, f"Select at most {MAX_CANCEL_BATCH} orders at once.", messages.ERROR)
            return None
        form = CancelForm(request.POST if request.POST.get("post") == "yes" else None)
        if form.is_bound and form.is_valid():
            if not self.has_cancel_permission(request):  # re-checked on the confirming POST
                raise PermissionDenied("Cancelling orders on the exchange needs the Risk staff role.")
            return self._cancel_and_report(request, orders, form.cleaned_data["reason"])
        return TemplateResponse(
            request,
            "admin/orders/order/cancel_confirmation.html",
            {
                **self.admin_site.each_context(request),
                "title": "Cancel orders on the exchange",
                "opts": self.model._meta,
                "form": form,
                "cancellable": [o for o in orders if o.status in CANCELLABLE],
                "skipped": [o for o in orders if o.status not in CANCELLABLE],
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
                "action": "cancel_on_exchange",
                "select_across": request.POST.get("select_across", "0"),
            },
        )

    def _cancel_and_report(self, request, orders, reason: str):
        rows = [self._cancel_one(request, order, reason) for order in orders]
        done = sum(1 for r in rows if CANCEL_REPORT[r["result"]].settled)
        level = messages.SUCCESS if done == len(rows) else messages.WARNING
        self.message_user(request, f"Cancel on exchange: {done} of {len(rows)} orders settled; see the report.", level)
        return TemplateResponse(
            request,
            "admin/orders/order/cancel_result.html",
            {**self.admin_site.each_context(request), "title": "Cancel report", "opts": self.model._meta,
             "rows": rows, "reason": reason},
        )  # fmt: skip

    def _cancel_one(self, request, order: Order, reason: str) -> dict:
        if order.status not in CANCELLABLE:
            result, message = CancelResult.NOT_CANCELLABLE, f"not open on the exchange ({order.get_status_display()})"
        else:
            try:
                outcome = order_cancel(order=order, reason=CancelReason.MANUAL, note=reason, user=request.user)
                result, message = outcome.result, outcome.message
            except (ApplicationError, ValidationError, ValueError) as exc:
                result, message = CancelResult.ERROR, getattr(exc, "message", str(exc))
        order.refresh_from_db()
        self.log_change(request, order, f"Cancel on exchange: {result} ({message}). Reason: {reason}")
        return {"order": order, "result": result, "label": CANCEL_REPORT[result].label, "message": message}


@admin.register(Execution)
class ExecutionAdmin(ReadOnlyAdmin):
    list_display = (
        "exec_id", "symbol", "side", "exec_type", "qty_col", "price_col", "fee_col", "is_maker", "order_col",
        "exec_time", "source",
    )  # fmt: skip
    list_filter = (
        choices_filter("exec_type", ExecType.choices), "side", "is_maker",
        choices_filter("source", [("ws", "live stream"), ("rest", "backfill (REST)"), ("adjust", "adjustment")]),
        ("exec_time", admin.DateFieldListFilter),
    )  # fmt: skip
    search_fields = ("exec_id",)
    search_help_text = "Exact execId, orderLinkId or exchange order id."
    ordering = ("-exec_time",)
    list_select_related = ("order",)
    raw_id_fields = ("order",)

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        # exec_id: unique index; exchange_order_id: index; the order's fills via the order_id index. The
        # order is looked up first: a join inside the OR would make PostgreSQL scan every fill.
        match = Q(exec_id=term) | Q(exchange_order_id=term)
        order_pk = Order.objects.filter(order_link_id=term).values_list("pk", flat=True).first()
        if order_pk is not None:
            match |= Q(order_id=order_pk)
        return queryset.filter(match), False

    @admin.display(description="qty")
    def qty_col(self, obj):
        return money(obj.exec_qty)

    @admin.display(description="price")
    def price_col(self, obj):
        return money(obj.exec_price)

    @admin.display(description="fee")
    def fee_col(self, obj):
        return usdt(obj.exec_fee)

    @admin.display(description="order")
    def order_col(self, obj):
        if obj.order is None:
            return obj.order_link_id or "—"
        url = reverse("admin:orders_order_change", args=[obj.order_id])
        return format_html('<a href="{}">{}</a>', url, obj.order.order_link_id)


@admin.register(SignalOrderRelationship)
class SignalOrderRelationshipAdmin(ReadOnlyAdmin):
    list_display = ("id", "signal", "order", "allocation_amount", "role", "created_at")
    list_select_related = ("signal", "order")
    raw_id_fields = ("signal", "order")
    search_fields = ("order__order_link_id",)
    search_help_text = "Exact orderLinkId or signal id (UUID)."
    ordering = ("-id",)

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            return queryset.filter(signal__signal_id=uuid.UUID(term)), False
        except ValueError:
            return queryset.filter(order__order_link_id=term), False


@admin.register(OrderHold)
class OrderHoldAdmin(ReadOnlyAdmin):
    """Symbols held by an unknown create, and how given-up orders were settled (docs/decisions/0315)."""

    list_display = ("id", "symbol", "state", "order", "signal", "since", "attempts", "next_check_at", "last_error")
    list_filter = ("state",)
    list_select_related = ("order", "signal")
    raw_id_fields = ("order", "signal")
    search_fields = ("=symbol", "=order__order_link_id")
    ordering = ("-id",)


# --- risk limits -----------------------------------------------------------------------------


class RiskLimitForm(forms.ModelForm):
    change_reason = forms.CharField(
        label="Why", required=False, max_length=500, widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
        help_text="Kept in the audit trail with the values before and after.",
    )  # fmt: skip

    class Meta:
        model = RiskLimit
        fields = (
            "symbol", "max_position_size", "max_position_value", "max_exposure", "max_order_size_ratio",
            "reduce_only", "trading_halted", "halt_reason",
        )  # fmt: skip

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Django's digit checks name no unit nor the largest amount: say both (the column's limits, 0317).
        for name, message in MSG_TOO_LARGE.items():
            if name in self.fields:  # a view-only user's form has none
                self.fields[name].error_messages.update(
                    max_digits=message, max_whole_digits=message, max_decimal_places=MSG_TOO_PRECISE
                )

    def clean_symbol(self):
        return (self.cleaned_data.get("symbol") or "").strip().upper()

    def clean(self):
        cleaned = super().clean()
        try:
            risk_limit_validate({k: v for k, v in cleaned.items() if k != "change_reason"})
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                self.add_error(field if field in self.fields else None, errors)
        return cleaned


@admin.register(RiskLimit)
class RiskLimitAdmin(admin.ModelAdmin):
    form = RiskLimitForm
    list_display = (
        "symbol_col", "max_position_size_col", "max_position_value_col", "max_exposure_col", "max_order_size_ratio",
        "trading_halted",
        "reduce_only", "halt_reason", "updated_by", "updated_at",
    )  # fmt: skip
    list_filter = ("trading_halted", "reduce_only")
    search_fields = ("symbol",)
    list_select_related = ("updated_by",)
    ordering = ("symbol",)
    readonly_fields = ("updated_by", "updated_at")
    change_list_template = "admin/orders/risklimit/change_list.html"
    change_form_template = "admin/orders/risklimit/change_form.html"

    def get_changeform_initial_data(self, request):
        """A new per-symbol row starts from the global limits (blank fields would mean 0 = nothing allowed)."""
        initial = super().get_changeform_initial_data(request)
        glob = RiskLimit.objects.filter(symbol="").first()
        if glob is not None:
            for name in ("max_position_size", "max_exposure", "max_order_size_ratio"):
                initial.setdefault(name, plain_decimal(getattr(glob, name)))
        return initial

    def get_readonly_fields(self, request, obj=None):
        # The symbol of an existing row is its identity; the global row stays global.
        return self.readonly_fields + (("symbol",) if obj else ())

    def has_delete_permission(self, request, obj=None):
        return False  # removing a row would loosen limits without an audit trail

    @admin.display(description="symbol", ordering="symbol")
    def symbol_col(self, obj):
        return obj.symbol or format_html("<strong>{}</strong>", "Global (all symbols)")

    @admin.display(description="max position size (base units)")
    def max_position_size_col(self, obj):
        return "no limit" if obj.max_position_size is None else money(obj.max_position_size)

    @admin.display(description="max position value (USDT)")
    def max_position_value_col(self, obj):
        return "no limit" if obj.max_position_value is None else money(obj.max_position_value)

    @admin.display(description="max exposure (USDT)")
    def max_exposure_col(self, obj):
        return usdt(obj.max_exposure)

    def save_model(self, request, obj, form, change):
        values = {name: form.cleaned_data[name] for name in EDITABLE_FIELDS if name in form.changed_data}
        reason = form.cleaned_data.get("change_reason", "")
        if change:
            saved = risk_limit_update(risk_limit=obj, changes=values, user=request.user, reason=reason)
        else:
            saved = risk_limit_create(symbol=obj.symbol, values=values, user=request.user, reason=reason)
        obj.pk = saved.pk
        obj.refresh_from_db()

    def change_view(self, request, object_id, form_url="", extra_context=None):
        audit = AuditEntry.objects.filter(target_type="orders.risklimit", target_id=str(object_id)).select_related(
            "user"
        )[:50]
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), "audit_entries": audit})

    def changelist_view(self, request, extra_context=None):
        glob = RiskLimit.objects.filter(symbol="").first()
        return super().changelist_view(request, {**(extra_context or {}), "global_limit": glob})

    def get_urls(self):
        urls = super().get_urls()
        halt = path("trading-halt/", self.admin_site.admin_view(self.trading_halt_view), name="orders_trading_halt")
        return [halt, *urls]

    def trading_halt_view(self, request):
        """The one switch: halt or resume all trading, with a confirmation and a reason."""
        if not request.user.has_perm("orders.change_risklimit"):
            raise PermissionDenied("Halting or resuming trading needs the permission to change risk limits "
                                   "(Risk staff role).")
        glob = RiskLimit.objects.filter(symbol="").first()
        halted_now = bool(glob and glob.trading_halted)
        form = HaltForm(request.POST or None, initial={"want": "resume" if halted_now else "halt"})
        if request.method == "POST" and form.is_valid():
            # The page said what the click does; someone may have switched meanwhile. Never toggle
            # blindly: a second "halt" on an already halted desk must not resume trading.
            want_halt = form.cleaned_data["want"] == "halt"
            if want_halt == halted_now:
                state = "halted" if halted_now else "running"
                self.message_user(request, f"Trading is already {state} (changed meanwhile); nothing was changed.",
                                  messages.WARNING)  # fmt: skip
                return HttpResponseRedirect(reverse("admin:orders_risklimit_changelist"))
            try:
                trading_halt_set(halted=want_halt, reason=form.cleaned_data["reason"], user=request.user)
            except ValidationError as exc:
                form.add_error("reason", exc.messages)
            else:
                verb = "HALTED" if want_halt else "resumed"
                self.message_user(request, f"Trading {verb}.", messages.WARNING if want_halt else messages.SUCCESS)
                return HttpResponseRedirect(reverse("admin:orders_risklimit_changelist"))
        context = {
            **self.admin_site.each_context(request), "opts": self.model._meta, "form": form, "halted": halted_now,
            "glob": glob, "title": "Resume trading" if halted_now else "Halt all trading",
        }  # fmt: skip
        return TemplateResponse(request, "admin/orders/risklimit/trading_halt.html", context)


class HaltForm(forms.Form):
    want = forms.ChoiceField(choices=[("halt", "halt"), ("resume", "resume")], widget=forms.HiddenInput)
    reason = forms.CharField(
        max_length=500, required=False, widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Required to halt; shown to the desk and kept in the audit trail.",
    )  # fmt: skip


# --- reconciliation ---------------------------------------------------------------------------


class DiscrepancyInline(admin.TabularInline):
    model = Discrepancy
    extra = 0
    can_delete = False
    fields = ("kind", "symbol", "order_link_id", "before_after", "resolved", "note")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="before → after")
    def before_after(self, obj):
        return before_after_table(obj.before, obj.after)


class ReconcileForm(forms.Form):
    symbol = forms.CharField(max_length=30, required=False, help_text="Blank = every symbol.")


@admin.register(ReconciliationRun)
class ReconciliationRunAdmin(ReadOnlyAdmin):
    list_display = (
        "id", "status_col", "trigger", "started_by", "symbol", "dry_run", "started_at", "finished_at", "checked",
        "updated", "backfilled", "external", "failed", "passes", "last_pass_at",
    )  # fmt: skip
    list_filter = ("status", "trigger", "dry_run", ("started_at", admin.DateFieldListFilter))
    list_select_related = ("started_by",)
    ordering = ("-started_at",)
    inlines = (DiscrepancyInline,)
    change_list_template = "admin/orders/reconciliationrun/change_list.html"

    @admin.display(description="status", ordering="status")
    def status_col(self, obj):
        return status_badge(obj.status, obj.get_status_display())

    def changelist_view(self, request, extra_context=None):
        can_reconcile = request.user.has_perm("orders.run_reconciliation")
        extra = {"running": reconciliation_active(), "can_reconcile": can_reconcile}
        return super().changelist_view(request, {**(extra_context or {}), **extra})

    def get_urls(self):
        view = self.admin_site.admin_view(self.reconcile_now_view)
        return [path("reconcile-now/", view, name="orders_reconcile_now"), *super().get_urls()]

    def reconcile_now_view(self, request):
        """Confirm, then queue a run through django-q2 (after commit); the list shows it when done."""
        if not request.user.has_perm("orders.run_reconciliation"):
            raise PermissionDenied("Starting a reconciliation needs the Risk staff role.")
        form = ReconcileForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            symbol = form.cleaned_data["symbol"].strip().upper() or None
            try:
                task = reconciliation_queue(trigger=ReconciliationRun.Trigger.ADMIN, user=request.user, symbol=symbol)
            except ApplicationError as exc:
                self.message_user(request, exc.message, messages.ERROR)
            else:
                self.message_user(request, f"Reconciliation queued ({task}); its run appears below when it starts.")
            return HttpResponseRedirect(reverse("admin:orders_reconciliationrun_changelist"))
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "form": form,
                   "title": "Reconcile now"}  # fmt: skip
        return TemplateResponse(request, "admin/orders/reconciliationrun/reconcile_now.html", context)


@admin.register(Discrepancy)
class DiscrepancyAdmin(ReadOnlyAdmin):
    list_display = ("id", "run", "kind", "symbol", "order_link_id", "resolved", "note")
    exclude = ("before", "after")
    readonly_fields = ("before_after",)

    @admin.display(description="before → after")
    def before_after(self, obj):
        return before_after_table(obj.before, obj.after)

    list_filter = ("kind", "resolved")
    list_select_related = ("run",)
    raw_id_fields = ("run",)
    search_fields = ("=order_link_id",)
    ordering = ("-id",)

