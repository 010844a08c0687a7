"""Money on the wire: exact decimal strings without the column's padding zeros."""

from decimal import Decimal

from django.db import models
from rest_framework import serializers

from ordermanager.core.decimals import plain_decimal


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
