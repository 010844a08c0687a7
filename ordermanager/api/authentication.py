"""API-key authentication for other services: ``Authorization: Api-Key <key>``."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from ordermanager.core.services.api_keys import api_key_authenticate

KEYWORD = "Api-Key"
INVALID_KEY = "Invalid, revoked or expired API key."


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """Returns (key's user, ApiKey). Listed first in the settings so that an
    unauthenticated request gets 401 with ``WWW-Authenticate: Api-Key``."""

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1").split()
        if not header or header[0].lower() != KEYWORD.lower():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Send the key as 'Authorization: Api-Key <key>'.")
        api_key = api_key_authenticate(raw_key=header[1])
        if api_key is None:
            raise exceptions.AuthenticationFailed(INVALID_KEY)
        return api_key.user, api_key

    def authenticate_header(self, request):
        return KEYWORD


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "ordermanager.api.authentication.ApiKeyAuthentication"
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Api-Key <key>`; keys are created and revoked by a superuser in the admin.",
        }
