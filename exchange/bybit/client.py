"""Bybit V5 REST client: the only code in the service that speaks HTTP to Bybit.

One instance per process (:func:`get_client`), shared by every thread: httpx
keeps a pool of keep-alive connections, and the clock offset and rate-limit
state sit behind locks.

Request life cycle (one *operation* = one public method call):
1. bad input is refused before anything is sent (ValueError);
2. per attempt: wait for the endpoint's rate-limit window if its budget is
   spent, sign the exact bytes that are sent, send, audit the attempt
   (one ExchangeCall row), check HTTP status then retCode;
3. retryable failures back off (exponential, jittered) within
   ``RetryPolicy.max_attempts`` and ``total_timeout``.

Order create is the exception to 3: after an ambiguous outcome the order is
looked up by orderLinkId and only sent again when the exchange has none, so a
lost response can never produce a second order.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Any

import httpx
import structlog
from django.conf import settings

from exchange.audit import exchange_call_record, response_for_audit
from exchange.bybit import errors as E
from exchange.bybit.ratelimit import RESET_HEADER, RateLimiter
from exchange.bybit.retry import RetryPolicy
from exchange.bybit.signing import auth_headers, json_body, query_string, wire_value
from exchange.bybit.types import (
    ExecutionInfo,
    InstrumentInfo,
    MalformedPayload,
    OrderAck,
    OrderInfo,
    PositionInfo,
    Ticker,
    WalletBalance,
)
from ordermanager import metrics

logger = structlog.get_logger("exchange.bybit")
_STDLIB_LOGGER = logging.getLogger("exchange.bybit")

ENV_BASE_URLS = {
    "mainnet": "https://api.bybit.com",
    "testnet": "https://api-testnet.bybit.com",
    "demo": "https://api-demo.bybit.com",
}
DRY_RUN_PREFIX = "[DRY-RUN]"
GET, POST = "GET", "POST"
TIME_PATH = "/v5/market/time"

ORDER_LINK_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,36}$")
SIDES = ("Buy", "Sell")
ORDER_TYPES = ("Market", "Limit")
TIME_IN_FORCE = ("GTC", "IOC", "FOK", "PostOnly")
POSITION_MODES = (0, 3)  # 0 one-way ("merged single"), 3 hedge ("both sides")
WINDOW_MS = 7 * 24 * 3600 * 1000  # history/execution queries accept at most 7 days per request
MAX_RATE_LIMIT_WAIT = 10.0  # seconds; caps a wait derived from a (possibly bogus) reset timestamp
CANCEL_ALL_BATCH = 500  # futures cancel-all removes at most 500 orders (chosen at random) per call
_HEX64 = re.compile(r"\b[0-9a-fA-F]{64}\b")
# An answer that took longer than this says too little about the server clock to move the offset.
_MAX_RTT_FOR_OFFSET_MS = 1000
# Added to a rate-limit reset on top of the offset's own error: ms rounding of the header and of our clock.
_RESET_SLACK_MS = 5


@dataclass
class _Op:
    """Context of one operation: its deadline and what its audit rows carry."""

    deadline: float
    trace_id: str = ""
    order_link_id: str = ""


class _NoCookies(httpx.Cookies):
    """A cookie jar that keeps nothing: Bybit's REST API authenticates every request by its signature."""

    def extract_cookies(self, response: httpx.Response) -> None:
        pass


class _CookielessClient(httpx.Client):
    """An httpx client that neither keeps the cookies a response sets (a load balancer's) nor sends any back.

    The exchange needs none, and a request should carry nothing but what is signed. httpx parsed every response
    into its cookie jar through ``http.cookiejar``: about a tenth of the CPU of an order's create request
    (docs/decisions/0330, the ninth session)."""

    @property
    def cookies(self) -> httpx.Cookies:
        return _NO_COOKIES

    @cookies.setter
    def cookies(self, cookies) -> None:  # httpx's constructor sets the client's cookies: there are none to keep
        pass


_NO_COOKIES = _NoCookies()


