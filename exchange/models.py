from django.db import models
from django.db.models import Q
from django.utils import timezone

from ordermanager.core.fields import money_field


class Instrument(models.Model):
    """Cached trading rules of one symbol (Bybit instruments-info)."""

    category = models.CharField(max_length=10)
    symbol = models.CharField(max_length=30)
    status = models.CharField(max_length=20, default="Trading")
    base_coin = models.CharField(max_length=20, blank=True)
    quote_coin = models.CharField(max_length=20, blank=True)
    tick_size = money_field()
    qty_step = money_field()
    min_order_qty = money_field()
    max_order_qty = money_field()
    max_market_order_qty = money_field(null=True, blank=True)
    min_notional = money_field(default=0)
    raw = models.JSONField(default=dict, blank=True)
    fetched_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["category", "symbol"], name="instrument_unique_symbol"),
            models.CheckConstraint(condition=Q(tick_size__gt=0), name="instrument_tick_size_positive"),
            models.CheckConstraint(condition=Q(qty_step__gt=0), name="instrument_qty_step_positive"),
            models.CheckConstraint(condition=Q(min_order_qty__gte=0), name="instrument_min_qty_non_negative"),
            models.CheckConstraint(condition=Q(min_notional__gte=0), name="instrument_min_notional_non_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.category}:{self.symbol}"


# A call that did not succeed: an error, a non-zero retCode, or no HTTP answer at all. One definition
# for the admin's filter and the partial index behind it (PostgreSQL matches the two by their text).
EXCHANGE_CALL_FAILED = ~Q(error="") | ~Q(ret_code=0) | Q(http_status__isnull=True)


class ExchangeCall(models.Model):
    """Audit of one HTTP attempt against the exchange.

    Append-only and expected to reach millions of rows: only indexed columns
    are filtered on (time, trace id, orderLinkId), and rows are pruned by age
    (EXCHANGE_CALL_RETENTION_DAYS, exchange/retention.py). Secrets and
    signatures are never stored (the client redacts request and response).

    ``created_at`` is the time of the call, set by the client: a row written
    later (from the spool, exchange/audit_spool.py) keeps it. ``call_id`` is
    unique so a row handed over twice is written once.
    """

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    call_id = models.UUIDField(null=True, blank=True, editable=False)
    method = models.CharField(max_length=8)
    path = models.CharField(max_length=100)
    params = models.JSONField(default=dict, blank=True)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    ret_code = models.IntegerField(null=True, blank=True)
    ret_msg = models.CharField(max_length=500, blank=True)
    latency_ms = models.PositiveIntegerField(default=0)
    attempt = models.PositiveSmallIntegerField(default=1)
    trace_id = models.CharField(max_length=64, blank=True, db_index=True)
    order_link_id = models.CharField(max_length=36, blank=True, db_index=True)
    error = models.CharField(max_length=500, blank=True)
    dry_run = models.BooleanField(default=False)
    # The answer as received (secret-looking keys and signature-like values redacted), cut to
    # EXCHANGE_CALL_RESPONSE_MAX_BYTES; response_bytes is the size before the cut (None: no answer).
    response_body = models.TextField(blank=True)
    response_bytes = models.IntegerField(null=True, blank=True)  # no CHECK: adding one scans the table
    response_truncated = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(attempt__gte=1), name="exchangecall_attempt_positive"),
            models.UniqueConstraint(fields=["call_id"], name="exchangecall_unique_call_id"),
        ]
        indexes = [
            # The admin's "failed" filter (exchange/admin.py FailedFilter, same condition): failures are rare.
            models.Index(
                fields=["-created_at"],
                condition=EXCHANGE_CALL_FAILED,
                name="exchangecall_failed_created",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.method} {self.path} → {self.ret_code}"
