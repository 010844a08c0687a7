"""Decimal text in and out: one strict reader, one plain writer.

``decimal_from_text`` accepts exactly the JSON number grammar (RFC 8259 §6):
an optional ``-``, ASCII digits without a superfluous leading zero, an optional
fraction with at least one digit, an optional exponent. ``Decimal(text)`` alone
accepts far more (``"1_000"``, ``"１０００"``, ``"١٠٠٠"``, ``"+5"``, ``" 5 "``,
``"NaN"``, ``"Infinity"``, ``"1."``, ``".5"``), and a number that means something
other than what the sender wrote must never reach an order
(docs/decisions/0319-strict-decimal-text.md).
"""

import re
from decimal import Decimal

# re.ASCII: \d would otherwise match every Unicode digit (fullwidth, Arabic-Indic, ...).
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?", re.ASCII)
# Exponents beyond this are a unit error or an attack (Decimal would build a huge integer on quantize).
MAX_EXPONENT = 1000


class DecimalTextInvalid(ValueError):
    """The text is not a decimal number in JSON notation; ``str()`` says why, in words."""


def decimal_from_text(text: str) -> Decimal:
    """The exact Decimal a JSON-number text denotes, or ``DecimalTextInvalid`` naming what is wrong."""
    if not isinstance(text, str):
        raise DecimalTextInvalid(f"expected decimal text, got {type(text).__name__}")
    if _JSON_NUMBER.fullmatch(text) is None:
        raise DecimalTextInvalid(f"{_shown(text)} is not a decimal number ({_why(text)})")
    number = Decimal(text)
    if abs(number.adjusted()) > MAX_EXPONENT:
        raise DecimalTextInvalid(f"{_shown(text)} is out of range (exponent beyond ±{MAX_EXPONENT})")
    return number


def _shown(text: str) -> str:
    shown = repr(text)
    return shown if len(shown) <= 40 else shown[:37] + "..."


def _why(text: str) -> str:
    """The first rule of the JSON number grammar the text breaks, for the sender to act on."""
    if text == "":
        return "empty"
    if text != text.strip():
        return "surrounding whitespace is not allowed"
    if text.lower().lstrip("+-") in ("nan", "snan", "inf", "infinity"):
        return "NaN and Infinity are not numbers here"
    if text.startswith("+"):
        return "a leading '+' is not allowed"
    if "_" in text:
        return "digit separators '_' are not allowed"
    if any(ch.isdigit() and not ("0" <= ch <= "9") for ch in text):
        return "only ASCII digits 0-9 are allowed"
    if "," in text:
        return "use '.' as the decimal point, without thousands separators"
    body = text.lstrip("-").split("e")[0].split("E")[0]
    if body.startswith("."):
        return "a digit is required before the decimal point"
    if body.endswith("."):
        return "a digit is required after the decimal point"
    if len(body) > 1 and body[0] == "0" and body[1] != ".":
        return "leading zeros are not allowed"
    return "JSON number notation: optional '-', digits, optional fraction and exponent"


def plain_decimal(value: Decimal | None) -> str | None:
    """'0.010000000000000000' -> '0.01', '64000.000' -> '64000'; never exponent notation."""
    if value is None:
        return None
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text