class BybitClient:
    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        api_secret: str,
        recv_window: int = 5000,
        timeout: float = 5.0,
        retry: RetryPolicy | None = None,
        dry_run: bool = False,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        audit: bool = True,
        wall_clock: Callable[[], float] = time.time,
        transport: httpx.BaseTransport | None = None,
        rate_limiter: RateLimiter | None = None,
        max_pages: int = 1000,
    ):
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self._api_secret = api_secret
        self.recv_window = recv_window
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.dry_run = dry_run
        self.clock = clock
        self.sleep = sleep
        self.audit = audit
        self.wall_clock = wall_clock
        self.rate_limiter = rate_limiter or RateLimiter()
        self.max_pages = max_pages
        self._offset_ms = 0  # server time minus local wall time
        self._offset_error_ms = 0  # how far the offset may be off (half the round trip that measured it)
        self._offset_synced = False
        self._time_lock = threading.Lock()
        self._http = _CookielessClient(
            transport=transport,
            timeout=timeout,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32, keepalive_expiry=30),
            headers={"User-Agent": "ordermanager-bybit/1"},
        )

    def __repr__(self) -> str:  # never show credentials, not even in a traceback's locals
        return f"BybitClient(base_url={self.base_url!r}, dry_run={self.dry_run})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> BybitClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def has_credentials(self) -> bool:
        return bool(self.api_key and self._api_secret)

    # ------------------------------------------------------------------ orders

    def create_order(
        self,
        *,
        category: str,
        symbol: str,
        side: str,
        order_type: str,
        qty: Decimal,
        price: Decimal | None = None,
        time_in_force: str | None = None,
        reduce_only: bool = False,
        position_idx: int = 0,
        order_link_id: str,
        trace_id: str = "",
    ) -> OrderAck:
        """Place one order; never creates it twice (see the module docstring)."""
        body = _create_body(
            category=category, symbol=symbol, side=side, order_type=order_type, qty=qty, price=price,
            time_in_force=time_in_force, reduce_only=reduce_only, position_idx=position_idx,
            order_link_id=order_link_id,
        )  # fmt: skip
        path = "/v5/order/create"
        if self.dry_run:
            return self._dry_run_ack("create_order", path, body, order_link_id=order_link_id, trace_id=trace_id)
        op = self._op(trace_id=trace_id, order_link_id=order_link_id)
        failures = 0
        saw_ambiguous = False
        while True:
            try:
                result = self._attempt(POST, path, body, op=op, attempt=failures + 1)["result"]
                return OrderAck(order_id=str(result.get("orderId") or ""), order_link_id=order_link_id)
            except E.BybitDuplicateOrderError as exc:
                # 110072: an earlier attempt (or an earlier process) did place it.
                return self._await_existing_order(category, symbol, order_link_id, op=op, cause=exc)
            except E.BybitError as exc:
                failures += 1
                if exc.ambiguous:
                    saw_ambiguous = True
                    ack = self._lookup_after_ambiguous(category, symbol, order_link_id, op=op, cause=exc)
                    if ack is not None:
                        return ack
                    # Not there now: sending again with the same orderLinkId is safe (the exchange keeps one order
                    # per orderLinkId). It is not proof the earlier request will never take effect (below).
                if not exc.retryable or failures >= self.retry.max_attempts:
                    if saw_ambiguous and not exc.ambiguous:
                        # An earlier attempt's outcome is unknown, and the exchange may still apply a request it
                        # received late (within its recv window): this last answer is about this attempt only,
                        # so nothing may say the order was not placed (docs/decisions/0210).
                        exc.ambiguous = True
                        exc.after_ambiguous_attempt = True
                        logger.error("bybit_create_outcome_unknown", order_link_id=order_link_id,
                                     trace_id=op.trace_id, cause=str(exc))  # fmt: skip
                    raise
                self._backoff(exc, failures, op)

    def amend_order(
        self,
        *,
        category: str,
        symbol: str,
        order_id: str | None = None,
        order_link_id: str | None = None,
        qty: Decimal | None = None,
        price: Decimal | None = None,
        trace_id: str = "",
    ) -> OrderAck:
        _require_order_ref(order_id, order_link_id)
        if qty is None and price is None:
            raise ValueError("amend_order needs a new qty or a new price")
        if qty is not None:
            _positive("qty", qty)
        if price is not None:
            _positive("price", price)
        body = {"category": category, "symbol": symbol, "orderId": order_id, "orderLinkId": order_link_id,
                "qty": qty, "price": price}  # fmt: skip
        path = "/v5/order/amend"
        if self.dry_run:
            return self._dry_run_ack("amend_order", path, body, order_link_id=order_link_id or order_id or "",
                                     trace_id=trace_id)  # fmt: skip
        # Amend sets absolute values, so repeating it after an ambiguous outcome is harmless.
        result = self._call(POST, path, body, trace_id=trace_id, order_link_id=order_link_id or "")["result"]
        return _ack(result, order_id, order_link_id)

    def cancel_order(
        self,
        *,
        category: str,
        symbol: str,
        order_id: str | None = None,
        order_link_id: str | None = None,
        trace_id: str = "",
    ) -> OrderAck:
        _require_order_ref(order_id, order_link_id)
        body = {"category": category, "symbol": symbol, "orderId": order_id, "orderLinkId": order_link_id}
        path = "/v5/order/cancel"
        if self.dry_run:
            return self._dry_run_ack("cancel_order", path, body, order_link_id=order_link_id or order_id or "",
                                     trace_id=trace_id)  # fmt: skip
        try:
            result = self._call(POST, path, body, trace_id=trace_id, order_link_id=order_link_id or "")["result"]
        except (E.BybitOrderNotFoundError, E.BybitOrderClosedError) as exc:
            if not exc.after_ambiguous_attempt:
                raise
            # An earlier attempt's answer was lost; if that attempt cancelled the order, report success.
            info = self.get_order(category=category, symbol=symbol, order_id=order_id, order_link_id=order_link_id)
            if info is None or info.order_status not in ("Cancelled", "Deactivated"):
                raise
            return OrderAck(order_id=info.order_id, order_link_id=info.order_link_id, resolved_existing=True)
        return _ack(result, order_id, order_link_id)

    def cancel_all_orders(self, *, category: str, symbol: str, trace_id: str = "") -> list[OrderAck]:
        body = {"category": category, "symbol": symbol}
        path = "/v5/order/cancel-all"
        if self.dry_run:
            self._dry_run_log("cancel_all_orders", path, body, order_link_id="", trace_id=trace_id)
            return []
        acks: list[OrderAck] = []
        # Futures cancel-all removes at most 500 orders per call; repeat while a call was full.
        for _ in range(self.max_pages):
            items = (self._call(POST, path, body, trace_id=trace_id)["result"] or {}).get("list") or []
            acks.extend(_ack(item, None, None) for item in items)
            if len(items) < CANCEL_ALL_BATCH:
                break
        return acks

    def get_open_orders(
        self, *, category: str, symbol: str | None = None, settle_coin: str = "USDT"
    ) -> list[OrderInfo]:
        params = {"category": category, "openOnly": 0, "limit": 50, **_scope(category, symbol, settle_coin)}
        return [OrderInfo.from_api(i, category=category) for i in self._paginate("/v5/order/realtime", params)]

    def get_order(
        self, *, category: str, symbol: str, order_link_id: str | None = None, order_id: str | None = None
    ) -> OrderInfo | None:
        """The order by id, from /realtime (open and recent closed), then /history; None if neither has it."""
        _require_order_ref(order_id, order_link_id)
        return self._find_order(category, symbol, order_id=order_id, order_link_id=order_link_id,
                                op=self._op(order_link_id=order_link_id or ""))  # fmt: skip

    def get_order_history(
        self, *, category: str, symbol: str | None = None, start_ms: int | None = None, end_ms: int | None = None
    ) -> list[OrderInfo]:
        items = self._windowed("/v5/order/history", {"category": category, "symbol": symbol, "limit": 50},
                               start_ms, end_ms)  # fmt: skip
        return [OrderInfo.from_api(i, category=category) for i in items]

    def get_executions(
        self,
        *,
        category: str,
        symbol: str | None = None,
        order_id: str | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
        refused: list[tuple[dict, str]] | None = None,
    ) -> list[ExecutionInfo]:
        """Executions, newest first. An item that cannot be parsed (a required field missing, a
        decimal not in JSON notation) raises ``MalformedPayload``, unless ``refused`` is given:
        then it is appended there as (raw item, reason) and the others are returned."""
        params = {"category": category, "symbol": symbol, "orderId": order_id, "limit": 100}
        items = self._windowed("/v5/execution/list", params, start_ms, end_ms)
        parsed = []
        for item in items:
            try:
                parsed.append(ExecutionInfo.from_api(item, category=category))
            except (TypeError, ValueError) as exc:  # MalformedPayload is a ValueError
                if refused is None:
                    raise MalformedPayload(f"execution {item.get('execId')!r}: {exc}") from None
                refused.append((item, str(exc)))
        return parsed

    # ------------------------------------------------------- account and market

    def get_positions(
        self, *, category: str, symbol: str | None = None, settle_coin: str = "USDT"
    ) -> list[PositionInfo]:
        params = {"category": category, "limit": 200, **_scope(category, symbol, settle_coin)}
        return [PositionInfo.from_api(i, category=category) for i in self._paginate("/v5/position/list", params)]

    def get_wallet_balance(self, *, account_type: str = "UNIFIED", coin: str = "USDT") -> WalletBalance:
        params = {"accountType": account_type, "coin": coin or None}
        accounts = (self._call(GET, "/v5/account/wallet-balance", params)["result"] or {}).get("list") or []
        if not accounts:
            raise E.BybitError(
                f"wallet-balance returned no {account_type} account", endpoint="/v5/account/wallet-balance"
            )
        return WalletBalance.from_api(accounts[0])

    def get_instruments(self, *, category: str, symbol: str | None = None) -> list[InstrumentInfo]:
        params = {"category": category, "symbol": symbol, "limit": 1000}
        items = self._paginate("/v5/market/instruments-info", params, signed=False)
        return [InstrumentInfo.from_api(i, category=category) for i in items]

    def get_tickers(self, *, category: str, symbol: str | None = None) -> list[Ticker]:
        result = self._call(GET, "/v5/market/tickers", {"category": category, "symbol": symbol}, signed=False)["result"]
        return [Ticker.from_api(i) for i in (result or {}).get("list") or []]

    def switch_position_mode(self, *, category: str, symbol: str, mode: int) -> None:
        if mode not in POSITION_MODES:
            raise ValueError(f"mode={mode!r} is not a position mode; use 0 (one-way) or 3 (hedge)")
        body = {"category": category, "symbol": symbol, "mode": mode}
        path = "/v5/position/switch-mode"
        if self.dry_run:
            self._dry_run_log("switch_position_mode", path, body, order_link_id="", trace_id="")
            return
        try:
            self._call(POST, path, body)
        except E.BybitError as exc:
            if exc.ret_code != 110025:  # "already in this mode": the goal is reached
                raise

    def get_server_time_ms(self) -> int:
        """Bybit's clock (ms); also re-measures the offset used for request timestamps."""
        return self._sync_time(self._op())

    # --------------------------------------------------------------- internals

    def _op(self, *, trace_id: str = "", order_link_id: str = "") -> _Op:
        # The trace of the signal being handled wins (a stale order of another signal cancelled on its behalf);
        # outside a signal's work the caller's (the order's). docs/decisions/0322.
        trace_id = str(structlog.contextvars.get_contextvars().get("trace_id") or "") or trace_id
        return _Op(deadline=self.clock() + self.retry.total_timeout, trace_id=trace_id, order_link_id=order_link_id)

    def _call(
        self,
        method: str,
        path: str,
        params: dict,
        *,
        signed: bool = True,
        trace_id: str = "",
        order_link_id: str = "",
        op: _Op | None = None,
    ) -> dict:
        """One operation that may be repeated freely (reads, cancels, amends): retry what is retryable."""
        op = op or self._op(trace_id=trace_id, order_link_id=order_link_id)
        failures = 0
        saw_ambiguous = False
        while True:
            try:
                return self._attempt(method, path, params, op=op, attempt=failures + 1, signed=signed)
            except E.BybitError as exc:
                failures += 1
                if saw_ambiguous:
                    exc.after_ambiguous_attempt = True
                saw_ambiguous = saw_ambiguous or exc.ambiguous
                if not exc.retryable or failures >= self.retry.max_attempts:
                    raise
                self._backoff(exc, failures, op)

    def _backoff(self, exc: E.BybitError, failures: int, op: _Op) -> None:
        """Wait before the next attempt, or re-raise ``exc`` if that wait would pass the deadline."""
        if isinstance(exc, E.BybitTimestampError):
            self._sync_time(op, quiet=True)
            delay = 0.0  # re-signing with a corrected timestamp is enough
        elif isinstance(exc, E.BybitRateLimitError) and exc.reset_at_ms is not None:
            # The reset time is authoritative (Bybit windows are one second); only a bogus header is capped.
            delay = min(MAX_RATE_LIMIT_WAIT, self.rate_limiter.wait_time(exc.endpoint, now=self.clock()))
            metrics.exchange_rate_limit_waited(delay if self.clock() + delay < op.deadline else 0)
        else:
            delay = self.retry.delay(failures)
        if self.clock() + delay >= op.deadline:
            raise exc
        logger.warning(
            "bybit_retry", endpoint=exc.endpoint, error=type(exc).__name__, ret_code=exc.ret_code,
            http_status=exc.http_status, failures=failures, delay_s=round(delay, 3), trace_id=op.trace_id,
            order_link_id=op.order_link_id,
        )  # fmt: skip
        if delay > 0:
            self.sleep(delay)

    def _attempt(self, method: str, path: str, params: dict, *, op: _Op, attempt: int, signed: bool = True) -> dict:
        """Send one request and return its envelope, or raise the mapped error. Audited either way."""
        if signed and not self.has_credentials:
            raise E.BybitAuthError("no Bybit API credentials configured", endpoint=path, trace_id=op.trace_id)
        if signed:
            self._ensure_time_synced(op)
        self._pace(path, op)
        request = self._build_request(method, path, params, signed=signed)
        http_status = ret_code = response = envelope = None
        ret_msg = error = ""
        started = time.perf_counter()  # latency is real time even when tests inject a fake clock
        try:
            response = self._send(request, path, op)
            http_status = response.status_code
            self.rate_limiter.update(
                path, response.headers, now=self.clock(), server_now_ms=self._server_now_ms_earliest()
            )
            envelope = self._check(response, path, op)
            ret_code, ret_msg = envelope["retCode"], self._scrub(str(envelope.get("retMsg", "")))
            return envelope
        except E.BybitError as exc:
            ret_code = exc.ret_code if ret_code is None else ret_code
            ret_msg = ret_msg or exc.ret_msg
            error = f"{type(exc).__name__}: {exc.message}"
            raise
        finally:
            metrics.exchange_request_observe(endpoint=path, seconds=time.perf_counter() - started,
                                             http_status=http_status, ret_code=ret_code, failed=bool(error))
            latency_ms = int((time.perf_counter() - started) * 1000)
            self._record(method, path, params, http_status, ret_code, ret_msg, latency_ms, attempt, op, error,
                         response=response, envelope=envelope)  # fmt: skip

    def _build_request(self, method: str, path: str, params: dict, *, signed: bool) -> httpx.Request:
        headers: dict[str, str] = {}
        if method == GET:
            payload = query_string(params)
            url = httpx.URL(f"{self.base_url}{path}?{payload}" if payload else f"{self.base_url}{path}")
            if payload and url.query.decode("ascii") != payload:
                # Bybit verifies the signature over the bytes that arrive; refuse to send anything else.
                raise E.BybitInvalidRequestError(f"query string would be re-encoded in transit: {payload!r}",
                                                 endpoint=path)  # fmt: skip
            content = None
        else:
            payload = json_body(params)
            url = httpx.URL(f"{self.base_url}{path}")
            content = payload.encode("utf-8")
            headers["Content-Type"] = "application/json"
        if signed:
            headers.update(
                auth_headers(api_key=self.api_key, api_secret=self._api_secret, timestamp_ms=self._server_now_ms(),
                             recv_window=self.recv_window, payload=payload)
            )  # fmt: skip
        return self._http.build_request(method, url, content=content, headers=headers)

    def _send(self, request: httpx.Request, path: str, op: _Op) -> httpx.Response:
        remaining = max(0.05, op.deadline - self.clock())
        timeout = min(self.timeout, remaining)
        request.extensions["timeout"] = httpx.Timeout(timeout).as_dict()
        wall_sent = self.wall_clock()
        try:
            response = self._http.send(request)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol) as exc:
            # Nothing reached the exchange: connection refused/not established, or no pooled connection free.
            raise E.BybitConnectError(f"request not sent: {type(exc).__name__}: {exc}", endpoint=path,
                                      trace_id=op.trace_id) from None  # fmt: skip
        except httpx.TransportError as exc:
            # Timeout or reset after (part of) the request went out: the exchange may have acted on it.
            raise E.BybitTransportError(f"no answer: {type(exc).__name__}: {exc}", endpoint=path,
                                        trace_id=op.trace_id) from None  # fmt: skip
        response.read()
        self._observe_time(response, wall_sent, self.wall_clock())
        return response

    def _check(self, response: httpx.Response, path: str, op: _Op) -> dict:
        status = response.status_code
        if status != 200:
            cls = E.error_class_for_http_status(status)
            exc = cls(f"HTTP {status} from Bybit", http_status=status, endpoint=path, trace_id=op.trace_id,
                      ret_msg=self._scrub(response.text[:200]))  # fmt: skip
            self._note_rate_limit(exc, response, path)
            raise exc
        try:
            envelope = response.json()
            ret_code = int(envelope["retCode"])
        except (ValueError, KeyError, TypeError):
            # A 200 we cannot read is as good as no answer: the request may have been executed.
            raise E.BybitTransportError("unreadable answer (no JSON envelope)", http_status=status, endpoint=path,
                                        trace_id=op.trace_id) from None  # fmt: skip
        envelope["retCode"] = ret_code
        if ret_code != 0:
            ret_msg = self._scrub(str(envelope.get("retMsg", "")))
            cls = E.error_class_for_ret_code(ret_code)
            exc = cls(f"Bybit rejected {path}: {ret_msg}", ret_code=ret_code, ret_msg=ret_msg, http_status=status,
                      endpoint=path, trace_id=op.trace_id)  # fmt: skip
            self._note_rate_limit(exc, response, path)
            raise exc
        return envelope

    def _note_rate_limit(self, exc: E.BybitError, response: httpx.Response, path: str) -> None:
        if not isinstance(exc, E.BybitRateLimitError):
            return
        try:
            exc.reset_at_ms = int(response.headers.get(RESET_HEADER, ""))
        except ValueError:
            return
        reset_in_ms = exc.reset_at_ms - self._server_now_ms_earliest()
        self.rate_limiter.exhausted(path, reset_at=self.clock() + reset_in_ms / 1000)

    def _pace(self, path: str, op: _Op) -> None:
        """Wait until ``path``'s rate-limit window has budget (or raise if that is past the deadline)."""
        while (wait := self.rate_limiter.reserve(path, now=self.clock())) > 0:
            wait = min(wait, MAX_RATE_LIMIT_WAIT)
            if self.clock() + wait >= op.deadline:
                raise E.BybitRateLimitError("rate-limit window resets after this operation's deadline",
                                            endpoint=path, trace_id=op.trace_id)  # fmt: skip
            logger.info("bybit_rate_limit_wait", endpoint=path, wait_s=round(wait, 3), trace_id=op.trace_id)
            metrics.exchange_rate_limit_waited(wait)
            self.sleep(wait)

    # --- server clock

    def _server_now_ms(self) -> int:
        return int(self.wall_clock() * 1000) + self._offset_ms

    def _server_now_ms_earliest(self) -> int:
        """The earliest the server's clock can read now, given the offset's error.

        A rate-limit reset is converted with this, so the client waits until the window is surely over on the
        server: sending a few ms early spends a request on a 10006, waiting a few ms late costs nothing.
        """
        return self._server_now_ms() - self._offset_error_ms - _RESET_SLACK_MS

    def _ensure_time_synced(self, op: _Op) -> None:
        if self._offset_synced:
            return
        with self._time_lock:  # one measurement, not one per thread racing through start-up
            if not self._offset_synced:
                self._sync_time(op, quiet=True)

    def _sync_time(self, op: _Op, *, quiet: bool = False) -> int:
        """Measure the offset to Bybit's clock with /v5/market/time; returns server ms."""
        try:
            envelope = self._attempt(GET, TIME_PATH, {}, op=op, attempt=1, signed=False)
        except E.BybitError:
            if not quiet:
                raise
            # Sign with the current offset this time; the next signed call measures again.
            logger.warning("bybit_time_sync_failed", trace_id=op.trace_id)
            return self._server_now_ms()
        result = envelope.get("result") or {}
        if result.get("timeNano"):
            return int(result["timeNano"]) // 1_000_000
        if result.get("timeSecond"):
            return int(result["timeSecond"]) * 1000
        return int(envelope.get("time") or self._server_now_ms())

    def _observe_time(self, response: httpx.Response, wall_sent: float, wall_received: float) -> None:
        """Track clock skew from every answer's ``time`` field (Bybit stamps it while serving the request)."""
        rtt_ms = (wall_received - wall_sent) * 1000
        slow = rtt_ms > _MAX_RTT_FOR_OFFSET_MS and response.request.url.path != TIME_PATH
        if slow or response.status_code != 200:
            return
        try:
            server_ms = int(response.json()["time"])
        except (ValueError, KeyError, TypeError):
            return
        # The server read its clock somewhere between send and receipt; the midpoint errs by at most rtt/2.
        self._offset_ms = server_ms - int((wall_sent + wall_received) * 500)
        self._offset_error_ms = math.ceil(rtt_ms / 2) + 1  # + 1: the int() above truncates
        self._offset_synced = True

    # --- paging

    def _paginate(self, path: str, params: dict, *, signed: bool = True) -> list[dict]:
        return list(self._iter_pages(path, params, signed=signed))

    def _iter_pages(self, path: str, params: dict, *, signed: bool) -> Iterator[dict]:
        cursor = ""
        seen: set[str] = set()
        for _ in range(self.max_pages):
            page_params = {**params, "cursor": cursor or None}
            result = self._call(GET, path, page_params, signed=signed)["result"] or {}
            yield from result.get("list") or []
            cursor = result.get("nextPageCursor") or ""
            if not cursor:
                return
            if cursor in seen:
                raise E.BybitError(f"pagination of {path} returned cursor {cursor!r} twice", endpoint=path)
            seen.add(cursor)
        raise E.BybitError(f"pagination of {path} exceeded {self.max_pages} pages", endpoint=path)

    def _windowed(self, path: str, params: dict, start_ms: int | None, end_ms: int | None) -> list[dict]:
        """All pages, split into <= 7-day windows when the requested range is longer."""
        if start_ms is None or end_ms is None or end_ms - start_ms <= WINDOW_MS:
            return self._paginate(path, {**params, "startTime": start_ms, "endTime": end_ms})
        if end_ms < start_ms:
            raise ValueError(f"end_ms={end_ms} is before start_ms={start_ms}")
        items: list[dict] = []
        window_start = start_ms
        while window_start <= end_ms:
            window_end = min(end_ms, window_start + WINDOW_MS)
            items.extend(self._paginate(path, {**params, "startTime": window_start, "endTime": window_end}))
            window_start = window_end + 1
        return items

    # --- create resolution

    def _find_order(
        self, category: str, symbol: str, *, order_id: str | None, order_link_id: str | None, op: _Op
    ) -> OrderInfo | None:
        ref = {"category": category, "symbol": symbol, "orderId": order_id, "orderLinkId": order_link_id}
        for path in ("/v5/order/realtime", "/v5/order/history"):
            items = (self._call(GET, path, ref, op=op)["result"] or {}).get("list") or []
            for item in items:
                if (order_id and str(item.get("orderId")) == order_id) or (
                    order_link_id and item.get("orderLinkId") == order_link_id
                ):
                    return OrderInfo.from_api(item, category=category)
        return None

    def _lookup_after_ambiguous(
        self, category: str, symbol: str, order_link_id: str, *, op: _Op, cause: E.BybitError
    ) -> OrderAck | None:
        """The order if the exchange has it, None if it confirms it has not; raises ``cause`` if we cannot tell."""
        try:
            info = self._find_order(category, symbol, order_id=None, order_link_id=order_link_id, op=op)
        except E.BybitError as lookup_error:
            logger.error("bybit_create_outcome_unknown", order_link_id=order_link_id, trace_id=op.trace_id,
                         cause=str(cause), lookup_error=str(lookup_error))  # fmt: skip
            raise cause from lookup_error
        if info is None:
            return None
        logger.info("bybit_create_resolved_existing", order_link_id=order_link_id, order_id=info.order_id,
                    status=info.order_status, trace_id=op.trace_id)  # fmt: skip
        return OrderAck(order_id=info.order_id, order_link_id=order_link_id, resolved_existing=True)

    def _await_existing_order(
        self, category: str, symbol: str, order_link_id: str, *, op: _Op, cause: E.BybitError
    ) -> OrderAck:
        """After 110072 the order exists; it may take a moment to become visible to queries."""
        for failures in range(1, self.retry.max_attempts + 1):
            ack = self._lookup_after_ambiguous(category, symbol, order_link_id, op=op, cause=cause)
            if ack is not None:
                return ack
            if failures < self.retry.max_attempts:
                self._backoff(cause, failures, op)
        raise cause

    # --- audit, dry-run, scrubbing

    def _record(self, method, path, params, http_status, ret_code, ret_msg, latency_ms, attempt, op, error, *,
                response: httpx.Response | None = None, envelope: dict | None = None) -> None:  # fmt: skip
        if _STDLIB_LOGGER.isEnabledFor(logging.DEBUG):  # a dropped structlog line still costs its processors
            logger.debug(
                "bybit_call", method=method, path=path, http_status=http_status, ret_code=ret_code,
                latency_ms=latency_ms, attempt=attempt, trace_id=op.trace_id, order_link_id=op.order_link_id,
            )  # fmt: skip
        if not self.audit:
            return
        body, size, cut = ("", None, False) if response is None else response_for_audit(
            response.content, envelope, self._scrub)  # fmt: skip
        exchange_call_record(
            method=method, path=path, params=_jsonable(params), http_status=http_status, ret_code=ret_code,
            ret_msg=self._scrub(ret_msg), latency_ms=latency_ms, attempt=attempt, trace_id=op.trace_id,
            order_link_id=op.order_link_id or str(params.get("orderLinkId") or ""), error=self._scrub(error),
            response_body=body, response_bytes=size, response_truncated=cut,
        )  # fmt: skip

    def _dry_run_log(self, action: str, path: str, params: dict, *, order_link_id: str, trace_id: str) -> None:
        logger.info(f"{DRY_RUN_PREFIX} {action}", action=action, path=path, params=_jsonable(params),
                    order_link_id=order_link_id, trace_id=trace_id, dry_run=True)  # fmt: skip
        if self.audit:
            exchange_call_record(
                method=POST, path=path, params=_jsonable(params), http_status=None, ret_code=None,
                ret_msg=f"{DRY_RUN_PREFIX} not sent", latency_ms=0, attempt=1, trace_id=trace_id,
                order_link_id=order_link_id, dry_run=True,
            )  # fmt: skip

    def _dry_run_ack(self, action: str, path: str, params: dict, *, order_link_id: str, trace_id: str) -> OrderAck:
        self._dry_run_log(action, path, params, order_link_id=order_link_id, trace_id=trace_id)
        return OrderAck(order_id=f"dry-run-{order_link_id}", order_link_id=order_link_id, dry_run=True)

    def _scrub(self, text: str) -> str:
        """Remove credentials and anything shaped like a signature from text that leaves the client."""
        if not text:
            return text
        if self._api_secret:
            text = text.replace(self._api_secret, "***")
        if self.api_key and len(self.api_key) >= 6:
            text = text.replace(self.api_key, "***")
        return _HEX64.sub("***", text)


