"""The Position admin with "Validate now": recompute every position from its fills, record and repair.

Validation reads ``Execution`` rows, which belong to ``orders``; positions imports no higher app, so this
side extends positions' ``PositionAdmin`` and takes its place in the admin site (decision 0421).
Imported by ``orders/admin.py``, so autodiscovery registers it.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from orders.services.position_validation import positions_validate_against_fills
from positions.admin import PositionAdmin
from positions.models import Position

VALIDATE_PERMISSION = "orders.run_reconciliation"  # validating repairs positions: same trust as reconciling


class PositionValidateAdmin(PositionAdmin):
    def changelist_view(self, request, extra_context=None):
        extra = {"can_validate": request.user.has_perm(VALIDATE_PERMISSION)}
        return super().changelist_view(request, {**(extra_context or {}), **extra})

    def get_urls(self):
        view = self.admin_site.admin_view(self.validate_now_view)
        return [path("validate-now/", view, name="positions_validate_now"), *super().get_urls()]

    def validate_now_view(self, request):
        """Confirm, then recompute every position from its fills, record and repair differences."""
        if not request.user.has_perm(VALIDATE_PERMISSION):
            raise PermissionDenied
        if request.method == "POST":
            found = positions_validate_against_fills(repair=True)
            if not found:
                self.message_user(request, "Validated: every position equals the one computed from its fills.")
            else:
                lines = "; ".join(f"{d.symbol}[{d.position_idx}] {d.kind}{' (repaired)' if d.repaired else ''}"
                                  for d in found)  # fmt: skip
                self.message_user(request, f"Validation found {len(found)} difference(s): {lines}", messages.WARNING)
            return HttpResponseRedirect(reverse("admin:positions_position_changelist"))
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "title": "Validate positions"}
        return TemplateResponse(request, "admin/positions/position/validate_now.html", context)


# positions.admin (imported above) has registered the plain admin; this one replaces it.
admin.site.unregister(Position)
admin.site.register(Position, PositionValidateAdmin)
