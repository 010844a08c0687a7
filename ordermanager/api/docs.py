"""Swagger UI at /api/docs/: a staff login or an API key, like the schema it renders."""

from django.contrib.auth.views import redirect_to_login
from drf_spectacular.views import SpectacularSwaggerView
from rest_framework.exceptions import AuthenticationFailed, NotAuthenticated


class SwaggerDocsView(SpectacularSwaggerView):
    def handle_exception(self, exc):
        # A person in a browser without a session is sent to the admin login (and back here after);
        # a client that sent credentials gets the API's error answer.
        if isinstance(exc, NotAuthenticated | AuthenticationFailed) and "HTTP_AUTHORIZATION" not in self.request.META:
            return redirect_to_login(self.request.get_full_path())
        return super().handle_exception(exc)
