from django.conf import settings
from django.db import models
from django.db.models import F, Q

from ordermanager.core.fields import money_field
from ordermanager.core.formatting import money_text, number_text


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


# Our order, acknowledged, whose fills may not all be booked (the row's own part of
# ``fresh_position._unsettled_query``; the query adds the position's last change): the stream never spoke of
# an open order, it reported more filled than is booked, or one expected to fill has nothing booked.
# The stream's silence and its reported fills are the first two parts (STREAM_BEHIND); the third holds until
# the position changes after the order's acknowledgement, which only the query can tell.
ACK_OPEN = (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED, OrderStatus.PENDING_CANCEL)
STREAM_BEHIND = Q(exchange_updated_ms=0, status__in=ACK_OPEN) | Q(filled_qty__gt=F("booked_qty"))
MAY_BE_UNSETTLED = (
    Q(is_dry_run=False, is_external=False, status__in=[*ACK_OPEN, OrderStatus.FILLED, OrderStatus.CANCELLED])
    & ~Q(order_id="")
    & (STREAM_BEHIND
       | Q(booked_qty=0, submitted_at__isnull=False)
       & (Q(order_type=OrderType.MARKET) & ~Q(status=OrderStatus.CANCELLED) | Q(filled_qty__gt=0)))
)


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
    # The sum of the quantities of this order's executions stored here, kept by the fill path in the
    # transaction that stores them (``orders_refresh_fills``): below ``filled_qty`` while fills the exchange
    # reported are missing. A decision's freshness check reads it instead of summing executions per order
    # (docs/decisions/0336).
    booked_qty = money_field(default=0)
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
    # Computed by the database on every write: the row passes the part of a decision's freshness check that
    # reads only the row (``orders.services.fresh_position``); the partial index below holds these rows alone,
    # so the check costs what the possibly unsettled orders cost, not every recent order (docs/decisions/0336).
    may_be_unsettled = models.GeneratedField(
        expression=models.ExpressionWrapper(MAY_BE_UNSETTLED, output_field=models.BooleanField()),
        output_field=models.BooleanField(), db_persist=True,
    )

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
            models.Index(fields=["symbol", "created_at"], condition=Q(may_be_unsettled=True),
                         name="order_may_be_unsettled"),
            # The few orders still open: a decision's book read sums those of every other symbol for the exposure
            # limit, and without this index a planner that thinks many are open scans the whole table (0337).
            models.Index(fields=["symbol"], condition=Q(status__in=ACTIVE_STATUSES), name="order_active_symbol"),
        ]

    def __str__(self) -> str:
        return f"{self.order_link_id} {self.side} {number_text(self.qty)} {self.symbol} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES


class LegRole(models.TextChoices):
    """What one order of a signal does to the position it goes to (docs/decisions/0318)."""

    CLOSE = "close", "Closes (reduce-only)"
    OPEN = "open", "Opens or adds"
    FLIP = "flip", "Closes and opens the other side in one order (one-way mode)"


LEG_ROLE_HELP = (
    "what the order does to its position row: close (reduce-only), open (opens or adds), flip (closes and opens "
    "the other side in one order, one-way mode); blank on orders recorded before roles were kept"
)


class SignalOrderRelationship(models.Model):
    signal = models.ForeignKey("signals_app.TradingSignal", on_delete=models.PROTECT, related_name="order_links")
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="signal_links")
    # The share of the signal's amount this order stands for, from the quantity actually sent (after caps).
    allocation_amount = money_field()
    # Blank on rows written before roles were recorded.
    role = models.CharField(max_length=8, choices=LegRole.choices, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["signal", "order"], name="signal_order_unique"),
            models.CheckConstraint(condition=Q(allocation_amount__gt=0), name="allocation_positive"),
        ]
        indexes = [models.Index(fields=["signal"], name="sor_signal")]

    def __str__(self) -> str:
        return f"signal {self.signal_id} → order {self.order_id} ({money_text(self.allocation_amount)} USDT)"


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
            # Executions waiting for their order, by either key: the order lookup of every order event asks for
            # them (0338). Linked executions leave them, and funding fees (no order, no keys) never enter.
            models.Index(fields=["exchange_order_id"], condition=Q(order__isnull=True) & ~Q(exchange_order_id=""),
                         name="execution_unlinked_order"),
            models.Index(fields=["order_link_id"], condition=Q(order__isnull=True) & ~Q(order_link_id=""),
                         name="execution_unlinked_link"),
        ]

    def __str__(self) -> str:
        return (f"{self.exec_type} {self.side} {number_text(self.exec_qty)}@{number_text(self.exec_price)} "
                f"{self.symbol}")


