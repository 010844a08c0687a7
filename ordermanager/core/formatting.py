"""Numbers as people read them: in reasons, discrepancy notes, logs, admin pages and reports.

Never exponent notation (``Decimal("2E+2")`` prints as ``2E+2``; ``.normalize()``
makes it so), never the column's 18 padding zeros (``1.300000000000000000``).

- ``qty_text`` / ``price_text``: with the instrument's step (tick), exactly as many
  places as the step has (``1.300`` at step 0.001, ``200`` at step 10), more only if
  the value really has them, so nothing is rounded away; without a step, plain
  (``1.3``).
- ``money_text``: USDT amounts, fees, PnL: at least 2 and at most 8 places
  (``1234.50``, ``0.00012346``), rounded half-even beyond 8.
- ``number_text``: any other decimal: plain, exact.

See docs/decisions/0514-numbers-as-people-read-them.md.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

from ordermanager.core.decimals import plain_decimal

MONEY_MIN_PLACES = 2
MONEY_MAX_PLACES = 8


def _places(value: Decimal) -> int:
    """Fraction digits a value needs (0 for integers, whatever their exponent)."""
    exponent = value.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def _fixed(value: Decimal, places: int) -> str:
    text = format(value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN), "f")
    return "0" + text[2:] if text.startswith("-0") and not any(c in "123456789" for c in text) else text


def number_text(value: Decimal | int | None) -> str:
    if value is None:
        return "—"
    return plain_decimal(Decimal(value))


def qty_text(value: Decimal | int | None, step: Decimal | None = None) -> str:
    """A quantity at the instrument's step (``qty_step``), or plain without one."""
    if value is None:
        return "—"
    value = Decimal(value)
    if step is None or not step.is_finite() or step <= 0 or not value.is_finite():
        return number_text(value)
    return _fixed(value, max(_places(step), _places(value)))


def price_text(value: Decimal | int | None, tick: Decimal | None = None) -> str:
    """A price at the instrument's tick, or plain without one."""
    return qty_text(value, tick)


def money_text(value: Decimal | int | None) -> str:
    """An amount of money: 2 to 8 places."""
    if value is None:
        return "—"
    value = Decimal(value)
    if not value.is_finite():
        return str(value)
    return _fixed(value, min(MONEY_MAX_PLACES, max(MONEY_MIN_PLACES, _places(value))))


# Column names that hold money (USDT amounts, fees, PnL); other decimal columns are quantities,
# prices or ratios, shown plain when no instrument is at hand.
_MONEY_WORDS = ("fee", "pnl", "value", "amount", "balance", "exposure", "funding", "notional", "equity")


def column_text(value: Decimal | None, name: str) -> str:
    """A decimal column for display, by what its name says it holds."""
    if value is None:
        return "—"
    return money_text(value) if any(word in name for word in _MONEY_WORDS) else number_text(value)


def admin_decimals_install() -> None:
    """Django's admin shows a read-only or listed DecimalField with all its places
    (``number_format(value, 18)``: ``1.300000000000000000``). Every admin page goes through
    ``display_for_field``; wrap it so decimal columns read as ``column_text`` does."""
    from django.contrib.admin import helpers
    from django.contrib.admin.templatetags import admin_list
    from django.db import models

    original = helpers.display_for_field
    if getattr(original, "_plain_decimals", False):
        return

    def display_for_field(value, field, empty_value_display, *args, **kwargs):
        if isinstance(field, models.DecimalField) and isinstance(value, Decimal) and not field.choices:
            return column_text(value, field.name)
        return original(value, field, empty_value_display, *args, **kwargs)

    display_for_field._plain_decimals = True
    helpers.display_for_field = display_for_field
    admin_list.display_for_field = display_for_field
