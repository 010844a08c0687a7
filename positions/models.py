from decimal import Decimal

from django.db import models
from django.db.models import Q

from ordermanager.core.fields import money_field
from ordermanager.core.formatting import number_text


class PositionMode(models.TextChoices):
    ONE_WAY = "one_way", "One-way"
    HEDGE = "hedge", "Hedge"


class Position(models.Model):
    """One row per symbol in one-way mode (positionIdx 0, signed size), one per
    side in hedge mode (1 long, 2 short; size is never negative there)."""

    category = models.CharField(max_length=10, default="linear")
    symbol = models.CharField(max_length=30)
    position_idx = models.PositiveSmallIntegerField(default=0)
    mode = models.CharField(max_length=10, choices=PositionMode.choices, default=PositionMode.ONE_WAY)
    size = money_field(default=0)
    avg_entry_price = money_field(default=0)
    realized_pnl = money_field(default=0)
    fees_paid = money_field(default=0)
    funding_paid = money_field(default=0)
    unrealized_pnl = money_field(default=0)
    mark_price = money_field(null=True, blank=True)
    last_exec_time = models.DateTimeField(null=True, blank=True)
    # The ordering key (exec time ms, seq, exec id) of the latest ledger entry: a
    # fill that sorts before it arrived out of order and triggers a replay.
    last_exec_ms = models.BigIntegerField(default=0)
    last_exec_seq = models.BigIntegerField(default=0)
    last_exec_id = models.CharField(max_length=64, blank=True)
    mark_price_updated_at = models.DateTimeField(null=True, blank=True)
    # No PositionPnlDay row of this position starts at or after this time (epoch ms): a ledger write before it
    # deletes the days from its own on; one after it (the live stream) has nothing to delete and skips that.
    pnl_days_until_ms = models.BigIntegerField(default=0, db_default=0)  # raw inserts (benches) get it too
    # Set while the unrealized loss is beyond the warning threshold, so the
    # warning event fires once per crossing instead of on every tick.
    loss_warning_active = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["category", "symbol", "position_idx"], name="position_unique_side"),
            models.CheckConstraint(condition=Q(position_idx__in=[0, 1, 2]), name="position_idx_valid"),
            models.CheckConstraint(condition=Q(avg_entry_price__gte=0), name="position_entry_non_negative"),
            # Hedge rows carry an unsigned size; only one-way rows may be negative (short).
            models.CheckConstraint(condition=Q(position_idx=0) | Q(size__gte=0), name="position_hedge_size_unsigned"),
        ]

    def __str__(self) -> str:
        return f"{self.symbol}[{self.position_idx}] {number_text(self.size)}"

    @property
    def signed_size(self) -> Decimal:
        """Size with the sign of the exposure (hedge short rows are stored unsigned)."""
        return -self.size if self.position_idx == 2 else self.size

    @property
    def side(self) -> str:
        signed = self.signed_size
        return "Buy" if signed > 0 else "Sell" if signed < 0 else ""

    @property
    def position_value(self) -> Decimal:
        """Entry value of the open size (the base of the loss-warning percentage)."""
        return abs(self.size) * self.avg_entry_price


class PositionSnapshot(models.Model):
    position = models.ForeignKey(Position, on_delete=models.CASCADE, related_name="snapshots")
    size = money_field()
    avg_entry_price = money_field()
    mark_price = money_field(null=True, blank=True)
    realized_pnl = money_field()
    unrealized_pnl = money_field()
    taken_at = models.DateTimeField(db_index=True)

    class Meta:
        indexes = [models.Index(fields=["position", "-taken_at"], name="snapshot_position_time")]

    def __str__(self) -> str:
        return f"{self.position_id} @ {self.taken_at:%Y-%m-%d %H:%M}"


