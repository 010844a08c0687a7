"""Instruments the simulator lists, with Bybit-like trading rules and starting prices.

The figures are close to Bybit mainnet's for these symbols (tick size, qty step,
minimums, maximums); they only need to be realistic enough that sizing and
validation code meets the same kinds of numbers it will meet on the exchange.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

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
