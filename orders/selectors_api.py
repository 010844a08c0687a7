"""Read selectors for the API, the admin and the reports (orders, fills, limits, reconciliation).

Filtering lives here (django-filter FilterSets validated into 400s);
pagination lives in the views. Every filter maps onto an index of the
tables (see the models' Meta.indexes and orders/migrations/*office*).
"""

from __future__ import annotations

import django_filters
from django.db.models import Prefetch, QuerySet

from ordermanager.core.exceptions import NotFound
from ordermanager.core.filtering import StrictBooleanFilter, UpperCharFilter, UtcIsoDateTimeFilter, apply_filters
from orders.models import (
    Discrepancy,
    ExecType,
    Execution,
    Order,
    OrderStatus,
    OrderType,
    ReconciliationRun,
    RiskLimit,
    Side,
    SignalOrderRelationship,
)


class OrderFilter(django_filters.FilterSet):
    symbol = UpperCharFilter(field_name="symbol", label="Symbol, e.g. BTCUSDT.")
    status = django_filters.MultipleChoiceFilter(choices=OrderStatus.choices, label="One or more statuses.")
    side = django_filters.ChoiceFilter(choices=Side.choices, label="Buy or Sell.")
    order_type = django_filters.ChoiceFilter(choices=OrderType.choices, label="Market or Limit.")
    strategy = django_filters.CharFilter(field_name="strategy_id", label="Strategy id of the signal.")
    is_dry_run = StrictBooleanFilter(label="Only dry-run (true) or only real (false) orders.")
    created_after = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="gte", label="ISO 8601.")
    created_before = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="lt", label="ISO 8601.")
    signal_id = django_filters.UUIDFilter(method="_by_signal", label="Orders produced by this signal.")

    class Meta:
        model = Order
        fields: list[str] = []

    def _by_signal(self, qs, name, value):
        # A subquery on the (signal) index of the link table, not a join that could repeat rows.
        order_ids = SignalOrderRelationship.objects.filter(signal__signal_id=value).values("order_id")
        return qs.filter(pk__in=order_ids)


def _signal_links():
    return Prefetch(
        "signal_links",
        queryset=SignalOrderRelationship.objects.select_related("signal").only(
            "order_id", "allocation_amount", "role", "signal__signal_id", "signal__status", "signal__strategy_id"
        ),
    )


def order_list(*, filters: dict | None = None) -> QuerySet[Order]:
    queryset = Order.objects.prefetch_related(_signal_links()).order_by("-id")
    return apply_filters(filterset_class=OrderFilter, data=filters, queryset=queryset)


def order_get(*, order_link_id: str) -> Order:
    order = (
        Order.objects.select_related("cancelled_by")
        .prefetch_related(_signal_links(), Prefetch("executions", queryset=Execution.objects.order_by("exec_time")))
        .filter(order_link_id=order_link_id)
        .first()
    )
    if order is None:
        raise NotFound(f"No order with orderLinkId {order_link_id!r}.")
    return order


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
    queryset = Execution.objects.select_related("order").only(
        *[f.name for f in Execution._meta.concrete_fields if f.name != "order"],
        "order__order_link_id",
        "order__strategy_id",
    ).order_by("-id")
    return apply_filters(filterset_class=ExecutionFilter, data=filters, queryset=queryset)


def risk_limit_list() -> QuerySet[RiskLimit]:
    # The global row (blank symbol) first, then symbols alphabetically.
    return RiskLimit.objects.select_related("updated_by").order_by("symbol")


def risk_limit_get(*, risk_limit_id: int) -> RiskLimit:
    risk_limit = RiskLimit.objects.select_related("updated_by").filter(pk=risk_limit_id).first()
    if risk_limit is None:
        raise NotFound(f"No risk limit with id {risk_limit_id}.")
    return risk_limit


class ReconciliationRunFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=ReconciliationRun.Status.choices)
    trigger = django_filters.ChoiceFilter(choices=ReconciliationRun.Trigger.choices)
    started_after = UtcIsoDateTimeFilter(field_name="started_at", lookup_expr="gte", label="ISO 8601.")
    started_before = UtcIsoDateTimeFilter(field_name="started_at", lookup_expr="lt", label="ISO 8601.")

    class Meta:
        model = ReconciliationRun
        fields: list[str] = []


def reconciliation_run_list(*, filters: dict | None = None) -> QuerySet[ReconciliationRun]:
    queryset = ReconciliationRun.objects.select_related("started_by").order_by("-id")
    return apply_filters(filterset_class=ReconciliationRunFilter, data=filters, queryset=queryset)


def reconciliation_run_get(*, run_id: int) -> ReconciliationRun:
    run = (
        ReconciliationRun.objects.select_related("started_by")
        # In the order they were found, as the synchronous run has always answered (orders.reconcile.apis).
        .prefetch_related(Prefetch("discrepancies", queryset=Discrepancy.objects.order_by("id")))
        .filter(pk=run_id)
        .first()
    )
    if run is None:
        raise NotFound(f"No reconciliation run with id {run_id}.")
    return run
