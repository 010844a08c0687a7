"""Helpers for the client tests: a fake clock, and a scripted Bybit at the httpx transport edge."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections import deque
from collections.abc import Callable

import httpx
import pytest

from exchange.bybit.client import BybitClient
from exchange.bybit.retry import RetryPolicy

KEY = "test-key-0123"
SECRET = "test-secret-9f8e7d6c5b4a"
SERVER_MS = 1_700_000_000_000


class FakeClock:
    """Monotonic clock + sleep that only move when the client sleeps (no real waiting)."""

    def __init__(self, start: float = 1000.0):
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def envelope(result=None, *, code: int = 0, msg: str = "OK", time_ms: int = SERVER_MS) -> dict:
    return {
        "retCode": code,
        "retMsg": msg,
        "result": {} if result is None else result,
        "retExtInfo": {},
        "time": time_ms,
    }


class ScriptedBybit:
    """An httpx MockTransport handler: per path, a queue of answers (dicts, Responses or exceptions).

    Each request's signature is checked with an independent HMAC computation;
    ``/v5/market/time`` answers by itself unless scripted.
    """

    def __init__(self, *, server_ms: int = SERVER_MS):
        self.server_ms = server_ms
        self.scripts: dict[str, deque] = {}
        self.requests: list[httpx.Request] = []
        self.bad_signatures: list[str] = []

    def script(self, path: str, *answers) -> None:
        self.scripts.setdefault(path, deque()).extend(answers)

    def paths(self) -> list[str]:
        return [r.url.path for r in self.requests]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self._check_signature(request)
        queue = self.scripts.get(request.url.path)
        if queue:
            answer = queue.popleft()
        elif request.url.path == "/v5/market/time":
            answer = envelope({"timeSecond": str(self.server_ms // 1000), "timeNano": str(self.server_ms * 10**6)})
        else:
            raise AssertionError(f"unscripted request {request.method} {request.url}")
        if isinstance(answer, Exception):
            raise answer
        if callable(answer):
            answer = answer(request)
        if isinstance(answer, httpx.Response):
            return answer
        return httpx.Response(200, json=answer)

    def _check_signature(self, request: httpx.Request) -> None:
        sign = request.headers.get("X-BAPI-SIGN")
        if sign is None:
            return
        payload = request.content.decode() if request.method == "POST" else request.url.query.decode()
        pre = request.headers["X-BAPI-TIMESTAMP"] + request.headers["X-BAPI-API-KEY"]
        pre += request.headers["X-BAPI-RECV-WINDOW"] + payload
        expected = hmac.new(SECRET.encode(), pre.encode(), hashlib.sha256).hexdigest()
        if expected != sign:
            self.bad_signatures.append(str(request.url))

    def bodies(self, path: str) -> list[dict]:
        return [json.loads(r.content) for r in self.requests if r.url.path == path and r.method == "POST"]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake_bybit() -> ScriptedBybit:
    return ScriptedBybit()


@pytest.fixture
def make_client(clock, fake_bybit) -> Callable[..., BybitClient]:
    clients = []

    def make(**overrides) -> BybitClient:
        options = dict(
            base_url="https://bybit.test",
            api_key=KEY,
            api_secret=SECRET,
            retry=RetryPolicy(max_attempts=4, base_delay=1.0, max_delay=8.0, multiplier=2.0, total_timeout=60.0),
            clock=clock,
            sleep=clock.sleep,
            wall_clock=lambda: SERVER_MS / 1000,
            transport=httpx.MockTransport(fake_bybit),
        )
        options.update(overrides)
        client = BybitClient(**options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
