"""Risk-limit rows: the global defaults seeded from settings, per-symbol overrides."""

from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction

from orders.models import RiskLimit


def risk_limit_seed_global() -> bool:
    """Create the global row from the settings if it does not exist. Returns True if created."""
    if RiskLimit.objects.filter(symbol="").exists():
        return False
    try:
        with transaction.atomic():
            RiskLimit.objects.create(
                symbol="",
                max_position_size=settings.MAX_POSITION_SIZE,
                max_position_value=settings.MAX_POSITION_VALUE,
                max_exposure=settings.MAX_EXPOSURE,
                max_order_size_ratio=settings.MAX_ORDER_SIZE_RATIO,
            )
    except IntegrityError:  # another process seeded it first
        return False
    return True


@dataclass(frozen=True)
class EffectiveLimits:
    """The limits that apply to one symbol: its own row where present, else the global row.

    ``max_exposure`` and the global switches always come from the global row
    (exposure is an across-symbols figure). A symbol row replaces both position
    limits; ``None`` is no limit in that unit.
    """

    symbol: str
    source: str  # "symbol" | "global"
    max_position_size: Decimal | None  # base-currency units
    max_position_value: Decimal | None  # USDT
    max_exposure: Decimal
    max_order_size_ratio: Decimal
    global_halted: bool
    global_reduce_only: bool
    global_halt_reason: str
    symbol_halted: bool
    symbol_reduce_only: bool
    symbol_halt_reason: str


def risk_limits_effective(*, symbol: str) -> EffectiveLimits:
    """Read the global and per-symbol rows (seeding the global row from settings if missing)."""
    rows = {row.symbol: row for row in RiskLimit.objects.filter(symbol__in=["", symbol])}
    if "" not in rows:
        risk_limit_seed_global()
        rows[""] = RiskLimit.objects.get(symbol="")
    return risk_limits_from_rows(symbol=symbol, rows=rows)


def risk_limits_from_rows(*, symbol: str, rows: dict[str, RiskLimit]) -> EffectiveLimits:
    """The limits of ``symbol`` from its rows by symbol ("" = global, which must be present)."""
    glob, own = rows[""], rows.get(symbol)
    chosen = own or glob
    return EffectiveLimits(
        symbol=symbol,
        source="symbol" if own else "global",
        max_position_size=chosen.max_position_size,
        max_position_value=chosen.max_position_value,
        max_exposure=glob.max_exposure,
        max_order_size_ratio=chosen.max_order_size_ratio,
        global_halted=glob.trading_halted,
        global_reduce_only=glob.reduce_only,
        global_halt_reason=glob.halt_reason,
        symbol_halted=bool(own and own.trading_halted),
        symbol_reduce_only=bool(own and own.reduce_only),
        symbol_halt_reason=own.halt_reason if own else "",
    )
