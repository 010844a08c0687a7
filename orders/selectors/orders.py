"""Orders and the signals that produced them."""

from __future__ import annotations

import django_filters
from django.db.models import Prefetch, QuerySet

from ordermanager.core.exceptions import NotFound
from ordermanager.core.filtering import StrictBooleanFilter, UpperCharFilter, UtcIsoDateTimeFilter, apply_filters
from orders.models import Execution, Order, OrderStatus, OrderType, Side, SignalOrderRelationship


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
