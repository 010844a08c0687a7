"""The simulator's matching engine: orders, fills, positions, wallet and private events, typed.

Everything here is plain Python over ``Decimal`` and guarded by one re-entrant lock, so the
ASGI app (one event loop) and test threads can use the same engine. The Bybit V5 endpoints
(``create_order(params)`` ...) come from :class:`wire.V5Requests`, which parses the request's
string parameters and calls the typed operations here (``place_order``, ``amend``, ``cancel`` ...);
the responses and private messages are rendered by ``wire`` too. Refusals raise
:class:`wire.SimError` with Bybit's ``retCode``/``retMsg``.

Price model (see docs/decisions/0101-simulator-matching-model.md): every symbol has one *last
price*; the book has unlimited depth at that price unless ``max_fill_qty`` caps a pass.
bid1/ask1 are quoted ``spread_ticks`` ticks either side of it. A Buy limit is marketable when
``price >= last`` (Sell: ``price <= last``) and fills as taker at ``last`` (capped at the limit);
a resting Buy fills as maker at its own price once ``last <= price`` (Sell: ``last >= price``).
Market orders fill at ``last * (1 ± slippage)`` rounded to the tick, away from the taker.
"""

from __future__ import annotations

import dataclasses
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal, InvalidOperation

from exchange.simulator.faults import EventFilter, FaultConfig
from exchange.simulator.instruments import LINEAR, InstrumentDefinitionError, LinearSpec, linear_spec_from_definition
from exchange.simulator.wire import (
    SimError,
    V5Requests,
    execution_api,
    fmt,
    order_api,
    params_error,
    parse_decimal,
    position_api,
    wallet_api,
)

ZERO = Decimal(0)
ONE = Decimal(1)
AVG_QUANT = Decimal("0.00000001")
MM_RATE = Decimal("0.005")
OPEN_STATUSES = ("New", "PartiallyFilled", "Untriggered")
TOPICS = ("order", "execution", "position", "wallet")
RECENT_CLOSED = 500
MAX_OPEN_PER_SYMBOL = 500

@dataclass
class SimOrder:
    n: int
    category: str
    symbol: str
    order_id: str
    order_link_id: str
    side: str
    order_type: str
    price: Decimal
    qty: Decimal
    time_in_force: str
    position_idx: int
    reduce_only: bool
    close_on_trigger: bool
    created_ms: int
    updated_ms: int
    last_price_on_created: Decimal
    status: str = "New"
    cum_exec_qty: Decimal = ZERO
    cum_exec_value: Decimal = ZERO
    cum_exec_fee: Decimal = ZERO
    closed_pnl: Decimal = ZERO
    reject_reason: str = "EC_NoError"
    cancel_type: str = "UNKNOWN"

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def leaves_qty(self) -> Decimal:
        return self.qty - self.cum_exec_qty if self.is_open else ZERO

    @property
    def avg_price(self) -> Decimal | None:
        return (self.cum_exec_value / self.cum_exec_qty).quantize(AVG_QUANT) if self.cum_exec_qty else None


@dataclass
class SimExecution:
    n: int
    category: str
    symbol: str
    exec_id: str
    order_id: str
    order_link_id: str
    side: str
    order_type: str
    order_price: Decimal
    order_qty: Decimal
    leaves_qty: Decimal
    exec_type: str
    exec_qty: Decimal
    exec_price: Decimal
    exec_value: Decimal
    exec_fee: Decimal
    fee_rate: Decimal
    is_maker: bool
    closed_size: Decimal
    exec_pnl: Decimal
    mark_price: Decimal
    exec_time: int
    seq: int
    position_idx: int


@dataclass
class SimPosition:
    symbol: str
    position_idx: int
    leverage: Decimal
    created_ms: int
    updated_ms: int
    side: str = ""
    size: Decimal = ZERO
    avg_price: Decimal = ZERO
    cur_realised: Decimal = ZERO
    cum_realised: Decimal = ZERO
    seq: int = 0

    def unrealised(self, mark: Decimal) -> Decimal:
        if not self.size:
            return ZERO
        sign = ONE if self.side == "Buy" else -ONE
        return (mark - self.avg_price) * self.size * sign

    def initial_margin(self) -> Decimal:
        return self.size * self.avg_price / self.leverage

    def maintenance_margin(self, mark: Decimal) -> Decimal:
        return self.size * mark * MM_RATE

    def liq_price(self, tick: Decimal) -> Decimal:
        """Isolated-style liquidation estimate (0 when flat)."""
        if not self.size:
            return ZERO
        inv = ONE / self.leverage
        factor = ONE - inv + MM_RATE if self.side == "Buy" else ONE + inv - MM_RATE
        return (self.avg_price * factor).quantize(tick, rounding=ROUND_HALF_EVEN)


@dataclass
class Sink:
    """One consumer of private events (an in-process listener or a ws-gateway subscription)."""

    deliver: Callable[[dict], None]
    topics: frozenset[str]
    filter: EventFilter | None
    name: str = ""
    delivered: int = 0


@dataclass
class _Changes:
    orders: dict[str, SimOrder] = field(default_factory=dict)
    executions: list[SimExecution] = field(default_factory=list)
    positions: dict[tuple[str, int], SimPosition] = field(default_factory=dict)
    wallet: bool = False


