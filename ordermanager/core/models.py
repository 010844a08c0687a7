"""Back-office records of the project itself: service API keys, the audit
trail of risk-relevant changes, and component heartbeats for the dashboard."""

from django.conf import settings
from django.db import models
from django.db.models import Q


class ApiKey(models.Model):
    """A credential another service presents as ``Authorization: Api-Key <key>``.

    Only a SHA-256 digest of the key is stored; the key itself is shown once,
    when it is created. ``prefix`` is public (it is part of the key) and lets
    people tell keys apart and lets us look a key up by an indexed column.
    The key acts as ``user``: its permissions are that user's role.
    """

    name = models.CharField(max_length=100, help_text="Who uses it, e.g. 'model-service (prod)'.")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "API key"
        constraints = [models.CheckConstraint(condition=~Q(key_hash=""), name="apikey_hash_present")]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None


class AuditEntry(models.Model):
    """Who changed what, when, with the values before and after.

    Django's LogEntry records that a row changed, not its old values; risk
    limits and the trading halt need both (issue 8), from the admin and the
    API alike, so services write this row in the same transaction as the change.
    """

    action = models.CharField(max_length=50)
    target_type = models.CharField(max_length=100)
    target_id = models.CharField(max_length=64)
    target_repr = models.CharField(max_length=200, blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    changes = models.JSONField(default=dict, blank=True, help_text='{"field": {"before": ..., "after": ...}}')
    reason = models.CharField(max_length=500, blank=True)
    source = models.CharField(max_length=20, default="admin")  # admin | api | system
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "audit entries"
        indexes = [
            models.Index(fields=["target_type", "target_id", "-created_at"], name="audit_target_time"),
            models.Index(fields=["-created_at"], name="audit_created_desc"),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.target_repr or self.target_id}"


class Heartbeat(models.Model):
    """Last sign of life of a long-running component (consumer, ws-gateway link, ...)."""

    component = models.CharField(max_length=50, unique=True)
    beat_at = models.DateTimeField()
    ok = models.BooleanField(default=True)
    detail = models.CharField(max_length=500, blank=True)

    def __str__(self) -> str:
        return f"{self.component} @ {self.beat_at:%H:%M:%S}"


class OutboxEvent(models.Model):
    """An event out, written in the transaction that made the change; the relay publishes it and sets ``sent_at``.

    ``payload`` is the whole message as published. ``(aggregate_type, aggregate_id, sequence)`` orders the events
    of one order / position / signal; ``event_id`` lets a consumer drop the repeats at-least-once delivery makes.
    See docs/decisions/0321-transactional-outbox.md.
    """

    event_id = models.UUIDField(unique=True, editable=False)
    routing_key = models.CharField(max_length=64)
    aggregate_type = models.CharField(max_length=20)
    aggregate_id = models.CharField(max_length=128)
    sequence = models.PositiveBigIntegerField()
    payload = models.JSONField()
    created_at = models.DateTimeField(db_index=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "outbox event"
        constraints = [
            models.UniqueConstraint(fields=["aggregate_type", "aggregate_id", "sequence"], name="outbox_aggregate_seq"),
        ]
        indexes = [
            # The relay's query: the unsent rows in id order (a small partial index, whatever the retention).
            models.Index(fields=["id"], condition=Q(sent_at__isnull=True), name="outbox_unsent"),
        ]

    def __str__(self) -> str:
        return f"{self.routing_key} {self.aggregate_type}:{self.aggregate_id} #{self.sequence}"


class OutboxSequence(models.Model):
    """The last sequence number given to an aggregate's events (kept when old events are pruned).

    Taken with an upsert whose row lock lasts until commit, so the events of one aggregate commit in sequence
    order and get increasing ids."""

    aggregate = models.CharField(max_length=160, unique=True)
    last = models.PositiveBigIntegerField()

    def __str__(self) -> str:
        return f"{self.aggregate} #{self.last}"


class AlertState(models.Model):
    """Whether one alert is firing, so that it is announced once when it starts and once when it resolves.

    Every process evaluates the thresholds (ordermanager/ops/alerts.py); only the one that flips
    this row, under its row lock, publishes the ``ops.alert`` event. ``key`` is the alert and its subject,
    e.g. ``heartbeat_age:consumer``. ``changed_at`` is the evaluation time of the last flip: an evaluation
    older than it never flips the row back (two processes measuring moments apart). See decision 0524.
    """

    key = models.CharField(max_length=100, unique=True)
    firing = models.BooleanField(default=False)
    since = models.DateTimeField(null=True, blank=True, help_text="When it started firing (kept after it resolves).")
    changed_at = models.DateTimeField()
    reason = models.CharField(max_length=500, blank=True, help_text="The reason at the last flip.")

    class Meta:
        verbose_name = "alert state"

    def __str__(self) -> str:
        return f"{self.key}: {'firing' if self.firing else 'resolved'}"
