"""Back-office records: API keys (superusers only, digests never shown), audit trail, heartbeats."""

from __future__ import annotations

from django.contrib import admin, messages

from ordermanager.core.admin_tools import ReadOnlyAdmin, choices_filter, pretty_json
from ordermanager.core.models import AlertState, ApiKey, AuditEntry, Heartbeat, OutboxEvent
from ordermanager.core.services.api_keys import api_key_revoke

admin.site.site_header = "Order Manager — risk desk"
admin.site.site_title = "Order Manager"
admin.site.index_title = "Back office"


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are created with `manage.py api_key_create` (the key is printed once on the terminal);
    here superusers see who holds which key (by its public prefix) and revoke it."""

    list_display = ("name", "prefix", "user", "created_at", "expires_at", "last_used_at", "revoked_at", "revoked_by")
    list_filter = (("revoked_at", admin.EmptyFieldListFilter),)
    list_select_related = ("user", "revoked_by")
    search_fields = ("name", "=prefix", "user__username")
    fields = ("name", "prefix", "user", "created_by", "created_at", "expires_at", "last_used_at", "revoked_at",
              "revoked_by")  # fmt: skip  (key_hash deliberately absent)
    readonly_fields = fields
    actions = ("revoke",)

    def has_module_permission(self, request):
        return request.user.is_active and request.user.is_superuser

    def has_view_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_superuser

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_revoke_permission(self, request):
        return request.user.is_active and request.user.is_superuser

    @admin.action(description="Revoke selected keys", permissions=["revoke"])
    def revoke(self, request, queryset):
        revoked = [key for key in queryset if api_key_revoke(api_key=key, user=request.user)]
        for key in revoked:
            self.log_change(request, key, "Revoked")
        self.message_user(request, f"Revoked {len(revoked)} key(s); they stop working at once.", messages.SUCCESS)


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "action", "target_repr", "user", "source", "reason", "changes_short")
    list_filter = ("source", ("created_at", admin.DateFieldListFilter))
    list_select_related = ("user",)
    search_fields = ("=target_id",)
    ordering = ("-created_at",)
    exclude = ("changes",)
    readonly_fields = ("changes_col",)

    @admin.display(description="changes")
    def changes_short(self, obj):
        return "; ".join(f"{k}: {v.get('before')} → {v.get('after')}" for k, v in obj.changes.items())[:200]

    @admin.display(description="changes")
    def changes_col(self, obj):
        return pretty_json(obj.changes)


@admin.register(Heartbeat)
class HeartbeatAdmin(ReadOnlyAdmin):
    list_display = ("component", "beat_at", "ok", "detail")
    ordering = ("component",)

    def has_delete_permission(self, request, obj=None):
        # A component retired for good keeps its last beat, and its heartbeat alert, until a superuser removes it.
        return request.user.is_superuser


@admin.register(AlertState)
class AlertStateAdmin(ReadOnlyAdmin):
    """Which alert thresholds fire (ALERT_* settings); each flip published one ops.alert event."""

    list_display = ("key", "firing", "since", "changed_at", "reason")
    list_filter = ("firing",)
    ordering = ("-firing", "key")


@admin.register(OutboxEvent)
class OutboxEventAdmin(ReadOnlyAdmin):
    """Events out, as written with each change; ``sent at`` empty = not (yet) on the broker (or no broker)."""

    list_display = ("id", "created_at", "routing_key", "aggregate_type", "aggregate_id", "sequence", "sent_at")
    list_filter = (choices_filter("aggregate_type",
                                  [(t, t) for t in ("order", "position", "signal", "risk_limit", "alert")]),
                   ("sent_at", admin.EmptyFieldListFilter))
    search_fields = ("=aggregate_id", "=event_id")
    ordering = ("-id",)
    exclude = ("payload",)
    readonly_fields = ("payload_col",)

    @admin.display(description="message")
    def payload_col(self, obj):
        return pretty_json(obj.payload)
