"""The base class of our API views: permissions by role, declared per HTTP method."""

from rest_framework.views import APIView

from ordermanager.api.permissions import HasRolePermissions


class RoleApiView(APIView):
    permission_classes = [HasRolePermissions]
    required_permissions: dict[str, tuple[str, ...]] = {}
