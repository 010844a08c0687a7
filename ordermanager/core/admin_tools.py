"""Admin building blocks shared by every app's admin.py.

- CappedCountPaginator: a changelist over millions of rows counts at most CAP
  rows (an index-only LIMIT) instead of a full COUNT(*).
- ReadOnlyAdmin: records written by services only (orders, fills, signals, ...)
  are never edited by hand in the admin, not even by a superuser: a raw save
  would skip the service's validation, audit and events.
- money/pnl/status display helpers, pretty JSON, the confirmation page.
"""

from __future__ import annotations

import json
from decimal import Decimal

from django.contrib import admin
from django.core.paginator import Paginator
from django.db import connection
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from ordermanager.core.formatting import money_text, number_text

CAP = 10_000


class CappedCountPaginator(Paginator):
    """Counts up to CAP rows; beyond that the changelist shows CAP (pages stay navigable)."""

    @cached_property
    def count(self):
        # SELECT COUNT(*) FROM (SELECT ... LIMIT CAP): stops after CAP index entries.
        return self.object_list[:CAP].count() if hasattr(self.object_list, "query") else len(self.object_list)

    @property
    def capped(self) -> bool:
        """The count stopped at CAP: there may be (many) more rows (the changelist shows "N+")."""
        return self.count >= CAP


class ReadOnlyAdmin(admin.ModelAdmin):
    """View-only for everyone; changes go through services (actions, API, jobs)."""

    show_full_result_count = False
    paginator = CappedCountPaginator
    list_per_page = 50

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def choices_filter(field_name: str, choices, title: str | None = None):
    """A list filter with fixed choices: Django's default runs SELECT DISTINCT over the whole table
    for a field without choices, which on millions of rows is the slowest query of the page."""

    class _Filter(admin.SimpleListFilter):
        parameter_name = field_name

        def lookups(self, request, model_admin):
            return list(choices)

        def queryset(self, request, queryset):
            return queryset.filter(**{field_name: self.value()}) if self.value() else queryset

    _Filter.title = title or field_name.replace("_", " ")
    return _Filter


def money(value: Decimal | None) -> str:
    """A quantity, price or ratio column: plain (ordermanager.core.formatting.number_text)."""
    return number_text(value)


def usdt(value: Decimal | None) -> str:
    """An amount of money (fees, amounts, PnL): 2 to 8 places."""
    return money_text(value)


def signed_money(value: Decimal | None):
    """Green gains, red losses (colour plus sign, readable without colour)."""
    if value is None:
        return "—"
    css = "pnl-gain" if value > 0 else "pnl-loss" if value < 0 else "pnl-flat"
    color = {"pnl-gain": "#1a7f37", "pnl-loss": "#cf222e", "pnl-flat": "inherit"}[css]
    text = ("+" if value > 0 else "") + money_text(value)
    return format_html('<span class="{}" style="color:{};font-weight:600">{}</span>', css, color, text)


_STATUS_COLORS = {
    "new": "#0969da", "partially_filled": "#8250df", "pending_submit": "#9a6700", "pending_cancel": "#9a6700",
    "filled": "#1a7f37", "executed": "#1a7f37", "succeeded": "#1a7f37", "cancelled": "#57606a",
    "skipped": "#57606a", "dry_run": "#57606a", "rejected": "#cf222e", "failed": "#cf222e",
    "unresolved": "#cf222e", "running": "#0969da", "received": "#0969da", "processing": "#8250df",
}  # fmt: skip


def status_badge(value: str, label: str | None = None):
    color = _STATUS_COLORS.get(value, "#57606a")
    return format_html(
        '<span class="status status-{}" style="color:#fff;background:{};padding:1px 6px;border-radius:8px;'
        'white-space:nowrap">{}</span>',
        value, color, label or value,
    )


def pretty_json(value) -> str:
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    return format_html('<pre style="white-space:pre-wrap;max-width:70em">{}</pre>', text)


def is_postgres() -> bool:
    return connection.vendor == "postgresql"


def dashboard_link():
    return mark_safe('<a href="/admin/dashboard/">Dashboard</a>')


def before_after_table(before, after) -> str:
    """A discrepancy's before and after as one readable table: a row per field, changed rows marked."""

    def as_fields(value) -> dict:
        if value is None:
            return {}
        return value if isinstance(value, dict) else {"value": value}

    def cell(fields: dict, key: str) -> str:
        if key not in fields or fields[key] is None:
            return "—"
        value = fields[key]
        if isinstance(value, list | dict):
            return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
        return str(value)

    old, new = as_fields(before), as_fields(after)
    if not old and not new:
        return "—"
    rows = []
    for key in sorted(old.keys() | new.keys()):
        was, now = cell(old, key), cell(new, key)
        style = ' style="font-weight:bold"' if was != now and key in old and key in new else ""
        rows.append(format_html("<tr{}><th>{}</th><td>{}</td><td>{}</td></tr>", mark_safe(style), key, was, now))
    head = mark_safe('<table class="before-after"><thead><tr><th>field</th><th>before</th><th>after</th></tr></thead>')
    return head + mark_safe("<tbody>") + mark_safe("".join(rows)) + mark_safe("</tbody></table>")
