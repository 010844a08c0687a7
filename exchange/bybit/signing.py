"""Bybit V5 request signing (HMAC-SHA256).

The signed string is ``timestamp + api_key + recv_window + payload`` where the
payload is the literal query string of a GET (without ``?``) or the literal
JSON body of a POST. Bybit only checks that the signed bytes equal the bytes
that arrived, so this module also produces those bytes: the client sends
exactly what :func:`query_string` and :func:`json_body` return and nothing
re-encodes them afterwards.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import quote

# Characters a query value may carry as-is. '%' stays literal because Bybit's
# pagination cursors arrive already percent-encoded and must go back unchanged
# (re-encoding them to %25 broke signatures in ccxt and other clients).
_QUERY_SAFE = "-_.~%,:"
_BARE_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


def sign(*, api_secret: str, timestamp_ms: int, api_key: str, recv_window: int, payload: str) -> str:
    """Lowercase hex HMAC-SHA256 of the Bybit V5 pre-sign string."""
    message = f"{timestamp_ms}{api_key}{recv_window}{payload}"
    return hmac.new(api_secret.encode("utf-8"), message.encode("utf-8"), hashlib.sha256).hexdigest()


def wire_value(value: Any) -> str:
    """A parameter value as Bybit expects it: decimals in plain notation, booleans lowercase."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value!r} is not a finite decimal")
        return format(value, "f")
    if isinstance(value, float):
        # Money never travels as float; a float here is a programming error upstream.
        raise TypeError(f"float {value!r} passed to the Bybit client; use Decimal")
    return str(value)


def query_string(params: Mapping[str, Any]) -> str:
    """``k=v&...`` sorted by key, ``None`` dropped; the exact string that is signed and sent."""
    parts = []
    for key in sorted(params):
        value = params[key]
        if value is None:
            continue
        encoded = quote(wire_value(value), safe=_QUERY_SAFE)
        parts.append(f"{key}={_BARE_PERCENT.sub('%25', encoded)}")
    return "&".join(parts)


def json_body(params: Mapping[str, Any]) -> str:
    """Compact JSON with ``None`` dropped and decimals as strings; the exact bytes signed and sent."""
    clean = {k: _json_value(v) for k, v in params.items() if v is not None}
    return json.dumps(clean, separators=(",", ":"), ensure_ascii=True)


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return wire_value(value)
    if isinstance(value, float):
        raise TypeError(f"float {value!r} passed to the Bybit client; use Decimal")
    return value


def auth_headers(*, api_key: str, api_secret: str, timestamp_ms: int, recv_window: int, payload: str) -> dict[str, str]:
    return {
        "X-BAPI-API-KEY": api_key,
        "X-BAPI-TIMESTAMP": str(timestamp_ms),
        "X-BAPI-RECV-WINDOW": str(recv_window),
        "X-BAPI-SIGN": sign(
            api_secret=api_secret, timestamp_ms=timestamp_ms, api_key=api_key, recv_window=recv_window, payload=payload
        ),
        "X-BAPI-SIGN-TYPE": "2",
    }
