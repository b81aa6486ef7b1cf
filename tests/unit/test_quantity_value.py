"""``quantity_value``: Kubernetes quantities as the numbers Docker takes.

Expected values are the documented meaning of the suffixes (decimal k/M/G, binary
Ki/Mi/Gi, milli m, exponent e), as in the Kubernetes "Resource units" documentation.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from sandboxkit.config import quantity_value
from sandboxkit.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "value"),
    [("250m", Decimal("0.25")), ("1", Decimal(1)), ("0.5", Decimal("0.5")),
     ("129e6", Decimal(129_000_000)), ("129M", Decimal(129_000_000)),
     ("123Mi", Decimal(123 * 1024 * 1024)), ("2Gi", Decimal(2 * 1024**3)),
     ("1k", Decimal(1000)), ("1Ki", Decimal(1024)), ("1E", Decimal(10**18)),
     ("2Ei", Decimal(2 * 2**60)), (".5", Decimal("0.5")), ("1e-3", Decimal("0.001"))],
)
def test_quantities_mean_what_kubernetes_documents(text: str, value: Decimal) -> None:
    assert quantity_value(text) == value


@pytest.mark.parametrize("text", ["2Gb", ".", "1.2.3", "1\n", "1e", "", " 1", "1e" + "9" * 5000,
                                  "1e99999999999999999999"])
def test_an_invalid_quantity_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError):
        quantity_value(text)
