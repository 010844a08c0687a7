"""OpenAPI helpers: the one error envelope, documented on every endpoint."""

from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers


class ErrorSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable machine-readable code, e.g. 'invalid', 'not_found', 'conflict'.")
    message = serializers.CharField(help_text="What went wrong, for a person.")
    extra = serializers.DictField(
        help_text="Details; for 'invalid' this holds {'fields': {field: [messages]}}.", required=False
    )

    class Meta:
        ref_name = "Error"


_DESCRIPTIONS = {
    400: "Bad input: `code` 'invalid', `extra.fields` names each field and what is wrong.",
    401: "No or bad credentials (`Authorization: Api-Key <key>` or a staff session).",
    403: "Authenticated, but the role does not allow this.",
    404: "No such object.",
    409: "The object is in a state that does not allow this (e.g. the order is already closed).",
    429: "Too many requests; retry after the `Retry-After` header.",
    503: "The exchange or a dependency is unavailable; retry later.",
}


def errors(*statuses: int) -> dict:
    """Responses for the given error statuses plus 401/403/429, which every endpoint can return."""
    wanted = sorted({401, 403, 429, *statuses})
    return {status: OpenApiResponse(ErrorSerializer, description=_DESCRIPTIONS[status]) for status in wanted}
