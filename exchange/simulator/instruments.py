"""Instruments the simulator lists, with Bybit-like trading rules and starting prices.

The figures are close to Bybit mainnet's for these symbols (tick size, qty step,
minimums, maximums); they only need to be realistic enough that sizing and
validation code meets the same kinds of numbers it will meet on the exchange.

``LINEAR`` and ``SPOT`` are the built-in catalogue: treat them as constants. More linear
instruments are listed per engine (``SimEngine(extra_instruments=...)``, ``engine.add_instruments``,
``POST /sim/instruments``) from definitions parsed by :func:`linear_spec_from_definition`
(docs/decisions/0104-simulator-extra-instruments.md).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

D = Decimal


@dataclass(frozen=True)
class LinearSpec:
    symbol: str
    base: str
    tick: Decimal
    min_price: Decimal
    max_price: Decimal
    qty_step: Decimal
    min_qty: Decimal
    max_qty: Decimal
    max_mkt_qty: Decimal
    min_notional: Decimal
    max_leverage: Decimal
    start_price: Decimal
    symbol_id: int

    @property
    def price_scale(self) -> int:
        return -self.tick.as_tuple().exponent

    @property
    def qty_scale(self) -> int:
        return max(0, -self.qty_step.as_tuple().exponent)


@dataclass(frozen=True)
class SpotSpec:
    symbol: str
    base: str
    tick: Decimal
    base_precision: Decimal
    quote_precision: Decimal
    min_qty: Decimal
    max_qty: Decimal
    min_amt: Decimal
    max_amt: Decimal
    max_limit_qty: Decimal
    max_market_qty: Decimal
    symbol_id: int


LINEAR: dict[str, LinearSpec] = {
    s.symbol: s
    for s in (
        LinearSpec("BTCUSDT", "BTC", D("0.10"), D("0.10"), D("1999999.80"), D("0.001"), D("0.001"), D("1190.000"),
                   D("500.000"), D("5"), D("100.00"), D("65000.00"), 5),
        LinearSpec("ETHUSDT", "ETH", D("0.01"), D("0.01"), D("199999.98"), D("0.01"), D("0.01"), D("7240.00"),
                   D("1000.00"), D("5"), D("100.00"), D("3500.00"), 6),
        LinearSpec("SOLUSDT", "SOL", D("0.010"), D("0.010"), D("19999.980"), D("0.1"), D("0.1"), D("79770.0"),
                   D("7977.0"), D("5"), D("75.00"), D("150.000"), 7),
        LinearSpec("XRPUSDT", "XRP", D("0.0001"), D("0.0001"), D("199.9998"), D("1"), D("1"), D("1345600"),
                   D("269120"), D("5"), D("75.00"), D("0.6000"), 8),
        LinearSpec("DOGEUSDT", "DOGE", D("0.00001"), D("0.00001"), D("19.99998"), D("1"), D("1"), D("6710000"),
                   D("1342000"), D("5"), D("75.00"), D("0.15000"), 9),
    )
}

SPOT: dict[str, SpotSpec] = {
    s.symbol: s
    for s in (
        SpotSpec("BTCUSDT", "BTC", D("0.1"), D("0.000001"), D("0.0000001"), D("0.000011"), D("83"), D("5"),
                 D("8000000"), D("83"), D("41.5"), 1),
        SpotSpec("ETHUSDT", "ETH", D("0.01"), D("0.00001"), D("0.0000001"), D("0.00029"), D("1229.2336343"),
                 D("5"), D("8000000"), D("1229"), D("614"), 2),
        SpotSpec("SOLUSDT", "SOL", D("0.01"), D("0.001"), D("0.000001"), D("0.001"), D("27000"), D("5"),
                 D("4000000"), D("27000"), D("13500"), 3),
        SpotSpec("XRPUSDT", "XRP", D("0.0001"), D("0.01"), D("0.000001"), D("0.01"), D("1000000"), D("5"),
                 D("2000000"), D("1000000"), D("500000"), 4),
        SpotSpec("DOGEUSDT", "DOGE", D("0.00001"), D("0.1"), D("0.000001"), D("1"), D("8000000"), D("5"),
                 D("2000000"), D("8000000"), D("4000000"), 10),
    )
}


def linear_instrument_api(spec: LinearSpec) -> dict:
    """One ``/v5/market/instruments-info`` list item for a linear perpetual, shaped like Bybit's."""
    return {
        "symbol": spec.symbol,
        "symbolId": spec.symbol_id,
        "contractType": "LinearPerpetual",
        "status": "Trading",
        "baseCoin": spec.base,
        "quoteCoin": "USDT",
        "launchTime": "1585526400000",
        "deliveryTime": "0",
        "deliveryFeeRate": "",
        "priceScale": str(spec.price_scale),
        "leverageFilter": {"minLeverage": "1", "maxLeverage": str(spec.max_leverage), "leverageStep": "0.01"},
        "priceFilter": {"minPrice": str(spec.min_price), "maxPrice": str(spec.max_price), "tickSize": str(spec.tick)},
        "lotSizeFilter": {
            "maxOrderQty": str(spec.max_qty),
            "minOrderQty": str(spec.min_qty),
            "qtyStep": str(spec.qty_step),
            "postOnlyMaxOrderQty": str(spec.max_qty),
            "maxMktOrderQty": str(spec.max_mkt_qty),
            "minNotionalValue": str(spec.min_notional),
        },
        "unifiedMarginTrade": True,
        "fundingInterval": 480,
        "settleCoin": "USDT",
        "copyTrading": "both",
        "upperFundingRate": "0.00375",
        "lowerFundingRate": "-0.00375",
        "isPreListing": False,
        "preListingInfo": None,
        "riskParameters": {"priceLimitRatioX": "0.01", "priceLimitRatioY": "0.02"},
        "displayName": "",
        "symbolType": "",
    }