# ---------------------------------------------------------------------- helpers


def _create_body(
    *,
    category: str,
    symbol: str,
    side: str,
    order_type: str,
    qty: Decimal,
    price: Decimal | None,
    time_in_force: str | None,
    reduce_only: bool,
    position_idx: int,
    order_link_id: str,
) -> dict[str, Any]:
    if not ORDER_LINK_ID_RE.match(order_link_id or ""):
        raise ValueError(f"order_link_id={order_link_id!r} must be 1-36 characters of [A-Za-z0-9_-]")
    if side not in SIDES:
        raise ValueError(f"side={side!r} must be one of {SIDES}")
    if order_type not in ORDER_TYPES:
        raise ValueError(f"order_type={order_type!r} must be one of {ORDER_TYPES}")
    if time_in_force is not None and time_in_force not in TIME_IN_FORCE:
        raise ValueError(f"time_in_force={time_in_force!r} must be one of {TIME_IN_FORCE}")
    if position_idx not in (0, 1, 2):
        raise ValueError(f"position_idx={position_idx!r} must be 0 (one-way), 1 (hedge long) or 2 (hedge short)")
    _positive("qty", qty)
    if order_type == "Limit":
        if price is None:
            raise ValueError("a Limit order needs a price")
        _positive("price", price)
    else:
        price = None  # Bybit ignores a Market order's price; not sending it keeps the audit row truthful
    # Key order is the wire order; it matches Bybit's documented examples.
    return {
        "category": category,
        "symbol": symbol,
        "side": side,
        "orderType": order_type,
        "qty": qty,
        "price": price,
        "timeInForce": time_in_force,
        "positionIdx": position_idx,
        "orderLinkId": order_link_id,
        "reduceOnly": True if reduce_only else None,
    }


