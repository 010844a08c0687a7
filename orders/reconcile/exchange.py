"""What the exchange says, fetched once per run and indexed for comparison.

Only the client's paged reads are used (all pages). A listing that failed is
*unknown*: nothing here ever turns a missing answer into "no orders" or "flat".
"""

from __future__ import annotations

from dataclasses import dataclass, field

from exchange.bybit.errors import BybitError
from exchange.bybit.types import OrderInfo, PositionInfo
from orders.exchange_status import order_status_of

OPEN_EXCHANGE_STATUSES = frozenset({"New", "Untriggered", "Triggered", "PartiallyFilled"})


def status_of(info: OrderInfo) -> str:
    """Our status for the exchange's, by the map the fill path writes with (so that what we expect
    is what ``order_update_apply`` writes); "" for a status we do not know."""
    return order_status_of(info) or ""


def is_open(info: OrderInfo) -> bool:
    return info.order_status in OPEN_EXCHANGE_STATUSES


@dataclass
class OpenOrders:
    """Every open order of one category (and symbol, for a symbol-scoped run)."""

    items: list[OrderInfo]
    by_link: dict[str, OrderInfo] = field(default_factory=dict)
    by_id: dict[str, OrderInfo] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for info in self.items:
            if info.order_link_id:
                self.by_link[info.order_link_id] = info
            self.by_id[info.order_id] = info

    def match(self, *, order_link_id: str, order_id: str) -> OrderInfo | None:
        return self.by_link.get(order_link_id) or (self.by_id.get(order_id) if order_id else None)

    @property
    def symbols(self) -> set[str]:
        return {info.symbol for info in self.items}


def open_orders_fetch(client, *, category: str, symbol: str | None) -> OpenOrders:
    """All pages; a BybitError propagates (without the open orders there is nothing to compare)."""
    if symbol:
        return OpenOrders(client.get_open_orders(category=category, symbol=symbol))
    return OpenOrders(client.get_open_orders(category=category, settle_coin="USDT"))


@dataclass
class PositionsView:
    """Exchange positions keyed by (symbol, positionIdx), and what could not be learned.

    ``listed`` holds the symbols whose rows the exchange returned explicitly
    (a symbol query returns rows even when flat): for them a missing idx is
    flat. Any other symbol absent from the rows is unknown, never flat.
    """

    rows: dict[tuple[str, int], PositionInfo] = field(default_factory=dict)
    listed: set[str] = field(default_factory=set)
    unknown: dict[str, str] = field(default_factory=dict)  # symbol -> why

    def add(self, infos: list[PositionInfo], *, listed_symbol: str | None = None) -> None:
        for info in infos:
            self.rows[(info.symbol, info.position_idx)] = info
        if listed_symbol is not None and any(i.symbol == listed_symbol for i in infos):
            self.listed.add(listed_symbol)

    def state(self, symbol: str, idx: int) -> tuple[str, PositionInfo | None]:
        """("row", info) | ("flat", None) | ("unknown", None) for one position."""
        info = self.rows.get((symbol, idx))
        if info is not None:
            return "row", info
        if symbol in self.listed:
            return "flat", None
        return "unknown", None


def positions_fetch_symbol(client, view: PositionsView, *, category: str, symbol: str) -> None:
    """Rows of one symbol (flat ones included). Failure or no rows → the symbol is unknown."""
    try:
        infos = client.get_positions(category=category, symbol=symbol)
    except BybitError as exc:
        view.unknown[symbol] = f"position query failed: {exc}"
        return
    view.add([i for i in infos if i.symbol == symbol], listed_symbol=symbol)
    if symbol not in view.listed:
        view.unknown[symbol] = "the exchange returned no position row for the symbol"


def positions_fetch(client, *, category: str, symbol: str | None, held: set[tuple[str, int]]) -> PositionsView:
    """The settle-coin listing (non-zero positions only), then one query per symbol for
    every position we hold that the listing did not show, so that it is confirmed flat
    by an explicit row rather than by its absence."""
    view = PositionsView()
    if symbol:
        positions_fetch_symbol(client, view, category=category, symbol=symbol)
        return view
    try:
        view.add(client.get_positions(category=category, settle_coin="USDT"))
    except BybitError as exc:
        for s, _ in held:
            view.unknown[s] = f"position listing failed: {exc}"
        return view
    for s in sorted({s for s, idx in held if (s, idx) not in view.rows}):
        positions_fetch_symbol(client, view, category=category, symbol=s)
    return view