def spot_instrument_api(spec: SpotSpec) -> dict:
    return {
        "symbolId": spec.symbol_id,
        "symbol": spec.symbol,
        "baseCoin": spec.base,
        "quoteCoin": "USDT",
        "innovation": "0",
        "status": "Trading",
        "marginTrading": "utaOnly",
        "stTag": "0",
        "lotSizeFilter": {
            "basePrecision": str(spec.base_precision),
            "quotePrecision": str(spec.quote_precision),
            "minOrderQty": str(spec.min_qty),
            "maxOrderQty": str(spec.max_qty),
            "minOrderAmt": str(spec.min_amt),
            "maxOrderAmt": str(spec.max_amt),
            "maxLimitOrderQty": str(spec.max_limit_qty),
            "maxMarketOrderQty": str(spec.max_market_qty),
            "postOnlyMaxLimitOrderSize": "60000",
        },
        "priceFilter": {"tickSize": str(spec.tick)},
        "riskParameters": {"priceLimitRatioX": "0.005", "priceLimitRatioY": "0.01"},
        "symbolType": "",
    }


# ---------------------------------------------------------------------- instrument definitions
class InstrumentDefinitionError(ValueError):
    """An instrument definition the simulator cannot list; the message names the symbol and the field."""


SYMBOL_RE = re.compile(r"^[A-Z0-9]{1,20}USDT$")
COMPACT_KEYS = frozenset({
    "symbol", "baseCoin", "symbolId", "price", "tickSize", "minPrice", "maxPrice", "qtyStep", "minOrderQty",
    "maxOrderQty", "maxMktOrderQty", "minNotionalValue", "maxLeverage",
})
DEFAULT_MIN_NOTIONAL = Decimal("5")
DEFAULT_MAX_LEVERAGE = Decimal("50")


