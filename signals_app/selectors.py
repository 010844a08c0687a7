"""Read selectors for the signal inbox (API list/detail, admin, dashboard)."""

from __future__ import annotations

import django_filters
from django.db.models import Prefetch, QuerySet

from ordermanager.core.exceptions import NotFound
from ordermanager.core.filtering import UpperCharFilter, UtcIsoDateTimeFilter, apply_filters
from orders.models import SignalOrderRelationship
from signals_app.models import SignalStatus, TradingSignal


class SignalFilter(django_filters.FilterSet):
    symbol = UpperCharFilter(field_name="asset", label="Asset/symbol, e.g. BTCUSDT.")
    status = django_filters.MultipleChoiceFilter(choices=SignalStatus.choices, label="One or more statuses.")
    signal_type = django_filters.ChoiceFilter(choices=[("buy", "buy"), ("sell", "sell")], label="buy or sell.")
    strategy = django_filters.CharFilter(field_name="strategy_id", label="Strategy id.")
    received_after = UtcIsoDateTimeFilter(field_name="received_at", lookup_expr="gte", label="ISO 8601.")
    received_before = UtcIsoDateTimeFilter(field_name="received_at", lookup_expr="lt", label="ISO 8601.")

    class Meta:
        model = TradingSignal
        fields: list[str] = []


def signal_list(*, filters: dict | None = None) -> QuerySet[TradingSignal]:
    # raw_payload can be large; the list shows the parsed fields only.
    queryset = TradingSignal.objects.defer("raw_payload").order_by("-id")
    return apply_filters(filterset_class=SignalFilter, data=filters, queryset=queryset)


def signal_get(*, signal_id) -> TradingSignal:
    links = SignalOrderRelationship.objects.select_related("order").order_by("order__leg", "order_id")
    signal = (
        TradingSignal.objects.prefetch_related(Prefetch("order_links", queryset=links))
        .filter(signal_id=signal_id)
        .first()
    )
    if signal is None:
        raise NotFound(f"No signal with signal_id {signal_id}.")
    return signal
