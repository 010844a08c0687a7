"""Browsable reports for people: orders and PnL as HTML (filter, read, chart) and CSV.

Thin views: parse the query string with a form, call a selector, render.
Staff login (the admin's) and the same view permissions as the admin apply.
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

from django import forms
from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count
from django.db.models.functions import TruncDay
from django.http import StreamingHttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from ordermanager.core.admin_tools import CappedCountPaginator
from ordermanager.core.charts import Series, svg_line_chart
from ordermanager.core.decimals import plain_decimal
from orders.models import Order, OrderStatus
from orders.selectors.orders import order_list
from orders.selectors.pnl import GROUPINGS, pnl_report
from positions.selectors import pnl_series

CSV_ORDER_FIELDS = (
    "created_at", "order_link_id", "order_id", "symbol", "side", "order_type", "status", "qty", "price", "filled_qty",
    "avg_fill_price", "cum_exec_value", "fees", "strategy_id", "is_dry_run", "cancel_reason", "cancel_note",
    "cancelled_by", "reject_reason",
)  # fmt: skip


PNL_CSV_FIELDS = (
    "symbol", "strategy", "realized_pnl", "fees", "funding", "net_pnl", "unrealized_pnl", "volume", "trades",
)  # fmt: skip


def _require(request, *perms):
    if not request.user.has_perms(perms):
        raise PermissionDenied


class _Echo:
    def write(self, value):
        return value


def _csv_response(filename: str, header, rows):
    writer = csv.writer(_Echo())
    stream = (writer.writerow(row) for row in _prepend(header, rows))
    response = StreamingHttpResponse(stream, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def _prepend(header, rows):
    yield header
    yield from rows


def _cell(value):
    if value is None:
        return ""
    if hasattr(value, "as_tuple"):
        return plain_decimal(value)
    return value.isoformat() if isinstance(value, datetime) else value


class PeriodForm(forms.Form):
    start = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), help_text="Inclusive.")
    symbol = forms.CharField(required=False, max_length=30)
    strategy = forms.CharField(required=False, max_length=100)

    def period(self) -> tuple[datetime, datetime]:
        today = timezone.now().date()
        start = self.cleaned_data.get("start") or today - timedelta(days=6)
        end = self.cleaned_data.get("end") or today
        if end < start:
            raise ValidationError({"end": "Must not be before start."})
        return datetime.combine(start, time.min, UTC), datetime.combine(end + timedelta(days=1), time.min, UTC)


class OrderReportForm(PeriodForm):
    status = forms.ChoiceField(required=False, choices=[("", "any")] + list(OrderStatus.choices))


@staff_member_required
def orders_report(request):
    _require(request, "orders.view_order")
    form = OrderReportForm(request.GET or {})
    context = {**admin.site.each_context(request), "form": form, "title": "Orders report", "page": None}
    period = _valid_period(form)
    if period is None:
        return TemplateResponse(request, "reports/orders.html", context, status=400)
    start, end = period
    filters = {"created_after": start.isoformat(), "created_before": end.isoformat()}
    filters |= {key: form.cleaned_data[key] for key in ("symbol", "strategy") if form.cleaned_data.get(key)}
    if form.cleaned_data.get("status"):
        filters["status"] = [form.cleaned_data["status"]]  # the selector's status filter takes several
    orders = order_list(filters=filters).order_by("-created_at")
    if request.GET.get("format") == "csv":
        orders = orders.select_related("cancelled_by")
        rows = ([_order_cell(o, f) for f in CSV_ORDER_FIELDS] for o in orders.iterator(chunk_size=2000))
        return _csv_response(f"orders-{start:%Y%m%d}-{end:%Y%m%d}.csv", CSV_ORDER_FIELDS, rows)
    page = CappedCountPaginator(orders, 100).get_page(request.GET.get("page"))
    context.update(page=page, start=start, end=end, last_day=end - timedelta(days=1), chart=_orders_chart(filters),
                   query=_without_page(request))  # fmt: skip
    return TemplateResponse(request, "reports/orders.html", context)


def _order_cell(order, field: str):
    if field == "cancelled_by":  # who cancelled (a desk user); blank for the service's own cancels
        return order.cancelled_by.get_username() if order.cancelled_by_id else ""
    return _cell(getattr(order, field))


def _valid_period(form) -> tuple[datetime, datetime] | None:
    if not form.is_valid():
        return None
    try:
        start, end = form.period()
    except ValidationError as exc:
        form.add_error(None, exc)
        return None
    # The form shows the dates it applied (the defaults too), so the page says what it covers.
    form.data = form.data.copy()
    form.data["start"], form.data["end"] = f"{start:%Y-%m-%d}", f"{end - timedelta(days=1):%Y-%m-%d}"
    return start, end


def _without_page(request) -> str:
    query = request.GET.copy()
    query.pop("page", None)
    query.pop("format", None)
    return query.urlencode()


def _orders_chart(filters: dict):
    qs = Order.objects.filter(created_at__gte=filters["created_after"], created_at__lt=filters["created_before"])
    if filters.get("symbol"):
        qs = qs.filter(symbol=filters["symbol"].upper())
    per_day = qs.annotate(day=TruncDay("created_at")).values("day").annotate(n=Count("id")).order_by("day")
    counts = {r["day"].date(): r["n"] for r in per_day}
    # Every day of the period is a point: a day without orders counts 0 (not a line drawn across it).
    day, last = datetime.fromisoformat(filters["created_after"]), datetime.fromisoformat(filters["created_before"])
    points = []
    while day < last:
        points.append((day, Decimal(counts.get(day.date(), 0))))
        day += timedelta(days=1)
    return svg_line_chart([Series("orders per day", points)], title="Orders per day")


class PnlReportForm(PeriodForm):
    group_by = forms.ChoiceField(required=False, choices=[(g, g.replace("_", " + ")) for g in GROUPINGS])


@staff_member_required
def pnl_report_view(request):
    _require(request, "orders.view_execution", "positions.view_position")
    form = PnlReportForm(request.GET or {})
    context = {**admin.site.each_context(request), "form": form, "title": "PnL report"}
    period = _valid_period(form)
    if period is None:
        return TemplateResponse(request, "reports/pnl.html", context, status=400)
    start, end = period
    data = form.cleaned_data
    symbol = (data.get("symbol") or "").upper() or None
    report = pnl_report(start=start, end=end, group_by=data.get("group_by") or "symbol", symbol=symbol,
                        strategy=data.get("strategy") or None)  # fmt: skip
    if request.GET.get("format") == "csv":
        header = PNL_CSV_FIELDS
        rows = ([r.symbol, r.strategy, *(_cell(v) for v in (r.realized_pnl, r.fees, r.funding, r.net_pnl,
                 r.unrealized_pnl, r.volume)), r.trades] for r in report.rows)  # fmt: skip
        return _csv_response(f"pnl-{start:%Y%m%d}-{end:%Y%m%d}.csv", header, rows)
    points = pnl_series(start=start, end=min(end, timezone.now() + timedelta(seconds=1)), symbol=symbol)
    chart = svg_line_chart(
        [
            Series("book PnL", [(p.at, p.total) for p in points]),
            Series("realized", [(p.at, p.realized) for p in points]),
        ],
        title="PnL over the period (snapshots)",
    )
    context.update(report=report, start=start, end=end, last_day=end - timedelta(days=1), chart=chart,
                   query=_without_page(request))  # fmt: skip
    return TemplateResponse(request, "reports/pnl.html", context)

