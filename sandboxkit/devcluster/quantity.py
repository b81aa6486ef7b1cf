"""``resource.Quantity`` parsing and canonical printing.

Requests, limits and quota values arrive as strings (``250m``, ``2Gi``, ``1e3``). The API
server parses them while decoding the body and prints them back in canonical form, both in
stored objects and in error messages (``must be less than or equal to cpu limit of 1``), so
the devcluster needs the same grammar and the same canonical spelling.
"""

from __future__ import annotations

import re
from decimal import ROUND_CEILING, Decimal, InvalidOperation

__all__ = ["QuantityError", "canonical_quantity", "parse_quantity"]

FORMAT_ERROR = (
    "quantities must match the regular expression "
    "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
)
NUMERIC_ERROR = "unable to parse numeric part of quantity"
SUFFIX_ERROR = "unable to parse quantity's suffix"

_SPLIT = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")
_NUMBER = re.compile(r"^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)$")
_EXPONENT = re.compile(r"^[eE][-+]?[0-9]+$")

_DECIMAL_SI = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15,
               "E": 18}
_BINARY_SI = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL_SUFFIX_BY_EXP = {exp: suffix for suffix, exp in _DECIMAL_SI.items()}
_BINARY_SUFFIX_BY_EXP = {exp: suffix for suffix, exp in _BINARY_SI.items()}
_NANO = Decimal("1e-9")


class QuantityError(ValueError):
    """A string that is not a Kubernetes quantity; ``str()`` is the API server's wording."""


def _split(text: str) -> tuple[Decimal, str, str]:
    """Value, format (``DecimalSI``/``BinarySI``/``DecimalExponent``) and suffix of ``text``."""
    match = _SPLIT.match(text)
    if not text or match is None:
        raise QuantityError(FORMAT_ERROR)
    number, suffix = match.groups()
    if not _NUMBER.match(number):
        raise QuantityError(NUMERIC_ERROR)
    try:
        base = Decimal(number)
    except InvalidOperation as exc:  # pragma: no cover - _NUMBER already vetted it
        raise QuantityError(NUMERIC_ERROR) from exc
    if suffix in _DECIMAL_SI:
        return base.scaleb(_DECIMAL_SI[suffix]), "DecimalSI", suffix
    if suffix in _BINARY_SI:
        return base * (Decimal(2) ** _BINARY_SI[suffix]), "BinarySI", suffix
    if _EXPONENT.match(suffix):
        return base.scaleb(int(suffix[1:])), "DecimalExponent", suffix
    raise QuantityError(SUFFIX_ERROR)


def parse_quantity(text: str) -> Decimal:
    """The exact value of a quantity string such as ``500m``, ``1.5Gi`` or ``12e6``.

    Values are rounded up to nano precision, as ``resource.Quantity`` does, so ``0.1n`` is
    ``1n``. Raises :class:`QuantityError` carrying the API server's message.
    """
    value, _, _ = _split(text.strip() if isinstance(text, str) else str(text))
    return _round_nano(value)


def _round_nano(value: Decimal) -> Decimal:
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent >= -9:
        return value
    return value.quantize(_NANO, rounding=ROUND_CEILING)


def _is_integral(value: Decimal) -> bool:
    return value == value.to_integral_value()


def _plain(value: Decimal) -> str:
    return format(value.normalize(), "f")


def _decimal_form(value: Decimal, exponent_form: bool) -> str:
    """Largest power-of-1000 suffix that keeps the mantissa whole (``1500m``, ``2k``)."""
    best = -9
    for exp in range(18, -10, -3):
        if _is_integral(value.scaleb(-exp)):
            best = exp
            break
    mantissa = _plain(value.scaleb(-best))
    if exponent_form:
        return mantissa if best == 0 else f"{mantissa}e{best}"
    return mantissa + _DECIMAL_SUFFIX_BY_EXP[best]


def _binary_form(value: Decimal) -> str | None:
    """``2Gi`` for whole multiples of 1024; None when the decimal form must be used."""
    if not _is_integral(value) or abs(value) < 1024:
        return None
    whole = int(value)
    for exp in range(60, 0, -10):
        if whole % (1 << exp) == 0:
            return f"{whole >> exp}{_BINARY_SUFFIX_BY_EXP[exp]}"
    return str(whole)


def canonical_quantity(text: str) -> str:
    """The canonical spelling the API server prints: ``1000m`` -> ``1``, ``2048Mi`` -> ``2Gi``.

    The suffix family of the input is kept (binary stays binary where it can, exponent form
    stays exponent form), as ``Quantity.String()`` does.
    """
    value, fmt, _ = _split(text.strip())
    value = _round_nano(value)
    if value == 0:
        return "0"
    if fmt == "BinarySI":
        binary = _binary_form(value)
        if binary is not None:
            return binary
        return _decimal_form(value, exponent_form=False)
    return _decimal_form(value, exponent_form=fmt == "DecimalExponent")
