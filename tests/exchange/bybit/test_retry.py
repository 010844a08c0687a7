import random

import pytest

from exchange.bybit.ratelimit import RateLimiter
from exchange.bybit.retry import RetryPolicy


def test_delays_grow_exponentially_within_jitter_bounds_and_cap():
    policy = RetryPolicy(base_delay=0.5, max_delay=3.0, multiplier=3.0, rng=random.Random(1))
    assert [policy.ceiling(n) for n in range(1, 5)] == [0.5, 1.5, 3.0, 3.0]
    for n in range(1, 30):
        assert policy.ceiling(n) / 2 <= policy.delay(n) <= policy.ceiling(n)


@pytest.mark.parametrize(
    "kwargs",
    [{"max_attempts": 0}, {"base_delay": 5, "max_delay": 1}, {"multiplier": 0.5}, {"jitter": 2}, {"total_timeout": 0}],
)
def test_nonsense_policies_are_refused(kwargs):
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)


def test_from_settings(settings):
    settings.BYBIT_API_RETRY_MAX_ATTEMPTS, settings.ORDER_EXECUTION_TIMEOUT = 7, 12.0
    policy = RetryPolicy.from_settings()
    assert (policy.max_attempts, policy.total_timeout) == (7, 12.0)


def test_limiter_counts_sends_between_reports_and_waits_for_the_reset():
    limiter = RateLimiter()
    headers = {"X-Bapi-Limit-Status": "2", "X-Bapi-Limit-Reset-Timestamp": "10500"}
    limiter.update("/p", {k.lower(): v for k, v in headers.items()}, now=100.0, server_now_ms=10_000)
    assert limiter.reserve("/p", now=100.0) == 0 and limiter.reserve("/p", now=100.0) == 0
    assert limiter.reserve("/p", now=100.1) == pytest.approx(0.4)  # budget spent locally
    assert limiter.reserve("/other", now=100.1) == 0
    assert limiter.reserve("/p", now=100.5) == 0  # window over


def test_limiter_ignores_answers_without_headers():
    limiter = RateLimiter()
    limiter.update("/p", {}, now=1.0, server_now_ms=0)
    assert limiter.snapshot("/p") is None and limiter.reserve("/p", now=1.0) == 0