class RiskLimit(models.Model):
    """Global defaults (symbol blank) and per-symbol overrides (a symbol row replaces the global figures).

    Each limit counts the position after the order plus the open quantity of resting orders that would grow
    it (decision 0317). The position limits may be blank: no limit in that unit.
    """

    symbol = models.CharField(max_length=30, blank=True, help_text="Blank = the global row.")
    max_position_size = money_field(
        null=True, blank=True, verbose_name="max position size (base units)",
        help_text="Largest position per symbol in base-currency units (e.g. BTC for BTCUSDT) after an order, "
                  "resting orders on the same side included. Blank = no limit in base units.",
    )  # fmt: skip
    max_position_value = money_field(
        null=True, blank=True, verbose_name="max position value (USDT)",
        help_text="Largest position value per symbol in USDT after an order, resting orders on the same side "
                  "included. Blank = no limit in USDT.",
    )  # fmt: skip
    max_exposure = money_field(
        verbose_name="max exposure (USDT)",
        help_text="Largest total value across symbols in USDT: positions plus resting orders (global row).",
    )
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
            models.CheckConstraint(condition=Q(max_position_value__gte=0), name="risklimit_value_non_negative"),
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
        LIGHT = "light", "Continuous (light pass)"

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
    # Continuous reconciliation rolls passes that found nothing into one row (docs/decisions/0606):
    # ``passes`` counts them and ``last_pass_at`` is the latest; any other run is one pass.
    passes = models.PositiveIntegerField(default=1)
    last_pass_at = models.DateTimeField(null=True, blank=True)

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


class BackfillMark(models.Model):
    """A symbol whose private events may have been missed (gateway reconnect, a message that could
    not be stored, a backlog past its bound): continuous reconciliation runs a targeted backfill of
    it and removes the mark (docs/decisions/0606)."""

    category = models.CharField(max_length=10, default="linear")
    symbol = models.CharField(max_length=30)
    reason = models.CharField(max_length=200, blank=True)
    requested_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["category", "symbol"], name="backfill_mark_unique")]

    def __str__(self) -> str:
        return f"backfill {self.category} {self.symbol}"


class ReconcileLease(models.Model):
    """When each continuous pass is next due. A process runs a pass only if it moved ``due_at``
    forward with a conditional UPDATE, so any number of processes share one schedule."""

    name = models.CharField(max_length=20, primary_key=True)
    due_at = models.DateTimeField()
    # Light pass: every execution before this time is known to be booked (its next pull starts here).
    covered_to = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} due {self.due_at:%H:%M:%S}"


class OrderHold(models.Model):
    """An order whose create outcome is unknown, and the symbol it keeps (docs/decisions/0315).

    ``held``: the signal stays ``processing`` and the symbol's later signals wait while the order is looked
    up by orderLinkId with backoff. ``given_up``: the lookups failed for ``ORDER_HOLD_MAX_SECONDS``; the order
    was recorded ``failed`` and the symbol released, and reconciliation adopts it if the exchange shows it.
    ``adopted`` / ``not_placed``: how a given-up order was settled later.
    """

    class State(models.TextChoices):
        HELD = "held", "Held (outcome unknown, the symbol waits)"
        GIVEN_UP = "given_up", "Given up (symbol released; adopted if the exchange shows it)"
        ADOPTED = "adopted", "Adopted (the exchange had it)"
        NOT_PLACED = "not_placed", "Not placed (the exchange never had it)"

    order = models.OneToOneField(Order, on_delete=models.CASCADE, related_name="hold")
    signal = models.ForeignKey("signals_app.TradingSignal", on_delete=models.CASCADE, related_name="holds")
    category = models.CharField(max_length=10, default="linear")
    symbol = models.CharField(max_length=30)
    state = models.CharField(max_length=12, choices=State.choices, default=State.HELD)
    since = models.DateTimeField(help_text="When the outcome became unknown.")
    attempts = models.PositiveIntegerField(default=0, help_text="Lookups by orderLinkId that could not tell.")
    next_check_at = models.DateTimeField()
    last_error = models.CharField(max_length=500, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["state", "symbol"], name="orderhold_state_symbol")]

    def __str__(self) -> str:
        return f"{self.symbol} held by {self.order.order_link_id} ({self.state})"
