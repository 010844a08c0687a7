"""Pre-trade risk checks.

Limits come from ``RiskLimit`` rows (per-symbol override, then the global
row seeded from settings; see ``risk_limits.risk_limits_effective``):

- trading halt (global or per symbol): nothing is placed;
- reduce-only mode (global or per symbol): only orders that shrink the position;
- ``max_position_size``: |position after the order| × price, per symbol;
- ``max_exposure``: the sum of position values across symbols after the order;
- ``max_order_size_ratio``: order value as a share of the available balance.

An order that only reduces the position (|after| <= |before|, same sign)
passes the size, exposure and ratio checks: cutting risk is always allowed.
In hedge mode the position is the row the order goes to (long positive,
short negative); an order opens a side only while the other side is flat.
A breach raises ``ValidationError`` naming the limit, the value and the excess.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import Case, DecimalField, F, Sum, When
from django.db.models.functions import Abs, Coalesce

from orders.services.risk_limits import EffectiveLimits, risk_limit_seed_global, risk_limits_from_rows

CENT = Decimal("0.01")


@dataclass(frozen=True)
class RiskInput:
    symbol: str
    side: str  # "Buy" | "Sell"
    qty: Decimal
    price: Decimal
    position_size: Decimal  # signed size of the position row the order goes to (one-way row, or hedge long +/short -)
    exposure_other: Decimal  # position value of every other symbol, USDT
    available_balance: Decimal | None  # None: not needed (the order only reduces)


def _usdt(value: Decimal) -> str:
    return f"{value.quantize(CENT)} USDT"


def order_reduces_position(*, side: str, qty: Decimal, position_size: Decimal) -> bool:
    after = position_size + (qty if side == "Buy" else -qty)
    same_direction = (after >= 0) == (position_size >= 0) or after == 0
    return position_size != 0 and abs(after) <= abs(position_size) and same_direction


def risk_check_halts(*, limits: EffectiveLimits) -> None:
    """Raise when trading is halted globally or for the symbol (checked before any exchange read)."""
    if limits.global_halted:
        raise ValidationError(f"trading is halted globally{_because(limits.global_halt_reason)}")
    if limits.symbol_halted:
        raise ValidationError(f"trading is halted for {limits.symbol}{_because(limits.symbol_halt_reason)}")


def risk_check(*, order: RiskInput, limits: EffectiveLimits) -> None:
    """Raise ``ValidationError`` on the first limit the order would breach."""
    risk_check_halts(limits=limits)
    if order_reduces_position(side=order.side, qty=order.qty, position_size=order.position_size):
        return
    if limits.global_reduce_only or limits.symbol_reduce_only:
        scope = "globally" if limits.global_reduce_only else f"for {order.symbol}"
        reason = limits.global_halt_reason if limits.global_reduce_only else limits.symbol_halt_reason
        raise ValidationError(
            f"reduce-only mode {scope}{_because(reason)}: a {order.side} of {order.qty} "
            f"would not reduce the position {order.position_size}"
        )
    after = order.position_size + (order.qty if order.side == "Buy" else -order.qty)
    position_value = abs(after) * order.price
    _limit("MAX_POSITION_SIZE", f"position value of {order.symbol} after the order", position_value,
           limits.max_position_size)
    _limit("MAX_EXPOSURE", "total exposure after the order", order.exposure_other + position_value,
           limits.max_exposure)
    order_value = order.qty * order.price
    balance = order.available_balance or Decimal(0)
    _limit("MAX_ORDER_SIZE_RATIO", f"order value (ratio {limits.max_order_size_ratio} of available "
           f"balance {_usdt(balance)})", order_value, limits.max_order_size_ratio * balance)


def _limit(name: str, what: str, value: Decimal, limit: Decimal) -> None:
    if value > limit:
        raise ValidationError(
            f"risk limit {name}: {what} is {_usdt(value)}, above the limit {_usdt(limit)} by {_usdt(value - limit)}"
        )


def _because(reason: str) -> str:
    return f" ({reason})" if reason else ""


_MONEY = DecimalField(max_digits=36, decimal_places=18)


def _position_value():
    return Abs(F("size")) * Case(
        When(mark_price__isnull=False, mark_price__gt=0, then=F("mark_price")),
        default=F("avg_entry_price"),
        output_field=_MONEY,
    )


def _other_positions(*, symbol: str, category: str):
    from positions.models import Position

    return Position.objects.filter(category=category).exclude(symbol=symbol).exclude(size=0)


def exposure_other_symbols(*, symbol: str, category: str = "linear") -> Decimal:
    """Sum of |size| × (mark price, else entry price) over every other symbol's position."""
    total = _other_positions(symbol=symbol, category=category).aggregate(
        total=Coalesce(Sum(_position_value(), output_field=_MONEY), Decimal(0), output_field=_MONEY)
    )["total"]
    return Decimal(total)


