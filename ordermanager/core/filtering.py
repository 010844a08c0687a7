"""Selectors filter through django-filter FilterSets; bad values become one ValidationError."""

import datetime

import django_filters
from django import forms
from django.core.exceptions import ValidationError


def apply_filters(*, filterset_class, data, queryset):
    """Filter ``queryset``; bad values raise ValidationError naming each field (-> 400)."""
    filterset = filterset_class(data=data or {}, queryset=queryset)
    if not filterset.is_valid():
        raise ValidationError({field: list(errs) for field, errs in filterset.errors.items()})
    return filterset.qs


class StrictBooleanField(forms.Field):
    """true/false (or 1/0, yes/no); anything else is an error, not silently 'no filter'."""

    def to_python(self, value):
        if value in (None, ""):
            return None
        lowered = str(value).strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise ValidationError("Use true or false.", code="invalid")


class StrictBooleanFilter(django_filters.BooleanFilter):
    field_class = StrictBooleanField


class UpperCharFilter(django_filters.CharFilter):
    """Symbols are stored upper-case; accept 'btcusdt' too without a case-insensitive scan."""

    def filter(self, qs, value):
        return super().filter(qs, value.upper() if value else value)


class UtcIsoDateTimeField(django_filters.fields.IsoDateTimeField):
    """ISO 8601, normalised to UTC before it reaches the database. Python accepts offsets up to
    ±23:59 but PostgreSQL only ±15:59 ("time zone displacement out of range" would be a 500)."""

    def to_python(self, value):
        parsed = super().to_python(value)
        if parsed is None:
            return None
        try:
            return parsed.astimezone(datetime.UTC)
        except OverflowError:
            raise ValidationError("Date and time out of range.", code="overflow") from None


class UtcIsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UtcIsoDateTimeField
