"""Admin login throttle: after ADMIN_LOGIN_MAX_FAILURES wrong passwords for one username within
ADMIN_LOGIN_LOCKOUT_SECONDS, every login for that username is refused (the right password too)
until the window has passed, so a password cannot be brute-forced (docs/decisions/0521).

Counts live in Django's cache (per process; the web server is one process).
"""

from __future__ import annotations

import time

import structlog
from django.conf import settings
from django.contrib import admin
from django.core.cache import cache
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect

log = structlog.get_logger(__name__)
KEY_PREFIX = "admin-login-failures:"


def _key(username: str) -> str:
    return KEY_PREFIX + username.strip().lower()[:150]


def failures(username: str) -> tuple[int, float]:
    """(failed attempts in the current window, unix time the window ends)."""
    return cache.get(_key(username), (0, 0.0))


def _record_failure(username: str) -> int:
    count, until = failures(username)
    now = time.time()
    if until <= now:
        count, until = 0, now + settings.ADMIN_LOGIN_LOCKOUT_SECONDS
    count += 1
    cache.set(_key(username), (count, until), timeout=max(1, int(until - now) + 1))
    return count


@never_cache
@csrf_protect
def throttled_login(request, extra_context=None):
    username = request.POST.get("username", "") if request.method == "POST" else ""
    if username:
        count, until = failures(username)
        if count >= settings.ADMIN_LOGIN_MAX_FAILURES and until > time.time():
            minutes = max(1, round((until - time.time()) / 60))
            log.warning("admin_login_refused_throttled", username=username[:150], failures=count)
            context = {**admin.site.each_context(request), "title": "Too many failed logins", "minutes": minutes}
            return render(request, "admin/login_throttled.html", context, status=429)
    response = admin.site.login(request, extra_context=extra_context)
    if username and request.method == "POST":
        if request.user.is_authenticated:
            cache.delete(_key(username))
        else:
            count = _record_failure(username)
            log.warning("admin_login_failed", username=username[:150], failures=count)
    return response
