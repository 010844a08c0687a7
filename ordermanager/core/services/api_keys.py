"""Service API keys: create (shown once), authenticate, revoke.

Keys are 256 random bits, so a plain SHA-256 digest is enough at rest (a slow
password hash protects guessable secrets; these are not guessable) and keeps
authentication at one indexed lookup. See docs/decisions/0502-api-keys.md.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from ordermanager.core.models import ApiKey

KEY_PREFIX = "om_"
# last_used_at is informative; writing it on every request would turn each
# read into a write, so it is refreshed at most this often.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def _digest(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def api_key_create(*, user, name: str, created_by=None, expires_at=None) -> tuple[ApiKey, str]:
    """Create a key for ``user``; returns the row and the plain key, which is never stored."""
    prefix = secrets.token_hex(4)
    raw_key = f"{KEY_PREFIX}{prefix}.{secrets.token_urlsafe(32)}"
    api_key = ApiKey(name=name, user=user, prefix=prefix, key_hash=_digest(raw_key), created_by=created_by,
                     expires_at=expires_at)
    api_key.full_clean()
    api_key.save()
    return api_key, raw_key


def api_key_authenticate(*, raw_key: str) -> ApiKey | None:
    """The active key matching ``raw_key``, or None (unknown, malformed, revoked or expired)."""
    if not raw_key.startswith(KEY_PREFIX) or "." not in raw_key:
        return None
    prefix = raw_key[len(KEY_PREFIX):].split(".", 1)[0]
    api_key = ApiKey.objects.select_related("user").filter(prefix=prefix).first()
    if api_key is None or not hmac.compare_digest(api_key.key_hash, _digest(raw_key)):
        return None
    now = timezone.now()
    if api_key.revoked_at is not None or (api_key.expires_at and api_key.expires_at <= now):
        return None
    if not api_key.user.is_active:
        return None
    _touch(api_key=api_key, now=now)
    return api_key


def _touch(*, api_key: ApiKey, now) -> None:
    if api_key.last_used_at and now - api_key.last_used_at < LAST_USED_RESOLUTION:
        return
    ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
    api_key.last_used_at = now


@transaction.atomic
def api_key_revoke(*, api_key: ApiKey, user=None) -> bool:
    """Revoke the key; True if this call revoked it, False if it already was."""
    # Conditional UPDATE: two people revoking at once record one revoker.
    changed = ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now(), revoked_by=user
    )
    api_key.refresh_from_db(fields=["revoked_at", "revoked_by"])
    return changed == 1
