"""Which base URLs may carry real Bybit keys (settings refuse any other outside the paper setup)."""

from __future__ import annotations

from urllib.parse import urlsplit

# Bybit's V5 REST hosts live under these domains (api, api-testnet, api-demo, api2 and the
# regional sites). Anything else (a typo, a proxy, a local simulator) would receive signed
# requests made with real keys.
BYBIT_DOMAINS = ("bybit.com", "bytick.com", "bybit.nl", "bybit.kz", "bybit.eu", "bybit-tr.com")


def bybit_url_problem(url: str) -> str | None:
    """None when ``url`` is an https URL on a Bybit host, else what is wrong with it."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError:
        return "is not a valid URL"
    if parts.scheme != "https":
        return "must use https"
    if not any(host == domain or host.endswith("." + domain) for domain in BYBIT_DOMAINS):
        return f"is not a Bybit host (one of *.{', *.'.join(BYBIT_DOMAINS)})"
    if parts.username or parts.password:
        return "must not carry credentials"
    return None
