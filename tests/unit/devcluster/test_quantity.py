"""Quantity grammar and canonical spelling."""

from __future__ import annotations

from decimal import Decimal

import pytest

from sandboxkit.devcluster.quantity import QuantityError, canonical_quantity, parse_quantity

FORMAT_ERROR = ("quantities must match the regular expression "
                "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")


@pytest.mark.parametrize(("text", "value"), [
    ("1", Decimal(1)),
    ("250m", Decimal("0.25")),
    ("2Gi", Decimal(2 * 1024**3)),
    ("512Mi", Decimal(512 * 1024**2)),
    ("1.5", Decimal("1.5")),
    ("1e3", Decimal(1000)),
    ("12E-3", Decimal("0.012")),
    ("2k", Decimal(2000)),
    ("100n", Decimal("1E-7")),
    ("0.1n", Decimal("1E-9")),
    ("-1", Decimal(-1)),
    ("+.5", Decimal("0.5")),
])
def test_parse(text: str, value: Decimal) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize(("text", "message"), [
    ("abc", FORMAT_ERROR),
    ("", FORMAT_ERROR),
    ("1Zi", FORMAT_ERROR),
    ("1.2.3", "unable to parse numeric part of quantity"),
    ("1Ki2", "unable to parse quantity's suffix"),
    ("1mk", "unable to parse quantity's suffix"),
])
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(QuantityError) as caught:
        parse_quantity(text)
    assert str(caught.value) == message


@pytest.mark.parametrize(("text", "canonical"), [
    ("1000m", "1"),
    ("250m", "250m"),
    ("0.5", "500m"),
    ("1.5", "1500m"),
    ("2000", "2k"),
    ("1500", "1500"),
    ("2048Mi", "2Gi"),
    ("1536Mi", "1536Mi"),
    ("1.5Ki", "1536"),
    ("512", "512"),
    ("1e3", "1e3"),
    ("0", "0"),
    ("-2Gi", "-2Gi"),
])
def test_canonical(text: str, canonical: str) -> None:
    assert canonical_quantity(text) == canonical
