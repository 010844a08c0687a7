"""The structured audit trail (who, when, before, after) for risk-relevant changes."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from django.db import models

from ordermanager.core.decimals import plain_decimal
from ordermanager.core.models import AuditEntry


def _plain(value):
    """JSON-safe and exact: Decimals and dates as strings, never floats."""
    if isinstance(value, Decimal):
        return plain_decimal(value)  # '50000', not '50000.000…': same number, same text, no false diff
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, models.Model):
        return value.pk
    return value


def field_values(instance: models.Model, fields: list[str]) -> dict:
    return {name: _plain(getattr(instance, name)) for name in fields}


def diff(before: dict, after: dict) -> dict:
    """Only the fields that changed, as {"field": {"before": x, "after": y}}."""
    return {
        name: {"before": before.get(name), "after": after.get(name)}
        for name in sorted(set(before) | set(after))
        if before.get(name) != after.get(name)
    }


def audit_record(
    *, action: str, target: models.Model, changes: dict, user=None, reason: str = "", source: str = "admin"
) -> AuditEntry:
    """Write one audit row; call it inside the transaction that makes the change."""
    return AuditEntry.objects.create(
        action=action,
        target_type=target._meta.label_lower,
        target_id=str(target.pk),
        target_repr=str(target)[:200],
        user=user if user is not None and getattr(user, "is_authenticated", False) else None,
        changes=changes,
        reason=reason[:500],
        source=source,
    )
