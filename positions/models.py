from django.db import models
from django.db.models import Q

from ordermanager.core.fields import money_field


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
        return f"{self.symbol}[{self.position_idx}] {self.size}"


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
