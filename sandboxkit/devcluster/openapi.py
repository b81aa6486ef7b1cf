"""A minimal OpenAPI v3 description: enough for clients to learn what the server validates.

kubectl asks ``/openapi/v3`` whether PATCH on a kind accepts the ``fieldValidation`` query
parameter; when it does, kubectl leaves validation to the server instead of downloading
full schemas. The documents list every served path and operation with the
``x-kubernetes-group-version-kind`` and ``x-kubernetes-action`` extensions, but carry no
object schemas (see the devcluster README).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .resources import RESOURCES, ResourceType

__all__ = ["group_version_document", "index"]

_WRITE_PARAMS = [
    {"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
    for name in ("dryRun", "fieldManager", "fieldValidation")
]


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _operation(rt: ResourceType, action: str, writes: bool) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": f"{action}{rt.kind}",
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {
            "group": rt.group, "version": rt.version, "kind": rt.kind,
        },
        "responses": {"200": {"description": "OK"}},
    }
    if writes:
        op["parameters"] = list(_WRITE_PARAMS)
    return op


def _paths(rt: ResourceType) -> dict[str, Any]:
    base = "/" + _gv_path(rt.group, rt.version)
    scope = f"{base}/namespaces/{{namespace}}/{rt.plural}" if rt.namespaced \
        else f"{base}/{rt.plural}"
    if rt.ephemeral:
        return {scope: {"post": _operation(rt, "post", True)}}
    return {
        scope: {"get": _operation(rt, "list", False), "post": _operation(rt, "post", True)},
        f"{scope}/{{name}}": {
            "get": _operation(rt, "get", False),
            "put": _operation(rt, "put", True),
            "patch": _operation(rt, "patch", True),
            "delete": _operation(rt, "delete", False),
        },
    }


def group_version_document(group: str, version: str) -> dict[str, Any] | None:
    members = [r for r in RESOURCES if r.group == group and r.version == version]
    if not members:
        return None
    paths: dict[str, Any] = {}
    for rt in members:
        paths.update(_paths(rt))
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": {}},
    }


def index() -> dict[str, Any]:
    """``/openapi/v3``: one entry per group/version, each URL carrying a content hash."""
    paths: dict[str, Any] = {}
    for gv in sorted({(r.group, r.version) for r in RESOURCES}):
        document = group_version_document(*gv)
        digest = hashlib.sha512(json.dumps(document, sort_keys=True).encode()).hexdigest()[:64]
        path = _gv_path(*gv)
        paths[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest.upper()}"}
    return {"paths": paths}
