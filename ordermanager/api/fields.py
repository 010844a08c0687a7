"""Money on the wire: exact decimal strings without the column's padding zeros."""

from decimal import Decimal

from django.db import models
from rest_framework import serializers


def plain_decimal(value: Decimal | None) -> str | None:
    """'0.010000000000000000' -> '0.01', '64000.000' -> '64000'; never exponent notation."""
    if value is None:
        return None
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


class MoneyField(serializers.DecimalField):
    def __init__(self, **kwargs):
        kwargs.setdefault("max_digits", 36)
        kwargs.setdefault("decimal_places", 18)
        kwargs.setdefault("coerce_to_string", True)
        super().__init__(**kwargs)

    def to_representation(self, value):
        return plain_decimal(Decimal(value)) if value is not None else None


class OutputModelSerializer(serializers.ModelSerializer):
    """ModelSerializer for output only, rendering every DecimalField as MoneyField."""

    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.DecimalField: MoneyField,
    }
