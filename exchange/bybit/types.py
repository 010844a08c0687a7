"""Plain values that cross the boundary of the exchange app.

Bybit sends every decimal as a string; these types parse them straight into
``Decimal`` (never through float) and turn empty strings into ``None``. The
same types serve REST answers and private-stream items, whose field names
are the same except where noted (``avgPrice`` vs ``entryPrice``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NamedTuple

from ordermanager.core.decimals import DecimalTextInvalid, decimal_from_text

_MS_TEXT = re.compile(r"[0-9]{1,18}")
_ZERO = Decimal(0)


class MalformedPayload(ValueError):
    """An exchange payload lacks a field or carries a value we cannot parse."""


def dec(value: Any, *, name: str = "value", default: Decimal | None = None) -> Decimal | None:
    """Parse a Bybit decimal string. ``""``/``None`` give ``default`` (Bybit's empty field);
    floats are refused; any other text must be a JSON number (``decimal_from_text``), so
    ``" 5"``, ``"+5"``, ``"1_000"``, ``"NaN"`` or non-ASCII digits are malformed, not guessed at."""
    if type(value) is str and value:
        # The common case, first: Bybit's decimal text. Texts repeat (prices, sizes, "0"), so each is read once
        # per process while the cache holds it (a Decimal is immutable; a refused text is never cached).
        number = _DECIMALS.get(value)
        if number is None:
            number = _decimal_text(value, name)
        return number
    if value is None or value == "":
        return default
    if isinstance(value, float):
        raise MalformedPayload(f"{name} arrived as a float ({value!r}); decimals must be strings")
    if isinstance(value, Decimal):  # a JSON number read from its text (parse_float=Decimal)
        if not value.is_finite():
            raise MalformedPayload(f"{name}={value!r} is not finite")
        return value
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise MalformedPayload(f"{name} must be a decimal string, got {type(value).__name__}")
    try:
        return decimal_from_text(str(value))
    except DecimalTextInvalid as exc:
        raise MalformedPayload(f"{name}: {exc}") from None


_DECIMALS: dict[str, Decimal] = {}
_DECIMALS_MAX = 16_384  # texts kept at once; the cache starts over when full (bounded memory, no LRU bookkeeping)


def _decimal_text(text: str, name: str) -> Decimal:
    try:
        number = decimal_from_text(text)
    except DecimalTextInvalid as exc:
        raise MalformedPayload(f"{name}: {exc}") from None
    if len(_DECIMALS) >= _DECIMALS_MAX:
        _DECIMALS.clear()
    _DECIMALS[text] = number
    return number


def dec_req(item: dict, key: str) -> Decimal:
    value = dec(item.get(key), name=key)
    if value is None:
        raise MalformedPayload(f"{key} is missing")
    return value


def ms(value: Any, *, name: str = "time") -> int:
    """Epoch milliseconds, as Bybit sends them (a string of ASCII digits, or a JSON integer).
    ``int()`` alone would also read " 5", "1_000" or non-ASCII digits."""
    if value is None or value == "":
        return 0
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and _MS_TEXT.fullmatch(value):
        return int(value)
    raise MalformedPayload(f"{name}={value!r} is not a millisecond timestamp")


def ms_req(item: dict, key: str) -> int:
    value = item.get(key)
    if value is None or value == "":
        raise MalformedPayload(f"{key} is missing")
    return ms(value, name=key)


def req(item: dict, key: str) -> Any:
    if key not in item or item[key] is None:
        raise MalformedPayload(f"{key} is missing")
    return item[key]


@dataclass(frozen=True)
class OrderAck:
    """Answer to create/amend/cancel: the request was accepted (Bybit is asynchronous).

    ``resolved_existing`` is True when the client found the order already on the
    exchange (after an ambiguous outcome or a duplicate orderLinkId) instead of
    creating it with this call.
    """

    order_id: str
    order_link_id: str
    dry_run: bool = False
    resolved_existing: bool = False


@dataclass(frozen=True)
class OrderInfo:
    category: str
    symbol: str
    order_id: str
    order_link_id: str
    side: str
    order_type: str
    order_status: str
    qty: Decimal
    price: Decimal | None
    avg_price: Decimal | None
    cum_exec_qty: Decimal
    cum_exec_value: Decimal
    cum_exec_fee: Decimal
    leaves_qty: Decimal
    time_in_force: str
    position_idx: int
    reduce_only: bool
    reject_reason: str
    cancel_type: str
    create_type: str
    created_ms: int
    updated_ms: int

    @classmethod
    def from_api(cls, item: dict, *, category: str = "linear") -> OrderInfo:
        return cls(
            category=item.get("category") or category,
            symbol=req(item, "symbol"),
            order_id=str(req(item, "orderId")),
            order_link_id=item.get("orderLinkId") or "",
            side=req(item, "side"),
            order_type=item.get("orderType") or "",
            order_status=req(item, "orderStatus"),
            qty=dec_req(item, "qty"),
            price=_positive_or_none(dec(item.get("price"), name="price")),
            avg_price=_positive_or_none(dec(item.get("avgPrice"), name="avgPrice")),
            cum_exec_qty=dec(item.get("cumExecQty"), name="cumExecQty", default=_ZERO),
            cum_exec_value=dec(item.get("cumExecValue"), name="cumExecValue", default=_ZERO),
            cum_exec_fee=_fee(item),
            leaves_qty=dec(item.get("leavesQty"), name="leavesQty", default=_ZERO),
            time_in_force=item.get("timeInForce") or "",
            position_idx=int(item.get("positionIdx") or 0),
            reduce_only=bool(item.get("reduceOnly", False)),
            reject_reason=item.get("rejectReason") or "",
            cancel_type=item.get("cancelType") or "",
            create_type=item.get("createType") or "",
            created_ms=ms(item.get("createdTime"), name="createdTime"),
            updated_ms=ms(item.get("updatedTime"), name="updatedTime"),
        )


# A tuple, not a frozen dataclass: one is built per execution on the fill path, and a frozen dataclass of
# 18 fields costs about twice as much to build (docs/decisions/0332). Immutable either way.
class ExecutionInfo(NamedTuple):
    category: str
    symbol: str
    exec_id: str
    order_id: str
    order_link_id: str
    side: str
    exec_type: str
    exec_qty: Decimal
    exec_price: Decimal
    exec_value: Decimal
    exec_fee: Decimal
    fee_currency: str
    is_maker: bool
    closed_size: Decimal | None
    leaves_qty: Decimal | None
    exec_time_ms: int
    seq: int | None
    position_idx: int | None = None  # not in Bybit's execution rows; filled from the order when known

    @classmethod
    def from_api(cls, item: dict, *, category: str = "linear") -> ExecutionInfo:
        return cls(
            category=item.get("category") or category,
            symbol=req(item, "symbol"),
            exec_id=str(req(item, "execId")),
            order_id=str(item.get("orderId") or ""),
            order_link_id=item.get("orderLinkId") or "",
            side=item.get("side") or "",
            exec_type=item.get("execType") or "Trade",
            # Quantity, price and time are never optional: a default would book a fill at price 0
            # or in 1970 (docs/decisions/0416-fills-complete-or-refused.md).
            exec_qty=dec_req(item, "execQty"),
            exec_price=dec_req(item, "execPrice"),
            exec_value=dec(item.get("execValue"), name="execValue", default=_ZERO),
            exec_fee=dec(item.get("execFee"), name="execFee", default=_ZERO),
            fee_currency=item.get("feeCurrency") or "",
            is_maker=bool(item.get("isMaker", False)),
            closed_size=dec(item.get("closedSize"), name="closedSize"),
            leaves_qty=dec(item.get("leavesQty"), name="leavesQty"),
            exec_time_ms=ms_req(item, "execTime"),
            seq=int(item["seq"]) if item.get("seq") not in (None, "") else None,
        )


@dataclass(frozen=True)
class PositionInfo:
    category: str
    symbol: str
    position_idx: int
    side: str  # "Buy", "Sell" or "" when flat
    size: Decimal  # always >= 0 on Bybit
    avg_price: Decimal
    mark_price: Decimal | None
    unrealised_pnl: Decimal
    cum_realised_pnl: Decimal
    seq: int | None
    updated_ms: int

    @property
    def signed_size(self) -> Decimal:
        return -self.size if self.side == "Sell" else self.size

    @classmethod
    def from_api(cls, item: dict, *, category: str = "linear") -> PositionInfo:
        # REST calls the entry price avgPrice, the private stream entryPrice.
        entry = item.get("avgPrice", item.get("entryPrice"))
        return cls(
            category=item.get("category") or category,
            symbol=req(item, "symbol"),
            position_idx=int(item.get("positionIdx") or 0),
            side=item.get("side") or "",
            size=dec(item.get("size"), name="size", default=_ZERO),
            avg_price=dec(entry, name="avgPrice", default=_ZERO),
            mark_price=dec(item.get("markPrice"), name="markPrice"),
            unrealised_pnl=dec(item.get("unrealisedPnl"), name="unrealisedPnl", default=_ZERO),
            cum_realised_pnl=dec(item.get("cumRealisedPnl"), name="cumRealisedPnl", default=_ZERO),
            seq=int(item["seq"]) if item.get("seq") not in (None, "") else None,
            updated_ms=ms(item.get("updatedTime"), name="updatedTime"),
        )


@dataclass(frozen=True)
class CoinBalance:
    coin: str
    equity: Decimal
    wallet_balance: Decimal
    unrealised_pnl: Decimal


@dataclass(frozen=True)
class WalletBalance:
    account_type: str
    total_equity: Decimal
    total_wallet_balance: Decimal
    total_available_balance: Decimal
    coins: tuple[CoinBalance, ...] = field(default_factory=tuple)

    @classmethod
    def from_api(cls, account: dict) -> WalletBalance:
        coins = tuple(
            CoinBalance(
                coin=c.get("coin", ""),
                equity=dec(c.get("equity"), name="equity", default=_ZERO),
                wallet_balance=dec(c.get("walletBalance"), name="walletBalance", default=_ZERO),
                unrealised_pnl=dec(c.get("unrealisedPnl"), name="unrealisedPnl", default=_ZERO),
            )
            for c in account.get("coin") or []
        )
        return cls(
            account_type=account.get("accountType") or "UNIFIED",
            total_equity=dec(account.get("totalEquity"), name="totalEquity", default=_ZERO),
            total_wallet_balance=dec(account.get("totalWalletBalance"), name="totalWalletBalance", default=_ZERO),
            total_available_balance=dec(
                account.get("totalAvailableBalance"), name="totalAvailableBalance", default=Decimal(0)
            ),
            coins=coins,
        )


@dataclass(frozen=True)
class InstrumentInfo:
    category: str
    symbol: str
    status: str
    base_coin: str
    quote_coin: str
    tick_size: Decimal
    qty_step: Decimal
    min_order_qty: Decimal
    max_order_qty: Decimal
    max_market_order_qty: Decimal | None
    min_notional: Decimal
    raw: dict

    @classmethod
    def from_api(cls, item: dict, *, category: str = "linear") -> InstrumentInfo:
        lot = item.get("lotSizeFilter") or {}
        price = item.get("priceFilter") or {}
        if category == "spot":
            qty_step = dec(lot.get("basePrecision"), name="basePrecision")
            max_mkt = dec(lot.get("maxMarketOrderQty"), name="maxMarketOrderQty")
            max_qty = dec(lot.get("maxLimitOrderQty") or lot.get("maxOrderQty"), name="maxLimitOrderQty")
            min_notional = dec(lot.get("minOrderAmt"), name="minOrderAmt", default=_ZERO)
        else:
            qty_step = dec(lot.get("qtyStep"), name="qtyStep")
            max_mkt = dec(lot.get("maxMktOrderQty"), name="maxMktOrderQty")
            max_qty = dec(lot.get("maxOrderQty"), name="maxOrderQty")
            min_notional = dec(lot.get("minNotionalValue"), name="minNotionalValue", default=_ZERO)
        tick = dec(price.get("tickSize"), name="tickSize")
        if not qty_step or not tick or qty_step <= 0 or tick <= 0 or max_qty is None:
            raise MalformedPayload(f"instrument {item.get('symbol')!r} lacks tickSize/qtyStep/maxOrderQty")
        return cls(
            category=category,
            symbol=req(item, "symbol"),
            status=item.get("status") or "Trading",
            base_coin=item.get("baseCoin") or "",
            quote_coin=item.get("quoteCoin") or "",
            tick_size=tick,
            qty_step=qty_step,
            min_order_qty=dec(lot.get("minOrderQty"), name="minOrderQty", default=_ZERO),
            max_order_qty=max_qty,
            max_market_order_qty=max_mkt,
            min_notional=min_notional,
            raw=item,
        )


@dataclass(frozen=True)
class Ticker:
    symbol: str
    last_price: Decimal
    mark_price: Decimal | None
    bid1_price: Decimal | None
    ask1_price: Decimal | None

    @classmethod
    def from_api(cls, item: dict) -> Ticker:
        return cls(
            symbol=req(item, "symbol"),
            last_price=dec_req(item, "lastPrice"),
            mark_price=dec(item.get("markPrice"), name="markPrice"),
            bid1_price=dec(item.get("bid1Price"), name="bid1Price"),
            ask1_price=dec(item.get("ask1Price"), name="ask1Price"),
        )


def _positive_or_none(value: Decimal | None) -> Decimal | None:
    return value if value is not None and value > 0 else None


def _fee(item: dict) -> Decimal:
    # cumExecFee is deprecated for linear/spot; cumFeeDetail maps coin -> fee.
    detail = item.get("cumFeeDetail")
    if isinstance(detail, dict) and detail:
        return sum((dec(v, name="cumFeeDetail", default=_ZERO) for v in detail.values()), Decimal(0))
    return dec(item.get("cumExecFee"), name="cumExecFee", default=_ZERO)
