"""Executions (fills) as rows, filtered."""

from __future__ import annotations

from datetime import datetime

import django_filters
from django.db.models import QuerySet

from ordermanager.core.filtering import UpperCharFilter, UtcIsoDateTimeFilter, apply_filters
from orders.models import ExecType, Execution, Side


class ExecutionFilter(django_filters.FilterSet):
    symbol = UpperCharFilter(field_name="symbol", label="Symbol, e.g. BTCUSDT.")
    exec_type = django_filters.ChoiceFilter(choices=ExecType.choices, label="Trade, Funding, ...")
    side = django_filters.ChoiceFilter(choices=Side.choices, label="Buy or Sell.")
    order_link_id = django_filters.CharFilter(field_name="order__order_link_id", label="Fills of this order.")
    strategy = django_filters.CharFilter(field_name="order__strategy_id", label="Strategy id of the order.")
    exec_after = UtcIsoDateTimeFilter(field_name="exec_time", lookup_expr="gte", label="ISO 8601.")
    exec_before = UtcIsoDateTimeFilter(field_name="exec_time", lookup_expr="lt", label="ISO 8601.")

    class Meta:
        model = Execution
        fields: list[str] = []


def execution_list(*, filters: dict | None = None) -> QuerySet[Execution]:
    queryset = (
        Execution.objects.select_related("order")
        .only(
            *[f.name for f in Execution._meta.concrete_fields if f.name != "order"],
            "order__order_link_id",
            "order__strategy_id",
        )
        .order_by("-id")
    )
    return apply_filters(filterset_class=ExecutionFilter, data=filters, queryset=queryset)


def exec_ids_stored_since(exec_ids: list[str], since: datetime) -> set[str]:
    """Which of ``exec_ids`` were stored at or after ``since`` (one query on the unique index): the fill metrics
    tell a resend's executions from new ones with it (installed into ordermanager.metrics by OrdersConfig)."""
    return set(Execution.objects.filter(exec_id__in=exec_ids, created_at__gte=since).values_list("exec_id", flat=True))
