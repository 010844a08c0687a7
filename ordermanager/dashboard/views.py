"""The admin dashboard page and its live-refresh fragment (/admin/dashboard/)."""

from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse

from ordermanager.core.charts import Series, svg_line_chart
from ordermanager.dashboard.selectors import dashboard_pnl_series, dashboard_summary
from ordermanager.ops.alerts import alerts_evaluate

REQUIRED = ("orders.view_order", "positions.view_position")


def _context(request) -> dict:
    if not request.user.has_perms(REQUIRED):
        raise PermissionDenied
    summary = dashboard_summary()
    # Evaluated on each view (a few indexed reads; a write only when an alert flips): the banner is current
    # even when the scheduled evaluation has not run yet (docs/decisions/0524).
    alerts = [check for check in alerts_evaluate() if check.firing]
    series = dashboard_pnl_series()
    chart = svg_line_chart(
        [
            Series("book PnL (realized + unrealized)", [(p.at, p.total) for p in series]),
            Series("unrealized", [(p.at, p.unrealized) for p in series]),
        ],
        title="PnL over the last 24 h (snapshots)",
    )
    return {"summary": summary, "pnl_chart": chart, "alerts": alerts}


def dashboard_view(request):
    context = {**admin.site.each_context(request), "title": "Dashboard", **_context(request)}
    return TemplateResponse(request, "admin/dashboard.html", context)


def dashboard_fragment_view(request):
    """The live part of the page, re-fetched by the browser when an event arrives."""
    return TemplateResponse(request, "admin/dashboard_live.html", _context(request))
