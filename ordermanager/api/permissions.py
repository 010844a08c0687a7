"""Permissions by role: each API view names the Django permissions per HTTP method."""

from rest_framework.permissions import BasePermission

_READ = ("GET", "HEAD", "OPTIONS")


class HasRolePermissions(BasePermission):
    """``view.required_permissions = {"GET": ("orders.view_order",), "POST": (...)}``.

    A method the mapping does not name is refused: adding a write method to a
    view without saying who may call it fails closed.
    """

    message = "Your role does not allow this."

    def has_permission(self, request, view):
        user = request.user
        if not (user and user.is_authenticated):
            return False
        required = getattr(view, "required_permissions", {})
        method = "GET" if request.method in _READ else request.method
        if method not in required:
            return False
        return user.has_perms(required[method])
