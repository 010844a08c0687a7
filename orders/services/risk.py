"""Pre-trade risk checks.

Limits come from ``RiskLimit`` rows (per-symbol override, then the global
row seeded from settings; see ``risk_limits.risk_limits_effective``):

- trading halt (global or per symbol): nothing is placed;
- reduce-only mode (global or per symbol): only orders that shrink the position;
- ``max_position_size`` (base units) and ``max_position_value`` (USDT, at the order's price): the position
  after the order *and* every resting order on the same side, per symbol; either may be unset;
- ``max_exposure`` (USDT): that figure for this symbol plus, for every other symbol, its position value and
  the resting orders that could grow it;
- ``max_order_size_ratio``: order value as a share of the available balance.

What counts as "at stake" (decision 0317): a resting order is one of ours or an external one the book knows,
``pending_submit``, ``new`` or ``partially_filled`` (its open quantity, qty − filled); the orders the signal
itself cancels before it places its own are left out of this symbol's figure.

An order that only reduces the position (|after| <= |before|, same sign)
passes the size, exposure and ratio checks: cutting risk is always allowed.
In hedge mode the position is the row the order goes to (long positive,
short negative); an order opens a side only while the other side is flat.
A breach raises ``ValidationError`` naming the limit, its unit, the value and the excess.
"""

from __future__ import annotations

from collections import namedtuple
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection

from ordermanager.core.sql_once import fixed_cursor
from orders.models import Order, OrderStatus, OrderType, RiskLimit, TimeInForce
from orders.services.risk_limits import EffectiveLimits, risk_limit_seed_global, risk_limits_from_rows
from positions.selectors import position_rows, position_size_get, position_sql_tables

CENT = Decimal("0.01")


@dataclass(frozen=True)
class RiskInput:
    symbol: str
    side: str  # "Buy" | "Sell"
    qty: Decimal
    price: Decimal
    position_size: Decimal  # signed size of the position row the order goes to (one-way row, or hedge long +/short -)
    exposure_other: Decimal  # value at stake on every other symbol, USDT (positions and resting orders)
    available_balance: Decimal | None  # None: not needed (the order only reduces)
    # Open quantity of resting orders on the order's side that would grow the same row, after the cancellations
    # this signal sends first (``BookState.resting_after_cancels``).
    resting_qty: Decimal = Decimal(0)


def _usdt(value: Decimal) -> str:
    return f"{value.quantize(CENT)} USDT"


def _units(value: Decimal) -> str:
    return f"{_plain(value)} (base units)"


def _plain(value: Decimal) -> str:
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


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
    grow = order.qty + max(order.resting_qty, Decimal(0))
    after = abs(order.position_size + (grow if order.side == "Buy" else -grow))
    of = f"of {order.symbol} after the order"
    if order.resting_qty > 0:
        of += f" and the resting {order.side} orders ({_plain(order.resting_qty)})"
    if limits.max_position_size is not None and after > limits.max_position_size:
        excess = after - limits.max_position_size
        raise ValidationError(
            f"risk limit MAX_POSITION_SIZE: position {of} is {_units(after)}, above the limit "
            f"{_units(limits.max_position_size)} by {_units(excess)}"
        )
    position_value = after * order.price
    if limits.max_position_value is not None:
        _limit("MAX_POSITION_VALUE", f"position value {of}", position_value, limits.max_position_value)
    exposure_what = "total exposure after the order (positions and resting orders)"
    _limit("MAX_EXPOSURE", exposure_what, order.exposure_other + position_value, limits.max_exposure)
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


def resting_statuses() -> tuple[str, ...]:
    """Order states whose open quantity may still fill (decision 0317); pending_cancel is already cancelled."""
    return (OrderStatus.PENDING_SUBMIT, OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED)


