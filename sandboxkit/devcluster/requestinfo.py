"""Turn a request path and method into the attributes Kubernetes authorizes and routes on.

Mirrors the API server's request-info rules: ``/api/v1`` and ``/apis/GROUP/VERSION``
prefixes, ``namespaces/NS/`` scoping (except a namespace's own ``status`` and ``finalize``),
the legacy ``watch/`` prefix, and the verb from method plus name plus ``?watch``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["RequestInfo", "parse_request"]

_NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})
_TRUE = frozenset({"true", "1"})
# Connecting to a pod is a create, whatever the transport's method (websocket uses GET).
_CONNECT_SUBRESOURCES = frozenset({"exec", "attach", "portforward"})


@dataclass(frozen=True)
class RequestInfo:
    is_resource_request: bool
    path: str
    verb: str
    api_prefix: str = ""
    group: str = ""
    version: str = ""
    namespace: str | None = None
    resource: str = ""
    name: str = ""
    subresource: str = ""


def parse_request(method: str, path: str, query: Mapping[str, str]) -> RequestInfo:
    """Parse one request; a non-resource request carries the lower-cased method as verb."""
    parts = [p for p in path.split("/") if p]
    non_resource = RequestInfo(False, path, method.lower())
    if not parts or parts[0] not in ("api", "apis"):
        return non_resource
    prefix = parts[0]
    if prefix == "api":
        if len(parts) < 3:
            return non_resource
        group, version, rest = "", parts[1], parts[2:]
    else:
        if len(parts) < 4:
            return non_resource
        group, version, rest = parts[1], parts[2], parts[3:]
    watch_prefix = rest[0] == "watch"
    if watch_prefix:
        rest = rest[1:]
        if not rest:
            return non_resource
    namespace: str | None = None
    if rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    verb = _verb(method, name, subresource, watch_prefix or query.get("watch", "") in _TRUE)
    return RequestInfo(True, path, verb, prefix, group, version, namespace, resource, name,
                       subresource)


def _verb(method: str, name: str, subresource: str, watching: bool) -> str:
    if subresource in _CONNECT_SUBRESOURCES:
        return "create"
    method = method.upper()
    if method in ("GET", "HEAD"):
        if watching:
            return "watch"
        return "get" if name else "list"
    return {
        "POST": "create",
        "PUT": "update",
        "PATCH": "patch",
        "DELETE": "delete" if name else "deletecollection",
    }.get(method, method.lower())