class SimEngine(V5Requests):
    """In-memory Bybit V5 account (one UID) for linear USDT perpetuals.

    The listed instruments are ``instruments.LINEAR`` plus ``extra_instruments`` (both restored by
    :meth:`reset`) plus any added at run time with :meth:`add_instruments` (dropped by :meth:`reset`).
    """

    def __init__(
        self,
        *,
        seed: int = 1,
        initial_balance: Decimal | str = "100000",
        taker_fee: Decimal | str = "0.00055",
        maker_fee: Decimal | str = "0.0002",
        slippage: Decimal | str = "0",
        spread_ticks: int = 1,
        leverage: Decimal | str = "10",
        volatility: Decimal | str = "0.0005",
        max_fill_qty: dict[str, str] | None = None,
        clock: Callable[[], int] | None = None,
        fault_config: FaultConfig | None = None,
        extra_instruments: Iterable[dict | LinearSpec] | None = None,
    ) -> None:
        self.lock = threading.RLock()
        # The catalogue every reset starts from: built-ins plus the instruments given at construction.
        self.base_instruments: dict[str, LinearSpec] = dict(LINEAR)
        for spec in _parse_instruments(extra_instruments or (), dict(LINEAR)):
            self.base_instruments[spec.symbol] = spec
        self.seed = seed
        self.initial_balance = Decimal(initial_balance)
        self.defaults = {
            "taker_fee": Decimal(taker_fee),
            "maker_fee": Decimal(maker_fee),
            "slippage": Decimal(slippage),
            "spread_ticks": int(spread_ticks),
            "leverage": Decimal(leverage),
            "volatility": Decimal(volatility),
            "max_fill_qty": {k: Decimal(v) for k, v in (max_fill_qty or {}).items()},
        }
        self._clock = clock or (lambda: int(time.time() * 1000))
        self.fault_config = fault_config or FaultConfig()
        self.event_log: deque[dict] = deque(maxlen=200_000)
        self._sinks: list[Sink] = []
        self._sink_count = 0
        self.reset()

    # ------------------------------------------------------------------ lifecycle
    def reset(self) -> None:
        """Empty state: no orders/fills/positions, initial balance, start prices, one-way mode, no listeners."""
        with self.lock:
            self.config = {k: (dict(v) if isinstance(v, dict) else v) for k, v in self.defaults.items()}
            self._price_rng = random.Random(self.seed)
            self._n = 0
            self._last_ms = 0
            self.linear: dict[str, LinearSpec] = {}
            self.prices: dict[str, Decimal] = {}
            self.modes: dict[str, int] = {}
            self.leverage: dict[str, Decimal] = {}
            self.seqs: dict[str, int] = {}
            self.orders: dict[str, SimOrder] = {}
            self.orders_by_link: dict[str, SimOrder] = {}
            self.open_orders: dict[str, SimOrder] = {}  # the open subset of ``orders`` (kept for speed)
            self.recent_closed: deque[str] = deque(maxlen=RECENT_CLOSED)
            self.executions: list[SimExecution] = []
            self.positions: dict[tuple[str, int], SimPosition] = {}
            self.wallet_balance = self.initial_balance
            self.cum_realised = ZERO
            self.event_log.clear()
            self._sinks = []
            self._sink_count = 0
            self._changes = _Changes()
            for spec in self.base_instruments.values():
                self._list(spec)

    # ------------------------------------------------------------------ instruments
    def add_instruments(self, definitions: Iterable[dict | LinearSpec]) -> list[LinearSpec]:
        """List more linear USDT perpetuals until the next :meth:`reset` (``POST /sim/instruments``).

        Each definition is a Bybit ``instruments-info`` item plus ``price`` (the starting last price), a
        compact dict (see :func:`instruments.linear_spec_from_definition`) or a :class:`LinearSpec`.
        All or nothing: the whole list is checked first (``ValueError`` naming the symbol and field).
        Re-adding a symbol with the same rules is a no-op; with different rules it is refused.
        """
        with self.lock:
            specs = _parse_instruments(definitions, self.linear)
            for spec in specs:
                if spec.symbol not in self.linear:
                    self._list(spec)
            return specs

    def add_instrument(self, definition: dict | LinearSpec) -> LinearSpec:
        """One instrument; see :meth:`add_instruments`."""
        return self.add_instruments([definition])[0]

    def _list(self, spec: LinearSpec) -> None:
        symbol = spec.symbol
        self.linear[symbol] = spec
        self.prices[symbol] = spec.start_price
        self.modes[symbol] = 0
        self.leverage[symbol] = min(self.config["leverage"], spec.max_leverage)
        self.seqs[symbol] = 1000 * spec.symbol_id
        self._ensure_positions(symbol)

    def _spec(self, symbol: str | None) -> LinearSpec:
        if not symbol:
            raise params_error("params error: symbol is required")
        spec = self.linear.get(symbol)
        if spec is None:
            raise params_error("params error: symbol invalid")
        return spec

    def order_matches(self, order: SimOrder, symbol, base, settle) -> bool:
        """Whether ``order`` is in the scope a query names (symbol, else base coin, else settle coin)."""
        if symbol:
            return order.symbol == symbol
        if base:
            return self.linear[order.symbol].base == base
        if settle:
            return settle == "USDT"
        return True

    def configure(self, changes: dict) -> dict:
        """Change matching parameters at run time (``POST /sim/config``); returns the config."""
        with self.lock:
            clean = {}
            for key, value in changes.items():
                if key not in self.config:
                    raise ValueError(f"unknown config key {key!r}; known: {', '.join(sorted(self.config))}")
                try:
                    if key == "spread_ticks":
                        clean[key] = int(value)
                    elif key == "max_fill_qty":
                        clean[key] = {str(k): Decimal(str(v)) for k, v in (value or {}).items()}
                        unknown = set(clean[key]) - set(self.linear)
                        if unknown:
                            raise ValueError(f"unknown symbol(s) in max_fill_qty: {sorted(unknown)}")
                    else:
                        clean[key] = Decimal(str(value))
                except (InvalidOperation, TypeError):
                    raise ValueError(f"{key}={value!r} is not a number") from None
            self.config.update(clean)
            return self.config_api()

    def config_api(self) -> dict:
        with self.lock:
            return {
                k: ({s: str(q) for s, q in v.items()} if isinstance(v, dict) else (v if isinstance(v, int) else str(v)))
                for k, v in self.config.items()
            }

    def now_ms(self) -> int:
        # Never backwards (wall clock steps); not forced strictly increasing, which would drift under load.
        # Ordering of orders/fills uses the internal sequence number ``n``, not the timestamp.
        now = max(int(self._clock()), self._last_ms)
        self._last_ms = now
        return now

    def _next_n(self) -> int:
        self._n += 1
        return self._n

    @staticmethod
    def _new_id() -> str:
        # Random, not seeded: ids must never repeat across resets or restarts (a database may hold old ones).
        return str(uuid.uuid4())

    # ------------------------------------------------------------------ events
    def add_listener(
        self, listener: Callable[[dict], None], *, topics: Iterable[str] | None = None, faults: bool = True
    ) -> Sink:
        """Deliver every private message to ``listener(message)``, through the event faults unless ``faults=False``.

        Listeners are called synchronously under the engine lock, in event order; keep them quick.
        """
        return self.add_sink(listener, topics=topics, faults=faults, name=getattr(listener, "__name__", "listener"))

    def add_sink(self, deliver, *, topics=None, faults: bool = True, name: str = "") -> Sink:
        with self.lock:
            chosen = frozenset(topics or TOPICS)
            unknown = chosen - set(TOPICS)
            if unknown:
                raise ValueError(f"unknown topic(s): {sorted(unknown)}")
            index = self._sink_count
            self._sink_count += 1
            sink = Sink(deliver, chosen, EventFilter(self.fault_config, index) if faults else None, name)
            self._sinks.append(sink)
            return sink

    def remove_listener(self, listener_or_sink) -> None:
        with self.lock:
            self._sinks = [s for s in self._sinks if s is not listener_or_sink and s.deliver is not listener_or_sink]

    def reseed_event_faults(self) -> None:
        with self.lock:
            for sink in self._sinks:
                if sink.filter is not None:
                    sink.filter.reseed(sink.filter.index)

    def flush_events(self, *, max_age: float | None = None) -> None:
        """Deliver messages held back by the reorder fault (all, or those older than ``max_age`` s)."""
        with self.lock:
            for sink in self._sinks:
                if sink.filter is not None:
                    for message in sink.filter.flush(max_age=max_age):
                        self._deliver(sink, message)

    def _deliver(self, sink: Sink, message: dict) -> None:
        sink.delivered += 1
        sink.deliver(message)

    def _publish(self, topic: str, items: list[dict]) -> None:
        if not items:
            return
        message = {"id": f"{self._new_id()}", "topic": topic, "creationTime": self.now_ms(), "data": items}
        self.event_log.append(message)
        for sink in list(self._sinks):
            if topic not in sink.topics:
                continue
            out = sink.filter.process(message) if sink.filter is not None else [message]
            for m in out:
                self._deliver(sink, m)

    def _emit_changes(self) -> None:
        changes, self._changes = self._changes, _Changes()
        self._publish("order", [order_api(o, self.linear[o.symbol], ws=True) for o in changes.orders.values()])
        self._publish("execution", [execution_api(e, self.linear[e.symbol], ws=True) for e in changes.executions])
        self._publish(
            "position",
            [position_api(p, self.linear[p.symbol], self.prices[p.symbol], ws=True)
             for p in changes.positions.values()],
        )
        if changes.wallet:
            self._publish("wallet", [self.wallet_api()])

    # ------------------------------------------------------------------ market data
    def quotes(self, symbol: str, tick: Decimal) -> tuple[Decimal, Decimal, Decimal]:
        """(last, bid1, ask1): the book quotes ``spread_ticks`` ticks either side of the last price."""
        last = self.prices[symbol]
        spread = tick * self.config["spread_ticks"]
        return last, max(last - spread, tick), last + spread

    def set_price(self, symbol: str, price: Decimal | str) -> Decimal:
        """Set last/mark price (rounded to the tick) and run matching; returns the price set."""
        with self.lock:
            spec = self._spec(symbol)
            value = parse_decimal(price, "price").quantize(spec.tick, rounding=ROUND_HALF_EVEN)
            if value < spec.min_price or value > spec.max_price:
                raise params_error(f"price {value} outside [{spec.min_price}, {spec.max_price}] for {symbol}")
            self.prices[symbol] = value
            self._match(symbol)
            self._emit_changes()
            return value

    def tick(self, *, steps: int = 1, symbol: str | None = None) -> dict[str, str]:
        """Advance the seeded random walk ``steps`` times (all symbols, or one), matching after each step."""
        with self.lock:
            symbols = [self._spec(symbol).symbol] if symbol else list(self.linear)
            for _ in range(steps):
                for sym in symbols:
                    spec = self.linear[sym]
                    price = self.prices[sym]
                    sigma_ticks = float(price * self.config["volatility"] / spec.tick)
                    move = int(round(self._price_rng.gauss(0.0, max(sigma_ticks, 1.0))))
                    self.prices[sym] = min(max(price + spec.tick * move, spec.min_price), spec.max_price)
                    self._match(sym)
            self._emit_changes()
            return {s: fmt(self.prices[s], self.linear[s].price_scale) for s in symbols}

    # ------------------------------------------------------------------ orders
    def place_order(
        self, *, spec: LinearSpec, side: str, order_type: str, qty: Decimal, price: Decimal | None, tif: str,
        position_idx: int, reduce_only: bool, close_on_trigger: bool, link_id: str,
    ) -> SimOrder:
        """Place a checked order (``price`` None for Market) and match it; refusals raise ``SimError``.

        ``qty`` 0 with reduce-only + close-on-trigger closes the whole position."""
        with self.lock:
            symbol = spec.symbol
            last = self.prices[symbol]
            if order_type == "Market":
                tif = "IOC"
                band = Decimal("0.05") + self.config["slippage"]
                rounding = ROUND_CEILING if side == "Buy" else ROUND_FLOOR
                price = (last * (ONE + band if side == "Buy" else ONE - band)).quantize(spec.tick, rounding=rounding)
            if link_id and link_id in self.orders_by_link:
                raise SimError(110072, "OrderLinkedID is duplicate")
            reducing = reduce_only or self._closes_hedge(side, position_idx)
            if reducing:
                qty = self._check_reduce_only(symbol, side, position_idx, qty, explicit=reduce_only)
            else:
                ref = price if order_type == "Limit" else last
                if qty * ref < spec.min_notional:
                    raise SimError(110094, f"Order does not meet minimum order value {spec.min_notional}USDT")
            self._check_max_qty(spec, order_type, qty)
            if sum(1 for o in self.open_orders.values() if o.symbol == symbol) >= MAX_OPEN_PER_SYMBOL:
                raise SimError(110020, "Not allowed to have more than 500 active orders")
            if not reducing:
                self._check_margin(spec, side, position_idx, qty, price if order_type == "Limit" else last)
            now = self.now_ms()
            order = SimOrder(
                n=self._next_n(), category="linear", symbol=symbol, order_id=self._new_id(), order_link_id=link_id,
                side=side, order_type=order_type, price=price, qty=qty, time_in_force=tif, position_idx=position_idx,
                reduce_only=reduce_only, close_on_trigger=close_on_trigger, created_ms=now, updated_ms=now,
                last_price_on_created=last,
            )
            self.orders[order.order_id] = order
            if link_id:
                self.orders_by_link[link_id] = order
            self.open_orders[order.order_id] = order
            self._on_new_order(order, spec)
            self._touch_order(order)
            self._touch_position(self._position(symbol, position_idx))
            self._emit_changes()
            return order

    def _on_new_order(self, order: SimOrder, spec: LinearSpec) -> None:
        last = self.prices[order.symbol]
        marketable = order.order_type == "Market" or (
            order.price >= last if order.side == "Buy" else order.price <= last
        )
        if not marketable:
            if order.time_in_force in ("IOC", "FOK"):
                self._close(order, "Cancelled", reject="EC_NoImmediateQtyToFill" if order.time_in_force == "IOC"
                            else "EC_NoEnoughQtyToFill")
            return
        if order.time_in_force == "PostOnly":
            self._close(order, "Cancelled", reject="EC_PostOnlyWillTakeLiquidity")
            return
        cap = self._pass_cap(order)
        if order.time_in_force == "FOK" and cap < order.qty:
            self._close(order, "Cancelled", reject="EC_NoEnoughQtyToFill")
            return
        if order.order_type == "Market":
            slip = self.config["slippage"]
            rounding = ROUND_CEILING if order.side == "Buy" else ROUND_FLOOR
            fill_price = (last * (ONE + slip if order.side == "Buy" else ONE - slip)).quantize(
                spec.tick, rounding=rounding)
        else:
            fill_price = min(last, order.price) if order.side == "Buy" else max(last, order.price)
        if cap > 0:
            self._fill(order, cap, fill_price, maker=False)
        if order.is_open and order.time_in_force in ("IOC", "FOK"):
            reject = "EC_NoImmediateQtyToFill" if order.cum_exec_qty == 0 else "EC_NoError"
            self._close(order, "Cancelled", reject=reject, cancel_type="UNKNOWN")

    def _pass_cap(self, order: SimOrder) -> Decimal:
        """How much of ``order`` may fill in this matching pass (liquidity cap and reduce-only cap)."""
        cap = order.leaves_qty
        limit = self.config["max_fill_qty"].get(order.symbol)
        if limit is not None:
            cap = min(cap, limit)
        if order.reduce_only or self._closes_hedge(order.side, order.position_idx):
            pos = self._position(order.symbol, order.position_idx)
            opposite = pos.size if pos.size and pos.side != order.side else ZERO
            cap = min(cap, opposite)
        return cap

    def amend(self, order: SimOrder, spec: LinearSpec, *, qty: Decimal | None, price: Decimal | None) -> None:
        """Change an open order's qty and/or price (at least one given) and match it if it now crosses."""
        with self.lock:
            if order.order_type == "Market":
                raise SimError(110001, "order not exists or too late to replace")
            if qty is not None and qty <= order.cum_exec_qty:
                raise SimError(110064, "The modified contract quantity cannot be less than or equal to the filled "
                                       "quantity")
            if (qty is None or qty == order.qty) and (price is None or price == order.price):
                raise SimError(34040, "not modified")
            if qty is not None:
                self._check_max_qty(spec, order.order_type, qty)
                order.qty = qty
            if price is not None:
                order.price = price
            order.updated_ms = self.now_ms()
            last = self.prices[order.symbol]
            crosses = order.price >= last if order.side == "Buy" else order.price <= last
            if crosses and order.time_in_force == "PostOnly":
                self._close(order, "Cancelled", reject="EC_PostOnlyWillTakeLiquidity")
            elif crosses:
                cap = self._pass_cap(order)
                if cap > 0:
                    fill_price = min(last, order.price) if order.side == "Buy" else max(last, order.price)
                    self._fill(order, cap, fill_price, maker=False)
            self._touch_order(order)
            self._touch_position(self._position(order.symbol, order.position_idx))
            self._emit_changes()

    def cancel(self, order: SimOrder) -> None:
        """Cancel an open order, as its user does."""
        with self.lock:
            self._close(order, "Cancelled", cancel_type="CancelByUser")
            self._touch_position(self._position(order.symbol, order.position_idx))
            self._emit_changes()

    def cancel_matching(
        self, *, symbol: str | None, base: str | None, settle: str | None, at_most: int
    ) -> list[SimOrder]:
        """Cancel the open orders in scope (symbol, else base coin, else settle coin), oldest first, at most
        ``at_most`` of them."""
        with self.lock:
            cancelled = []
            for order in sorted(self.open_orders.values(), key=lambda o: o.n):
                if len(cancelled) >= at_most:
                    continue
                if symbol and order.symbol != symbol:
                    continue
                if not symbol and base and self.linear[order.symbol].base != base:
                    continue
                if not symbol and not base and settle and settle != "USDT":
                    continue
                self._close(order, "Cancelled", cancel_type="CancelByUser")
                self._touch_position(self._position(order.symbol, order.position_idx))
                cancelled.append(order)
            self._emit_changes()
            return cancelled

    def resting_order(
        self, *, spec: LinearSpec, side: str, qty: Decimal, price: Decimal, tif: str, position_idx: int, link_id: str,
        open_count: int, now: int,
    ) -> SimOrder:
        """A limit order that would rest on the book now, checked but not yet placed (see :meth:`rest_orders`)."""
        symbol = spec.symbol
        if self._closes_hedge(side, position_idx):
            raise params_error("params error: orders that close a hedge position cannot be seeded")
        if qty * price < spec.min_notional:
            raise SimError(110094, f"Order does not meet minimum order value {spec.min_notional}USDT")
        self._check_max_qty(spec, "Limit", qty)
        last = self.prices[symbol]
        if (price >= last) if side == "Buy" else (price <= last):
            raise params_error(f"params error: price {price} would cross the last price {last}; seeded orders rest")
        if open_count >= MAX_OPEN_PER_SYMBOL:
            raise SimError(110020, "Not allowed to have more than 500 active orders")
        return SimOrder(
            n=0, category="linear", symbol=symbol, order_id=self._new_id(), order_link_id=link_id, side=side,
            order_type="Limit", price=price, qty=qty, time_in_force=tif, position_idx=position_idx,
            reduce_only=False, close_on_trigger=False, created_ms=now, updated_ms=now, last_price_on_created=last,
        )

    def rest_orders(self, staged: Iterable[SimOrder]) -> None:
        """Put orders from :meth:`resting_order` on the book at once, silently (no private events)."""
        with self.lock:
            for order in staged:
                order.n = self._next_n()
                self.orders[order.order_id] = order
                if order.order_link_id:
                    self.orders_by_link[order.order_link_id] = order
                self.open_orders[order.order_id] = order

    def set_position(self, *, symbol: str, size: Decimal | str, side: str = "", avg_price: Decimal | str = "0",
                     position_idx: int = 0) -> dict:
        """Set a position with no execution to explain it (``POST /sim/position``).

        What reconciliation meets when a position changed outside this account's fills (a transfer, a
        manual adjustment, fills older than the history reaches). Wallet balance and realised PnL do not
        move; a ``position`` message is published, as Bybit pushes one on any position change. Size 0
        flattens it (side and entry price are then cleared). Returns the position in /position/list shape.
        """
        with self.lock:
            spec = self._spec(symbol)
            idx = self._position_idx({"positionIdx": position_idx}, symbol)
            amount = parse_decimal(size, "size")
            if amount < 0 or amount % spec.qty_step:
                raise params_error(f"params error: size must be 0 or a positive multiple of {spec.qty_step}")
            pos = self._position(symbol, idx)
            if amount:
                if side not in ("Buy", "Sell"):
                    raise params_error("params error: side must be Buy or Sell for a non-zero size")
                if idx and side != ("Buy" if idx == 1 else "Sell"):
                    raise params_error(f"params error: positionIdx {idx} holds {'Buy' if idx == 1 else 'Sell'} only")
                entry = parse_decimal(avg_price, "avgPrice")
                if entry <= 0:
                    raise params_error("params error: avgPrice must be positive for a non-zero size")
                pos.size, pos.side, pos.avg_price = amount, side, entry
            else:
                pos.size, pos.side, pos.avg_price = ZERO, "", ZERO
            pos.updated_ms = self.now_ms()
            pos.seq = self._next_seq(symbol)
            self._touch_position(pos)
            self._emit_changes()
            return position_api(pos, spec, self.prices[symbol])

    def force_fill(self, *, order_id: str = "", order_link_id: str = "", qty: Decimal | str | None = None,
                   price: Decimal | str | None = None) -> dict:
        """Fill part (or the rest) of a resting order as maker, whatever the price (``POST /sim/fill``)."""
        with self.lock:
            order = self.orders.get(order_id) if order_id else self.orders_by_link.get(order_link_id)
            if order is None or not order.is_open:
                raise SimError(110001, "Order does not exist.")
            spec = self.linear[order.symbol]
            amount = order.leaves_qty if qty in (None, "") else parse_decimal(qty, "qty")
            if amount <= 0 or amount > order.leaves_qty or amount % spec.qty_step:
                raise params_error(f"qty must be a positive multiple of {spec.qty_step} up to {order.leaves_qty}")
            fill_price = order.price if price in (None, "") else parse_decimal(price, "price")
            if order.reduce_only or self._closes_hedge(order.side, order.position_idx):
                amount = min(amount, self._pass_cap(order))
                if amount <= 0:
                    raise SimError(110017, "current position is zero, cannot fix reduce-only order qty")
            self._fill(order, amount, fill_price, maker=True)
            self._emit_changes()
            return order_api(order, spec)

    # ------------------------------------------------------------------ positions & account
    def switch_modes(self, symbols: list[str], mode: int, *, one_symbol: bool) -> None:
        """Switch ``symbols`` to ``mode`` (0 one-way, 3 hedge). A symbol with a position or open orders is refused
        when it was named alone (``one_symbol``), skipped when the whole coin was asked."""
        with self.lock:
            if all(self.modes[s] == mode for s in symbols):
                raise SimError(110025, "Position mode is not modified")
            changed = []
            for sym in symbols:
                if self.modes[sym] == mode:
                    continue
                if any(p.size for p in self.positions.values() if p.symbol == sym):
                    if one_symbol:
                        raise SimError(110024, "You have an existing position, so position mode cannot be switched")
                    continue
                if any(o.symbol == sym for o in self.open_orders.values()):
                    if one_symbol:
                        raise SimError(110028, "You have open orders, so position mode cannot be switched")
                    continue
                changed.append(sym)
            for sym in changed:
                for key in [k for k in self.positions if k[0] == sym]:
                    del self.positions[key]
                self.modes[sym] = mode
                self._ensure_positions(sym)

    def leverage_set(self, spec: LinearSpec, leverage: Decimal) -> None:
        """Set the symbol's leverage (both sides, cross margin) on it and its positions."""
        with self.lock:
            if not ONE <= leverage <= spec.max_leverage:
                raise SimError(10001, f"leverage must be between 1 and {spec.max_leverage}")
            if self.leverage[spec.symbol] == leverage:
                raise SimError(110043, "Set leverage not modified")
            self.leverage[spec.symbol] = leverage
            for p in self.positions.values():
                if p.symbol == spec.symbol:
                    p.leverage = leverage

    def _totals(self) -> dict[str, Decimal]:
        upl = sum((p.unrealised(self.prices[p.symbol]) for p in self.positions.values()), ZERO)
        pos_im = sum((p.initial_margin() for p in self.positions.values()), ZERO)
        pos_mm = sum((p.maintenance_margin(self.prices[p.symbol]) for p in self.positions.values()), ZERO)
        order_im = sum(
            (o.leaves_qty * o.price / self.leverage[o.symbol]
             for o in self.open_orders.values() if not o.reduce_only and o.order_type == "Limit"),
            ZERO,
        )
        margin_balance = self.wallet_balance + upl
        return {
            "upl": upl, "pos_im": pos_im, "pos_mm": pos_mm, "order_im": order_im, "margin_balance": margin_balance,
            "available": margin_balance - pos_im - order_im,
        }

    def available_balance(self) -> Decimal:
        with self.lock:
            return self._totals()["available"]

    def wallet_api(self) -> dict:
        """The account in /v5/account/wallet-balance shape."""
        return wallet_api(self._totals(), wallet_balance=self.wallet_balance, cum_realised=self.cum_realised)

    def settle_funding(self, *, symbol: str, rate: Decimal | str) -> list[dict]:
        """Charge/pay funding on open positions of ``symbol`` (execType Funding rows); returns the rows."""
        with self.lock:
            spec = self._spec(symbol)
            funding_rate = parse_decimal(rate, "rate")
            mark = self.prices[symbol]
            rows = []
            for pos in [p for p in self.positions.values() if p.symbol == symbol and p.size]:
                value = pos.size * mark
                # Positive rate: longs pay shorts. execFee > 0 means paid, < 0 received (as on Bybit).
                fee = value * funding_rate * (ONE if pos.side == "Buy" else -ONE)
                self.wallet_balance -= fee
                self.cum_realised -= fee
                pos.cum_realised -= fee
                pos.cur_realised -= fee
                pos.updated_ms = self.now_ms()
                pos.seq = self._next_seq(symbol)
                execution = SimExecution(
                    n=self._next_n(), category="linear", symbol=symbol, exec_id=self._new_id(), order_id="",
                    order_link_id="", side=pos.side, order_type="UNKNOWN", order_price=ZERO, order_qty=ZERO,
                    leaves_qty=ZERO, exec_type="Funding", exec_qty=pos.size, exec_price=mark, exec_value=value,
                    exec_fee=fee, fee_rate=funding_rate, is_maker=False, closed_size=ZERO, exec_pnl=ZERO,
                    mark_price=mark, exec_time=pos.updated_ms, seq=pos.seq, position_idx=pos.position_idx,
                )
                self.executions.append(execution)
                self._changes.executions.append(execution)
                self._touch_position(pos)
                self._changes.wallet = True
                rows.append(execution_api(execution, spec))
            self._emit_changes()
            return rows

    # ------------------------------------------------------------------ internals: validation
    @staticmethod
    def _closes_hedge(side: str, position_idx: int) -> bool:
        # In hedge mode positionIdx names the position: a Sell on idx 1 (or Buy on idx 2) closes it.
        return (position_idx == 1 and side == "Sell") or (position_idx == 2 and side == "Buy")

    def _check_reduce_only(self, symbol: str, side: str, position_idx: int, qty: Decimal, *, explicit: bool) -> Decimal:
        pos = self._position(symbol, position_idx)
        if (position_idx, side) in ((1, "Buy"), (2, "Sell")):
            # reduceOnly on the opening side of a hedge position (e.g. Sell + idx 2) cannot reduce anything.
            raise SimError(110017, "current position is zero, cannot fix reduce-only order qty")
        if not pos.size or pos.side == side:
            raise SimError(110017, "current position is zero, cannot fix reduce-only order qty")
        if qty == 0:  # qty "0" + reduceOnly + closeOnTrigger closes the whole position
            return pos.size
        return qty

    def _check_max_qty(self, spec: LinearSpec, order_type: str, qty: Decimal) -> None:
        maximum = spec.max_mkt_qty if order_type == "Market" else spec.max_qty
        if qty > maximum:
            raise params_error(f"The number of contracts exceeds maximum limit allowed: max {maximum}")

    def _check_margin(self, spec: LinearSpec, side: str, position_idx: int, qty: Decimal, price: Decimal) -> None:
        increase = qty
        pos = self._position(spec.symbol, position_idx)
        if position_idx == 0 and pos.size and pos.side != side:
            increase = max(ZERO, qty - pos.size)
        needed = increase * price / self.leverage[spec.symbol] + qty * price * self.config["taker_fee"]
        if needed > self._totals()["available"]:
            raise SimError(110007, "ab not enough for new order")

    # ------------------------------------------------------------------ internals: state changes
    def _ensure_positions(self, symbol: str) -> None:
        now = self.now_ms()
        for idx in ((1, 2) if self.modes[symbol] == 3 else (0,)):
            self.positions.setdefault(
                (symbol, idx), SimPosition(symbol, idx, self.leverage[symbol], created_ms=now, updated_ms=now)
            )

    def _position(self, symbol: str, idx: int) -> SimPosition:
        return self.positions[(symbol, idx)]

    def _next_seq(self, symbol: str) -> int:
        self.seqs[symbol] += 1
        return self.seqs[symbol]

    def _touch_order(self, order: SimOrder) -> None:
        self._changes.orders[order.order_id] = order

    def _touch_position(self, pos: SimPosition) -> None:
        self._changes.positions[(pos.symbol, pos.position_idx)] = pos

    def _close(self, order: SimOrder, status: str, *, reject: str = "EC_NoError", cancel_type: str = "UNKNOWN") -> None:
        order.status = status
        order.reject_reason = reject
        order.cancel_type = cancel_type
        order.updated_ms = self.now_ms()
        self.recent_closed.append(order.order_id)
        self.open_orders.pop(order.order_id, None)
        self._touch_order(order)

    def _match(self, symbol: str) -> None:
        last = self.prices[symbol]
        for order in sorted((o for o in self.open_orders.values() if o.symbol == symbol), key=lambda o: o.n):
            if order.order_type != "Limit":
                continue
            crossed = last <= order.price if order.side == "Buy" else last >= order.price
            if not crossed:
                continue
            cap = self._pass_cap(order)
            if cap > 0:
                self._fill(order, cap, order.price, maker=True)
            elif order.reduce_only or self._closes_hedge(order.side, order.position_idx):
                # Nothing left to reduce: Bybit cancels such reduce-only orders.
                self._close(order, "Cancelled", cancel_type="CancelByReduceOnly")

    def _fill(self, order: SimOrder, qty: Decimal, price: Decimal, *, maker: bool) -> None:
        rate = self.config["maker_fee"] if maker else self.config["taker_fee"]
        value = qty * price
        fee = value * rate
        pos = self._position(order.symbol, order.position_idx)
        pnl, closed = self._apply_to_position(pos, order.side, qty, price)
        self.wallet_balance += pnl - fee
        self.cum_realised += pnl - fee
        order.cum_exec_qty += qty
        order.cum_exec_value += value
        order.cum_exec_fee += fee
        order.closed_pnl += pnl
        now = self.now_ms()
        order.updated_ms = now
        pos.updated_ms = now
        pos.seq = self._next_seq(order.symbol)
        if order.cum_exec_qty >= order.qty:
            order.status = "Filled"
            self.recent_closed.append(order.order_id)
            self.open_orders.pop(order.order_id, None)
        else:
            order.status = "PartiallyFilled"
        execution = SimExecution(
            n=self._next_n(), category="linear", symbol=order.symbol, exec_id=self._new_id(), order_id=order.order_id,
            order_link_id=order.order_link_id, side=order.side, order_type=order.order_type, order_price=order.price,
            order_qty=order.qty, leaves_qty=order.leaves_qty, exec_type="Trade", exec_qty=qty, exec_price=price,
            exec_value=value, exec_fee=fee, fee_rate=rate, is_maker=maker, closed_size=closed, exec_pnl=pnl,
            mark_price=self.prices[order.symbol], exec_time=now, seq=pos.seq, position_idx=order.position_idx,
        )
        self.executions.append(execution)
        self._changes.executions.append(execution)
        self._changes.wallet = True
        self._touch_order(order)
        self._touch_position(pos)

    def _apply_to_position(self, pos: SimPosition, side: str, qty: Decimal, price: Decimal) -> tuple[Decimal, Decimal]:
        """Apply a fill; returns (realised PnL before fees, closed size)."""
        if not pos.size or pos.side == side:
            if not pos.size:
                pos.cur_realised = ZERO
            total = pos.size + qty
            pos.avg_price = ((pos.avg_price * pos.size + price * qty) / total).quantize(AVG_QUANT)
            pos.size = total
            pos.side = side
            return ZERO, ZERO
        closed = min(qty, pos.size)
        sign = ONE if pos.side == "Buy" else -ONE
        pnl = (price - pos.avg_price) * closed * sign
        pos.size -= closed
        pos.cur_realised += pnl
        pos.cum_realised += pnl
        rest = qty - closed
        if not pos.size:
            pos.side, pos.avg_price = "", ZERO
        if rest > 0:  # one-way mode: the fill flips the position
            pos.side, pos.size, pos.avg_price, pos.cur_realised = side, rest, price, ZERO
        return pnl, closed

    # ------------------------------------------------------------------ dump
    def state(self) -> dict:
        with self.lock:
            return {
                "prices": {s: fmt(p, self.linear[s].price_scale) for s, p in self.prices.items()},
                "modes": dict(self.modes),
                "orders": [order_api(o, self.linear[o.symbol], ws=True)
                           for o in sorted(self.orders.values(), key=lambda o: o.n)],
                "executions": [execution_api(e, self.linear[e.symbol], ws=True) for e in self.executions],
                "positions": [position_api(p, self.linear[p.symbol], self.prices[p.symbol])
                              for p in self.positions.values()],
                "wallet": self.wallet_api(),
                "config": self.config_api(),
                "sinks": [{"name": s.name, "topics": sorted(s.topics), "delivered": s.delivered,
                           "faults": s.filter.counts if s.filter else None} for s in self._sinks],
                "events_published": len(self.event_log),
            }