def linear_spec_from_definition(data, *, default_symbol_id: int) -> LinearSpec:
    """A :class:`LinearSpec` from one definition, in either of two shapes.

    - Bybit's ``/v5/market/instruments-info`` list item (``priceFilter``, ``lotSizeFilter``,
      ``leverageFilter``; other fields ignored) plus a top-level ``price``: the starting last price,
      which Bybit's item does not carry.
    - Compact: ``{symbol, price, tickSize, qtyStep, minOrderQty, maxOrderQty, maxMktOrderQty,
      minNotionalValue}``, optional ``baseCoin`` (symbol less "USDT"), ``minPrice`` (tickSize),
      ``maxPrice`` (1000 x price, down to the tick), ``maxLeverage`` (50), ``symbolId``. Only
      ``symbol``, ``price``, ``tickSize`` and ``qtyStep`` are required: ``minOrderQty`` defaults to
      qtyStep, ``maxOrderQty`` to 1,000,000 x minOrderQty, ``maxMktOrderQty`` to maxOrderQty / 5 (down
      to the step), ``minNotionalValue`` to 5. Unknown keys are refused (a typo must not pass silently).

    Decimals are strings or integers, never floats (as everywhere on the wire). Raises
    :class:`InstrumentDefinitionError` naming the symbol and the field.
    """
    if isinstance(data, LinearSpec):
        _check_spec(data)
        return data
    if not isinstance(data, Mapping):
        raise InstrumentDefinitionError(f"an instrument definition must be a JSON object, not {type(data).__name__}")
    symbol = data.get("symbol")
    if not isinstance(symbol, str) or not SYMBOL_RE.match(symbol):
        raise InstrumentDefinitionError(
            f"symbol {symbol!r} is invalid: uppercase letters/digits ending in USDT (linear USDT perpetuals only)")
    bybit_shape = any(key in data for key in ("priceFilter", "lotSizeFilter", "leverageFilter"))
    if bybit_shape:
        price_filter = _section(data, "priceFilter", symbol)
        lot = _section(data, "lotSizeFilter", symbol)
        leverage = _section(data, "leverageFilter", symbol, required=False)
        for key, allowed in (("contractType", "LinearPerpetual"), ("settleCoin", "USDT"), ("quoteCoin", "USDT"),
                             ("status", "Trading")):
            if key in data and data[key] != allowed:
                raise InstrumentDefinitionError(f"{symbol}: {key} {data[key]!r} is not supported (only {allowed})")
        fields = {
            "tickSize": price_filter.get("tickSize"), "minPrice": price_filter.get("minPrice"),
            "maxPrice": price_filter.get("maxPrice"), "qtyStep": lot.get("qtyStep"),
            "minOrderQty": lot.get("minOrderQty"), "maxOrderQty": lot.get("maxOrderQty"),
            "maxMktOrderQty": lot.get("maxMktOrderQty"), "minNotionalValue": lot.get("minNotionalValue"),
            "maxLeverage": leverage.get("maxLeverage"),
        }
    else:
        unknown = set(data) - COMPACT_KEYS
        if unknown:
            raise InstrumentDefinitionError(
                f"{symbol}: unknown field(s) {sorted(unknown)}; known: {', '.join(sorted(COMPACT_KEYS))}")
        fields = {key: data.get(key) for key in COMPACT_KEYS}

    def number(key: str, *, required: bool = False, raw=None) -> Decimal | None:
        value = fields.get(key) if raw is None else raw
        if value is None or value == "":
            if required:
                raise InstrumentDefinitionError(f"{symbol}: {key} is required")
            return None
        return _decimal(value, f"{symbol}: {key}")

    price = number("price", required=True, raw=data.get("price"))
    tick = number("tickSize", required=True)
    qty_step = number("qtyStep", required=True)
    if tick <= 0 or qty_step <= 0:
        raise InstrumentDefinitionError(f"{symbol}: tickSize and qtyStep must be positive")
    min_qty = _or(number("minOrderQty"), qty_step)
    max_qty = _or(number("maxOrderQty"), min_qty * 1_000_000)
    max_mkt_qty = _or(number("maxMktOrderQty"), max(min_qty, (max_qty / 5 // qty_step) * qty_step))
    max_price = _or(number("maxPrice"), (price * 1000 // tick) * tick)
    base = data.get("baseCoin") or symbol[: -len("USDT")]
    if not isinstance(base, str) or not base:
        raise InstrumentDefinitionError(f"{symbol}: baseCoin must be a non-empty string")
    symbol_id = data.get("symbolId", default_symbol_id)
    if isinstance(symbol_id, bool) or not isinstance(symbol_id, int) or symbol_id <= 0:
        raise InstrumentDefinitionError(f"{symbol}: symbolId must be a positive integer")
    spec = LinearSpec(
        symbol=symbol, base=base, tick=tick, min_price=_or(number("minPrice"), tick), max_price=max_price,
        qty_step=qty_step, min_qty=min_qty, max_qty=max_qty, max_mkt_qty=max_mkt_qty,
        min_notional=_or(number("minNotionalValue"), DEFAULT_MIN_NOTIONAL),
        max_leverage=_or(number("maxLeverage"), DEFAULT_MAX_LEVERAGE), start_price=price, symbol_id=symbol_id,
    )
    _check_spec(spec)
    return spec


def _or(value: Decimal | None, default: Decimal) -> Decimal:
    return default if value is None else value


def _section(data: Mapping, key: str, symbol: str, *, required: bool = True) -> Mapping:
    value = data.get(key)
    if value is None and not required:
        return {}
    if not isinstance(value, Mapping):
        raise InstrumentDefinitionError(f"{symbol}: {key} must be an object")
    return value


def _decimal(raw, where: str) -> Decimal:
    # Strings (or integers) only: a JSON float here would be the same leak the order endpoints refuse.
    if isinstance(raw, bool) or not isinstance(raw, str | int | Decimal):
        raise InstrumentDefinitionError(f"{where} must be a decimal string, e.g. \"0.01\"")
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise InstrumentDefinitionError(f"{where} {raw!r} is not a number") from None
    if not value.is_finite():
        raise InstrumentDefinitionError(f"{where} {raw!r} is not a number")
    if value.as_tuple().exponent > 0:  # "1E+3": keep plain digits on the wire
        value = value.quantize(Decimal(1))
    return value


def _check_spec(spec: LinearSpec) -> None:
    s = spec.symbol
    rules = [
        (bool(SYMBOL_RE.match(s)) and bool(spec.base), "symbol must end in USDT and have a base coin"),
        (spec.tick > 0 and spec.qty_step > 0, "tickSize and qtyStep must be positive"),
        (spec.min_price > 0 and spec.min_price % spec.tick == 0, "minPrice must be a positive multiple of tickSize"),
        (spec.max_price % spec.tick == 0 and spec.max_price >= spec.min_price,
         "maxPrice must be a multiple of tickSize, at least minPrice"),
        (spec.start_price % spec.tick == 0, f"price {spec.start_price} is not a multiple of tickSize {spec.tick}"),
        (spec.min_price <= spec.start_price <= spec.max_price,
         f"price {spec.start_price} is outside [{spec.min_price}, {spec.max_price}]"),
        (spec.min_qty > 0 and spec.min_qty % spec.qty_step == 0, "minOrderQty must be a positive multiple of qtyStep"),
        (spec.max_qty % spec.qty_step == 0 and spec.max_mkt_qty % spec.qty_step == 0,
         "maxOrderQty and maxMktOrderQty must be multiples of qtyStep"),
        (spec.min_qty <= spec.max_mkt_qty <= spec.max_qty, "expected minOrderQty <= maxMktOrderQty <= maxOrderQty"),
        (spec.min_notional >= 0, "minNotionalValue must not be negative"),
        (spec.max_leverage >= 1, "maxLeverage must be at least 1"),
    ]
    for ok, message in rules:
        if not ok:
            raise InstrumentDefinitionError(f"{s}: {message}")
