"""The simulator's Bybit V5 wire: request parameters in, response shapes out.

Bybit receives parameters as strings (query or JSON body) and answers with
strings for every number. This module parses and checks those parameters
(raising :class:`SimError` with Bybit's ``retCode``/``retMsg``), pages lists with
Bybit's cursors, and renders orders, fills, positions, the wallet and tickers
in the exact shapes of the REST lists and the private topics.

:class:`V5Requests` is the request side of :class:`engine.SimEngine` (mixed into it):
each method takes the request's parameter dict, parses it here, then calls the
engine's typed operations (``place_order``, ``amend``, ``cancel`` ...) or reads its
state under its lock. The matching model in ``engine.py`` never sees a raw
parameter; this module imports nothing from it at run time.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote

from exchange.simulator.instruments import SPOT, LinearSpec, linear_instrument_api, spot_instrument_api

if TYPE_CHECKING:
    from exchange.simulator.engine import SimExecution, SimOrder, SimPosition

ZERO = Decimal(0)
WEEK_MS = 7 * 24 * 3600 * 1000
DAY_MS = 24 * 3600 * 1000
LINK_ID_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
MAX_CANCEL_ALL = 500  # Bybit cancels at most this many orders per cancel-all call


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


# ---------------------------------------------------------------------- responses
def order_api(order: SimOrder, spec: LinearSpec, *, ws: bool = False) -> dict:
    """An order as /v5/order/realtime|history lists it (``ws``: as the private ``order`` topic pushes it)."""
    ps, qs = spec.price_scale, spec.qty_scale
    avg = order.avg_price
    item = {
        "orderId": order.order_id,
        "orderLinkId": order.order_link_id,
        "parentOrderLinkId": "",
        "blockTradeId": "",
        "symbol": order.symbol,
        "price": fmt(order.price, ps),
        "qty": fmt(order.qty, qs),
        "side": order.side,
        "isLeverage": "",
        "positionIdx": order.position_idx,
        "orderStatus": order.status,
        "createType": "CreateByUser",
        "cancelType": order.cancel_type,
        "rejectReason": order.reject_reason,
        "avgPrice": fmt(avg, ps) if avg is not None else "0",
        "leavesQty": fmt(order.leaves_qty, qs),
        "leavesValue": fmt(order.leaves_qty * order.price),
        "cumExecQty": fmt(order.cum_exec_qty, qs),
        "cumExecValue": fmt(order.cum_exec_value),
        "cumExecFee": fmt(order.cum_exec_fee),
        "cumFeeDetail": {"USDT": fmt(order.cum_exec_fee)} if order.cum_exec_fee else {},
        "timeInForce": order.time_in_force,
        "orderType": order.order_type,
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
        "lastPriceOnCreated": fmt(order.last_price_on_created, ps),
        "basePrice": "",
        "reduceOnly": order.reduce_only,
        "closeOnTrigger": order.close_on_trigger,
        "placeType": "",
        "smpType": "None",
        "smpGroup": 0,
        "smpOrderId": "",
        "createdTime": str(order.created_ms),
        "updatedTime": str(order.updated_ms),
    }
    if ws:
        item["category"] = order.category
        item["closedPnl"] = fmt(order.closed_pnl)
        item["feeCurrency"] = ""
        item["brokerOrderPrice"] = ""
        item["rpiTakerAccess"] = False
        item["rpiMatchedQty"] = "0"
    return item


def execution_api(execution: SimExecution, spec: LinearSpec, *, ws: bool = False) -> dict:
    """A fill as /v5/execution/list lists it (``ws``: as the private ``execution`` topic pushes it)."""
    ps, qs = spec.price_scale, spec.qty_scale
    item = {
        "symbol": execution.symbol,
        "orderId": execution.order_id,
        "orderLinkId": execution.order_link_id,
        "side": execution.side,
        "orderPrice": fmt(execution.order_price, ps),
        "orderQty": fmt(execution.order_qty, qs),
        "leavesQty": fmt(execution.leaves_qty, qs),
        "createType": "CreateByUser" if execution.exec_type == "Trade" else "",
        "orderType": execution.order_type,
        "stopOrderType": "UNKNOWN",
        "execFee": fmt(execution.exec_fee),
        "execFeeV2": "",
        "execId": execution.exec_id,
        "execPrice": fmt(execution.exec_price, ps),
        "execQty": fmt(execution.exec_qty, qs),
        "execType": execution.exec_type,
        "execValue": fmt(execution.exec_value),
        "execTime": str(execution.exec_time),
        "feeCurrency": "USDT",
        "isMaker": execution.is_maker,
        "feeRate": fmt(execution.fee_rate),
        "tradeIv": "",
        "markIv": "",
        "markPrice": fmt(execution.mark_price, ps),
        "indexPrice": fmt(execution.mark_price, ps),
        "underlyingPrice": "",
        "blockTradeId": "",
        "closedSize": fmt(execution.closed_size, qs),
        "execPnl": fmt(execution.exec_pnl),
        "seq": execution.seq,
        "extraFees": "",
    }
    if ws:
        item["category"] = execution.category
        item["isLeverage"] = "0"
        item["marketUnit"] = ""
        item["extraFees"] = []
    return item


def position_api(position: SimPosition, spec: LinearSpec, mark: Decimal, *, ws: bool = False) -> dict:
    """A position as /v5/position/list lists it (``ws``: as the private ``position`` topic pushes it)."""
    ps, qs = spec.price_scale, spec.qty_scale
    value = position.size * position.avg_price
    liq = position.liq_price(spec.tick)
    item = {
        "positionIdx": position.position_idx,
        "riskId": 1,
        "riskLimitValue": "2000000",
        "symbol": position.symbol,
        "side": position.side if position.size else "",
        "size": fmt(position.size, qs),
        "avgPrice": fmt(position.avg_price, ps),
        "positionValue": fmt(value),
        "tradeMode": 0,
        "positionStatus": "Normal",
        "autoAddMargin": 0,
        "adlRankIndicator": 2 if position.size else 0,
        "leverage": fmt(position.leverage),
        "positionBalance": fmt(position.initial_margin()),
        "breakEvenPrice": fmt(position.avg_price, ps),
        "markPrice": fmt(mark, ps),
        "liqPrice": fmt(liq, ps) if position.size else "",
        "bustPrice": "",
        "positionIM": fmt(position.initial_margin()),
        "positionIMByMp": fmt(position.size * mark / position.leverage),
        "positionMM": fmt(position.maintenance_margin(mark)),
        "positionMMByMp": fmt(position.maintenance_margin(mark)),
        "takeProfit": "",
        "stopLoss": "",
        "trailingStop": "0",
        "sessionAvgPrice": "",
        "delta": "",
        "gamma": "",
        "vega": "",
        "theta": "",
        "unrealisedPnl": fmt(position.unrealised(mark)),
        "curRealisedPnl": fmt(position.cur_realised),
        "cumRealisedPnl": fmt(position.cum_realised),
        "tpslMode": "Full",
        "isReduceOnly": False,
        "mmrSysUpdatedTime": "",
        "leverageSysUpdatedTime": "",
        "createdTime": str(position.created_ms),
        "updatedTime": str(position.updated_ms),
        "seq": position.seq,
    }
    if ws:
        item["category"] = "linear"
        item["entryPrice"] = item.pop("avgPrice")
    else:
        item["openTime"] = 0
    return item


def wallet_api(t: dict[str, Decimal], *, wallet_balance: Decimal, cum_realised: Decimal) -> dict:
    """The UNIFIED account as /v5/account/wallet-balance and the ``wallet`` topic show it (``t``: engine totals)."""
    im = t["pos_im"] + t["order_im"]
    mb = t["margin_balance"]
    rate = (im / mb).quantize(Decimal("0.0001")) if mb > 0 else ZERO
    mm_rate = (t["pos_mm"] / mb).quantize(Decimal("0.0001")) if mb > 0 else ZERO
    return {
        "accountType": "UNIFIED",
        "accountIMRate": fmt(rate), "accountIMRateByMp": fmt(rate),
        "accountMMRate": fmt(mm_rate), "accountMMRateByMp": fmt(mm_rate),
        "totalEquity": fmt(mb), "totalWalletBalance": fmt(wallet_balance),
        "totalMarginBalance": fmt(mb), "totalAvailableBalance": fmt(t["available"]),
        "totalPerpUPL": fmt(t["upl"]), "totalInitialMargin": fmt(im), "totalInitialMarginByMp": fmt(im),
        "totalMaintenanceMargin": fmt(t["pos_mm"]), "totalMaintenanceMarginByMp": fmt(t["pos_mm"]),
        "accountLTV": "0",
        "coin": [{
            "coin": "USDT", "equity": fmt(mb), "usdValue": fmt(mb), "walletBalance": fmt(wallet_balance),
            "locked": "0", "spotHedgingQty": "0", "borrowAmount": "0", "accruedInterest": "0",
            "totalOrderIM": fmt(t["order_im"]), "totalPositionIM": fmt(t["pos_im"]),
            "totalPositionMM": fmt(t["pos_mm"]), "unrealisedPnl": fmt(t["upl"]),
            "cumRealisedPnl": fmt(cum_realised), "bonus": "0", "marginCollateral": True,
            "collateralSwitch": True, "spotBorrow": "0", "free": "", "availableToWithdraw": "",
            "availableToBorrow": "",
        }],
    }


def linear_ticker(spec: LinearSpec, quotes: tuple[Decimal, Decimal, Decimal], *, now_ms: int) -> dict:
    last, bid, ask = quotes
    ps = spec.price_scale
    return {
        "symbol": spec.symbol, "lastPrice": fmt(last, ps), "indexPrice": fmt(last, ps), "markPrice": fmt(last, ps),
        "prevPrice24h": fmt(spec.start_price, ps), "price24hPcnt": fmt(((last / spec.start_price) - 1).quantize(
            Decimal("0.000001"))), "highPrice24h": fmt(max(last, spec.start_price), ps),
        "lowPrice24h": fmt(min(last, spec.start_price), ps), "prevPrice1h": fmt(spec.start_price, ps),
        "openInterest": "1000", "openInterestValue": fmt(last * 1000), "turnover24h": "0", "volume24h": "0",
        "fundingRate": "0.0001", "nextFundingTime": str((now_ms // (8 * 3600_000) + 1) * 8 * 3600_000),
        "predictedDeliveryPrice": "", "basisRate": "", "deliveryFeeRate": "", "deliveryTime": "0",
        "ask1Size": "100", "bid1Price": fmt(bid, ps), "ask1Price": fmt(ask, ps), "bid1Size": "100", "basis": "",
        "preOpenPrice": "", "preQty": "", "curPreListingPhase": "", "fundingIntervalHour": "8",
        "basisRateYear": "", "fundingCap": "0.005",
    }


def spot_ticker(symbol: str, quotes: tuple[Decimal, Decimal, Decimal]) -> dict:
    last, bid, ask = quotes
    return {
        "symbol": symbol, "bid1Price": fmt(bid), "bid1Size": "100", "ask1Price": fmt(ask), "ask1Size": "100",
        "lastPrice": fmt(last), "prevPrice24h": fmt(last), "price24hPcnt": "0", "highPrice24h": fmt(last),
        "lowPrice24h": fmt(last), "turnover24h": "0", "volume24h": "0", "usdIndexPrice": fmt(last),
    }


# ---------------------------------------------------------------------- parameters
def parse_category(params: dict, *, allowed: tuple[str, ...] = ("linear", "spot", "inverse", "option")) -> str:
    category = params.get("category")
    if not category:
        raise params_error("params error: category is required")
    if category not in allowed:
        raise params_error(f"params error: category {category!r} is invalid here")
    return category


def parse_choice(params: dict, key: str, allowed: tuple[str, ...]) -> str:
    value = params.get(key)
    if value not in allowed:
        raise params_error(f"params error: {key} {value!r} is invalid; expected one of {', '.join(allowed)}")
    return value


def parse_bool(params: dict, key: str) -> bool:
    value = params.get(key, False)
    if value in (None, False, "false", 0):
        return False
    if value in (True, "true", 1):
        return True
    raise params_error(f"params error: {key} must be a boolean")


def parse_link_id(params: dict) -> str:
    value = params.get("orderLinkId") or ""
    if not isinstance(value, str):
        raise params_error("params error: orderLinkId must be a string")
    if len(value) > 36:
        raise params_error("params error: orderLinkId is longer than 36 characters")
    if value and not set(value) <= LINK_ID_CHARS:
        raise params_error("params error: orderLinkId may only contain letters, digits, '-' and '_'")
    return value


def parse_decimal(value, name: str) -> Decimal:
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


def parse_qty(params: dict, spec: LinearSpec, *, allow_zero: bool = False) -> Decimal:
    raw = params.get("qty")
    if raw is None or raw == "":
        raise params_error("params error: qty is required")
    if not isinstance(raw, str):
        raise params_error("params error: qty must be a string")
    qty = parse_decimal(raw, "qty")
    if qty == 0 and allow_zero:
        return qty
    if qty <= 0:
        raise params_error("params error: qty must be positive")
    if qty % spec.qty_step:
        raise params_error(f"params error: qty {raw} is not a multiple of qtyStep {spec.qty_step}")
    if qty < spec.min_qty:
        raise params_error(f"The number of contracts exceeds minimum limit allowed: min {spec.min_qty}")
    return qty


def parse_price(params: dict, spec: LinearSpec) -> Decimal:
    raw = params.get("price")
    if raw is None or raw == "":
        raise params_error("params error: price is required for Limit orders")
    if not isinstance(raw, str):
        raise params_error("params error: price must be a string")
    price = parse_decimal(raw, "price")
    if price <= 0:
        raise params_error("params error: price must be positive")
    if price % spec.tick:
        raise params_error(f"params error: price {raw} is not a multiple of tickSize {spec.tick}")
    if price < spec.min_price or price > spec.max_price:
        raise params_error(f"params error: price {raw} outside [{spec.min_price}, {spec.max_price}]")
    return price


def parse_int(params: dict, key: str) -> int | None:
    raw = params.get(key)
    if raw in (None, ""):
        return None
    if isinstance(raw, bool):
        raise params_error(f"params error: {key} must be an integer")
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise params_error(f"params error: {key} must be an integer") from None


def parse_limit(params: dict, *, default: int, maximum: int) -> int:
    value = parse_int(params, "limit")
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


def page(items: list, *, limit: int, cursor: str | None, key, descending: bool) -> tuple[list, str]:
    if cursor:
        last = parse_cursor(cursor)
        items = [i for i in items if (key(i) < last if descending else key(i) > last)]
    page = items[:limit]
    return page, (make_cursor(key(page[-1])) if len(items) > limit else "")


# ---------------------------------------------------------------------- requests
class V5Requests:
    """The V5 endpoints of :class:`engine.SimEngine`: parse the request, call the typed model, render the answer.

    A mixin rather than a wrapper because tests, benchmarks and the ASGI app all call
    ``engine.create_order({...})`` and friends on the engine itself.
    """

    # --- market data
    def instruments(self, params: dict) -> tuple[list[dict], str]:
        category = parse_category(params, allowed=("linear", "spot", "inverse", "option"))
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
        limit = parse_limit(params, default=500, maximum=1000)
        return page(items, limit=limit, cursor=params.get("cursor"), key=lambda i: i["symbolId"], descending=False)

    def tickers(self, params: dict) -> list[dict]:
        category = parse_category(params, allowed=("linear", "spot", "inverse", "option"))
        symbol = params.get("symbol")
        with self.lock:
            if category == "linear":
                if symbol:
                    specs = [self.linear[symbol]] if symbol in self.linear else []
                else:
                    specs = list(self.linear.values())
                if symbol and not specs:
                    raise params_error("params error: symbol invalid")
                return [linear_ticker(s, self.quotes(s.symbol, s.tick), now_ms=self._clock()) for s in specs]
            if category == "spot":
                specs = [SPOT[symbol]] if symbol in SPOT else ([] if symbol else list(SPOT.values()))
                if symbol and not specs:
                    raise params_error("params error: symbol invalid")
                return [spot_ticker(s.symbol, self.quotes(s.symbol, s.tick)) for s in specs]
            return []

    # --- orders
    def create_order(self, params: dict) -> dict:
        with self.lock:
            spec = self._trading_spec(params)
            side = parse_choice(params, "side", ("Buy", "Sell"))
            order_type = parse_choice(params, "orderType", ("Market", "Limit"))
            reduce_only = parse_bool(params, "reduceOnly")
            close_on_trigger = parse_bool(params, "closeOnTrigger")
            link_id = parse_link_id(params)
            position_idx = self._position_idx(params, spec.symbol)
            qty = parse_qty(params, spec, allow_zero=reduce_only and close_on_trigger)
            tif = params.get("timeInForce") or "GTC"
            if tif not in ("GTC", "IOC", "FOK", "PostOnly"):
                raise params_error(f"params error: timeInForce {tif!r} is invalid")
            price = parse_price(params, spec) if order_type == "Limit" else None
            order = self.place_order(
                spec=spec, side=side, order_type=order_type, qty=qty, price=price, tif=tif, position_idx=position_idx,
                reduce_only=reduce_only, close_on_trigger=close_on_trigger, link_id=link_id,
            )  # fmt: skip
            return {"orderId": order.order_id, "orderLinkId": order.order_link_id}

    def amend_order(self, params: dict) -> dict:
        with self.lock:
            spec = self._trading_spec(params)
            order = self._find_open(params, spec.symbol, "order not exists or too late to replace")
            new_qty = parse_qty(params, spec) if params.get("qty") not in (None, "") else None
            new_price = parse_price(params, spec) if params.get("price") not in (None, "") else None
            if new_qty is None and new_price is None:
                raise params_error("params error: nothing to amend; pass qty and/or price")
            self.amend(order, spec, qty=new_qty, price=new_price)
            return {"orderId": order.order_id, "orderLinkId": order.order_link_id}

    def cancel_order(self, params: dict) -> dict:
        with self.lock:
            spec = self._trading_spec(params)
            order = self._find_open(params, spec.symbol, "Order does not exist.")
            self.cancel(order)
            return {"orderId": order.order_id, "orderLinkId": order.order_link_id}

    def cancel_all(self, params: dict) -> dict:
        with self.lock:
            category = parse_category(params)
            if category != "linear":
                raise params_error(f"category {category} trading is not supported by the simulator")
            symbol, base, settle = params.get("symbol"), params.get("baseCoin"), params.get("settleCoin")
            if not (symbol or base or settle):
                raise params_error("params error: symbol, baseCoin or settleCoin is required for linear")
            if symbol:
                self._spec(symbol)
            cancelled = self.cancel_matching(symbol=symbol, base=base, settle=settle, at_most=MAX_CANCEL_ALL)
            return {"list": [{"orderId": o.order_id, "orderLinkId": o.order_link_id} for o in cancelled],
                    "success": "1"}

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
            self.rest_orders(staged)
            return staged

    def _seed_one(self, params: dict, counts: dict[str, int], links: set[str], now: int) -> SimOrder:
        if not isinstance(params, dict):
            raise params_error("params error: each seed order must be an object")
        params = {"category": "linear", "orderType": "Limit", **params}
        spec = self._trading_spec(params)
        if params["orderType"] != "Limit":
            raise params_error("params error: only Limit orders can be seeded")
        if parse_bool(params, "reduceOnly") or parse_bool(params, "closeOnTrigger"):
            raise params_error("params error: reduce-only orders cannot be seeded")
        side = parse_choice(params, "side", ("Buy", "Sell"))
        link_id = parse_link_id(params)
        position_idx = self._position_idx(params, spec.symbol)
        qty = parse_qty(params, spec)
        price = parse_price(params, spec)
        tif = params.get("timeInForce") or "GTC"
        if tif not in ("GTC", "PostOnly"):
            raise params_error(f"params error: timeInForce {tif!r} cannot rest; use GTC or PostOnly")
        if link_id and (link_id in self.orders_by_link or link_id in links):
            raise SimError(110072, "OrderLinkedID is duplicate")
        order = self.resting_order(spec=spec, side=side, qty=qty, price=price, tif=tif, position_idx=position_idx,
                                   link_id=link_id, open_count=counts.get(spec.symbol, 0), now=now)
        counts[spec.symbol] = counts.get(spec.symbol, 0) + 1
        if link_id:
            links.add(link_id)
        return order

    def _find_open(self, params: dict, symbol: str, missing: str) -> SimOrder:
        order_id, link_id = params.get("orderId"), params.get("orderLinkId")
        if not order_id and not link_id:
            raise params_error("params error: orderId or orderLinkId is required")
        order = self.orders.get(order_id) if order_id else self.orders_by_link.get(link_id)
        if order is None or order.symbol != symbol or not order.is_open:
            raise SimError(110001, missing)
        return order

    # --- order queries
    def open_or_recent_orders(self, params: dict) -> tuple[list[dict], str]:
        category = parse_category(params)
        if category != "linear":
            return [], ""
        with self.lock:
            limit = parse_limit(params, default=20, maximum=50)
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
            orders = [o for o in orders if self.order_matches(o, symbol, base, settle)]
            orders.sort(key=lambda o: o.n, reverse=True)
            items, cursor = page(orders, limit=limit, cursor=params.get("cursor"), key=lambda o: o.n, descending=True)
            return [order_api(o, self.linear[o.symbol]) for o in items], cursor

    def order_history(self, params: dict) -> tuple[list[dict], str]:
        category = parse_category(params)
        if category != "linear":
            return [], ""
        with self.lock:
            limit = parse_limit(params, default=20, maximum=50)
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
                and self.order_matches(o, symbol, base, settle)
                and (not status or o.status == status)
                # Cancelled/Rejected orders stay queryable for 24 hours only.
                and not (o.status in ("Cancelled", "Rejected") and not o.cum_exec_qty and now - o.updated_ms > DAY_MS)
            ]
            orders.sort(key=lambda o: o.n, reverse=True)
            items, cursor = page(orders, limit=limit, cursor=params.get("cursor"), key=lambda o: o.n, descending=True)
            return [order_api(o, self.linear[o.symbol]) for o in items], cursor

    def execution_list(self, params: dict) -> tuple[list[dict], str]:
        category = parse_category(params)
        if category != "linear":
            return [], ""
        with self.lock:
            limit = parse_limit(params, default=50, maximum=100)
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
            items, cursor = page(rows, limit=limit, cursor=params.get("cursor"), key=lambda e: e.n, descending=True)
            return [execution_api(e, self.linear[e.symbol]) for e in items], cursor

    def _window(self, params: dict) -> tuple[int, int]:
        start = parse_int(params, "startTime")
        end = parse_int(params, "endTime")
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

    # --- positions & account
    def position_list(self, params: dict) -> tuple[list[dict], str]:
        category = parse_category(params, allowed=("linear", "inverse", "option"))
        if category != "linear":
            return [], ""
        with self.lock:
            limit = parse_limit(params, default=20, maximum=200)
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
            items, cursor = page(rows, limit=limit, cursor=params.get("cursor"),
                                 key=lambda p: self.linear[p.symbol].symbol_id * 10 + p.position_idx, descending=False)
            return [position_api(p, self.linear[p.symbol], self.prices[p.symbol]) for p in items], cursor

    def switch_mode(self, params: dict) -> None:
        with self.lock:
            category = parse_category(params)
            if category != "linear":
                raise params_error("params error: position mode can only be switched for linear")
            mode = parse_int(params, "mode")
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
            self.switch_modes(symbols, mode, one_symbol=bool(symbol))

    def set_leverage(self, params: dict) -> None:
        with self.lock:
            spec = self._trading_spec(params)
            buy = parse_decimal(params.get("buyLeverage"), "buyLeverage")
            sell = parse_decimal(params.get("sellLeverage"), "sellLeverage")
            if buy != sell:
                raise params_error("params error: buyLeverage must equal sellLeverage in cross margin")
            self.leverage_set(spec, buy)

    def wallet(self, params: dict) -> list[dict]:
        account_type = params.get("accountType")
        if account_type != "UNIFIED":
            raise params_error("accountType only support UNIFIED")
        coins = [c for c in (params.get("coin") or "").split(",") if c]
        with self.lock:
            account = self.wallet_api()
            if coins:
                account["coin"] = [c for c in account["coin"] if c["coin"] in coins]
            return [account]

    # --- parameters that depend on the account's state
    def _trading_spec(self, params: dict) -> LinearSpec:
        category = parse_category(params)
        if category != "linear":
            raise params_error(f"category {category} trading is not supported by the simulator (linear only)")
        return self._spec(params.get("symbol"))

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
