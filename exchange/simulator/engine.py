"""The simulator's matching engine: orders, fills, positions, wallet and private events.

Everything here is plain Python over ``Decimal`` and guarded by one re-entrant lock, so the
ASGI app (one event loop) and test threads can use the same engine. Methods that serve Bybit
endpoints take the request's parameter dict as Bybit receives it (strings) and raise
:class:`SimError` with Bybit's ``retCode``/``retMsg``.

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
from urllib.parse import quote, unquote

from exchange.simulator.faults import EventFilter, FaultConfig
from exchange.simulator.instruments import (
    LINEAR,
    SPOT,
    InstrumentDefinitionError,
    LinearSpec,
    linear_instrument_api,
    linear_spec_from_definition,
    spot_instrument_api,
)

ZERO = Decimal(0)
ONE = Decimal(1)
AVG_QUANT = Decimal("0.00000001")
MM_RATE = Decimal("0.005")
OPEN_STATUSES = ("New", "PartiallyFilled", "Untriggered")
TOPICS = ("order", "execution", "position", "wallet")
WEEK_MS = 7 * 24 * 3600 * 1000
DAY_MS = 24 * 3600 * 1000
RECENT_CLOSED = 500
MAX_OPEN_PER_SYMBOL = 500
LINK_ID_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")

# Bybit's per-UID, per-endpoint budgets (requests per second), non-VIP.
DEFAULT_RATE_LIMITS = {
    "/v5/order/create": 10,
    "/v5/order/amend": 10,
    "/v5/order/cancel": 10,
    "/v5/order/cancel-all": 10,
    "/v5/order/realtime": 50,
    "/v5/order/history": 50,
    "/v5/execution/list": 50,
    "/v5/position/list": 50,
    "/v5/position/switch-mode": 10,
    "/v5/position/set-leverage": 10,
    "/v5/account/wallet-balance": 50,
    "/v5/account/info": 50,
    "/v5/user/query-api": 50,
}


class SimError(Exception):
    """A request Bybit would refuse: carries its retCode and retMsg."""

    def __init__(self, ret_code: int, ret_msg: str) -> None:
        super().__init__(f"{ret_code}: {ret_msg}")
        self.ret_code = ret_code
        self.ret_msg = ret_msg


def fmt(value: Decimal | None, scale: int = 0) -> str:
    """Plain decimal string (never exponent notation) with at least ``scale`` decimals."""
    if value is None:
        return ""
    text = format(value.normalize(), "f") if value != 0 else "0"
    if scale > 0:
        whole, _, frac = text.partition(".")
        if len(frac) < scale:
            text = f"{whole}.{frac.ljust(scale, '0')}"
    return text


def params_error(message: str) -> SimError:
    return SimError(10001, message)


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

    def to_api(self, spec: LinearSpec, *, ws: bool = False) -> dict:
        ps, qs = spec.price_scale, spec.qty_scale
        avg = (self.cum_exec_value / self.cum_exec_qty).quantize(AVG_QUANT) if self.cum_exec_qty else None
        item = {
            "orderId": self.order_id,
            "orderLinkId": self.order_link_id,
            "parentOrderLinkId": "",
            "blockTradeId": "",
            "symbol": self.symbol,
            "price": fmt(self.price, ps),
            "qty": fmt(self.qty, qs),
            "side": self.side,
            "isLeverage": "",
            "positionIdx": self.position_idx,
            "orderStatus": self.status,
            "createType": "CreateByUser",
            "cancelType": self.cancel_type,
            "rejectReason": self.reject_reason,
            "avgPrice": fmt(avg, ps) if avg is not None else "0",
            "leavesQty": fmt(self.leaves_qty, qs),
            "leavesValue": fmt(self.leaves_qty * self.price),
            "cumExecQty": fmt(self.cum_exec_qty, qs),
            "cumExecValue": fmt(self.cum_exec_value),
            "cumExecFee": fmt(self.cum_exec_fee),
            "cumFeeDetail": {"USDT": fmt(self.cum_exec_fee)} if self.cum_exec_fee else {},
            "timeInForce": self.time_in_force,
            "orderType": self.order_type,
            "stopOrderType": "",
            "orderIv": "",
            "marketUnit": "",
            "slippageToleranceType": "UNKNOWN",
            "slippageTolerance": "0",
            "triggerPrice": "",
            "takeProfit": "",
            "stopLoss": "",
            "tpslMode": "",
            "ocoTriggerBy": "",
            "tpLimitPrice": "",
            "slLimitPrice": "",
            "tpTriggerBy": "",
            "slTriggerBy": "",
            "triggerDirection": 0,
            "triggerBy": "",
            "lastPriceOnCreated": fmt(self.last_price_on_created, ps),
            "basePrice": "",
            "reduceOnly": self.reduce_only,
            "closeOnTrigger": self.close_on_trigger,
            "placeType": "",
            "smpType": "None",
            "smpGroup": 0,
            "smpOrderId": "",
            "createdTime": str(self.created_ms),
            "updatedTime": str(self.updated_ms),
        }
        if ws:
            item["category"] = self.category
            item["closedPnl"] = fmt(self.closed_pnl)
            item["feeCurrency"] = ""
            item["brokerOrderPrice"] = ""
            item["rpiTakerAccess"] = False
            item["rpiMatchedQty"] = "0"
        return item


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

    def to_api(self, spec: LinearSpec, *, ws: bool = False) -> dict:
        ps, qs = spec.price_scale, spec.qty_scale
        item = {
            "symbol": self.symbol,
            "orderId": self.order_id,
            "orderLinkId": self.order_link_id,
            "side": self.side,
            "orderPrice": fmt(self.order_price, ps),
            "orderQty": fmt(self.order_qty, qs),
            "leavesQty": fmt(self.leaves_qty, qs),
            "createType": "CreateByUser" if self.exec_type == "Trade" else "",
            "orderType": self.order_type,
            "stopOrderType": "UNKNOWN",
            "execFee": fmt(self.exec_fee),
            "execFeeV2": "",
            "execId": self.exec_id,
            "execPrice": fmt(self.exec_price, ps),
            "execQty": fmt(self.exec_qty, qs),
            "execType": self.exec_type,
            "execValue": fmt(self.exec_value),
            "execTime": str(self.exec_time),
            "feeCurrency": "USDT",
            "isMaker": self.is_maker,
            "feeRate": fmt(self.fee_rate),
            "tradeIv": "",
            "markIv": "",
            "markPrice": fmt(self.mark_price, ps),
            "indexPrice": fmt(self.mark_price, ps),
            "underlyingPrice": "",
            "blockTradeId": "",
            "closedSize": fmt(self.closed_size, qs),
            "execPnl": fmt(self.exec_pnl),
            "seq": self.seq,
            "extraFees": "",
        }
        if ws:
            item["category"] = self.category
            item["isLeverage"] = "0"
            item["marketUnit"] = ""
            item["extraFees"] = []
        return item


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

    def to_api(self, spec: LinearSpec, mark: Decimal, *, ws: bool = False) -> dict:
        ps, qs = spec.price_scale, spec.qty_scale
        value = self.size * self.avg_price
        liq = ZERO
        if self.size:
            inv = ONE / self.leverage
            factor = ONE - inv + MM_RATE if self.side == "Buy" else ONE + inv - MM_RATE
            liq = (self.avg_price * factor).quantize(spec.tick, rounding=ROUND_HALF_EVEN)
        item = {
            "positionIdx": self.position_idx,
            "riskId": 1,
            "riskLimitValue": "2000000",
            "symbol": self.symbol,
            "side": self.side if self.size else "",
            "size": fmt(self.size, qs),
            "avgPrice": fmt(self.avg_price, ps),
            "positionValue": fmt(value),
            "tradeMode": 0,
            "positionStatus": "Normal",
            "autoAddMargin": 0,
            "adlRankIndicator": 2 if self.size else 0,
            "leverage": fmt(self.leverage),
            "positionBalance": fmt(self.initial_margin()),
            "breakEvenPrice": fmt(self.avg_price, ps),
            "markPrice": fmt(mark, ps),
            "liqPrice": fmt(liq, ps) if self.size else "",
            "bustPrice": "",
            "positionIM": fmt(self.initial_margin()),
            "positionIMByMp": fmt(self.size * mark / self.leverage),
            "positionMM": fmt(self.size * mark * MM_RATE),
            "positionMMByMp": fmt(self.size * mark * MM_RATE),
            "takeProfit": "",
            "stopLoss": "",
            "trailingStop": "0",
            "sessionAvgPrice": "",
            "delta": "",
            "gamma": "",
            "vega": "",
            "theta": "",
            "unrealisedPnl": fmt(self.unrealised(mark)),
            "curRealisedPnl": fmt(self.cur_realised),
            "cumRealisedPnl": fmt(self.cum_realised),
            "tpslMode": "Full",
            "isReduceOnly": False,
            "mmrSysUpdatedTime": "",
            "leverageSysUpdatedTime": "",
            "createdTime": str(self.created_ms),
            "updatedTime": str(self.updated_ms),
            "seq": self.seq,
        }
        if ws:
            item["category"] = "linear"
            item["entryPrice"] = item.pop("avgPrice")
        else:
            item["openTime"] = 0
        return item


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


class SimEngine:
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

    def _trading_spec(self, params: dict) -> LinearSpec:
        category = _category(params)
        if category != "linear":
            raise params_error(f"category {category} trading is not supported by the simulator (linear only)")
        return self._spec(params.get("symbol"))

    def _order_matches(self, order: SimOrder, symbol, base, settle) -> bool:
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
        self._publish("order", [o.to_api(self.linear[o.symbol], ws=True) for o in changes.orders.values()])
        self._publish("execution", [e.to_api(self.linear[e.symbol], ws=True) for e in changes.executions])
        self._publish(
            "position",
            [p.to_api(self.linear[p.symbol], self.prices[p.symbol], ws=True) for p in changes.positions.values()],
        )
        if changes.wallet:
            self._publish("wallet", [self._wallet_api()])

    # ------------------------------------------------------------------ market data
    def instruments(self, params: dict) -> tuple[list[dict], str]:
        category = _category(params, allowed=("linear", "spot", "inverse", "option"))
        status = params.get("status") or "Trading"
        symbol = params.get("symbol")
        base = params.get("baseCoin")
        if category == "spot":
            items = [spot_instrument_api(s) for s in SPOT.values()]
        elif category == "linear":
            with self.lock:
                specs = sorted(self.linear.values(), key=lambda spec: spec.symbol_id)
            items = [linear_instrument_api(s) for s in specs]
        else:
            items = []
        if status != "Trading":
            items = []
        if symbol:
            items = [i for i in items if i["symbol"] == symbol]
        if base:
            items = [i for i in items if i["baseCoin"] == base]
        if category == "spot":  # Bybit ignores limit/cursor for spot
            return items, ""
        limit = _limit(params, default=500, maximum=1000)
        return _page(items, limit=limit, cursor=params.get("cursor"), key=lambda i: i["symbolId"], descending=False)

    def tickers(self, params: dict) -> list[dict]:
        category = _category(params, allowed=("linear", "spot", "inverse", "option"))
        symbol = params.get("symbol")
        with self.lock:
            if category == "linear":
                if symbol:
                    specs = [self.linear[symbol]] if symbol in self.linear else []
                else:
                    specs = list(self.linear.values())
                if symbol and not specs:
                    raise params_error("params error: symbol invalid")
                return [self._linear_ticker(s) for s in specs]
            if category == "spot":
                specs = [SPOT[symbol]] if symbol in SPOT else ([] if symbol else list(SPOT.values()))
                if symbol and not specs:
                    raise params_error("params error: symbol invalid")
                return [self._spot_ticker(s.symbol, s.tick) for s in specs]
            return []

    def _quotes(self, symbol: str, tick: Decimal) -> tuple[Decimal, Decimal, Decimal]:
        last = self.prices[symbol]
        spread = tick * self.config["spread_ticks"]
        return last, max(last - spread, tick), last + spread

    def _linear_ticker(self, spec: LinearSpec) -> dict:
        last, bid, ask = self._quotes(spec.symbol, spec.tick)
        ps = spec.price_scale
        return {
            "symbol": spec.symbol, "lastPrice": fmt(last, ps), "indexPrice": fmt(last, ps), "markPrice": fmt(last, ps),
            "prevPrice24h": fmt(spec.start_price, ps), "price24hPcnt": fmt(((last / spec.start_price) - 1).quantize(
                Decimal("0.000001"))), "highPrice24h": fmt(max(last, spec.start_price), ps),
            "lowPrice24h": fmt(min(last, spec.start_price), ps), "prevPrice1h": fmt(spec.start_price, ps),
            "openInterest": "1000", "openInterestValue": fmt(last * 1000), "turnover24h": "0", "volume24h": "0",
            "fundingRate": "0.0001", "nextFundingTime": str((self._clock() // (8 * 3600_000) + 1) * 8 * 3600_000),
            "predictedDeliveryPrice": "", "basisRate": "", "deliveryFeeRate": "", "deliveryTime": "0",
            "ask1Size": "100", "bid1Price": fmt(bid, ps), "ask1Price": fmt(ask, ps), "bid1Size": "100", "basis": "",
            "preOpenPrice": "", "preQty": "", "curPreListingPhase": "", "fundingIntervalHour": "8",
            "basisRateYear": "", "fundingCap": "0.005",
        }

    def _spot_ticker(self, symbol: str, tick: Decimal) -> dict:
        last, bid, ask = self._quotes(symbol, tick)
        return {
            "symbol": symbol, "bid1Price": fmt(bid), "bid1Size": "100", "ask1Price": fmt(ask), "ask1Size": "100",
            "lastPrice": fmt(last), "prevPrice24h": fmt(last), "price24hPcnt": "0", "highPrice24h": fmt(last),
            "lowPrice24h": fmt(last), "turnover24h": "0", "volume24h": "0", "usdIndexPrice": fmt(last),
        }

    def set_price(self, symbol: str, price: Decimal | str) -> Decimal:
        """Set last/mark price (rounded to the tick) and run matching; returns the price set."""
        with self.lock:
            spec = self._spec(symbol)
            value = _decimal(price, "price").quantize(spec.tick, rounding=ROUND_HALF_EVEN)
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
    def create_order(self, params: dict) -> dict:
        with self.lock:
            spec = self._trading_spec(params)
            symbol = spec.symbol
            side = _choice(params, "side", ("Buy", "Sell"))
            order_type = _choice(params, "orderType", ("Market", "Limit"))
            reduce_only = _bool(params, "reduceOnly")
            close_on_trigger = _bool(params, "closeOnTrigger")
            link_id = _link_id(params)
            position_idx = self._position_idx(params, symbol)
            qty = _qty(params, spec, allow_zero=reduce_only and close_on_trigger)
            tif = params.get("timeInForce") or "GTC"
            if tif not in ("GTC", "IOC", "FOK", "PostOnly"):
                raise params_error(f"params error: timeInForce {tif!r} is invalid")
            last = self.prices[symbol]
            if order_type == "Limit":
                price = _price(params, spec)
            else:
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
            return {"orderId": order.order_id, "orderLinkId": order.order_link_id}

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

    def amend_order(self, params: dict) -> dict:
        with self.lock:
            spec = self._trading_spec(params)
            order = self._find_open(params, spec.symbol, "order not exists or too late to replace")
            new_qty = _qty(params, spec) if params.get("qty") not in (None, "") else None
            new_price = _price(params, spec) if params.get("price") not in (None, "") else None
            if new_qty is None and new_price is None:
                raise params_error("params error: nothing to amend; pass qty and/or price")
            if order.order_type == "Market":
                raise SimError(110001, "order not exists or too late to replace")
            if new_qty is not None and new_qty <= order.cum_exec_qty:
                raise SimError(110064, "The modified contract quantity cannot be less than or equal to the filled "
                                       "quantity")
            if (new_qty is None or new_qty == order.qty) and (new_price is None or new_price == order.price):
                raise SimError(34040, "not modified")
            if new_qty is not None:
                self._check_max_qty(spec, order.order_type, new_qty)
                order.qty = new_qty
            if new_price is not None:
                order.price = new_price
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
            return {"orderId": order.order_id, "orderLinkId": order.order_link_id}

    def cancel_order(self, params: dict) -> dict:
        with self.lock:
            spec = self._trading_spec(params)
            order = self._find_open(params, spec.symbol, "Order does not exist.")
            self._close(order, "Cancelled", cancel_type="CancelByUser")
            self._touch_position(self._position(order.symbol, order.position_idx))
            self._emit_changes()
            return {"orderId": order.order_id, "orderLinkId": order.order_link_id}

    def cancel_all(self, params: dict) -> dict:
        with self.lock:
            category = _category(params)
            if category != "linear":
                raise params_error(f"category {category} trading is not supported by the simulator")
            symbol, base, settle = params.get("symbol"), params.get("baseCoin"), params.get("settleCoin")
            if not (symbol or base or settle):
                raise params_error("params error: symbol, baseCoin or settleCoin is required for linear")
            if symbol:
                self._spec(symbol)
            cancelled = []
            for order in sorted(self.open_orders.values(), key=lambda o: o.n):
                if len(cancelled) >= 500:
                    continue
                if symbol and order.symbol != symbol:
                    continue
                if not symbol and base and self.linear[order.symbol].base != base:
                    continue
                if not symbol and not base and settle and settle != "USDT":
                    continue
                self._close(order, "Cancelled", cancel_type="CancelByUser")
                self._touch_position(self._position(order.symbol, order.position_idx))
                cancelled.append({"orderId": order.order_id, "orderLinkId": order.order_link_id})
            self._emit_changes()
            return {"list": cancelled, "success": "1"}

    def seed_open_orders(self, orders: Iterable[dict]) -> list[SimOrder]:
        """Put resting limit orders on the book at once, as if placed before anyone was listening.

        For benchmarks and scenarios that need thousands of open orders (``POST /sim/seed-orders``).
        Each item takes ``/v5/order/create`` parameters: ``symbol``, ``side``, ``qty``, ``price``, optional
        ``orderLinkId``, ``positionIdx``, ``timeInForce`` (GTC or PostOnly); category linear, Limit only.
        Checked as a create is (steps, ticks, limits, duplicate link ids, min notional, 500 open per
        symbol) and must rest (not cross the last price); not checked: margin (seeding 10,000 orders must
        not cost 10,000 wallet recomputations). No private events are published. All or nothing:
        ``SimError`` names the offending item and nothing is placed.
        """
        with self.lock:
            counts: dict[str, int] = {}
            for order in self.open_orders.values():
                counts[order.symbol] = counts.get(order.symbol, 0) + 1
            links: set[str] = set()
            now = self.now_ms()
            staged: list[SimOrder] = []
            for index, params in enumerate(orders):
                try:
                    staged.append(self._seed_one(params, counts, links, now))
                except SimError as exc:
                    raise SimError(exc.ret_code, f"seed order #{index}: {exc.ret_msg}") from None
            for order in staged:
                order.n = self._next_n()
                self.orders[order.order_id] = order
                if order.order_link_id:
                    self.orders_by_link[order.order_link_id] = order
                self.open_orders[order.order_id] = order
            return staged

    def _seed_one(self, params: dict, counts: dict[str, int], links: set[str], now: int) -> SimOrder:
        if not isinstance(params, dict):
            raise params_error("params error: each seed order must be an object")
        params = {"category": "linear", "orderType": "Limit", **params}
        spec = self._trading_spec(params)
        symbol = spec.symbol
        if params["orderType"] != "Limit":
            raise params_error("params error: only Limit orders can be seeded")
        if _bool(params, "reduceOnly") or _bool(params, "closeOnTrigger"):
            raise params_error("params error: reduce-only orders cannot be seeded")
        side = _choice(params, "side", ("Buy", "Sell"))
        link_id = _link_id(params)
        position_idx = self._position_idx(params, symbol)
        qty = _qty(params, spec)
        price = _price(params, spec)
        tif = params.get("timeInForce") or "GTC"
        if tif not in ("GTC", "PostOnly"):
            raise params_error(f"params error: timeInForce {tif!r} cannot rest; use GTC or PostOnly")
        if link_id and (link_id in self.orders_by_link or link_id in links):
            raise SimError(110072, "OrderLinkedID is duplicate")
        if self._closes_hedge(side, position_idx):
            raise params_error("params error: orders that close a hedge position cannot be seeded")
        if qty * price < spec.min_notional:
            raise SimError(110094, f"Order does not meet minimum order value {spec.min_notional}USDT")
        self._check_max_qty(spec, "Limit", qty)
        last = self.prices[symbol]
        if (price >= last) if side == "Buy" else (price <= last):
            raise params_error(f"params error: price {price} would cross the last price {last}; seeded orders rest")
        if counts.get(symbol, 0) >= MAX_OPEN_PER_SYMBOL:
            raise SimError(110020, "Not allowed to have more than 500 active orders")
        counts[symbol] = counts.get(symbol, 0) + 1
        if link_id:
            links.add(link_id)
        return SimOrder(
            n=0, category="linear", symbol=symbol, order_id=self._new_id(), order_link_id=link_id, side=side,
            order_type="Limit", price=price, qty=qty, time_in_force=tif, position_idx=position_idx,
            reduce_only=False, close_on_trigger=False, created_ms=now, updated_ms=now, last_price_on_created=last,
        )

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
            amount = _decimal(size, "size")
            if amount < 0 or amount % spec.qty_step:
                raise params_error(f"params error: size must be 0 or a positive multiple of {spec.qty_step}")
            pos = self._position(symbol, idx)
            if amount:
                if side not in ("Buy", "Sell"):
                    raise params_error("params error: side must be Buy or Sell for a non-zero size")
                if idx and side != ("Buy" if idx == 1 else "Sell"):
                    raise params_error(f"params error: positionIdx {idx} holds {'Buy' if idx == 1 else 'Sell'} only")
                entry = _decimal(avg_price, "avgPrice")
                if entry <= 0:
                    raise params_error("params error: avgPrice must be positive for a non-zero size")
                pos.size, pos.side, pos.avg_price = amount, side, entry
            else:
                pos.size, pos.side, pos.avg_price = ZERO, "", ZERO
            pos.updated_ms = self.now_ms()
            pos.seq = self._next_seq(symbol)
            self._touch_position(pos)
            self._emit_changes()
            return pos.to_api(spec, self.prices[symbol])

    def force_fill(self, *, order_id: str = "", order_link_id: str = "", qty: Decimal | str | None = None,
                   price: Decimal | str | None = None) -> dict:
        """Fill part (or the rest) of a resting order as maker, whatever the price (``POST /sim/fill``)."""
        with self.lock:
            order = self.orders.get(order_id) if order_id else self.orders_by_link.get(order_link_id)
            if order is None or not order.is_open:
                raise SimError(110001, "Order does not exist.")
            spec = self.linear[order.symbol]
            amount = order.leaves_qty if qty in (None, "") else _decimal(qty, "qty")
            if amount <= 0 or amount > order.leaves_qty or amount % spec.qty_step:
                raise params_error(f"qty must be a positive multiple of {spec.qty_step} up to {order.leaves_qty}")
            fill_price = order.price if price in (None, "") else _decimal(price, "price")
            if order.reduce_only or self._closes_hedge(order.side, order.position_idx):
                amount = min(amount, self._pass_cap(order))
                if amount <= 0:
                    raise SimError(110017, "current position is zero, cannot fix reduce-only order qty")
            self._fill(order, amount, fill_price, maker=True)
            self._emit_changes()
            return order.to_api(spec)

    # ------------------------------------------------------------------ order queries
    def open_or_recent_orders(self, params: dict) -> tuple[list[dict], str]:
        category = _category(params)
        if category != "linear":
            return [], ""
        with self.lock:
            limit = _limit(params, default=20, maximum=50)
            order_id, link_id = params.get("orderId"), params.get("orderLinkId")
            symbol, base, settle = params.get("symbol"), params.get("baseCoin"), params.get("settleCoin")
            if not (order_id or link_id or symbol or base or settle):
                raise params_error("params error: symbol, baseCoin or settleCoin is required for linear")
            recent = set(self.recent_closed)
            if order_id or link_id:
                found = self.orders.get(order_id) if order_id else self.orders_by_link.get(link_id)
                orders = [found] if found and (found.is_open or found.order_id in recent) else []
            elif str(params.get("openOnly") or "0") == "1":
                orders = [self.orders[i] for i in recent]
            else:
                orders = list(self.open_orders.values())
            orders = [o for o in orders if self._order_matches(o, symbol, base, settle)]
            orders.sort(key=lambda o: o.n, reverse=True)
            page, cursor = _page(orders, limit=limit, cursor=params.get("cursor"), key=lambda o: o.n, descending=True)
            return [o.to_api(self.linear[o.symbol]) for o in page], cursor

    def order_history(self, params: dict) -> tuple[list[dict], str]:
        category = _category(params)
        if category != "linear":
            return [], ""
        with self.lock:
            limit = _limit(params, default=20, maximum=50)
            start, end = self._window(params)
            order_id, link_id = params.get("orderId"), params.get("orderLinkId")
            symbol, base, settle = params.get("symbol"), params.get("baseCoin"), params.get("settleCoin")
            status = params.get("orderStatus")
            now = self.now_ms()
            if order_id or link_id:
                found = self.orders.get(order_id) if order_id else self.orders_by_link.get(link_id)
                orders = [found] if found else []
            else:
                orders = [o for o in self.orders.values() if start <= o.created_ms <= end]
            orders = [
                o for o in orders
                # History holds orders in a final state only; open ones are on /realtime (BYBIT.md §3.6).
                if not o.is_open
                and self._order_matches(o, symbol, base, settle)
                and (not status or o.status == status)
                # Cancelled/Rejected orders stay queryable for 24 hours only.
                and not (o.status in ("Cancelled", "Rejected") and not o.cum_exec_qty and now - o.updated_ms > DAY_MS)
            ]
            orders.sort(key=lambda o: o.n, reverse=True)
            page, cursor = _page(orders, limit=limit, cursor=params.get("cursor"), key=lambda o: o.n, descending=True)
            return [o.to_api(self.linear[o.symbol]) for o in page], cursor

    def execution_list(self, params: dict) -> tuple[list[dict], str]:
        category = _category(params)
        if category != "linear":
            return [], ""
        with self.lock:
            limit = _limit(params, default=50, maximum=100)
            order_id, link_id = params.get("orderId"), params.get("orderLinkId")
            symbol, base = params.get("symbol"), params.get("baseCoin")
            exec_type = params.get("execType")
            if order_id or link_id:
                rows = [e for e in self.executions
                        if (e.order_id == order_id if order_id else e.order_link_id == link_id)]
            else:
                start, end = self._window(params)
                rows = [e for e in self.executions if start <= e.exec_time <= end]
            rows = [
                e for e in rows
                if (not symbol or e.symbol == symbol)
                and (not base or self.linear[e.symbol].base == base)
                and (not exec_type or e.exec_type == exec_type)
            ]
            rows.sort(key=lambda e: e.n, reverse=True)
            page, cursor = _page(rows, limit=limit, cursor=params.get("cursor"), key=lambda e: e.n, descending=True)
            return [e.to_api(self.linear[e.symbol]) for e in page], cursor

    def _window(self, params: dict) -> tuple[int, int]:
        start = _int_param(params, "startTime")
        end = _int_param(params, "endTime")
        now = self.now_ms()
        if start is None and end is None:
            return now - WEEK_MS, now
        if start is None:
            return end - WEEK_MS, end
        if end is None:
            return start, start + WEEK_MS
        if end < start:
            raise params_error("params error: endTime must not be earlier than startTime")
        if end - start > WEEK_MS:
            raise params_error("params error: The time range between startTime and endTime cannot exceed 7 days")
        return start, end

    # ------------------------------------------------------------------ positions & account
    def position_list(self, params: dict) -> tuple[list[dict], str]:
        category = _category(params, allowed=("linear", "inverse", "option"))
        if category != "linear":
            return [], ""
        with self.lock:
            limit = _limit(params, default=20, maximum=200)
            symbol, settle, base = params.get("symbol"), params.get("settleCoin"), params.get("baseCoin")
            if symbol:
                self._spec(symbol)
                rows = [p for p in self.positions.values() if p.symbol == symbol]
            elif settle or base:
                rows = [p for p in self.positions.values() if p.size and (settle in (None, "", "USDT"))
                        and (not base or self.linear[p.symbol].base == base)]
            else:
                raise params_error("params error: symbol or settleCoin is required for linear")
            rows.sort(key=lambda p: (self.linear[p.symbol].symbol_id, p.position_idx))
            page, cursor = _page(rows, limit=limit, cursor=params.get("cursor"),
                                 key=lambda p: self.linear[p.symbol].symbol_id * 10 + p.position_idx, descending=False)
            return [p.to_api(self.linear[p.symbol], self.prices[p.symbol]) for p in page], cursor

    def switch_mode(self, params: dict) -> None:
        with self.lock:
            category = _category(params)
            if category != "linear":
                raise params_error("params error: position mode can only be switched for linear")
            mode = _int_param(params, "mode")
            if mode not in (0, 3):
                raise params_error("params error: mode must be 0 (one-way) or 3 (hedge)")
            symbol, coin = params.get("symbol"), params.get("coin")
            if symbol:
                symbols = [self._spec(symbol).symbol]
            elif coin:
                if coin != "USDT":
                    raise SimError(110029, "Hedge mode is not available for this symbol")
                symbols = list(self.linear)
            else:
                raise params_error("params error: symbol or coin is required")
            if all(self.modes[s] == mode for s in symbols):
                raise SimError(110025, "Position mode is not modified")
            changed = []
            for sym in symbols:
                if self.modes[sym] == mode:
                    continue
                if any(p.size for p in self.positions.values() if p.symbol == sym):
                    if symbol:
                        raise SimError(110024, "You have an existing position, so position mode cannot be switched")
                    continue
                if any(o.symbol == sym for o in self.open_orders.values()):
                    if symbol:
                        raise SimError(110028, "You have open orders, so position mode cannot be switched")
                    continue
                changed.append(sym)
            for sym in changed:
                for key in [k for k in self.positions if k[0] == sym]:
                    del self.positions[key]
                self.modes[sym] = mode
                self._ensure_positions(sym)

    def set_leverage(self, params: dict) -> None:
        with self.lock:
            spec = self._trading_spec(params)
            buy = _decimal(params.get("buyLeverage"), "buyLeverage")
            sell = _decimal(params.get("sellLeverage"), "sellLeverage")
            if buy != sell:
                raise params_error("params error: buyLeverage must equal sellLeverage in cross margin")
            if not ONE <= buy <= spec.max_leverage:
                raise SimError(10001, f"leverage must be between 1 and {spec.max_leverage}")
            if self.leverage[spec.symbol] == buy:
                raise SimError(110043, "Set leverage not modified")
            self.leverage[spec.symbol] = buy
            for p in self.positions.values():
                if p.symbol == spec.symbol:
                    p.leverage = buy

    def wallet(self, params: dict) -> list[dict]:
        account_type = params.get("accountType")
        if account_type != "UNIFIED":
            raise params_error("accountType only support UNIFIED")
        coins = [c for c in (params.get("coin") or "").split(",") if c]
        with self.lock:
            account = self._wallet_api()
            if coins:
                account["coin"] = [c for c in account["coin"] if c["coin"] in coins]
            return [account]

    def _totals(self) -> dict[str, Decimal]:
        upl = sum((p.unrealised(self.prices[p.symbol]) for p in self.positions.values()), ZERO)
        pos_im = sum((p.initial_margin() for p in self.positions.values()), ZERO)
        pos_mm = sum((p.size * self.prices[p.symbol] * MM_RATE for p in self.positions.values()), ZERO)
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

    def _wallet_api(self) -> dict:
        t = self._totals()
        im = t["pos_im"] + t["order_im"]
        mb = t["margin_balance"]
        rate = (im / mb).quantize(Decimal("0.0001")) if mb > 0 else ZERO
        mm_rate = (t["pos_mm"] / mb).quantize(Decimal("0.0001")) if mb > 0 else ZERO
        return {
            "accountType": "UNIFIED",
            "accountIMRate": fmt(rate), "accountIMRateByMp": fmt(rate),
            "accountMMRate": fmt(mm_rate), "accountMMRateByMp": fmt(mm_rate),
            "totalEquity": fmt(mb), "totalWalletBalance": fmt(self.wallet_balance),
            "totalMarginBalance": fmt(mb), "totalAvailableBalance": fmt(t["available"]),
            "totalPerpUPL": fmt(t["upl"]), "totalInitialMargin": fmt(im), "totalInitialMarginByMp": fmt(im),
            "totalMaintenanceMargin": fmt(t["pos_mm"]), "totalMaintenanceMarginByMp": fmt(t["pos_mm"]),
            "accountLTV": "0",
            "coin": [{
                "coin": "USDT", "equity": fmt(mb), "usdValue": fmt(mb), "walletBalance": fmt(self.wallet_balance),
                "locked": "0", "spotHedgingQty": "0", "borrowAmount": "0", "accruedInterest": "0",
                "totalOrderIM": fmt(t["order_im"]), "totalPositionIM": fmt(t["pos_im"]),
                "totalPositionMM": fmt(t["pos_mm"]), "unrealisedPnl": fmt(t["upl"]),
                "cumRealisedPnl": fmt(self.cum_realised), "bonus": "0", "marginCollateral": True,
                "collateralSwitch": True, "spotBorrow": "0", "free": "", "availableToWithdraw": "",
                "availableToBorrow": "",
            }],
        }

    def settle_funding(self, *, symbol: str, rate: Decimal | str) -> list[dict]:
        """Charge/pay funding on open positions of ``symbol`` (execType Funding rows); returns the rows."""
        with self.lock:
            spec = self._spec(symbol)
            funding_rate = _decimal(rate, "rate")
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
                rows.append(execution.to_api(spec))
            self._emit_changes()
            return rows

    # ------------------------------------------------------------------ internals: validation
    def _position_idx(self, params: dict, symbol: str) -> int:
        raw = params.get("positionIdx")
        if raw in (None, ""):
            idx = 0
        else:
            try:
                idx = int(raw)
            except (TypeError, ValueError):
                raise params_error("params error: positionIdx must be 0, 1 or 2") from None
            if isinstance(raw, bool) or idx not in (0, 1, 2):
                raise params_error("params error: positionIdx must be 0, 1 or 2")
        hedge = self.modes[symbol] == 3
        if (hedge and idx == 0) or (not hedge and idx != 0):
            raise params_error("position idx not match position mode")
        return idx

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

    def _find_open(self, params: dict, symbol: str, missing: str) -> SimOrder:
        order_id, link_id = params.get("orderId"), params.get("orderLinkId")
        if not order_id and not link_id:
            raise params_error("params error: orderId or orderLinkId is required")
        order = self.orders.get(order_id) if order_id else self.orders_by_link.get(link_id)
        if order is None or order.symbol != symbol or not order.is_open:
            raise SimError(110001, missing)
        return order

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
                "orders": [o.to_api(self.linear[o.symbol], ws=True)
                           for o in sorted(self.orders.values(), key=lambda o: o.n)],
                "executions": [e.to_api(self.linear[e.symbol], ws=True) for e in self.executions],
                "positions": [p.to_api(self.linear[p.symbol], self.prices[p.symbol]) for p in self.positions.values()],
                "wallet": self._wallet_api(),
                "config": self.config_api(),
                "sinks": [{"name": s.name, "topics": sorted(s.topics), "delivered": s.delivered,
                           "faults": s.filter.counts if s.filter else None} for s in self._sinks],
                "events_published": len(self.event_log),
            }


# ---------------------------------------------------------------------- parameter helpers
def _category(params: dict, *, allowed: tuple[str, ...] = ("linear", "spot", "inverse", "option")) -> str:
    category = params.get("category")
    if not category:
        raise params_error("params error: category is required")
    if category not in allowed:
        raise params_error(f"params error: category {category!r} is invalid here")
    return category


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


def _choice(params: dict, key: str, allowed: tuple[str, ...]) -> str:
    value = params.get(key)
    if value not in allowed:
        raise params_error(f"params error: {key} {value!r} is invalid; expected one of {', '.join(allowed)}")
    return value


def _bool(params: dict, key: str) -> bool:
    value = params.get(key, False)
    if value in (None, False, "false", 0):
        return False
    if value in (True, "true", 1):
        return True
    raise params_error(f"params error: {key} must be a boolean")


def _link_id(params: dict) -> str:
    value = params.get("orderLinkId") or ""
    if not isinstance(value, str):
        raise params_error("params error: orderLinkId must be a string")
    if len(value) > 36:
        raise params_error("params error: orderLinkId is longer than 36 characters")
    if value and not set(value) <= LINK_ID_CHARS:
        raise params_error("params error: orderLinkId may only contain letters, digits, '-' and '_'")
    return value


def _decimal(value, name: str) -> Decimal:
    # Money arrives as strings on Bybit; a JSON number here usually means a float leaked in a client.
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal) or value == "":
        raise params_error(f"params error: {name} must be a decimal string")
    try:
        result = Decimal(value)
    except InvalidOperation:
        raise params_error(f"params error: {name} {value!r} is not a number") from None
    if not result.is_finite():
        raise params_error(f"params error: {name} {value!r} is not a number")
    return result


def _qty(params: dict, spec: LinearSpec, *, allow_zero: bool = False) -> Decimal:
    raw = params.get("qty")
    if raw is None or raw == "":
        raise params_error("params error: qty is required")
    if not isinstance(raw, str):
        raise params_error("params error: qty must be a string")
    qty = _decimal(raw, "qty")
    if qty == 0 and allow_zero:
        return qty
    if qty <= 0:
        raise params_error("params error: qty must be positive")
    if qty % spec.qty_step:
        raise params_error(f"params error: qty {raw} is not a multiple of qtyStep {spec.qty_step}")
    if qty < spec.min_qty:
        raise params_error(f"The number of contracts exceeds minimum limit allowed: min {spec.min_qty}")
    return qty


def _price(params: dict, spec: LinearSpec) -> Decimal:
    raw = params.get("price")
    if raw is None or raw == "":
        raise params_error("params error: price is required for Limit orders")
    if not isinstance(raw, str):
        raise params_error("params error: price must be a string")
    price = _decimal(raw, "price")
    if price <= 0:
        raise params_error("params error: price must be positive")
    if price % spec.tick:
        raise params_error(f"params error: price {raw} is not a multiple of tickSize {spec.tick}")
    if price < spec.min_price or price > spec.max_price:
        raise params_error(f"params error: price {raw} outside [{spec.min_price}, {spec.max_price}]")
    return price


def _int_param(params: dict, key: str) -> int | None:
    raw = params.get(key)
    if raw in (None, ""):
        return None
    if isinstance(raw, bool):
        raise params_error(f"params error: {key} must be an integer")
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise params_error(f"params error: {key} must be an integer") from None


def _limit(params: dict, *, default: int, maximum: int) -> int:
    value = _int_param(params, "limit")
    if value is None:
        return default
    if not 1 <= value <= maximum:
        raise params_error(f"params error: limit must be between 1 and {maximum}")
    return value


def make_cursor(key: int) -> str:
    # Bybit's cursors are URL-encoded ("page_args%3D...%26"); clients must pass them back verbatim.
    return quote(f"page_args={key}&", safe="")


def parse_cursor(cursor: str) -> int:
    text = cursor
    for _ in range(3):  # tolerate a client that percent-encoded the cursor once more
        if text.startswith("page_args="):
            break
        text = unquote(text)
    if not text.startswith("page_args=") or not text.endswith("&"):
        raise params_error("params error: cursor is invalid")
    try:
        return int(text[len("page_args="):-1])
    except ValueError:
        raise params_error("params error: cursor is invalid") from None


def _page(items: list, *, limit: int, cursor: str | None, key, descending: bool) -> tuple[list, str]:
    if cursor:
        last = parse_cursor(cursor)
        items = [i for i in items if (key(i) < last if descending else key(i) > last)]
    page = items[:limit]
    return page, (make_cursor(key(page[-1])) if len(items) > limit else "")
