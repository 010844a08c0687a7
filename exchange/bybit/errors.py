"""The one error family of the Bybit client.

Two questions decide what a caller may do after a failure, and every class
answers both as class attributes:

- ``retryable``: sending the same request again can succeed (rate limit,
  timestamp, transport trouble). Final errors (bad parameters, balance, auth,
  unknown order) will fail the same way again.
- ``ambiguous``: for a write, the outcome is unknown: the exchange may have
  executed it (timeout after sending, connection reset, 5xx, retCode 10000/10016).
  A create after an ambiguous error must be looked up by orderLinkId before it
  is sent again.
- ``refused``: an answer with a retCode from this class means the exchange judged
  the request itself and said no, so nothing was placed. False where the answer
  is about us, not the order (throttling, credentials, clock) or where nothing
  reached the exchange; a failed order is then ``failed``, not ``rejected``.

Messages are built from retCode/retMsg/endpoint only; the client scrubs the
key, secret and signature out of ``ret_msg`` before an error is raised.
"""

from __future__ import annotations


class BybitError(Exception):
    """A Bybit call failed. Carries what support needs, never a credential."""

    retryable: bool = False
    ambiguous: bool = False
    refused: bool = True

    def __init__(
        self,
        message: str,
        *,
        ret_code: int | None = None,
        ret_msg: str = "",
        http_status: int | None = None,
        endpoint: str = "",
        trace_id: str = "",
    ):
        super().__init__(message)
        self.message = message
        self.ret_code = ret_code
        self.ret_msg = ret_msg
        self.http_status = http_status
        self.endpoint = endpoint
        self.trace_id = trace_id
        # Server-side reset time of the rate-limit window (ms), when the answer carried one.
        self.reset_at_ms: int | None = None
        # Set by the client when an earlier attempt of the same operation had an ambiguous outcome
        # (e.g. "order not found" on a cancel whose first attempt may have succeeded).
        self.after_ambiguous_attempt = False

    def __str__(self) -> str:
        parts = [self.message]
        if self.ret_code is not None:
            parts.append(f"retCode={self.ret_code}")
        if self.ret_msg and self.ret_msg not in self.message:
            parts.append(f"retMsg={self.ret_msg!r}")
        if self.http_status is not None:
            parts.append(f"http={self.http_status}")
        if self.endpoint:
            parts.append(f"endpoint={self.endpoint}")
        if self.trace_id:
            parts.append(f"trace_id={self.trace_id}")
        return " ".join(parts)


class BybitTransportError(BybitError):
    """Timeout, reset or 5xx after the request may have reached the exchange."""

    retryable = True
    ambiguous = True
    refused = False


class BybitServerError(BybitTransportError):
    """The exchange answered that it timed out or failed internally (10000, 10016, 429 retCode):
    a write may or may not have happened."""


class BybitConnectError(BybitError):
    """The request never left this process (connect refused/timed out, no pooled connection)."""

    retryable = True
    ambiguous = False
    refused = False


class BybitRateLimitError(BybitError):
    """10006 or HTTP 429: rejected, safe to send again after the window resets."""

    retryable = True
    refused = False


class BybitForbiddenError(BybitError):
    """HTTP 403: IP rate limit breached (or a blocked region). Bybit asks for a pause of
    at least ten minutes, so an immediate retry would only extend the ban."""


class BybitTimestampError(BybitError):
    """10002 (or -1): timestamp outside recv_window; safe to re-sign with a fresh timestamp."""

    retryable = True
    refused = False


class BybitBusyError(BybitError):
    """110079: the order is being processed; safe to retry after a short delay."""

    retryable = True


class BybitAuthError(BybitError):
    """Key unknown, signature rejected, permission missing, IP not whitelisted, account banned."""

    refused = False


class BybitInvalidRequestError(BybitError):
    """Bad parameters (10001 and the other parameter/rule errors)."""


class BybitInsufficientBalanceError(BybitError):
    pass


class BybitOrderNotFoundError(BybitError):
    pass


class BybitOrderClosedError(BybitError):
    """The order is already filled or cancelled."""


class BybitDuplicateOrderError(BybitError):
    """110072: an order with this orderLinkId already exists on the exchange.

    The client resolves it by looking the order up; it only raises this when the
    order stays invisible, so the caller's order is in an unknown state (it
    exists, but we could not see it): ambiguous, and not to be sent again.
    """

    ambiguous = True


class BybitReduceOnlyError(BybitError):
    pass


class BybitMinNotionalError(BybitInvalidRequestError):
    pass


_BY_RET_CODE: dict[int, type[BybitError]] = {
    -1: BybitTimestampError,
    10002: BybitTimestampError,
    10000: BybitServerError,
    10016: BybitServerError,
    429: BybitServerError,  # retCode 429 = "trading service under high load"; outcome of a write unknown
    170146: BybitServerError,  # spot order creation timeout
    170147: BybitServerError,  # spot order cancellation timeout
    10006: BybitRateLimitError,
    10018: BybitForbiddenError,
    10003: BybitAuthError,
    10004: BybitAuthError,
    10005: BybitAuthError,
    10007: BybitAuthError,
    10008: BybitAuthError,
    10009: BybitAuthError,
    10010: BybitAuthError,
    10027: BybitAuthError,
    110079: BybitBusyError,
    110004: BybitInsufficientBalanceError,
    110006: BybitInsufficientBalanceError,
    110007: BybitInsufficientBalanceError,
    110012: BybitInsufficientBalanceError,
    170131: BybitInsufficientBalanceError,
    110001: BybitOrderNotFoundError,
    170213: BybitOrderNotFoundError,
    110008: BybitOrderClosedError,
    110010: BybitOrderClosedError,
    110072: BybitDuplicateOrderError,
    170141: BybitDuplicateOrderError,
    110017: BybitReduceOnlyError,
    110094: BybitMinNotionalError,
    170140: BybitMinNotionalError,
}

# Parameter and trading-rule rejections: final, fix the request first.
_INVALID_REQUEST_CODES = {
    10001, 10014, 10017, 10029, 110003, 110009, 110020, 110021, 110024, 110025, 110028, 110029, 110040, 110043,
    110064, 110090, 110092, 110093, 110120, 110121, 30208, 30209, 170134, 170136, 170137, 170148,
}  # fmt: skip


def error_class_for_ret_code(ret_code: int) -> type[BybitError]:
    if ret_code in _BY_RET_CODE:
        return _BY_RET_CODE[ret_code]
    if ret_code in _INVALID_REQUEST_CODES:
        return BybitInvalidRequestError
    return BybitError


def error_class_for_http_status(status: int) -> type[BybitError]:
    if status == 429:
        return BybitRateLimitError
    if status == 403:
        return BybitForbiddenError
    if status == 401:
        return BybitAuthError
    if status >= 500:
        return BybitTransportError
    return BybitInvalidRequestError