def exposure_other_symbols(*, symbol: str, category: str = "linear") -> Decimal:
    """Value at stake on every other symbol, USDT: the plain Python reference of ``book_state_read``'s figure.

    Per position row (symbol, positionIdx): its signed value V (|size| × mark, else entry price; hedge short
    negative) and the resting orders' open value on that row, buys B and sells S (at their limit price, else
    the row's mark/entry price, else the average fill price). Either side could fill in full, so the row counts
    max(|V + B|, |V − S|).
    """
    rows: dict[tuple[str, int], list[Decimal]] = {}
    marks: dict[str, Decimal] = {}
    for pos in position_rows(category=category).exclude(symbol=symbol):
        mark = pos.mark_price if pos.mark_price and pos.mark_price > 0 else pos.avg_entry_price
        marks.setdefault(pos.symbol, mark)
        if pos.size:
            sign = -1 if pos.position_idx == 2 else 1
            rows.setdefault((pos.symbol, pos.position_idx), [Decimal(0)] * 3)[0] += sign * abs(pos.size) * mark
    orders = Order.objects.filter(category=category, status__in=resting_statuses()).exclude(symbol=symbol)
    for order in orders:
        price = order.price or marks.get(order.symbol) or order.avg_fill_price or Decimal(0)
        slot = 1 if order.side == "Buy" else 2
        rows.setdefault((order.symbol, order.position_idx), [Decimal(0)] * 3)[slot] += (
            order.qty - order.filled_qty) * price
    return sum((max(abs(v + b), abs(v - s)) for v, b, s in rows.values()), Decimal(0))


@dataclass(frozen=True)
class BookState:
    """What the rules of one signal need from our book, read in one round trip (``book_state_read``)."""

    limits: EffectiveLimits
    sizes: dict[int, Decimal]  # by positionIdx: 0 one-way (signed), 1 hedge long, 2 hedge short (unsigned)
    exposure_other: Decimal  # value at stake on every other symbol, USDT (``exposure_other_symbols``)
    has_cancel_candidates: bool  # an open order of the symbol that a new signal may cancel
    # This symbol's resting orders by side ("Buy"/"Sell") that would grow a position (one-way row, or the hedge
    # row the side opens: Buy → long, Sell → short), open quantity: all of them, and the part a new signal
    # may cancel (``cancellation.cancel_candidates``) split into limit orders and the rest.
    resting: dict[str, Decimal] = field(default_factory=dict)
    cancellable_limit: dict[str, Decimal] = field(default_factory=dict)
    cancellable_other: dict[str, Decimal] = field(default_factory=dict)

    def resting_after_cancels(self, *, side: str, order_type: str) -> Decimal:
        """Open quantity on ``side`` still resting once this signal's own cancellations are done.

        Mirrors ``cancellation.orders_to_cancel_for_signal`` for orders on the signal's own side: they go when
        ``CANCEL_OPPOSITE_ORDERS_ONLY`` is off; with it on, only a market signal cancels them (limit orders).
        """
        cancelled = Decimal(0)
        if not settings.CANCEL_OPPOSITE_ORDERS_ONLY:
            cancelled = self.cancellable_limit.get(side, Decimal(0)) + self.cancellable_other.get(side, Decimal(0))
        elif order_type == OrderType.MARKET:
            cancelled = self.cancellable_limit.get(side, Decimal(0))
        return max(self.resting.get(side, Decimal(0)) - cancelled, Decimal(0))


def book_state_read(*, symbol: str, category: str = "linear") -> BookState:
    """Risk limits, positions, what is at stake on other symbols, resting and cancellable orders, in one query.

    The signal path's hot read: one statement instead of several (each a round trip). The limits are read
    fresh for every signal on purpose: a trading halt must stop the very next signal, in every process.
    Written as SQL because building the equivalent annotated queryset cost more CPU per signal (Django's
    expression resolution, measured with py-spy) than the round trips it saves; the open-order test
    mirrors ``cancellation.cancel_candidates`` and the exposure mirrors ``exposure_other_symbols`` (tests pin
    both). The statement text is built once per process (``_book_sql``: the order states and kinds are code
    constants written into it) and read with a plain cursor: only the symbol and category are bound, and no
    model rows are built (docs/decisions/0325).
    """
    sql = _book_sql(settings.CANCEL_PARTIALLY_FILLED_ORDERS)
    # Placeholders in the order they appear in _BOOK_SQL: size_0, size_1, size_2, exposure_other (positions,
    # orders), has_cancel_candidates, g (this symbol's resting orders), the limit rows.
    params = [category, symbol] * 7 + [symbol]
    rows = _book_rows(sql, params)
    if "" not in rows:  # first signal ever: the global row is seeded from the settings
        risk_limit_seed_global()
        rows = _book_rows(sql, params)
    any_row = rows[""]
    by_side = {side: side.lower() for side in ("Buy", "Sell")}
    return BookState(
        limits=risk_limits_from_rows(symbol=symbol, rows=rows),
        sizes={idx: _decimal(getattr(any_row, f"size_{idx}")) for idx in (0, 1, 2)},
        exposure_other=_decimal(any_row.exposure_other),
        has_cancel_candidates=bool(any_row.has_cancel_candidates),
        resting={side: _decimal(getattr(any_row, f"resting_{key}")) for side, key in by_side.items()},
        cancellable_limit={side: _decimal(getattr(any_row, f"cancel_limit_{key}")) for side, key in by_side.items()},
        cancellable_other={side: _decimal(getattr(any_row, f"cancel_other_{key}")) for side, key in by_side.items()},
    )


