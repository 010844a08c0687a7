"""Bybit V5 private-stream messages (as ws-gateway forwards them) parsed into plain values.

A message is ``{"id", "topic", "creationTime", "data": [...]}``. The topic may be
all-in-one (``order``) or categorised (``order.linear``); both map to the bare
name, and a categorised topic supplies the category when an item lacks it.
Parsing is all or nothing: one bad item makes the whole message malformed, so a
caller never applies half a message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from exchange.bybit.types import ExecutionInfo, MalformedPayload, OrderInfo, PositionInfo, WalletBalance

TOPIC_ORDER = "order"
TOPIC_EXECUTION = "execution"
TOPIC_POSITION = "position"
TOPIC_WALLET = "wallet"
TOPICS = (TOPIC_ORDER, TOPIC_EXECUTION, TOPIC_POSITION, TOPIC_WALLET)

# "execution.fast" carries Trade rows only, with fewer fields; the parser takes
# what is there (execId, price, qty, side, time) like any execution row.
_PARSERS = {
    TOPIC_ORDER: lambda item, category: OrderInfo.from_api(item, category=category),
    TOPIC_EXECUTION: lambda item, category: ExecutionInfo.from_api(item, category=category),
    TOPIC_POSITION: lambda item, category: PositionInfo.from_api(item, category=category),
    TOPIC_WALLET: lambda item, category: WalletBalance.from_api(item),
}
_CATEGORIES = ("linear", "spot", "inverse", "option")


@dataclass(frozen=True)
class PrivateMessage:
    topic: str
    items: list[OrderInfo | ExecutionInfo | PositionInfo | WalletBalance]
    message_id: str = ""
    creation_ms: int = 0


def parse_private_message(raw: str | bytes | dict) -> PrivateMessage:
    """Parse one private-stream message; raises ``MalformedPayload`` naming what is wrong."""
    message = _as_object(raw)
    topic, category = _split_topic(message.get("topic"))
    data = message.get("data")
    if not isinstance(data, list):
        raise MalformedPayload(f"{topic} message: 'data' must be a list, got {type(data).__name__}")
    parse = _PARSERS[topic]
    items = []
    for index, item in enumerate(data):
        if not isinstance(item, dict):
            raise MalformedPayload(f"{topic} message: data[{index}] must be an object")
        try:
            items.append(parse(item, item.get("category") or category))
        except MalformedPayload as exc:
            raise MalformedPayload(f"{topic} message: data[{index}]: {exc}") from None
        except (TypeError, ValueError) as exc:  # e.g. positionIdx "x": int() refuses it
            raise MalformedPayload(f"{topic} message: data[{index}]: {exc}") from None
    creation = message.get("creationTime")
    return PrivateMessage(
        topic=topic,
        items=items,
        message_id=str(message.get("id") or ""),
        creation_ms=creation if isinstance(creation, int) else 0,
    )


def _as_object(raw: Any) -> dict:
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, bytes | bytearray):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedPayload("message is not UTF-8 text") from None
    if not isinstance(raw, str):
        raise MalformedPayload(f"message must be JSON text, got {type(raw).__name__}")
    try:
        # A JSON number with a fraction is read straight into Decimal from its
        # text, so it never passes through binary float (Bybit sends strings).
        message = json.loads(raw, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        raise MalformedPayload(f"message is not valid JSON ({exc.msg} at position {exc.pos})") from None
    if not isinstance(message, dict):
        raise MalformedPayload(f"message must be a JSON object, got {type(message).__name__}")
    return message


def _split_topic(value: Any) -> tuple[str, str]:
    if not isinstance(value, str) or not value:
        raise MalformedPayload("'topic' is missing")
    base, _, suffix = value.partition(".")
    if base not in _PARSERS:
        raise MalformedPayload(f"unknown topic {value!r}; expected one of {', '.join(TOPICS)}")
    category = suffix if suffix in _CATEGORIES else "linear"
    return base, category
