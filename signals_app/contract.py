"""The trading-signal message contract (../shared/contracts/trading_signal.schema.json).

``signal_parse`` turns one message into a ``ParsedSignal`` or raises
``SignalInvalid`` whose ``reason`` names every field that is wrong and what
is wrong with it, in words a person on the desk can act on. Numbers go
straight from the JSON text to ``Decimal`` (``parse_float=Decimal``), never
through float; NaN and Infinity are refused. A number sent as a string must be
written as a JSON number would be (``ordermanager.core.decimals.decimal_from_text``):
``"1_000"``, ``"１０００"``, ``"+5"``, ``" 5 "``, ``".5"`` are refused, not guessed at.

Beyond the schema, values must fit what we can store and trade: at most
18 decimal places and an amount of at most ``MAX_AMOUNT`` USDT. Confidence
is rounded to 10 decimal places (its column), which models often exceed.
No text anywhere in the message (keys included) may hold the NUL character
or an unpaired UTF-16 surrogate (``\u0000``, ``\ud800``): JSON allows them,
PostgreSQL's text and jsonb columns do not. Such a message is rejected with
the place named, and the copy stored with the rejection has them replaced
by U+FFFD (docs/decisions/0312-unstorable-text.md).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from ordermanager.core.decimals import DecimalTextInvalid, decimal_from_text

MAX_MESSAGE_BYTES = 64 * 1024
MAX_AMOUNT = Decimal("1000000000")  # 1e9 USDT: anything larger is a unit error upstream
MAX_PRICE = Decimal("1000000000000")
MAX_DECIMAL_PLACES = 18
# The contract nests two levels (market_data_snapshot, metadata); deeper structures in free-form metadata are
# allowed up to this depth. Far deeper ones would exhaust Python's recursion while being stored.
MAX_NESTING = 32
CONFIDENCE_QUANTUM = Decimal("0.0000000001")
ASSET_RE = re.compile(r"^[A-Z0-9]{2,20}$")
REQUIRED = ("signal_id", "signal_type", "asset", "amount", "confidence", "timestamp", "strategy_id")


class SignalInvalid(ValueError):
    """The message breaks the contract. ``signal_id`` is set when the message carried a usable one."""

    def __init__(self, reason: str, *, signal_id: uuid.UUID | None = None, data: dict | None = None):
        super().__init__(reason)
        self.reason = reason
        self.signal_id = signal_id
        self.data = data or {}


@dataclass(frozen=True)
class ParsedSignal:
    signal_id: uuid.UUID
    signal_type: str
    asset: str
    amount: Decimal
    confidence: Decimal
    timestamp: datetime
    strategy_id: str
    model_version: str
    is_warmup: bool
    snapshot_price: Decimal | None
    snapshot_spread: Decimal | None
    urgency: bool
    trace_id: str
    raw: dict  # the message with numbers as exact strings (JSON-storable)


def signal_parse(payload: bytes | str | dict) -> ParsedSignal:
    data = _load(payload)
    if _too_deep(data):
        raise _reject_too_deep(data)
    errors: list[str] = _unstorable_text(data)
    if errors:
        data = _scrubbed(data)
    fields = _Fields(data, errors)
    signal_id = fields.signal_id()
    parsed = dict(
        signal_type=fields.choice("signal_type", ("buy", "sell")),
        asset=fields.asset(),
        amount=fields.decimal("amount", required=True, positive=True, maximum=MAX_AMOUNT),
        confidence=fields.confidence(),
        timestamp=fields.timestamp(),
        strategy_id=fields.text("strategy_id", required=True, max_length=100, min_length=1),
        model_version=fields.text("model_version", required=False, max_length=100) or "",
        is_warmup=fields.boolean(data, "is_warmup", "is_warmup"),
        trace_id=fields.text("trace_id", required=False, max_length=64) or "",
        **fields.snapshot(),
        urgency=fields.urgency(),
    )
    if errors or signal_id is None:
        raise SignalInvalid("; ".join(errors), signal_id=signal_id, data=_jsonable(data))
    return ParsedSignal(signal_id=signal_id, raw=_jsonable(data), **parsed)


# Characters PostgreSQL cannot store in text or jsonb: NUL, and lone surrogates (not valid UTF-8).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_MAX_TEXT_PROBLEMS = 5


def _unstorable_text(data: dict) -> list[str]:
    """One sentence per place (up to 5) where a key or a string holds a character we cannot store."""
    problems: list[str] = []
    stack: list[tuple[str, Any]] = [("", data)]
    while stack and len(problems) < _MAX_TEXT_PROBLEMS:  # iterative: nesting depth is the sender's choice
        path, value = stack.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                where = f"{path}.{_printable(key)}" if path else _printable(key)
                if _UNSTORABLE.search(key):
                    problems.append(f"{where}: the key {_character_named(key)}")
                stack.append((where, item))
        elif isinstance(value, list):
            stack.extend((f"{path}[{index}]", item) for index, item in enumerate(value))
        elif isinstance(value, str) and _UNSTORABLE.search(value):
            problems.append(f"{path}: the text {_character_named(value)}")
    return sorted(problems)


def _character_named(text: str) -> str:
    found = _UNSTORABLE.search(text).group()
    what = "the NUL character" if found == "\x00" else "an unpaired UTF-16 surrogate"
    return f"contains {what} (\\u{ord(found):04x}), which cannot be stored"


def _printable(text: str) -> str:
    return _UNSTORABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _scrubbed(value: Any) -> Any:
    """The message with every unstorable character replaced by U+FFFD (stored with the rejection)."""
    if isinstance(value, str):
        return _UNSTORABLE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_scrubbed(k): _scrubbed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrubbed(v) for v in value]
    return value


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def _load(payload: bytes | str | dict) -> dict:
    if isinstance(payload, dict):
        # Python callers (send_signal, tests): numbers become Decimal as if read from JSON text.
        return _from_python(payload)
    if isinstance(payload, bytes | bytearray):
        if len(payload) > MAX_MESSAGE_BYTES:
            raise SignalInvalid(f"message is {len(payload)} bytes, above the {MAX_MESSAGE_BYTES}-byte limit")
        try:
            payload = payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SignalInvalid(f"message is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    if len(payload) > MAX_MESSAGE_BYTES:
        raise SignalInvalid(f"message is {len(payload)} characters, above the {MAX_MESSAGE_BYTES} limit")
    try:
        data = json.loads(payload, parse_float=Decimal, parse_int=Decimal, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise SignalInvalid(f"message is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise SignalInvalid(f"message must be a JSON object, got {_kind(data)}")
    return data


def _too_deep(data: dict) -> bool:
    stack = [(data, 1)]
    while stack:  # iterative, so that the check itself cannot run out of stack
        value, depth = stack.pop()
        if depth > MAX_NESTING:
            return True
        children = value.values() if isinstance(value, dict) else value
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def _reject_too_deep(data: dict) -> SignalInvalid:
    # Only the top-level scalars are kept for the stored rejection: the deep part is what cannot be stored.
    errors: list[str] = []
    signal_id = _Fields(data, errors).signal_id()
    flat = {k: v for k, v in data.items() if not isinstance(v, dict | list)}
    return SignalInvalid(f"message nests objects/arrays more than {MAX_NESTING} levels deep",
                         signal_id=signal_id, data=_jsonable(_scrubbed(flat)))


def _from_python(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str | Decimal):
        return value
    if isinstance(value, int | float):
        return Decimal(repr(value))  # repr is the shortest text that reads back as the same float
    if isinstance(value, dict):
        return {str(k): _from_python(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_from_python(v) for v in value]
    return str(value)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, Decimal):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def _short(value: Any) -> str:
    text = repr(str(value) if isinstance(value, Decimal) else value)
    return text if len(text) <= 60 else text[:57] + "..."


class _Fields:
    """Field readers that append a sentence to ``errors`` instead of raising, so one reply names every problem."""

    def __init__(self, data: dict, errors: list[str]):
        self.data = data
        self.errors = errors

    def _get(self, name: str, required: bool) -> tuple[bool, Any]:
        if name not in self.data or (self.data[name] is None and required):
            if required:
                self.errors.append(f"{name}: required field is missing")
            return False, None
        return True, self.data[name]

    def signal_id(self) -> uuid.UUID | None:
        present, value = self._get("signal_id", True)
        if not present:
            return None
        if not isinstance(value, str):
            self.errors.append(f"signal_id: must be a UUID string, got {_kind(value)}")
            return None
        try:
            return uuid.UUID(value)
        except ValueError:
            self.errors.append(f"signal_id: {_short(value)} is not a UUID")
            return None

    def choice(self, name: str, allowed: tuple[str, ...]) -> str:
        present, value = self._get(name, True)
        if present and value not in allowed:
            self.errors.append(f"{name}: must be one of {', '.join(allowed)}, got {_short(value)}")
            return ""
        return value or ""

    def asset(self) -> str:
        present, value = self._get("asset", True)
        if not present:
            return ""
        if not isinstance(value, str) or not ASSET_RE.match(value):
            self.errors.append(
                f"asset: must be an exchange symbol of 2-20 capital letters or digits (e.g. BTCUSDT), "
                f"got {_short(value)}"
            )
            return ""
        return value

    def text(self, name: str, *, required: bool, max_length: int, min_length: int = 0) -> str | None:
        present, value = self._get(name, required)
        if not present or value is None:
            return None
        if not isinstance(value, str):
            self.errors.append(f"{name}: must be a string, got {_kind(value)}")
        elif not min_length <= len(value) <= max_length:
            self.errors.append(f"{name}: length must be {min_length}-{max_length} characters, got {len(value)}")
        else:
            return value
        return None

    def decimal(
        self, name: str, *, required: bool, positive: bool = False, non_negative: bool = False,
        maximum: Decimal | None = None, source: dict | None = None, label: str | None = None,
    ) -> Decimal | None:
        label = label or name
        data = self.data if source is None else source
        if name not in data or data[name] is None:
            if required:
                self.errors.append(f"{label}: required field is missing")
            return None
        value = data[name]
        if isinstance(value, str):
            try:
                number = decimal_from_text(value)
            except DecimalTextInvalid as exc:
                self.errors.append(f"{label}: must be a decimal number in JSON notation, {exc}")
                return None
        elif isinstance(value, Decimal):  # a JSON number, read from its text by json.loads
            number = value
        else:
            self.errors.append(f"{label}: must be a decimal number (JSON number or string), got {_kind(value)}")
            return None
        if not number.is_finite():
            self.errors.append(f"{label}: must be a finite number, got {_short(value)}")
        elif positive and number <= 0:
            self.errors.append(f"{label}: must be greater than 0, got {number}")
        elif non_negative and number < 0:
            self.errors.append(f"{label}: must not be negative, got {number}")
        elif maximum is not None and number > maximum:
            self.errors.append(f"{label}: {number} is above the maximum {maximum}")
        elif number.as_tuple().exponent < -MAX_DECIMAL_PLACES:
            self.errors.append(f"{label}: more than {MAX_DECIMAL_PLACES} decimal places ({number})")
        else:
            return number
        return None

    def confidence(self) -> Decimal:
        present, value = self._get("confidence", True)
        if not present:
            return Decimal(0)
        if not isinstance(value, Decimal):  # the contract says a JSON number, not a string
            self.errors.append(f"confidence: must be a JSON number between 0 and 1, got {_kind(value)}")
            return Decimal(0)
        if not value.is_finite() or not 0 <= value <= 1:
            self.errors.append(f"confidence: must be between 0 and 1, got {_short(value)}")
            return Decimal(0)
        return value.quantize(CONFIDENCE_QUANTUM, rounding=ROUND_HALF_EVEN)

    def timestamp(self) -> datetime | None:
        present, value = self._get("timestamp", True)
        if not present:
            return None
        if not isinstance(value, str):
            self.errors.append(f"timestamp: must be an ISO 8601 string, got {_kind(value)}")
            return None
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            self.errors.append(f"timestamp: {_short(value)} is not an ISO 8601 date-time")
            return None
        if moment.tzinfo is None:
            self.errors.append(f"timestamp: {_short(value)} has no timezone (add Z or +00:00)")
            return None
        return moment

    def boolean(self, source: dict, name: str, label: str) -> bool:
        value = source.get(name)
        if value is None:
            return False
        if not isinstance(value, bool):
            self.errors.append(f"{label}: must be true or false, got {_kind(value)}")
            return False
        return value

    def snapshot(self) -> dict:
        snap = self.data.get("market_data_snapshot")
        if snap is None:
            return {"snapshot_price": None, "snapshot_spread": None}
        if not isinstance(snap, dict):
            self.errors.append(f"market_data_snapshot: must be an object or null, got {_kind(snap)}")
            return {"snapshot_price": None, "snapshot_spread": None}
        prefix = "market_data_snapshot."
        price = self.decimal("price", required=True, positive=True, maximum=MAX_PRICE, source=snap,
                             label=prefix + "price")
        spread = self.decimal("spread", required=False, non_negative=True, maximum=MAX_PRICE, source=snap,
                              label=prefix + "spread")
        for extra in ("volume_24h", "volatility"):
            self.decimal(extra, required=False, source=snap, label=prefix + extra)
        return {"snapshot_price": price, "snapshot_spread": spread}

    def urgency(self) -> bool:
        meta = self.data.get("metadata")
        if meta is None:
            return False
        if not isinstance(meta, dict):
            self.errors.append(f"metadata: must be an object or null, got {_kind(meta)}")
            return False
        return self.boolean(meta, "urgency", "metadata.urgency")