# The columns of one row of _BOOK_SQL: the limit row's fields (``risk_limits_from_rows`` reads them by name),
# then the book's figures (the same on every row).
_BookRow = namedtuple("_BookRow", [
    "symbol", "max_position_size", "max_position_value", "max_exposure", "max_order_size_ratio", "trading_halted",
    "reduce_only", "halt_reason", "size_0", "size_1", "size_2", "exposure_other", "has_cancel_candidates",
    "resting_buy", "resting_sell", "cancel_limit_buy", "cancel_limit_sell", "cancel_other_buy", "cancel_other_sell",
])  # fmt: skip
_LIMIT_DECIMALS = ("max_position_size", "max_position_value", "max_exposure", "max_order_size_ratio")


def _book_rows(sql: str, params: list) -> dict[str, _BookRow]:
    with fixed_cursor() as cursor:
        cursor.execute(sql, params)
        fetched = cursor.fetchall()
    rows = {}
    for values in fetched:
        row = _BookRow(*values)
        if connection.vendor != "postgresql":  # SQLite: numbers as float/int/str and booleans as 0/1
            row = row._replace(trading_halted=bool(row.trading_halted), reduce_only=bool(row.reduce_only),
                               **{f: None if getattr(row, f) is None else _decimal(getattr(row, f))
                                  for f in _LIMIT_DECIMALS})  # fmt: skip
        rows[row.symbol] = row
    return rows


def _sql_literals(values) -> str:
    """Code constants (order states and kinds) as SQL string literals; anything but a plain word is refused."""
    for value in values:
        if not str(value).replace("_", "").isalnum():
            raise ValueError(f"not a plain constant for SQL: {value!r}")
    return ", ".join(f"'{value}'" for value in values)


@cache
def _book_sql(cancel_partially_filled: bool) -> str:
    statuses = [OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED] if cancel_partially_filled else [OrderStatus.NEW]
    cancellable = _CANCELLABLE.format(statuses=_sql_literals(statuses),
                                      not_tif=_sql_literals([TimeInForce.IOC, TimeInForce.FOK]))
    return _BOOK_SQL.format(
        risk=RiskLimit._meta.db_table, position=position_sql_tables()["position"], order=Order._meta.db_table,
        resting=_sql_literals(resting_statuses()), cancellable=cancellable, limit=_sql_literals([OrderType.LIMIT]),
    )


# An order of the symbol that a new signal may cancel; see cancel_candidates.
_CANCELLABLE = "(o.status IN ({statuses}) AND NOT o.is_external AND o.time_in_force NOT IN ({not_tif}))"

