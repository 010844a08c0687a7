"""Selectors filter through django-filter FilterSets; bad values become one ValidationError."""

from django.core.exceptions import ValidationError


def apply_filters(*, filterset_class, data, queryset):
    """Filter ``queryset``; bad values raise ValidationError naming each field (-> 400)."""
    filterset = filterset_class(data=data or {}, queryset=queryset)
    if not filterset.is_valid():
        raise ValidationError({field: list(errs) for field, errs in filterset.errors.items()})
    return filterset.qs
