from django.conf import settings
from django.db import models
from django.db.models import F, Q

from ordermanager.core.fields import money_field


class OrderStatus(models.TextChoices):
    PENDING_SUBMIT = "pending_submit", "Pending submit"
    NEW = "new", "New"
    PARTIALLY_FILLED = "partially_filled", "Partially filled"
    PENDING_CANCEL = "pending_cancel", "Pending cancel"
    FILLED = "filled", "Filled"
    CANCELLED = "cancelled", "Cancelled"
    REJECTED = "rejected", "Rejected"
    FAILED = "failed", "Failed"
    DRY_RUN = "dry_run", "Dry run"


# Order state only moves forward (design property 7): an update whose rank is
# lower than the stored one is ignored. Terminal states share the top rank and
# never change into one another.
STATUS_RANK = {
    OrderStatus.PENDING_SUBMIT: 0,
    OrderStatus.NEW: 1,
    OrderStatus.PARTIALLY_FILLED: 2,
    OrderStatus.PENDING_CANCEL: 2,
    OrderStatus.FILLED: 9,
    OrderStatus.CANCELLED: 9,
    OrderStatus.REJECTED: 9,
    OrderStatus.FAILED: 9,
    OrderStatus.DRY_RUN: 9,
}
ACTIVE_STATUSES = (
    OrderStatus.PENDING_SUBMIT,
    OrderStatus.NEW,
    OrderStatus.PARTIALLY_FILLED,
    OrderStatus.PENDING_CANCEL,
)
TERMINAL_STATUSES = tuple(s for s, rank in STATUS_RANK.items() if rank == 9)


class Side(models.TextChoices):
    BUY = "Buy"
    SELL = "Sell"


class OrderType(models.TextChoices):
    MARKET = "Market"
    LIMIT = "Limit"


class TimeInForce(models.TextChoices):
    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"
    POST_ONLY = "PostOnly"


class CancelReason(models.TextChoices):
    NEW_SIGNAL = "new_signal", "Replaced by a new signal"
    OPPOSITE_SIGNAL = "opposite_signal", "Opposite signal"
    STALE = "stale", "Stale"
    MANUAL = "manual", "Manual (risk staff)"
    EXCHANGE = "exchange", "Cancelled by the exchange"
    RECONCILE = "reconcile", "Settled by reconciliation"