# ---------------------------------------------------------------------- instrument catalogue
def _parse_instruments(definitions: Iterable[dict | LinearSpec], listed: dict[str, LinearSpec]) -> list[LinearSpec]:
    """Parse and check a batch against ``listed`` (and itself): ids unique, a listed symbol only with equal rules."""
    if isinstance(definitions, dict | LinearSpec | str | bytes):
        raise ValueError("instrument definitions must be a list")
    taken_ids = {spec.symbol_id: spec.symbol for spec in listed.values()}
    next_id = max([*taken_ids, 99]) + 1  # ids after the built-ins, so instruments-info pages stay in order
    specs: list[LinearSpec] = []
    seen: dict[str, LinearSpec] = {}
    for definition in definitions:
        spec = linear_spec_from_definition(definition, default_symbol_id=next_id)
        known = listed.get(spec.symbol) or seen.get(spec.symbol)
        if known is not None:
            explicit_id = isinstance(definition, LinearSpec) or "symbolId" in definition
            if dataclasses.replace(spec, symbol_id=known.symbol_id) != known or (
                    explicit_id and spec.symbol_id != known.symbol_id):
                raise InstrumentDefinitionError(f"{spec.symbol} is already listed with different rules")
            specs.append(known)
            continue
        owner = taken_ids.get(spec.symbol_id)
        if owner is not None:
            raise InstrumentDefinitionError(f"{spec.symbol}: symbolId {spec.symbol_id} is already used by {owner}")
        taken_ids[spec.symbol_id] = spec.symbol
        next_id = max(next_id, spec.symbol_id + 1)
        seen[spec.symbol] = spec
        specs.append(spec)
    return specs