class PositionLedgerEntry(models.Model):
    """One execution as the position saw it, with the position state after it.

    The ledger is the position's own journal: entries sort by (exec_time_ms, seq,
    exec_id) and each carries the fold of every entry up to it, so validation can
    check each step against the previous one in one pass (no replay of history),
    and an out-of-order fill replays only the entries after it. Execution rows in
    ``orders`` stay the source of truth; validation ties the two together.
    See docs/decisions/0402-position-ledger-validation.md.
    """

    # No single-column index: the ordering index starts with position_id.
    position = models.ForeignKey(Position, on_delete=models.CASCADE, related_name="ledger", db_index=False)
    position_idx = models.PositiveSmallIntegerField(default=0)
    exec_id = models.CharField(max_length=64, unique=True)
    exec_type = models.CharField(max_length=20)
    exec_time_ms = models.BigIntegerField()
    seq = models.BigIntegerField(default=0)
    side = models.CharField(max_length=4, blank=True)
    qty = money_field()
    price = money_field()
    fee = money_field(default=0)
    flag = models.CharField(max_length=20, blank=True)
    size_after = money_field()
    avg_entry_after = money_field()
    realized_after = money_field()
    fees_after = money_field()
    funding_after = money_field()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "position ledger entries"
        # The ordering index (position, exec_time_ms, seq, exec_id) is created by
        # migration 0002 with exec_id in the "C" collation on PostgreSQL, so the
        # byte order Python uses and the index order agree on every server.

    def __str__(self) -> str:
        return (f"{self.exec_type} {self.side} {number_text(self.qty)}@{number_text(self.price)} "
                f"→ {number_text(self.size_after)}")


class PositionDiscrepancy(models.Model):
    """A difference between a stored position and the one recomputed from its executions."""

    class Kind(models.TextChoices):
        STATE = "state", "Stored state differs from the fills"
        LEDGER = "ledger", "Ledger does not match the executions"
        UNAPPLIED = "unapplied", "Executions waiting for their order (position side unknown)"

    position = models.ForeignKey(Position, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    category = models.CharField(max_length=10, default="linear")
    symbol = models.CharField(max_length=30)
    position_idx = models.PositiveSmallIntegerField(default=0)
    kind = models.CharField(max_length=12, choices=Kind.choices, default=Kind.STATE)
    stored = models.JSONField(default=dict, blank=True)
    expected = models.JSONField(default=dict, blank=True)
    repaired = models.BooleanField(default=False)
    note = models.CharField(max_length=500, blank=True)
    detected_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "position discrepancies"
        indexes = [models.Index(fields=["-detected_at"], name="posdiscrepancy_detected")]

    def __str__(self) -> str:
        return f"{self.symbol}[{self.position_idx}] {self.kind}"


class PositionPnlDay(models.Model):
    """A position's PnL over one closed UTC day attributed to one strategy, summed from its ledger (a report
    cache: the PnL report reads these rows for whole days and the ledger only for the rest of its period).

    Every (position, day) that was summed has one marker row with ``strategy`` "" (zeros), so a day without
    fills is known to be summed. The ledger's writers delete a position's rows from the day of any entry they
    add or rewrite on (``positions.services.ledger``), in the same transaction; the rows are only ever summed
    again from the ledger under the position's row lock. See docs/decisions/0515-reports-at-scale.md.
    """

    MARKER = ""

    position = models.ForeignKey(Position, on_delete=models.CASCADE, related_name="+", db_index=False)
    day_ms = models.BigIntegerField()  # the day's UTC midnight, epoch ms (the ledger's time scale)
    strategy = models.CharField(max_length=100, blank=True)
    realized_pnl = money_field(default=0)  # gross: before fees and funding
    fees = money_field(default=0)
    funding = money_field(default=0)
    # qty * price keeps 36 places: stored exactly, as the report would sum it from the ledger.
    volume = models.DecimalField(max_digits=56, decimal_places=36, default=0)
    trades = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name_plural = "position PnL days"
        constraints = [
            models.UniqueConstraint(fields=["position", "day_ms", "strategy"], name="position_pnl_day_unique"),
        ]

    def __str__(self) -> str:
        return f"position {self.position_id} day {self.day_ms} {self.strategy or '(summed)'}"


class PositionValidationRun(models.Model):
    """One validation of positions against their fills (orders.services.position_validation).

    ``executions_high`` / ``ledger_high`` are the highest Execution and ledger ids visible when the run
    started: an incremental run checks only the symbols with rows above the marks of a run that started
    at least ``INCREMENTAL_MARGIN`` before the previous one (docs/decisions/0515-reports-at-scale.md).
    """

    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    full = models.BooleanField(default=True)
    executions_high = models.BigIntegerField(default=0)
    ledger_high = models.BigIntegerField(default=0)
    symbols = models.PositiveIntegerField(null=True, blank=True)  # symbols checked by an incremental run
    differences = models.PositiveIntegerField(default=0)

    class Meta:
        indexes = [models.Index(fields=["-started_at"], name="posvalidation_started")]

    def __str__(self) -> str:
        return f"{'full' if self.full else 'incremental'} validation at {self.started_at:%Y-%m-%d %H:%M:%S}"