def _positive(name: str, value: Decimal) -> None:
    if not isinstance(value, Decimal):
        raise TypeError(f"{name} must be a Decimal, got {type(value).__name__}")
    if not value.is_finite() or value <= 0:
        raise ValueError(f"{name}={value} must be a positive finite decimal")


def _require_order_ref(order_id: str | None, order_link_id: str | None) -> None:
    if not order_id and not order_link_id:
        raise ValueError("give order_id or order_link_id")


def _scope(category: str, symbol: str | None, settle_coin: str) -> dict[str, Any]:
    # Linear queries need a symbol or a settle coin; spot needs neither.
    if symbol:
        return {"symbol": symbol}
    return {"settleCoin": settle_coin} if category != "spot" and settle_coin else {}


def _ack(result: dict | None, order_id: str | None, order_link_id: str | None) -> OrderAck:
    result = result or {}
    return OrderAck(
        order_id=str(result.get("orderId") or order_id or ""),
        order_link_id=str(result.get("orderLinkId") or order_link_id or ""),
    )


def _jsonable(params: dict) -> dict:
    return {k: (wire_value(v) if isinstance(v, Decimal) else v) for k, v in params.items() if v is not None}


def base_url_from_settings() -> str:
    if settings.BYBIT_BASE_URL:
        return settings.BYBIT_BASE_URL
    if settings.BYBIT_ENV == "simulator":
        return f"http://{settings.SIMULATOR_HOST}:{settings.SIMULATOR_PORT}"
    return ENV_BASE_URLS[settings.BYBIT_ENV]


@lru_cache(maxsize=1)
def get_client() -> BybitClient:
    """The process-wide client, configured from settings (``get_client.cache_clear()`` in tests)."""
    return BybitClient(
        base_url=base_url_from_settings(),
        api_key=settings.BYBIT_API_KEY,
        api_secret=settings.BYBIT_API_SECRET,
        recv_window=settings.BYBIT_RECV_WINDOW,
        timeout=settings.BYBIT_HTTP_TIMEOUT,
        retry=RetryPolicy.from_settings(),
        dry_run=settings.ENABLE_DRY_RUN,
    )
