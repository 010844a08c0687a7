"""The Bybit V5 look-alike as a Starlette app: REST endpoints, control API and ws-gateway API.

``build_app`` wires the engine (``engine.py``, with its V5 request side in ``wire.py``),
authentication and rate limits (``auth.py``),
fault injection (``faults.py``) and the ws-gateway emulation (``gateway.py``). Handlers are
thin: parse, call the engine, wrap the answer in Bybit's envelope.

Control API (no auth; JSON): ``POST /sim/reset``, ``GET|POST /sim/faults``, ``POST /sim/price``,
``POST /sim/tick``, ``POST /sim/fill``, ``POST /sim/funding``, ``POST /sim/position-mode``,
``GET|POST /sim/config``, ``GET|POST /sim/rate-limits``, ``POST /sim/flush-events``, ``GET /sim/state``,
``GET|POST /sim/instruments`` (list more linear instruments until the next reset),
``POST /sim/seed-orders`` (many resting orders at once), ``POST /sim/position`` (a position changed
with no execution).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from exchange.simulator.auth import DEFAULT_RATE_LIMITS, RateLimiter, verify
from exchange.simulator.engine import SimEngine
from exchange.simulator.faults import FaultConfig, FaultConfigError, RequestFaults
from exchange.simulator.gateway import GatewayError, GatewayHub
from exchange.simulator.instruments import LinearSpec, linear_instrument_api
from exchange.simulator.wire import SimError

GATEWAY_TIMEOUT_BODY = "<html><head><title>504 Gateway Time-out</title></head><body>504 Gateway Time-out</body></html>"


@dataclass
class SimulatorState:
    engine: SimEngine
    faults: RequestFaults
    limiter: RateLimiter
    gateway: GatewayHub
    keys: dict[str, str]
    initial_faults: dict
    rate_limit_scale: float
    tick_interval: float | None
    generation: int = 0
    held: int = 0  # requests currently held by the timeout/delay faults (lets tests wait for them)

    def reset(self) -> None:
        """Back to the start: engine state, faults, rate-limit windows, ws-gateway subscriptions."""
        # A request held by the timeout fault must not land in the state of whoever reset (the next test).
        self.generation += 1
        self.gateway.close_all()
        self.faults.reset(FaultConfig(**self.initial_faults))
        self.engine.fault_config = self.faults.config
        self.engine.reset()
        self.limiter.configure(scale=self.rate_limit_scale, limits={})


def build_app(
    *,
    api_key: str,
    api_secret: str,
    seed: int = 1,
    ws_gateway_key: str | None = None,
    rate_limit_scale: float = 100.0,
    tick_interval: float | None = None,
    faults: dict | None = None,
    extra_instruments: Iterable[dict | LinearSpec] | None = None,
    **options,
) -> Starlette:
    """Build the simulator app. ``options`` go to :class:`SimEngine` (initial_balance, taker_fee, maker_fee,
    slippage, spread_ticks, leverage, volatility, max_fill_qty).

    ``rate_limit_scale`` multiplies Bybit's per-endpoint budgets (100 by default so tests are not
    throttled; 1 is Bybit's). ``tick_interval`` (seconds) advances the random walk on a timer.
    ``extra_instruments`` are listed next to the built-in symbols from the start and after every reset
    (definitions as for ``POST /sim/instruments``; a bad one raises ``ValueError`` here).
    """
    initial_faults = dict(faults or {})
    request_faults = RequestFaults()
    if "seed" not in initial_faults:
        initial_faults["seed"] = seed
    request_faults.update(initial_faults)
    initial_faults = request_faults.config.as_dict()
    engine = SimEngine(seed=seed, fault_config=request_faults.config, extra_instruments=extra_instruments, **options)
    state = SimulatorState(
        engine=engine,
        faults=request_faults,
        limiter=RateLimiter(DEFAULT_RATE_LIMITS, scale=rate_limit_scale),
        gateway=GatewayHub(engine, api_key=ws_gateway_key),
        keys={api_key: api_secret},
        initial_faults=initial_faults,
        rate_limit_scale=rate_limit_scale,
        tick_interval=tick_interval,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app):
        tasks = [asyncio.create_task(_flush_held_events(state))]
        if tick_interval:
            tasks.append(asyncio.create_task(_tick_forever(state, tick_interval)))
        try:
            yield
        finally:
            state.gateway.close_all()
            for task in tasks:
                task.cancel()

    routes = [Route(path, _bybit(path, handler, private=private), methods=[method])
              for path, (method, private, handler) in BYBIT_ROUTES.items()]
    routes += [Route(path, endpoint, methods=methods) for path, endpoint, methods in CONTROL_ROUTES]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.sim = state
    return app


async def _flush_held_events(state: SimulatorState) -> None:
    while True:
        await asyncio.sleep(0.05)
        state.engine.flush_events(max_age=state.faults.config.reorder_hold_seconds)


async def _tick_forever(state: SimulatorState, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        state.engine.tick()


# ---------------------------------------------------------------------- Bybit endpoints
def _envelope(result: dict | None = None, *, code: int = 0, msg: str = "OK", now_ms: int) -> dict:
    return {"retCode": code, "retMsg": msg, "result": result if result is not None else {}, "retExtInfo": {},
            "time": now_ms}


def _bybit(path: str, handler: Callable[[SimEngine, dict], dict], *, private: bool):
    async def endpoint(request: Request) -> Response:
        state: SimulatorState = request.app.state.sim
        engine = state.engine
        body = await request.body()  # read before any delay: the client may hang up meanwhile
        fault = state.faults.decide(path)
        cfg = state.faults.config
        if fault == "rate_limit":
            now = engine.now_ms()
            headers = {"X-Bapi-Limit": str(state.limiter.limit_for(path)), "X-Bapi-Limit-Status": "0",
                       "X-Bapi-Limit-Reset-Timestamp": str((now // 1000 + 1) * 1000)}
            return JSONResponse(_envelope(code=10006, msg="Too many visits. Exceeded the API Rate Limit.",
                                          now_ms=now), headers=headers)
        if fault == "http_429":
            return PlainTextResponse("Too Many Requests", status_code=429)
        if fault == "server_error":
            return PlainTextResponse("Service Unavailable", status_code=cfg.server_error_status)
        if fault == "timeout":
            generation = state.generation
            await _hold(state, cfg.timeout_seconds)
            if generation != state.generation:
                return PlainTextResponse("Service Unavailable (simulator was reset)", status_code=503)
        response = _process(state, request, body, handler, private=private)
        if fault == "drop_response":
            if cfg.drop_response_mode == "504":
                return Response(GATEWAY_TIMEOUT_BODY, status_code=504, media_type="text/html")
            await _hold(state, cfg.timeout_seconds)
        return response

    endpoint.__name__ = "bybit_" + path.strip("/").replace("/", "_").replace("-", "_")
    return endpoint


async def _hold(state: SimulatorState, seconds: float) -> None:
    state.held += 1
    try:
        await asyncio.sleep(seconds)
    finally:
        state.held -= 1


def _process(state: SimulatorState, request: Request, body: bytes, handler, *, private: bool) -> Response:
    engine = state.engine
    headers: dict[str, str] = {}
    now = engine.now_ms()
    try:
        if private:
            payload = request.scope.get("query_string", b"") if request.method == "GET" else body
            api_key = verify(headers=request.headers, payload=payload, keys=state.keys, now_ms=now)
            allowed, headers = state.limiter.hit(api_key, request.url.path, now)
            if not allowed:
                raise SimError(10006, "Too many visits. Exceeded the API Rate Limit.")
        params = _params(request, body)
        result = handler(engine, params)
        return JSONResponse(_envelope(result, now_ms=engine.now_ms()), headers=headers)
    except SimError as exc:
        return JSONResponse(_envelope(code=exc.ret_code, msg=exc.ret_msg, now_ms=engine.now_ms()), headers=headers)


def _params(request: Request, body: bytes) -> dict:
    if request.method == "GET":
        return dict(request.query_params)
    if not body.strip():
        return {}
    try:
        params = json.loads(body)
    except ValueError:
        raise SimError(10001, "params error: request body is not valid JSON") from None
    if not isinstance(params, dict):
        raise SimError(10001, "params error: request body must be a JSON object")
    return params


def _listed(items_and_cursor: tuple[list, str], category: str) -> dict:
    items, cursor = items_and_cursor
    return {"category": category, "list": items, "nextPageCursor": cursor}


def _server_time(engine: SimEngine, params: dict) -> dict:
    now = engine.now_ms()
    return {"timeSecond": str(now // 1000), "timeNano": str(now * 1_000_000)}


def _query_api(engine: SimEngine, params: dict) -> dict:
    return {
        "id": "1", "note": "simulator", "apiKey": "", "readOnly": 0, "secret": "",
        "permissions": {"ContractTrade": ["Order", "Position"], "Spot": ["SpotTrade"], "Wallet": ["AccountTransfer"],
                        "Options": ["OptionsTrade"], "Derivatives": ["DerivativesTrade"], "CopyTrading": [],
                        "BlockTrade": [], "Exchange": [], "NFT": [], "Affiliate": []},
        "ips": ["*"], "type": 1, "deadlineDay": 90, "expiredAt": "", "createdAt": "2024-01-01T00:00:00Z",
        "unified": 0, "uta": 1, "userID": 1, "inviterID": 0, "vipLevel": "No VIP", "mktMakerLevel": "0",
        "affiliateID": 0, "rsaPublicKey": "", "isMaster": True, "parentUid": "0", "kycLevel": "LEVEL_DEFAULT",
        "kycRegion": "",
    }


def _account_info(engine: SimEngine, params: dict) -> dict:
    return {"marginMode": "REGULAR_MARGIN", "updatedTime": "1700000000000", "unifiedMarginStatus": 6,
            "dcpStatus": "OFF", "timeWindow": 10, "smpGroup": 0, "isMasterTrader": False,
            "spotHedgingStatus": "OFF"}


def _fee_rate(engine: SimEngine, params: dict) -> dict:
    symbols = [params["symbol"]] if params.get("symbol") else list(engine.prices)
    cfg = engine.config
    return {"list": [{"symbol": s, "baseCoin": "", "takerFeeRate": str(cfg["taker_fee"]),
                      "makerFeeRate": str(cfg["maker_fee"])} for s in symbols]}


def _coin_info(engine: SimEngine, params: dict) -> dict:
    with engine.lock:
        coins = list(dict.fromkeys(["USDT", "BTC", "ETH", "SOL", "XRP", "DOGE",
                                    *(spec.base for spec in engine.linear.values())]))
    wanted = params.get("coin")
    return {"rows": [
        {"name": c, "coin": c, "remainAmount": "1000000", "chains": [{
            "chainType": c, "confirmation": "1", "withdrawFee": "1", "depositMin": "0", "withdrawMin": "1",
            "chain": c, "chainDeposit": "1", "chainWithdraw": "1", "minAccuracy": "8",
            "withdrawPercentageFee": "0", "contractAddress": "", "safeConfirmNumber": "1"}]}
        for c in coins if not wanted or c == wanted
    ]}


def _switch_mode(engine: SimEngine, params: dict) -> dict:
    engine.switch_mode(params)
    return {}


def _set_leverage(engine: SimEngine, params: dict) -> dict:
    engine.set_leverage(params)
    return {}


BYBIT_ROUTES: dict[str, tuple[str, bool, Callable[[SimEngine, dict], dict]]] = {
    "/v5/market/time": ("GET", False, _server_time),
    "/v5/market/instruments-info": (
        "GET", False, lambda e, p: _listed(e.instruments(p), p.get("category", ""))),
    "/v5/market/tickers": ("GET", False, lambda e, p: {"category": p.get("category", ""), "list": e.tickers(p)}),
    "/v5/order/create": ("POST", True, lambda e, p: e.create_order(p)),
    "/v5/order/amend": ("POST", True, lambda e, p: e.amend_order(p)),
    "/v5/order/cancel": ("POST", True, lambda e, p: e.cancel_order(p)),
    "/v5/order/cancel-all": ("POST", True, lambda e, p: e.cancel_all(p)),
    "/v5/order/realtime": ("GET", True, lambda e, p: _listed(e.open_or_recent_orders(p), p.get("category", ""))),
    "/v5/order/history": ("GET", True, lambda e, p: _listed(e.order_history(p), p.get("category", ""))),
    "/v5/execution/list": ("GET", True, lambda e, p: _listed(e.execution_list(p), p.get("category", ""))),
    "/v5/position/list": ("GET", True, lambda e, p: _listed(e.position_list(p), p.get("category", ""))),
    "/v5/position/switch-mode": ("POST", True, _switch_mode),
    "/v5/position/set-leverage": ("POST", True, _set_leverage),
    "/v5/account/wallet-balance": ("GET", True, lambda e, p: {"list": e.wallet(p)}),
    "/v5/account/info": ("GET", True, _account_info),
    "/v5/account/fee-rate": ("GET", True, _fee_rate),
    "/v5/user/query-api": ("GET", True, _query_api),
    "/v5/asset/coin/query-info": ("GET", True, _coin_info),
}


# ---------------------------------------------------------------------- control API
def _bad(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _json_body(request: Request, *, lists: bool = False) -> dict | list:
    raw = await request.body()
    if not raw.strip():
        return {}
    data = json.loads(raw)
    if not isinstance(data, dict) and not (lists and isinstance(data, list)):
        raise ValueError("body must be a JSON object" + (" or list" if lists else ""))
    return data


def _control(fn, *, lists: bool = False):
    """Wrap a control endpoint: JSON in, JSON out, errors as 400 with a message."""

    async def endpoint(request: Request) -> Response:
        try:
            body = await _json_body(request, lists=lists) if request.method in ("POST", "DELETE") else {}
            result = fn(request.app.state.sim, body)
            if asyncio.iscoroutine(result):
                result = await result
        except SimError as exc:
            return _bad(f"{exc.ret_code}: {exc.ret_msg}")
        except (ValueError, TypeError, KeyError, FaultConfigError) as exc:
            return _bad(str(exc))
        return result if isinstance(result, Response) else JSONResponse(result)

    endpoint.__name__ = fn.__name__
    return endpoint


def sim_reset(state: SimulatorState, body: dict) -> dict:
    state.reset()
    return {"ok": True}


def sim_faults(state: SimulatorState, body: dict) -> dict:
    if body:
        state.faults.update(body)
        state.engine.fault_config = state.faults.config
        state.engine.reseed_event_faults()
    return {**state.faults.config.as_dict(), "counts": dict(state.faults.counts)}


def sim_price(state: SimulatorState, body: dict) -> dict:
    symbol, price = body.get("symbol"), body.get("price")
    if not isinstance(price, str):
        raise ValueError("price must be a decimal string, e.g. \"64000.5\"")
    value = state.engine.set_price(symbol, price)
    return {"symbol": symbol, "price": str(value)}


def sim_tick(state: SimulatorState, body: dict) -> dict:
    steps = body.get("steps", 1)
    if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= 100_000:
        raise ValueError("steps must be an integer 1..100000")
    return {"prices": state.engine.tick(steps=steps, symbol=body.get("symbol"))}


def sim_fill(state: SimulatorState, body: dict) -> dict:
    order = state.engine.force_fill(order_id=body.get("orderId") or "", order_link_id=body.get("orderLinkId") or "",
                                    qty=body.get("qty"), price=body.get("price"))
    return {"order": order}


def sim_funding(state: SimulatorState, body: dict) -> dict:
    rate = body.get("rate")
    if not isinstance(rate, str):
        raise ValueError("rate must be a decimal string, e.g. \"0.0001\"")
    return {"list": state.engine.settle_funding(symbol=body.get("symbol"), rate=Decimal(rate))}


def sim_position_mode(state: SimulatorState, body: dict) -> Response:
    # Same semantics as /v5/position/switch-mode, without the signature (a test convenience).
    try:
        state.engine.switch_mode({"category": "linear", **body})
    except SimError as exc:
        return JSONResponse(_envelope(code=exc.ret_code, msg=exc.ret_msg, now_ms=state.engine.now_ms()))
    return JSONResponse(_envelope({}, now_ms=state.engine.now_ms()))


def sim_config(state: SimulatorState, body: dict) -> dict:
    return state.engine.configure(body) if body else state.engine.config_api()


def sim_rate_limits(state: SimulatorState, body: dict) -> dict:
    if not body:
        return state.limiter.describe()
    limits = body.get("limits")
    if limits is not None and (not isinstance(limits, dict) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in limits.values())):
        raise ValueError("limits must map paths to positive integers (requests per second)")
    scale = body.get("scale")
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, int | float)):
        raise ValueError("scale must be a number")
    return state.limiter.configure(scale=scale, limits=limits)


def sim_instruments(state: SimulatorState, body: dict | list) -> dict:
    """GET: the linear instruments listed now. POST: list more until the next reset (all or nothing).

    Body: a list of definitions, or Bybit's instruments-info ``result`` (``{"list": [...]}``), or one
    definition. Each is a Bybit instruments-info item plus ``price`` (starting last price), or compact
    ``{symbol, price, tickSize, qtyStep, minOrderQty, maxOrderQty, maxMktOrderQty, minNotionalValue}``.
    """
    engine = state.engine
    if isinstance(body, list) or body:
        if isinstance(body, dict):
            body = body["list"] if "list" in body else [body]
        added = engine.add_instruments(body)
        return {"list": [linear_instrument_api(spec) for spec in added]}
    with engine.lock:
        specs = sorted(engine.linear.values(), key=lambda spec: spec.symbol_id)
    return {"list": [linear_instrument_api(spec) for spec in specs]}


def sim_seed_orders(state: SimulatorState, body: dict) -> dict:
    orders = body.get("orders")
    if not isinstance(orders, list):
        raise ValueError('body must be {"orders": [{"symbol", "side", "qty", "price", "orderLinkId"?}, ...]}')
    seeded = state.engine.seed_open_orders(orders)
    return {"list": [{"orderId": o.order_id, "orderLinkId": o.order_link_id, "symbol": o.symbol} for o in seeded],
            "count": len(seeded)}


def sim_position(state: SimulatorState, body: dict) -> dict:
    unknown = set(body) - {"symbol", "positionIdx", "side", "size", "avgPrice"}
    if unknown:
        raise ValueError(f"unknown field(s) {sorted(unknown)}; known: symbol, positionIdx, side, size, avgPrice")
    position_idx = body.get("positionIdx", 0)
    if isinstance(position_idx, bool) or not isinstance(position_idx, int):
        raise ValueError("positionIdx must be 0, 1 or 2")
    return {"position": state.engine.set_position(
        symbol=body.get("symbol"), size=body.get("size"), side=body.get("side") or "",
        avg_price=body.get("avgPrice", "0"), position_idx=position_idx)}


def sim_flush_events(state: SimulatorState, body: dict) -> dict:
    state.engine.flush_events()
    return {"ok": True}


def sim_state(state: SimulatorState, body: dict) -> dict:
    faults = {**state.faults.config.as_dict(), "counts": dict(state.faults.counts)}
    return {**state.engine.state(), "held_requests": state.held, "faults": faults,
            "subscriptions": [s.describe() for s in state.gateway.subscriptions.values()],
            "rate_limits": state.limiter.describe()}


# ---------------------------------------------------------------------- ws-gateway management API
async def gateway_subscriptions(request: Request) -> Response:
    state: SimulatorState = request.app.state.sim
    try:
        api_key = state.gateway.check_key(request.headers.get("x-api-key"))
        if request.method == "GET":
            return JSONResponse({"subscriptions": [s.describe() for s in state.gateway.subscriptions.values()]})
        try:
            body = json.loads(await request.body())
        except ValueError:
            raise GatewayError(400, "body must be JSON") from None
        sub = state.gateway.register(api_key=api_key, body=body, loop=asyncio.get_running_loop())
    except GatewayError as exc:
        return JSONResponse({"error": str(exc)}, status_code=exc.status)
    return JSONResponse({"id": sub.id, "subscriber": sub.subscriber, "topics": sub.topics,
                         "callback_url": sub.callback_url}, status_code=201)


async def gateway_subscription(request: Request) -> Response:
    state: SimulatorState = request.app.state.sim
    try:
        state.gateway.check_key(request.headers.get("x-api-key"))
    except GatewayError as exc:
        return JSONResponse({"error": str(exc)}, status_code=exc.status)
    if not state.gateway.unregister(request.path_params["sub_id"]):
        return JSONResponse({"error": "no such subscription"}, status_code=404)
    return Response(status_code=204)


CONTROL_ROUTES = [
    ("/sim/reset", _control(sim_reset), ["POST"]),
    ("/sim/faults", _control(sim_faults), ["GET", "POST"]),
    ("/sim/price", _control(sim_price), ["POST"]),
    ("/sim/tick", _control(sim_tick), ["POST"]),
    ("/sim/fill", _control(sim_fill), ["POST"]),
    ("/sim/funding", _control(sim_funding), ["POST"]),
    ("/sim/position-mode", _control(sim_position_mode), ["POST"]),
    ("/sim/config", _control(sim_config), ["GET", "POST"]),
    ("/sim/rate-limits", _control(sim_rate_limits), ["GET", "POST"]),
    ("/sim/flush-events", _control(sim_flush_events), ["POST"]),
    ("/sim/instruments", _control(sim_instruments, lists=True), ["GET", "POST"]),
    ("/sim/seed-orders", _control(sim_seed_orders), ["POST"]),
    ("/sim/position", _control(sim_position), ["POST"]),
    ("/sim/state", _control(sim_state), ["GET"]),
    ("/ws-gateway/api/v1/subscriptions", gateway_subscriptions, ["GET", "POST"]),
    ("/ws-gateway/api/v1/subscriptions/{sub_id}", gateway_subscription, ["DELETE"]),
]
