"""Small helpers shared by the API views: pagination and schema parameters."""

from __future__ import annotations

from functools import cache

import django_filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers

from ordermanager.api.pagination import NewestFirstCursorPagination


def paginated_response(*, queryset, serializer_class, request, view, pagination_class=NewestFirstCursorPagination):
    paginator = pagination_class()
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(serializer_class(page, many=True).data)


@cache
def paginated(serializer_class, name: str):
    """The cursor page envelope around ``serializer_class``, as a schema component."""
    return type(
        name,
        (serializers.Serializer,),
        {
            "next": serializers.URLField(allow_null=True, help_text="URL of the next (older) page."),
            "previous": serializers.URLField(allow_null=True, help_text="URL of the previous (newer) page."),
            "results": serializer_class(many=True),
            "Meta": type("Meta", (), {"ref_name": name}),
        },
    )


_FILTER_TYPES = {
    django_filters.IsoDateTimeFilter: OpenApiTypes.DATETIME,
    django_filters.DateFilter: OpenApiTypes.DATE,
    django_filters.BooleanFilter: OpenApiTypes.BOOL,
    django_filters.UUIDFilter: OpenApiTypes.UUID,
    django_filters.NumberFilter: OpenApiTypes.NUMBER,
}


def filter_parameters(filterset_class) -> list[OpenApiParameter]:
    """Query parameters of a FilterSet for @extend_schema (APIViews are not introspected)."""
    params = []
    for name, flt in filterset_class.base_filters.items():
        kind = next((t for cls, t in _FILTER_TYPES.items() if isinstance(flt, cls)), OpenApiTypes.STR)
        choices = getattr(flt, "extra", {}).get("choices")
        enum = [value for value, _ in choices] if choices else None
        many = isinstance(flt, django_filters.MultipleChoiceFilter)
        params.append(
            OpenApiParameter(
                name, kind, OpenApiParameter.QUERY, description=flt.label or "", enum=enum, many=many or None,
                explode=True if many else None,
            )
        )
    return params


CURSOR_PARAMETERS = [
    OpenApiParameter("cursor", OpenApiTypes.STR, OpenApiParameter.QUERY, description="Opaque page cursor."),
    OpenApiParameter(
        "page_size", OpenApiTypes.INT, OpenApiParameter.QUERY, description="Rows per page (1-500, default 100)."
    ),
]
