"""Signature test vectors (BYBIT.md §1), each checked against independent computations."""

import hashlib
import hmac
import json
import shutil
import subprocess
from decimal import Decimal

import pytest

from exchange.bybit.signing import auth_headers, json_body, query_string, sign

VEC_KEY = "XXXXXXXXXX"
VEC_SECRET = "YYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYY"
VEC_TS = 1658384314791
GET_QUERY = "category=linear&limit=50&openOnly=0&symbol=BTCUSDT"
GET_SIGN = "8cf9c56cd649635f2492428dd2ceda456b88646b44b9ba40c2ef0b2e99640a1d"
POST_PARAMS = {
    "category": "linear", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Limit", "qty": "0.001",
    "price": "25000", "timeInForce": "PostOnly", "positionIdx": 0, "orderLinkId": "om-20240101-000001",
}  # fmt: skip
POST_SIGN_PYBIT_BODY = "f3f4fc45ba5d4b8b1f68bf52bc5ced3ca96ddf30068106e1dc896792799631cc"
POST_SIGN_COMPACT_BODY = "3918523940e4632431f4d36b3763ba9edbe6cf4d37dbc92be1299d2191b2289f"
VECTORS = [
    (GET_QUERY, GET_SIGN),
    (json.dumps(POST_PARAMS), POST_SIGN_PYBIT_BODY),
    (json.dumps(POST_PARAMS, separators=(",", ":")), POST_SIGN_COMPACT_BODY),
    ("category=option&symbol=BTC-29JUL22-25000-C", "49c26b0f76e0bec6b926f119814d66c4bdf59de44adf2a1864b1ea0bfd9c710c"),
]


def _independent_hmac(payload: str) -> str:
    pre = f"{VEC_TS}{VEC_KEY}5000{payload}".encode()
    return hmac.new(VEC_SECRET.encode(), pre, hashlib.sha256).hexdigest()


def _openssl_hmac(payload: str) -> str:
    pre = f"{VEC_TS}{VEC_KEY}5000{payload}".encode()
    out = subprocess.run(
        ["openssl", "dgst", "-sha256", "-hmac", VEC_SECRET], input=pre, capture_output=True, check=True
    ).stdout.decode()
    return out.strip().split()[-1]


@pytest.mark.parametrize(("payload", "expected"), VECTORS)
def test_signature_matches_published_vector_and_independent_hmac(payload, expected):
    ours = sign(api_secret=VEC_SECRET, timestamp_ms=VEC_TS, api_key=VEC_KEY, recv_window=5000, payload=payload)
    assert ours == expected
    assert _independent_hmac(payload) == expected


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
@pytest.mark.parametrize(("payload", "expected"), VECTORS)
def test_signature_matches_openssl(payload, expected):
    assert _openssl_hmac(payload) == expected


def test_signature_matches_pybit_auth():
    from pybit._http_manager import _V5HTTPManager

    manager = _V5HTTPManager(api_key=VEC_KEY, api_secret=VEC_SECRET)
    assert manager._auth(GET_QUERY, 5000, VEC_TS) == GET_SIGN


def test_docs_example_post_body_vector():
    payload = '{"category": "option"}'
    expected = "9bada36eb7c33a2723028d84d0ee4b01d52abedd3ca9c79e2e8ba88a958b373a"
    ts = 1658385579423
    assert sign(api_secret=VEC_SECRET, timestamp_ms=ts, api_key=VEC_KEY, recv_window=5000, payload=payload) == expected


def test_query_string_is_sorted_and_drops_none():
    params = {"symbol": "BTCUSDT", "openOnly": 0, "category": "linear", "limit": 50, "cursor": None}
    assert query_string(params) == GET_QUERY


def test_query_string_passes_cursor_percent_escapes_through_unchanged():
    cursor = "page_args%3Dfd4300ae-7847-404e-b947-b46980a4d140%26symbol%3D6%26"
    assert query_string({"cursor": cursor}) == f"cursor={cursor}"
    # a bare '%' that is not an escape, and a space, are encoded (and signed encoded)
    assert query_string({"x": "a%zz b"}) == "x=a%25zz%20b"


def test_compact_json_body_from_decimals_matches_vector():
    params = {**POST_PARAMS, "qty": Decimal("0.001"), "price": Decimal("25000"), "reduceOnly": None}
    body = json_body(params)
    assert body == json.dumps(POST_PARAMS, separators=(",", ":"))
    assert sign(api_secret=VEC_SECRET, timestamp_ms=VEC_TS, api_key=VEC_KEY, recv_window=5000, payload=body) == (
        POST_SIGN_COMPACT_BODY
    )


def test_decimals_never_use_exponent_notation():
    assert json.loads(json_body({"qty": Decimal("1E+1"), "price": Decimal("1E-8")})) == {
        "qty": "10",
        "price": "0.00000001",
    }


def test_floats_are_refused():
    with pytest.raises(TypeError, match="use Decimal"):
        json_body({"qty": 0.1})
    with pytest.raises(TypeError, match="use Decimal"):
        query_string({"qty": 0.1})


def test_auth_headers():
    headers = auth_headers(api_key=VEC_KEY, api_secret=VEC_SECRET, timestamp_ms=VEC_TS, recv_window=5000,
                           payload=GET_QUERY)  # fmt: skip
    assert headers == {
        "X-BAPI-API-KEY": VEC_KEY,
        "X-BAPI-TIMESTAMP": str(VEC_TS),
        "X-BAPI-RECV-WINDOW": "5000",
        "X-BAPI-SIGN": GET_SIGN,
        "X-BAPI-SIGN-TYPE": "2",
    }
    assert VEC_SECRET not in repr(headers)