@dataclass(frozen=True)
class BookState:
    """What the rules of one signal need from our book, read in one round trip (``book_state_read``)."""

    limits: EffectiveLimits
    sizes: dict[int, Decimal]  # by positionIdx: 0 one-way (signed), 1 hedge long, 2 hedge short (unsigned)
    exposure_other: Decimal  # position value of every other symbol, USDT
    has_cancel_candidates: bool  # an open order of the symbol that a new signal may cancel


def book_state_read(*, symbol: str, category: str = "linear") -> BookState:
    """Risk limits, positions, other symbols' exposure and whether open orders exist, in one query.

    The signal path's hot read: one statement instead of four (each a round trip). The limits are read
    fresh for every signal on purpose: a trading halt must stop the very next signal, in every process.
    Written as SQL because building the equivalent annotated queryset cost more CPU per signal (Django's
    expression resolution, measured with py-spy) than the three round trips it saves; the open-order test
    mirrors ``cancellation.cancel_candidates`` (tests pin both).
    """
    from orders.models import Order, OrderStatus, RiskLimit, TimeInForce
    from positions.models import Position

    statuses = [OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED] if settings.CANCEL_PARTIALLY_FILLED_ORDERS else [
        OrderStatus.NEW]
    sql = _BOOK_SQL.format(
        risk=RiskLimit._meta.db_table, position=Position._meta.db_table, order=Order._meta.db_table,
        statuses=", ".join(["%s"] * len(statuses)),
    )
    params = [category, symbol, category, symbol, category, symbol, category, symbol, category, symbol,
              *statuses, TimeInForce.IOC, TimeInForce.FOK, symbol]
    rows = {row.symbol: row for row in RiskLimit.objects.raw(sql, params)}
    if "" not in rows:  # first signal ever: the global row is seeded from the settings
        risk_limit_seed_global()
        rows = {row.symbol: row for row in RiskLimit.objects.raw(sql, params)}
    any_row = rows[""]
    return BookState(
        limits=risk_limits_from_rows(symbol=symbol, rows=rows),
        sizes={idx: _decimal(getattr(any_row, f"size_{idx}")) for idx in (0, 1, 2)},
        exposure_other=_decimal(any_row.exposure_other),
        has_cancel_candidates=bool(any_row.has_cancel_candidates),
    )


# Portable SQL (PostgreSQL and SQLite). Parameters: see book_state_read.
_BOOK_SQL = """
SELECT r.*,
  (SELECT size FROM {position} WHERE category = %s AND symbol = %s AND position_idx = 0) AS size_0,
  (SELECT size FROM {position} WHERE category = %s AND symbol = %s AND position_idx = 1) AS size_1,
  (SELECT size FROM {position} WHERE category = %s AND symbol = %s AND position_idx = 2) AS size_2,
  COALESCE((SELECT SUM(ABS(p.size) * CASE WHEN p.mark_price > 0 THEN p.mark_price ELSE p.avg_entry_price END)
            FROM {position} p WHERE p.category = %s AND p.symbol <> %s AND p.size <> 0), 0) AS exposure_other,
  EXISTS (SELECT 1 FROM {order} o WHERE o.category = %s AND o.symbol = %s AND o.status IN ({statuses})
          AND NOT o.is_external AND o.time_in_force NOT IN (%s, %s)) AS has_cancel_candidates
FROM {risk} r WHERE r.symbol IN ('', %s)
"""


def _decimal(value) -> Decimal:
    # SQLite hands back numbers for extra columns of a raw query (PostgreSQL: Decimal already).
    if value is None:
        return Decimal(0)
    return value if isinstance(value, Decimal) else Decimal(str(value))


def position_size_of(*, symbol: str, category: str = "linear") -> Decimal:
    """Signed one-way position size from our book (positionIdx 0)."""
    from positions.models import Position

    row = Position.objects.filter(category=category, symbol=symbol, position_idx=0).values_list("size", flat=True)
    return next(iter(row), Decimal(0))


def hedge_sizes_of(*, symbol: str, category: str = "linear") -> tuple[Decimal, Decimal]:
    """(long, short) sizes of a hedge-mode symbol from our book (positionIdx 1 and 2, both unsigned)."""
    from positions.models import Position

    rows = dict(
        Position.objects.filter(category=category, symbol=symbol, position_idx__in=(1, 2))
        .values_list("position_idx", "size")
    )
    return rows.get(1, Decimal(0)), rows.get(2, Decimal(0))
