"""What the property-based unit tests share: hypothesis settings that keep the unit suite
fast, and strategies for what users get wrong -- text that cannot be sent anywhere (lone
surrogates, NUL, control characters) and values of any type where one type is expected."""

from __future__ import annotations

import math

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

__all__ = ["ANY_TEXT", "ANY_VALUE", "FAST"]

FAST = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
"""Examples enough to find the classes of mistake, few enough for a unit run of seconds; no
deadline, as a first example pays for imports. The fixtures these tests take set up the same
environment for every example, so sharing them across examples is what is meant."""

ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=24)
"""Any str at all: lone surrogates, NUL and every other control character included."""

ANY_VALUE = st.one_of(
    st.none(), st.booleans(), st.integers(),
    st.sampled_from([-1, 0, 2**31, 2**63, 10**30, 10**5000]),  # 10**5000 has no repr
    st.floats(), st.sampled_from([math.nan, math.inf, -math.inf]),
    st.binary(max_size=8), ANY_TEXT,
    st.lists(st.one_of(st.integers(), ANY_TEXT), max_size=3),
    st.dictionaries(st.one_of(ANY_TEXT, st.integers()),
                    st.one_of(ANY_TEXT, st.integers(), st.none()), max_size=3),
    st.builds(object),
)
"""A value of any of the types a wrong argument tends to have."""
