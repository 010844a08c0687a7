"""Risk limits as risk staff edit them."""

from __future__ import annotations

from django.db.models import QuerySet

from ordermanager.core.exceptions import NotFound
from orders.models import RiskLimit


def risk_limit_list() -> QuerySet[RiskLimit]:
    # The global row (blank symbol) first, then symbols alphabetically.
    return RiskLimit.objects.select_related("updated_by").order_by("symbol")


def risk_limit_get(*, risk_limit_id: int) -> RiskLimit:
    risk_limit = RiskLimit.objects.select_related("updated_by").filter(pk=risk_limit_id).first()
    if risk_limit is None:
        raise NotFound(f"No risk limit with id {risk_limit_id}.")
    return risk_limit
