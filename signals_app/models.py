from django.db import models
from django.db.models import Q

from ordermanager.core.fields import money_field


class SignalStatus(models.TextChoices):
    RECEIVED = "received", "Received"
    PROCESSING = "processing", "Processing"
    EXECUTED = "executed", "Executed"
    REJECTED = "rejected", "Rejected"
    FAILED = "failed", "Failed"
    DRY_RUN = "dry_run", "Dry run"
    SKIPPED = "skipped", "Skipped"


TERMINAL_SIGNAL_STATUSES = (
    SignalStatus.EXECUTED,
    SignalStatus.REJECTED,
    SignalStatus.FAILED,
    SignalStatus.DRY_RUN,
    SignalStatus.SKIPPED,
)


class TradingSignal(models.Model):
    """The inbox. The primary key is the arrival sequence: the processor takes a
    symbol's signals strictly in ``id`` order."""

    signal_id = models.UUIDField(unique=True)
    signal_type = models.CharField(max_length=4, blank=True)
    asset = models.CharField(max_length=30, blank=True)
    amount = money_field(null=True, blank=True)
    confidence = models.DecimalField(max_digits=12, decimal_places=10, null=True, blank=True)
    strategy_id = models.CharField(max_length=100, blank=True)
    model_version = models.CharField(max_length=100, blank=True)
    is_warmup = models.BooleanField(default=False)
    urgency = models.BooleanField(default=False)
    signal_timestamp = models.DateTimeField(null=True, blank=True)
    snapshot_price = money_field(null=True, blank=True)
    snapshot_spread = money_field(null=True, blank=True)
    raw_payload = models.JSONField(default=dict, blank=True)
    trace_id = models.CharField(max_length=64, blank=True)
    # The producer's span (the parent-id of the message's W3C traceparent header), when it sent one.
    trace_parent_id = models.CharField(max_length=16, blank=True, default="")
    source = models.CharField(max_length=10, default="amqp")  # amqp | api | cli
    status = models.CharField(max_length=12, choices=SignalStatus.choices, default=SignalStatus.RECEIVED)
    reason = models.TextField(blank=True)
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount__isnull=True) | Q(amount__gt=0), name="signal_amount_positive"),
            models.CheckConstraint(
                condition=Q(confidence__isnull=True) | (Q(confidence__gte=0) & Q(confidence__lte=1)),
                name="signal_confidence_0_1",
            ),
            models.CheckConstraint(condition=Q(status__in=SignalStatus.values), name="signal_status_valid"),
        ]
        indexes = [
            # The processor's query: a symbol's unfinished signals in arrival order.
            models.Index(fields=["asset", "status", "id"], name="signal_asset_status_seq"),
            models.Index(fields=["status", "received_at"], name="signal_status_received"),
            # Back-office filters and searches (decision 0510): arrival time, a strategy's signals over
            # time, the trace id, and the rare sources / warm-up signals as partial indexes.
            models.Index(fields=["-received_at"], name="signal_received_desc"),
            models.Index(fields=["strategy_id", "-received_at"], name="signal_strategy_received"),
            models.Index(fields=["trace_id"], condition=~Q(trace_id=""), name="signal_trace"),
            models.Index(fields=["source", "-id"], condition=~Q(source="amqp"), name="signal_not_amqp"),
            models.Index(fields=["-id"], condition=Q(is_warmup=True), name="signal_warmup"),
        ]

    def __str__(self) -> str:
        return f"{self.signal_id} {self.signal_type} {self.asset} ({self.status})"
