"""Name and label format checks, word for word."""

from __future__ import annotations

import pytest

from sandboxkit.devcluster.formats import (
    is_config_map_key,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_path_segment_name,
    is_qualified_name,
)


def test_lengths() -> None:
    assert is_dns1123_label("a" * 64) == ["must be no more than 63 characters"]
    assert is_dns1123_subdomain("a" * 254) == ["must be no more than 253 characters"]
    assert is_qualified_name("a" * 64) == ["name part must be no more than 63 characters"]


@pytest.mark.parametrize("value", ["a", "my-name", "123-abc", "a.b"])
def test_good_subdomains(value: str) -> None:
    assert is_dns1123_subdomain(value) == []


def test_qualified_name_prefix() -> None:
    assert is_qualified_name("example.com/app") == []
    assert is_qualified_name("/app") == ["prefix part must be non-empty"]


def test_path_segment_and_config_keys() -> None:
    assert is_path_segment_name("..") == ["may not be '..'"]
    assert is_path_segment_name("a/b%") == ["may not contain '/'", "may not contain '%'"]
    assert is_path_segment_name("system:admin") == []
    assert is_config_map_key("..a") == ["must not start with '..'"]
    assert is_config_map_key("KEY_name.1") == []
