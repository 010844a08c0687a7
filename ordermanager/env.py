"""Typed settings readers that fail loudly.

Every reader names the variable, the value it got and what is allowed, so a
typo such as ``MAX_ORDER_SIZE_RATIO=1.5`` stops the process with one line a
person can act on instead of a silently wrong setting. Secrets may come from
``<NAME>_FILE`` so they never have to sit in the environment of a shell.
"""

from __future__ import annotations

import os
from decimal import Decimal, InvalidOperation
from pathlib import Path

import environ


class ConfigError(Exception):
    """A setting has a value the service cannot run with."""


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _raw(name: str) -> str | None:
    return os.environ.get(name)


def read_dotenv(path: Path) -> None:
    """Load an optional ``.env``; the real environment always wins."""
    if path.is_file():
        environ.Env.read_env(str(path), overwrite=False)


def env_str(name: str, default: str = "") -> str:
    value = _raw(name)
    return default if value is None else value.strip()


def env_bool(name: str, default: bool) -> bool:
    value = _raw(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"{name}={value!r} is not a boolean; use true or false")


def env_int(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    value = _raw(name)
    if value is None or value.strip() == "":
        return default
    try:
        number = int(value.strip())
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not a whole number") from None
    _check_range(name, value, number, minimum, maximum)
    return number


def env_decimal(
    name: str,
    default: str,
    *,
    minimum: Decimal | str | None = None,
    maximum: Decimal | str | None = None,
    exclusive_minimum: bool = False,
) -> Decimal:
    """Read a Decimal straight from the text (never through float)."""
    value = _raw(name)
    text = default if value is None or value.strip() == "" else value.strip()
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise ConfigError(f"{name}={text!r} is not a decimal number") from None
    if not number.is_finite():
        raise ConfigError(f"{name}={text!r} must be a finite number")
    low = None if minimum is None else Decimal(minimum)
    if exclusive_minimum and low is not None and number <= low:
        raise ConfigError(f"{name}={text!r} is out of range: must be greater than {low}")
    _check_range(name, text, number, None if exclusive_minimum else low, None if maximum is None else Decimal(maximum))
    return number


# What a NUMERIC(36, 18) column holds (ordermanager.core.fields.money_field): fewer than 1e18 in whole units
# and at most 18 decimal places. A limit read from the environment is stored there (risk-limit rows).
STORABLE_BELOW = Decimal("1e18")
STORABLE_PLACES = 18


def env_money(name: str, default: str | None, *, unit: str, optional: bool = False) -> Decimal | None:
    """A non-negative amount that fits a money column.

    ``optional``: the variable set to an empty value means "no limit" (``None``); absent means ``default``
    (``None``: no limit).
    """
    value = _raw(name)
    if optional and (value.strip() == "" if value is not None else default is None):
        return None
    number = env_decimal(name, default, minimum="0")
    text = default if value is None or value.strip() == "" else value.strip()
    if number >= STORABLE_BELOW:
        raise ConfigError(f"{name}={text!r} is out of range: must be below {STORABLE_BELOW:,f} {unit} "
                          f"(the largest amount the database stores)")
    if -number.as_tuple().exponent > STORABLE_PLACES:
        raise ConfigError(f"{name}={text!r} has more than {STORABLE_PLACES} decimal places (the database keeps "
                          f"{STORABLE_PLACES})")
    return number


def env_float_seconds(name: str, default: str, *, minimum: str = "0") -> float:
    """Durations are floats (they feed time.sleep/httpx), never money."""
    return float(env_decimal(name, default, minimum=minimum))


def env_json_object(name: str, default: str = "{}") -> dict:
    """A JSON object (e.g. AMQP queue arguments); anything else stops the process with the value named."""
    import json

    text = env_str(name, default) or default
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{name}={text!r} is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{name}={text!r} must be a JSON object, e.g. {{\"x-queue-type\": \"quorum\"}}")
    return value


def env_networks(name: str, default: str = "") -> tuple:
    """A comma-separated list of IP networks in CIDR notation (an address alone is one host)."""
    import ipaddress

    text = env_str(name, default)
    networks = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ConfigError(f"{name}={text!r}: {part!r} is not an IP network; use CIDR, e.g. 10.0.0.0/8") from None
    return tuple(networks)


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env_str(name, default).lower()
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not allowed; choose one of: {', '.join(choices)}")
    return value


def env_secret(name: str, default: str = "") -> str:
    """Read a secret from NAME or from the file named by NAME_FILE."""
    file_name = _raw(f"{name}_FILE")
    if file_name:
        path = Path(file_name)
        if not path.is_file():
            raise ConfigError(f"{name}_FILE={file_name!r} does not name a readable file")
        return path.read_text().strip()
    return env_str(name, default)


def _check_range(name, text, number, minimum, maximum) -> None:
    if minimum is not None and number < minimum:
        raise ConfigError(f"{name}={text!r} is out of range: must be at least {minimum}")
    if maximum is not None and number > maximum:
        raise ConfigError(f"{name}={text!r} is out of range: must be at most {maximum}")
