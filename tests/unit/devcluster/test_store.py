"""The devcluster store's watch history: replay, 410 past the retained window, compaction.

The bounded window (HISTORY_LIMIT changes) cannot be exercised portably against a real API
server -- its watch cache is sized and compacted by the server -- so it is tested here on the
Store directly; tests/integration/test_api_watch.py covers the portable part (resourceVersion
1 is always expired).
"""

from __future__ import annotations

from typing import Any

import pytest

from sandboxkit.devcluster.errors import ApiError
from sandboxkit.devcluster.resources import require
from sandboxkit.devcluster.store import HISTORY_LIMIT, Store

CONFIGMAPS = require("", "v1", "configmaps")


def _cm(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "ns", "labels": labels}}


def _drain(watch: Any) -> list[tuple[str, str, str]]:
    out = []
    while not watch.queue.empty():
        type_, obj = watch.queue.get_nowait()
        out.append((type_, obj["metadata"]["name"], obj["metadata"]["resourceVersion"]))
    return out


def _everything(_: dict[str, Any]) -> bool:
    return True


def test_replays_changes_after_the_version() -> None:
    store = Store()
    first = store.put_new(CONFIGMAPS, _cm("a"))
    store.replace(CONFIGMAPS, {**first, "data": {"k": "v"}})
    store.remove(CONFIGMAPS, "ns", "a")
    watch = store.watch(CONFIGMAPS, "ns", first["metadata"]["resourceVersion"], _everything)
    assert _drain(watch) == [("MODIFIED", "a", "2"), ("DELETED", "a", "3")]


def test_history_is_bounded_and_older_versions_expire() -> None:
    store = Store()
    obj = store.put_new(CONFIGMAPS, _cm("a"))
    for i in range(HISTORY_LIMIT + 10):
        obj = store.replace(CONFIGMAPS, {**obj, "data": {"i": str(i)}})
    latest = int(obj["metadata"]["resourceVersion"])
    oldest_kept = latest - HISTORY_LIMIT + 1
    with pytest.raises(ApiError) as expired:
        store.watch(CONFIGMAPS, "ns", "1", _everything)
    assert (expired.value.code, expired.value.reason) == (410, "Expired")
    assert expired.value.message == f"too old resource version: 1 ({oldest_kept - 1})"
    # The oldest version still resumable is the one just before the retained window.
    replay = _drain(store.watch(CONFIGMAPS, "ns", str(oldest_kept - 1), _everything))
    assert len(replay) == HISTORY_LIMIT
    assert replay[0][2] == str(oldest_kept)


def test_compaction_expires_everything_before_it() -> None:
    store = Store()
    store.put_new(CONFIGMAPS, _cm("a"))
    store.put_new(CONFIGMAPS, _cm("b"))
    store.compact()
    with pytest.raises(ApiError) as expired:
        store.watch(CONFIGMAPS, "ns", "1", _everything)
    assert expired.value.message == "too old resource version: 1 (2)"
    assert _drain(store.watch(CONFIGMAPS, "ns", "2", _everything)) == []
    store.put_new(CONFIGMAPS, _cm("c"))
    assert _drain(store.watch(CONFIGMAPS, "ns", "2", _everything)) == [("ADDED", "c", "3")]


def test_leaving_a_selector_is_a_deletion_of_the_last_matching_state() -> None:
    store = Store()
    obj = store.put_new(CONFIGMAPS, _cm("a", team="x"))
    watch = store.watch(CONFIGMAPS, "ns", obj["metadata"]["resourceVersion"],
                        lambda o: o["metadata"]["labels"].get("team") == "x")
    moved = store.replace(CONFIGMAPS, {**obj, "metadata": {**obj["metadata"],
                                                           "labels": {"team": "y"}}})
    type_, shown = watch.queue.get_nowait()
    assert type_ == "DELETED"
    assert shown["metadata"]["labels"] == {"team": "x"}
    assert shown["metadata"]["resourceVersion"] == moved["metadata"]["resourceVersion"]
