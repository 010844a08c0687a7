"""Shared field shapes.

Money and quantity columns are NUMERIC(36, 18): 18 integer digits cover any
notional a desk will see (1e18 USDT), 18 fractional digits cover every Bybit
step and fee rate with room for exact averages. See
docs/decisions/0001-decimal-precision.md.
"""

from django.db import models

MONEY_DIGITS = 36
MONEY_PLACES = 18


def money_field(**kwargs) -> models.DecimalField:
    return models.DecimalField(max_digits=MONEY_DIGITS, decimal_places=MONEY_PLACES, **kwargs)
