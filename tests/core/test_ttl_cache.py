"""The shared per-process TTL cache."""

from unittest import mock

from ordermanager.core import ttl_cache
from ordermanager.core.ttl_cache import TTLCache


def _clock(start=100.0):
    now = [start]
    patcher = mock.patch.object(ttl_cache.time, "monotonic", side_effect=lambda: now[0])
    return now, patcher


def test_value_is_served_until_the_ttl_then_reloaded():
    now, patcher = _clock()
    loads = []
    with patcher:
        cache = TTLCache(1.0)
        assert cache.get_or_load("k", lambda: loads.append(1) or "a") == "a"
        now[0] += 0.9
        assert cache.get_or_load("k", lambda: loads.append(1) or "b") == "a"
        now[0] += 0.1
        assert cache.get_or_load("k", lambda: loads.append(1) or "c") == "c"
    assert len(loads) == 2


def test_max_age_narrows_the_ttl_and_a_stored_none_is_a_value():
    now, patcher = _clock()
    with patcher:
        cache = TTLCache(10.0)
        cache.put("k", None)
        now[0] += 2
        assert cache.get_or_load("k", lambda: "fresh") is None
        assert cache.get_or_load("k", lambda: "fresh", max_age=1.0) == "fresh"


def test_callable_ttl_is_read_at_each_lookup_and_clear_forgets():
    now, patcher = _clock()
    ttl = [5.0]
    with patcher:
        cache = TTLCache(lambda: ttl[0])
        cache.put("k", "v")
        assert cache.get("k") == "v"
        ttl[0] = 0
        assert cache.get("k", "missing") == "missing"
        ttl[0] = 5.0
        cache.clear()
        assert cache.get("k") is None


def test_forget_drops_one_key_only():
    cache = TTLCache(10.0)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.forget("a")
    cache.forget("missing")
    assert (cache.get("a", "gone"), cache.get("b")) == ("gone", 2)