class Order(models.Model):
    order_link_id = models.CharField(max_length=36, unique=True)
    order_id = models.CharField(max_length=64, blank=True, db_index=True)
    category = models.CharField(max_length=10, default="linear")
    symbol = models.CharField(max_length=30)
    side = models.CharField(max_length=4, choices=Side.choices)
    order_type = models.CharField(max_length=6, choices=OrderType.choices)
    time_in_force = models.CharField(max_length=8, choices=TimeInForce.choices, default=TimeInForce.GTC)
    qty = money_field()
    price = money_field(null=True, blank=True)
    post_only = models.BooleanField(default=False)
    reduce_only = models.BooleanField(default=False)
    position_idx = models.PositiveSmallIntegerField(default=0)
    leg = models.PositiveSmallIntegerField(default=0)
    status = models.CharField(max_length=20, choices=OrderStatus.choices, default=OrderStatus.PENDING_SUBMIT)
    filled_qty = money_field(default=0)
    avg_fill_price = money_field(null=True, blank=True)
    cum_exec_value = money_field(default=0)
    fees = money_field(default=0)
    reject_code = models.IntegerField(null=True, blank=True)
    reject_reason = models.CharField(max_length=500, blank=True)
    cancel_reason = models.CharField(max_length=20, choices=CancelReason.choices, blank=True)
    cancel_note = models.CharField(max_length=500, blank=True)
    cancelled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    is_dry_run = models.BooleanField(default=False)
    is_external = models.BooleanField(default=False, help_text="Found on the exchange, not placed by us.")
    strategy_id = models.CharField(max_length=100, blank=True)
    trace_id = models.CharField(max_length=64, blank=True)
    # Bybit's updatedTime (ms) of the last applied order event: the ordering guard.
    exchange_updated_ms = models.BigIntegerField(default=0)
    submitted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        permissions = [("cancel_order", "Can cancel orders on the exchange")]
        constraints = [
            models.CheckConstraint(condition=Q(qty__gt=0), name="order_qty_positive"),
            models.CheckConstraint(condition=Q(filled_qty__gte=0), name="order_filled_non_negative"),
            models.CheckConstraint(condition=Q(filled_qty__lte=F("qty")), name="order_filled_le_qty"),
            models.CheckConstraint(condition=Q(price__isnull=True) | Q(price__gt=0), name="order_price_positive"),
            models.CheckConstraint(condition=Q(position_idx__in=[0, 1, 2]), name="order_position_idx_valid"),
            models.CheckConstraint(condition=Q(status__in=OrderStatus.values), name="order_status_valid"),
            models.CheckConstraint(condition=Q(side__in=Side.values), name="order_side_valid"),
            models.CheckConstraint(
                condition=Q(order_type=OrderType.MARKET) | Q(price__isnull=False), name="order_limit_has_price"
            ),
        ]
        indexes = [
            models.Index(fields=["symbol", "status"], name="order_symbol_status"),
            models.Index(fields=["status", "created_at"], name="order_status_created"),
            models.Index(fields=["-created_at"], name="order_created_desc"),
            # Back-office filters (admin, API, reports; bench/admin_scale.py, decision 0510): orders of a
            # strategy over time, and the rare flags as partial indexes (tiny, and no full scan to find none).
            models.Index(fields=["strategy_id", "-created_at"], name="order_strategy_created"),
            models.Index(fields=["-created_at"], condition=Q(is_dry_run=True), name="order_dry_run_created"),
            models.Index(fields=["-created_at"], condition=Q(is_external=True), name="order_external_created"),
        ]

    def __str__(self) -> str:
        return f"{self.order_link_id} {self.side} {self.qty} {self.symbol} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES


class SignalOrderRelationship(models.Model):
    signal = models.ForeignKey("signals_app.TradingSignal", on_delete=models.PROTECT, related_name="order_links")
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="signal_links")
    allocation_amount = money_field()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["signal", "order"], name="signal_order_unique"),
            models.CheckConstraint(condition=Q(allocation_amount__gt=0), name="allocation_positive"),
        ]
        indexes = [models.Index(fields=["signal"], name="sor_signal")]

    def __str__(self) -> str:
        return f"signal {self.signal_id} → order {self.order_id} ({self.allocation_amount})"


class ExecType(models.TextChoices):
    TRADE = "Trade"
    ADL_TRADE = "AdlTrade"
    FUNDING = "Funding"
    BUST_TRADE = "BustTrade"
    DELIVERY = "Delivery"
    SETTLE = "Settle"
    BLOCK_TRADE = "BlockTrade"
    MOVE_POSITION = "MovePosition"
    UNKNOWN = "UNKNOWN"


class Execution(models.Model):
    """One Bybit execution row (a fill, a funding payment, ...), applied once per exec_id."""

    exec_id = models.CharField(max_length=64, unique=True)
    order = models.ForeignKey(Order, null=True, blank=True, on_delete=models.SET_NULL, related_name="executions")
    exchange_order_id = models.CharField(max_length=64, blank=True)
    order_link_id = models.CharField(max_length=36, blank=True)
    category = models.CharField(max_length=10, default="linear")
    symbol = models.CharField(max_length=30)
    side = models.CharField(max_length=4, choices=Side.choices, blank=True)
    exec_type = models.CharField(max_length=20, default=ExecType.TRADE)
    exec_qty = money_field()
    exec_price = money_field()
    exec_value = money_field(default=0)
    exec_fee = money_field(default=0)
    fee_currency = models.CharField(max_length=10, blank=True)
    is_maker = models.BooleanField(default=False)
    closed_size = money_field(null=True, blank=True)
    position_idx = models.PositiveSmallIntegerField(default=0)
    exec_time = models.DateTimeField()
    seq = models.BigIntegerField(null=True, blank=True)
    source = models.CharField(max_length=10, default="ws")  # ws | rest (backfill) | sim
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(exec_qty__gte=0), name="execution_qty_non_negative"),
            models.CheckConstraint(condition=Q(exec_price__gte=0), name="execution_price_non_negative"),
        ]
        indexes = [
            models.Index(fields=["symbol", "position_idx", "exec_time"], name="execution_symbol_time"),
            models.Index(fields=["exchange_order_id"], name="execution_exchange_order"),
            models.Index(fields=["-exec_time"], name="execution_time_desc"),
            # Back-office filters (decision 0510): fills of a type over time (Funding, AdlTrade, ...), and the
            # few rows not from the live stream (backfills, adjustments) without scanning millions of ws rows.
            models.Index(fields=["exec_type", "-exec_time"], name="execution_type_time"),
            models.Index(fields=["source", "-exec_time"], condition=~Q(source="ws"), name="execution_not_ws_time"),
        ]

    def __str__(self) -> str:
        return f"{self.exec_type} {self.side} {self.exec_qty}@{self.exec_price} {self.symbol}"


