"""Decimal text for people and JSON: exact, without the column's padding zeros."""

from decimal import Decimal


def plain_decimal(value: Decimal | None) -> str | None:
    """'0.010000000000000000' -> '0.01', '64000.000' -> '64000'; never exponent notation."""
    if value is None:
        return None
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text
