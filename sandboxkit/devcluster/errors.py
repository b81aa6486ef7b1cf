"""API errors as a real kube-apiserver reports them.

Every failure the devcluster answers with is a ``metav1.Status`` whose ``reason``,
``code`` and ``message`` follow the wording of the Kubernetes API server, because
clients (kubectl, the official Python client, sandboxkit itself) branch on them.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ApiError",
    "already_exists",
    "bad_request",
    "conflict",
    "forbidden",
    "gone",
    "invalid",
    "method_not_allowed",
    "no_route",
    "not_found",
    "qualified",
    "status_body",
    "status_details",
    "too_large",
    "unauthorized",
]


def qualified(resource: str, group: str) -> str:
    """``jobs.batch`` for grouped resources, ``pods`` for the core group."""
    return f"{resource}.{group}" if group else resource


def status_body(
    code: int,
    reason: str,
    message: str,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``Status`` object with ``status: Failure`` as the API server serializes it."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return body


class ApiError(Exception):
    """An error that becomes a ``metav1.Status`` response."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict[str, Any]:
        return status_body(self.code, self.reason, self.message, self.details)


def status_details(name: str | None, group: str, kind: str) -> dict[str, Any]:
    """``StatusDetails``: empty fields are left out (``omitempty``), so the core group too."""
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    details["kind"] = kind
    return details


def not_found(resource: str, group: str, name: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'{qualified(resource, group)} "{name}" not found',
        status_details(name, group, resource),
    )


def already_exists(resource: str, group: str, name: str) -> ApiError:
    return ApiError(
        409,
        "AlreadyExists",
        f'{qualified(resource, group)} "{name}" already exists',
        status_details(name, group, resource),
    )


def conflict(resource: str, group: str, name: str, why: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {qualified(resource, group)} "{name}": {why}',
        status_details(name, group, resource),
    )


def invalid(kind: str, group: str, name: str, causes: list[dict[str, str]]) -> ApiError:
    """422 Invalid; each cause has ``field``, ``reason`` (``FieldValueInvalid``...) and ``message``.

    The message reads ``Job.batch "x" is invalid: <field>: <message>`` as the API server
    words it, with several causes bracketed and comma-separated.
    """
    summary = ", ".join(f"{c['field']}: {c['message']}" for c in causes)
    shown = f"[{summary}]" if len(causes) > 1 else summary
    details = status_details(name, group, kind)
    details["causes"] = causes
    message = f'{qualified(kind, group)} "{name}" is invalid: {shown}'
    return ApiError(422, "Invalid", message, details)


def forbidden(
    user: str, verb: str, resource: str, group: str, namespace: str | None, name: str = "",
    subresource: str = "",
) -> ApiError:
    """403 Forbidden worded exactly as the RBAC authorizer's denial."""
    res = f"{resource}/{subresource}" if subresource else resource
    target = qualified(resource, group)
    if name:
        target = f'{target} "{name}"'
    scope = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
    message = (
        f'{target} is forbidden: User "{user}" cannot {verb} resource "{res}" '
        f'in API group "{group}"{scope}'
    )
    return ApiError(403, "Forbidden", message, status_details(name or None, group, resource))


def no_route() -> ApiError:
    """404 for a path that names no served resource."""
    return ApiError(404, "NotFound", "the server could not find the requested resource")


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def method_not_allowed() -> ApiError:
    return ApiError(
        405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
    )


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def too_large(message: str = "Request entity too large: limit is 3145728") -> ApiError:
    return ApiError(413, "RequestEntityTooLarge", message)
