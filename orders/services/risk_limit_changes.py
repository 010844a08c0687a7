"""Changes to risk limits and the trading halt by people (admin) and services (API).

Every change is validated with messages a person can act on, saved under a
row lock, and audited in the same transaction with who, when, the values
before and after, and the reason (ordermanager.core.models.AuditEntry).
"""

from __future__ import annotations

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import transaction

from ordermanager import events
from ordermanager.core.services.audit import audit_record, diff, field_values
from orders.models import RiskLimit
from orders.services.risk_limits import risk_limit_seed_global

EDITABLE_FIELDS = (
    "max_position_size",
    "max_position_value",
    "max_exposure",
    "max_order_size_ratio",
    "trading_halted",
    "reduce_only",
    "halt_reason",
)
AMOUNT_FIELDS = ("max_position_size", "max_position_value", "max_exposure")
# What the NUMERIC(36, 18) columns hold (ordermanager.env.STORABLE_BELOW): a larger figure would fail on save.
STORABLE_BELOW = Decimal("1e18")
MSG_NEGATIVE = "Must not be negative."
MSG_TOO_LARGE = {
    "max_position_size": "Must be below 1,000,000,000,000,000,000 base units (the largest amount stored); "
                         "leave it blank for no limit in base units.",
    "max_position_value": "Must be below 1,000,000,000,000,000,000 USDT (the largest amount stored); "
                          "leave it blank for no limit in USDT.",
    "max_exposure": "Must be below 1,000,000,000,000,000,000 USDT (the largest amount stored).",
}
MSG_TOO_PRECISE = "At most 18 decimal places are stored."
MSG_REQUIRED = "Required: the exposure limit in USDT."
MSG_RATIO = "Must be between 0 and 1 (a share of the available balance)."
MSG_HALT_REASON = "Say why trading is halted or reduce-only; the desk reads this."
MSG_UNKNOWN_FIELD = "Not a risk-limit field that can be changed."


def risk_limit_validate(values: dict) -> None:
    """Field-level checks with clear messages (the database constraints are the last line)."""
    errors: dict[str, list[str]] = {}
    for name in AMOUNT_FIELDS:
        if values.get(name) is None:
            continue
        amount = Decimal(values[name])
        if not amount.is_finite():
            errors[name] = [MSG_TOO_LARGE[name]]
        elif amount < 0:
            errors[name] = [MSG_NEGATIVE]
        elif amount >= STORABLE_BELOW:
            errors[name] = [MSG_TOO_LARGE[name]]
        elif -amount.as_tuple().exponent > 18:
            errors[name] = [MSG_TOO_PRECISE]
    if "max_exposure" in values and values["max_exposure"] is None:
        errors["max_exposure"] = [MSG_REQUIRED]
    ratio = values.get("max_order_size_ratio")
    if ratio is not None and not Decimal(0) <= Decimal(ratio) <= Decimal(1):
        errors["max_order_size_ratio"] = [MSG_RATIO]
    if (values.get("trading_halted") or values.get("reduce_only")) and not (values.get("halt_reason") or "").strip():
        errors["halt_reason"] = [MSG_HALT_REASON]
    if errors:
        raise ValidationError(errors)


def _save_audited(row: RiskLimit, *, before: dict, action: str, user, reason: str, source: str) -> RiskLimit:
    after = field_values(row, list(EDITABLE_FIELDS))
    risk_limit_validate(after)
    row.updated_by = user if getattr(user, "is_authenticated", False) else None
    row.full_clean()
    row.save()
    changes = diff(before, after)
    if changes:
        audit_record(action=action, target=row, changes=changes, user=user, reason=reason, source=source)
        events.publish_event_on_commit(
            routing_key=events.RISK_LIMIT_CHANGED,
            payload={"risk_limit_id": row.pk, "symbol": row.symbol, "changes": changes},
        )
    return row


@transaction.atomic
def risk_limit_update(
    *, risk_limit: RiskLimit, changes: dict, user=None, reason: str = "", source: str = "admin"
) -> RiskLimit:
    """Apply ``changes`` (a subset of EDITABLE_FIELDS) to one row; returns the saved row."""
    unknown = sorted(set(changes) - set(EDITABLE_FIELDS))
    if unknown:
        raise ValidationError({name: [MSG_UNKNOWN_FIELD] for name in unknown})
    # Locked so two people editing at once both end up in the audit trail with
    # the right "before" (the second sees the first's values).
    row = RiskLimit.objects.select_for_update().get(pk=risk_limit.pk)
    before = field_values(row, list(EDITABLE_FIELDS))
    for name, value in changes.items():
        setattr(row, name, value)
    if not row.trading_halted and not row.reduce_only and "halt_reason" not in changes:
        row.halt_reason = ""  # resuming clears the stale reason
    return _save_audited(row, before=before, action="risk_limit.update", user=user, reason=reason, source=source)


@transaction.atomic
def risk_limit_create(*, symbol: str, values: dict, user=None, reason: str = "", source: str = "admin") -> RiskLimit:
    """A per-symbol override. Unset amounts start from the global row."""
    symbol = symbol.strip().upper()
    if not symbol:
        raise ValidationError({"symbol": ["A per-symbol row needs a symbol; the global row already exists."]})
    unknown = sorted(set(values) - set(EDITABLE_FIELDS))
    if unknown:
        raise ValidationError({name: [MSG_UNKNOWN_FIELD] for name in unknown})
    if RiskLimit.objects.filter(symbol=symbol).exists():
        raise ValidationError({"symbol": [f"{symbol} already has a risk-limit row; change that one."]})
    risk_limit_seed_global()
    glob = RiskLimit.objects.get(symbol="")
    row = RiskLimit(symbol=symbol, **{name: getattr(glob, name) for name in AMOUNT_FIELDS + ("max_order_size_ratio",)})
    before = {name: None for name in EDITABLE_FIELDS}
    for name, value in values.items():
        setattr(row, name, value)
    return _save_audited(row, before=before, action="risk_limit.create", user=user, reason=reason, source=source)


def trading_halt_set(*, halted: bool, reason: str, user=None, source: str = "admin") -> RiskLimit:
    """The one switch: halt (or resume) all trading on the global row."""
    if halted and not reason.strip():
        raise ValidationError({"reason": [MSG_HALT_REASON]})
    risk_limit_seed_global()
    glob = RiskLimit.objects.get(symbol="")
    changes = {"trading_halted": True, "halt_reason": reason.strip()} if halted else {"trading_halted": False}
    return risk_limit_update(risk_limit=glob, changes=changes, user=user, reason=reason, source=source)