# Portable SQL (PostgreSQL and SQLite). Parameters: see book_state_read. ``x`` holds, per (symbol, positionIdx)
# of every other symbol, the signed position value v and the resting buy (b) and sell (s) values; ``g`` holds
# this symbol's resting orders that would grow a position: buys on rows 0/1, sells on rows 0/2.
_BOOK_SQL = """
SELECT r.symbol, r.max_position_size, r.max_position_value, r.max_exposure, r.max_order_size_ratio,
  r.trading_halted, r.reduce_only, r.halt_reason,
  (SELECT size FROM {position} WHERE category = %s AND symbol = %s AND position_idx = 0) AS size_0,
  (SELECT size FROM {position} WHERE category = %s AND symbol = %s AND position_idx = 1) AS size_1,
  (SELECT size FROM {position} WHERE category = %s AND symbol = %s AND position_idx = 2) AS size_2,
  COALESCE((SELECT SUM(CASE WHEN ABS(x.v + x.b) >= ABS(x.v - x.s) THEN ABS(x.v + x.b) ELSE ABS(x.v - x.s) END)
    FROM (SELECT u.symbol, u.position_idx, SUM(u.v) AS v, SUM(u.b) AS b, SUM(u.s) AS s FROM (
        SELECT p.symbol, p.position_idx, 0 AS b, 0 AS s,
               CASE WHEN p.position_idx = 2 THEN -ABS(p.size) ELSE p.size END
               * CASE WHEN p.mark_price > 0 THEN p.mark_price ELSE p.avg_entry_price END AS v
          FROM {position} p WHERE p.category = %s AND p.symbol <> %s AND p.size <> 0
        UNION ALL
        SELECT o.symbol, o.position_idx,
               CASE WHEN o.side = 'Buy' THEN o.qty - o.filled_qty ELSE 0 END * o.px AS b,
               CASE WHEN o.side = 'Sell' THEN o.qty - o.filled_qty ELSE 0 END * o.px AS s,
               0 AS v
          FROM (SELECT o.*, COALESCE(o.price,
                  (SELECT CASE WHEN p.mark_price > 0 THEN p.mark_price ELSE p.avg_entry_price END FROM {position} p
                    WHERE p.category = o.category AND p.symbol = o.symbol ORDER BY p.position_idx LIMIT 1),
                  o.avg_fill_price, 0) AS px
                  FROM {order} o WHERE o.category = %s AND o.symbol <> %s AND o.status IN ({resting})) o
      ) u GROUP BY u.symbol, u.position_idx) x), 0) AS exposure_other,
  EXISTS (SELECT 1 FROM {order} o WHERE o.category = %s AND o.symbol = %s AND {cancellable})
    AS has_cancel_candidates,
  g.resting_buy, g.resting_sell, g.cancel_limit_buy, g.cancel_limit_sell, g.cancel_other_buy, g.cancel_other_sell
FROM {risk} r CROSS JOIN (
  SELECT COALESCE(SUM(CASE WHEN o.side = 'Buy' THEN o.qty - o.filled_qty END), 0) AS resting_buy,
         COALESCE(SUM(CASE WHEN o.side = 'Sell' THEN o.qty - o.filled_qty END), 0) AS resting_sell,
         COALESCE(SUM(CASE WHEN o.side = 'Buy' AND {cancellable} AND o.order_type = {limit}
                           THEN o.qty - o.filled_qty END), 0) AS cancel_limit_buy,
         COALESCE(SUM(CASE WHEN o.side = 'Sell' AND {cancellable} AND o.order_type = {limit}
                           THEN o.qty - o.filled_qty END), 0) AS cancel_limit_sell,
         COALESCE(SUM(CASE WHEN o.side = 'Buy' AND {cancellable} AND o.order_type <> {limit}
                           THEN o.qty - o.filled_qty END), 0) AS cancel_other_buy,
         COALESCE(SUM(CASE WHEN o.side = 'Sell' AND {cancellable} AND o.order_type <> {limit}
                           THEN o.qty - o.filled_qty END), 0) AS cancel_other_sell
    FROM {order} o WHERE o.category = %s AND o.symbol = %s AND o.status IN ({resting})
     AND ((o.side = 'Buy' AND o.position_idx IN (0, 1)) OR (o.side = 'Sell' AND o.position_idx IN (0, 2)))
) g
WHERE r.symbol IN ('', %s)
"""


def _decimal(value) -> Decimal:
    # SQLite hands back numbers for extra columns of a raw query (PostgreSQL: Decimal already).
    if value is None:
        return Decimal(0)
    return value if isinstance(value, Decimal) else Decimal(str(value))


def position_size_of(*, symbol: str, category: str = "linear") -> Decimal:
    """Signed one-way position size from our book (positionIdx 0)."""
    return position_size_get(category=category, symbol=symbol, position_idx=0)
