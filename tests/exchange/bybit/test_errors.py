import pytest

from exchange.bybit import errors as E

# Answers about us (throttling, credentials, clock) or about a request that never got a verdict.
NOT_A_VERDICT = [E.BybitConnectError, E.BybitRateLimitError, E.BybitAuthError, E.BybitTimestampError,
                 E.BybitTransportError, E.BybitServerError]  # fmt: skip
VERDICTS = [E.BybitError, E.BybitInvalidRequestError, E.BybitMinNotionalError, E.BybitInsufficientBalanceError,
            E.BybitReduceOnlyError, E.BybitForbiddenError, E.BybitBusyError, E.BybitOrderNotFoundError,
            E.BybitOrderClosedError, E.BybitDuplicateOrderError]  # fmt: skip


@pytest.mark.parametrize("cls", NOT_A_VERDICT, ids=lambda c: c.__name__)
def test_errors_about_us_or_the_wire_do_not_refuse_the_request(cls):
    assert cls.refused is False


@pytest.mark.parametrize("cls", VERDICTS, ids=lambda c: c.__name__)
def test_other_errors_are_the_exchange_refusing_the_request(cls):
    assert cls.refused is True


def test_every_error_class_is_listed_once():
    family = {c for c in vars(E).values() if isinstance(c, type) and issubclass(c, E.BybitError)}
    assert family == set(NOT_A_VERDICT) | set(VERDICTS)
