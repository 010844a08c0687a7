"""Reconciliation runs and their discrepancies."""

from __future__ import annotations

import django_filters
from django.db.models import Prefetch, QuerySet

from ordermanager.core.exceptions import NotFound
from ordermanager.core.filtering import UtcIsoDateTimeFilter, apply_filters
from orders.models import Discrepancy, ReconciliationRun


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
        # In the order they were found, as the synchronous run has always answered (orders.apis).
        .prefetch_related(Prefetch("discrepancies", queryset=Discrepancy.objects.order_by("id")))
        .filter(pk=run_id)
        .first()
    )
    if run is None:
        raise NotFound(f"No reconciliation run with id {run_id}.")
    return run
