"""A minimal, independent Bybit V5 signer for driving the simulator over real HTTP in tests."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import httpx


def hmac_hex(secret: str, text: str) -> str:
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


class SignedHttp:
    def __init__(self, base_url: str, api_key: str = "sim-key", api_secret: str = "sim-secret", *,
                 timeout: float = 5.0) -> None:
        self.api_key, self.api_secret = api_key, api_secret
        self.client = httpx.Client(base_url=base_url, timeout=timeout)

    def headers(self, payload: str, *, ts: int | None = None, recv_window: str | None = "5000",
                sign: str | None = None) -> dict:
        ts = int(time.time() * 1000) if ts is None else ts
        window = recv_window if recv_window is not None else "5000"
        if sign is None:
            sign = hmac_hex(self.api_secret, f"{ts}{self.api_key}{window}{payload}")
        headers = {
            "X-BAPI-API-KEY": self.api_key,
            "X-BAPI-TIMESTAMP": str(ts),
            "X-BAPI-SIGN": sign,
            "Content-Type": "application/json",
        }
        if recv_window is not None:
            headers["X-BAPI-RECV-WINDOW"] = recv_window
        return headers

    def get_raw(self, path: str, query: str = "", **kw) -> httpx.Response:
        url = f"{path}?{query}" if query else path
        return self.client.get(url, headers=self.headers(query, **kw))

    def post_raw(self, path: str, body: str, **kw) -> httpx.Response:
        return self.client.post(path, content=body.encode(), headers=self.headers(body, **kw))

    def get(self, path: str, **params) -> dict:
        query = "&".join(f"{k}={v}" for k, v in params.items() if v is not None)
        response = self.get_raw(path, query)
        response.raise_for_status()
        return response.json()

    def post(self, path: str, **body) -> dict:
        response = self.post_raw(path, json.dumps(body))
        response.raise_for_status()
        return response.json()

    def order(self, **overrides) -> dict:
        body = {"category": "linear", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Limit", "qty": "0.010",
                "price": "60000.0", **overrides}
        return self.post("/v5/order/create", **{k: v for k, v in body.items() if v is not None})

    def control(self, path: str, body: dict | None = None) -> dict:
        response = self.client.post(path, json=body or {})
        assert response.status_code == 200, response.text
        return response.json()

    def close(self) -> None:
        self.client.close()
