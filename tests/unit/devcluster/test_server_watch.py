"""The devcluster's watch endpoint over HTTP: a too-old resourceVersion is an ERROR event.

Devcluster-only: a real API server's 410 depends on its watch cache's state, which a
portable integration test cannot control (see tests/integration/test_api_watch.py).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from sandboxkit.devcluster.api import SYSTEM_USER, Api
from sandboxkit.devcluster.resources import require
from sandboxkit.devcluster.server import Services, build_app

NAMESPACES = require("", "v1", "namespaces")
CONFIGMAPS = require("", "v1", "configmaps")
PATH = "/api/v1/namespaces/ns/configmaps"


def _unused(*_: Any) -> Any:
    raise AssertionError("not used by these tests")


def _services(api: Api) -> Services:
    return Services(api=api, authenticate=lambda _: SYSTEM_USER, authorize=lambda *_: None,
                    review=_unused, token=_unused, connect=_unused)


async def _watch_lines(api: Api, query: str, change: Any = None) -> tuple[int, list[Any]]:
    async with TestClient(TestServer(build_app(_services(api)))) as http:
        if change is not None:
            change()
        response = await http.get(f"{PATH}?watch=true&timeoutSeconds=1&{query}")
        body = await response.text()
    return response.status, [json.loads(line) for line in body.splitlines() if line]


def _bootstrapped() -> Api:
    """An Api holding what existed before the server started serving."""
    api = Api()
    api.create(NAMESPACES, {"metadata": {"name": "ns"}})
    api.create(CONFIGMAPS, {"metadata": {"name": "boot", "namespace": "ns"}})
    return api


def test_versions_from_before_serving_are_expired() -> None:
    api = _bootstrapped()
    started_at = api.store.resource_version
    status, events = asyncio.run(_watch_lines(api, "resourceVersion=1"))
    assert status == 200
    assert events == [{"type": "ERROR", "object": {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": f"too old resource version: 1 ({started_at})", "reason": "Expired",
        "code": 410}}]


def test_watch_from_the_start_of_serving_replays_later_changes() -> None:
    api = _bootstrapped()
    started_at = api.store.resource_version

    def create() -> None:
        api.create(CONFIGMAPS, {"metadata": {"name": "later", "namespace": "ns"}})

    status, events = asyncio.run(_watch_lines(api, f"resourceVersion={started_at}", create))
    assert status == 200
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "later")]