class RiskLimit(models.Model):
    """Global defaults (symbol blank) and per-symbol overrides. Amounts in USDT."""

    symbol = models.CharField(max_length=30, blank=True, help_text="Blank = the global row.")
    max_position_size = money_field(help_text="Largest position value per symbol after an order, USDT.")
    max_exposure = money_field(help_text="Largest total position value across symbols, USDT (global row).")
    max_order_size_ratio = models.DecimalField(
        max_digits=6, decimal_places=5, help_text="Largest order as a share of available balance, 0–1."
    )
    trading_halted = models.BooleanField(default=False)
    reduce_only = models.BooleanField(default=False, help_text="Only orders that reduce a position are allowed.")
    halt_reason = models.CharField(max_length=500, blank=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["symbol"], name="risklimit_unique_symbol"),
            models.CheckConstraint(condition=Q(max_position_size__gte=0), name="risklimit_position_non_negative"),
            models.CheckConstraint(condition=Q(max_exposure__gte=0), name="risklimit_exposure_non_negative"),
            models.CheckConstraint(
                condition=Q(max_order_size_ratio__gte=0) & Q(max_order_size_ratio__lte=1),
                name="risklimit_ratio_within_0_1",
            ),
        ]

    def __str__(self) -> str:
        return self.symbol or "Global"


class ReconciliationRun(models.Model):
    class Status(models.TextChoices):
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        UNRESOLVED = "unresolved", "Finished with unresolved discrepancies"
        FAILED = "failed"

    class Trigger(models.TextChoices):
        STARTUP = "startup"
        COMMAND = "command"
        ADMIN = "admin"
        API = "api"
        SCHEDULE = "schedule"

    trigger = models.CharField(max_length=10, choices=Trigger.choices)
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.RUNNING)
    symbol = models.CharField(max_length=30, blank=True)
    dry_run = models.BooleanField(default=False)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    checked = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    backfilled = models.PositiveIntegerField(default=0)
    external = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)

    class Meta:
        permissions = [("run_reconciliation", "Can run reconciliation")]
        indexes = [models.Index(fields=["-started_at"], name="recon_started_desc")]

    def __str__(self) -> str:
        return f"Reconciliation #{self.pk} ({self.status})"


class Discrepancy(models.Model):
    run = models.ForeignKey(ReconciliationRun, on_delete=models.CASCADE, related_name="discrepancies")
    kind = models.CharField(max_length=40)
    symbol = models.CharField(max_length=30, blank=True)
    order_link_id = models.CharField(max_length=36, blank=True)
    before = models.JSONField(default=dict, blank=True)
    after = models.JSONField(default=dict, blank=True)
    resolved = models.BooleanField(default=False)
    note = models.CharField(max_length=500, blank=True)

    class Meta:
        verbose_name_plural = "discrepancies"
        indexes = [models.Index(fields=["run"], name="discrepancy_run")]

    def __str__(self) -> str:
        return f"{self.kind} {self.symbol} {self.order_link_id}".strip()
