"""Findings shared by diagnose() and preflight(): a 403 or a denied access review -> the
Role rule to add; the sandboxkit RBAC objects absent -> the manifest to apply; no API
server -> where the settings came from.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..backends.kubernetes.api import RBAC_MANIFEST, request_json
from ..backends.kubernetes.client import Connection
from ..errors import PermissionDenied
from ..rbac import (
    APP_SERVICE_ACCOUNT,
    ROLE_NAME,
    SANDBOX_SERVICE_ACCOUNT,
    SEED_RULES,
    can_i,
    missing_rules_yaml,
    whoami,
)
from .report import Finding, Severity

__all__ = [
    "denied_finding",
    "forbidden_finding",
    "from_denied",
    "rbac_objects_finding",
    "unreachable_finding",
]


def forbidden_finding(api_group: str, resource: str, verb: str, namespace: str,
                      identity: str, evidence: str, severity: Severity = "error") -> Finding:
    """``identity`` may not ``verb`` ``resource``: the rule to add, and, when the sandboxkit
    Role grants it, the manifest to apply (for the ci-fixer-app identity)."""
    qualified = f"{resource}.{api_group}" if api_group else resource
    who = identity or "you"
    rule = missing_rules_yaml([{"api_group": api_group, "resource": resource, "verb": verb,
                                "expected": True, "allowed": False}])
    in_role = any(r.api_group == api_group and r.resource == resource and verb in r.verbs
                  for r in SEED_RULES)
    manifest = (f"install the sandboxkit RBAC and use its identity ({APP_SERVICE_ACCOUNT}): "
                f"kubectl apply -n {namespace} -f {RBAC_MANIFEST}\nor " if in_role else "")
    return Finding(
        severity, f"{who} may not {verb} {qualified} in namespace {namespace}", evidence,
        f"{manifest}add this rule to a Role bound to {who}:\n{rule}"
        f"check with: kubectl auth can-i {verb} {qualified} -n {namespace}", "Forbidden")


def from_denied(denied: PermissionDenied, namespace: str,
                severity: Severity = "error") -> Finding:
    """A 403 the API answered (``request_json`` made it a :class:`PermissionDenied`); the
    evidence is the API's own message, which PermissionDenied quotes last."""
    resource, _, group = denied.resource.partition(".")
    api_said = str(denied).rpartition("The API said: ")[2]
    return forbidden_finding(group, resource, denied.verb, denied.namespace or namespace,
                             denied.identity, f"403 Forbidden: {api_said}", severity)


def unreachable_finding(conn: Connection, exc: Exception) -> Finding:
    """No answer from the API server (refused, TLS, 401): say which settings were used."""
    return Finding(
        "error", f"the API server at {conn.configuration.host} does not answer",
        f"{type(exc).__name__}: {exc}",
        f"check the cluster settings ({conn.source}): kubectl cluster-info\n"
        "no cluster? start a local one: eval \"$(sandboxkit devcluster start)\"",
        "Unreachable")


def denied_finding(conn: Connection, api_group: str, resource: str, verb: str,
                   namespace: str) -> Finding | None:
    """A finding when a SelfSubjectAccessReview says the caller may not; None when it may,
    or when even the review is refused (then nothing can be said)."""
    try:
        allowed, reason = can_i(conn, api_group, resource, verb, namespace)
    except PermissionDenied:
        return None
    if allowed:
        return None
    identity = whoami(conn)
    qualified = f"{resource}.{api_group}" if api_group else resource
    evidence = (f"SelfSubjectAccessReview {verb} {qualified} in {namespace}: allowed=false"
                + (f" ({reason})" if reason else ""))
    return forbidden_finding(api_group, resource, verb, namespace, identity, evidence)


def rbac_objects_finding(conn: Connection, namespace: str, *,
                         sandbox_account: str = SANDBOX_SERVICE_ACCOUNT,
                         blocking: bool = True) -> Finding | None:
    """Which of the manifest's Role and ServiceAccounts (and ``sandbox_account``, the one
    pods run as) are absent; None when all exist, or when the caller may not read them
    (ci-fixer-app may not: nothing to conclude from that).

    A missing ``sandbox_account`` is always an error (no pod can be created); the Role and
    the app account only when ``blocking``: an administrator needs neither to run sandboxes.
    """
    from kubernetes.client import RbacAuthorizationV1Api
    from kubernetes.client.exceptions import ApiException

    core, rbac_api = conn.core(), RbacAuthorizationV1Api(conn.api_client())
    reads: list[tuple[str, Callable[..., Any], str]] = [
        ("role", rbac_api.read_namespaced_role, ROLE_NAME),
        ("serviceaccount", core.read_namespaced_service_account, APP_SERVICE_ACCOUNT),
        ("serviceaccount", core.read_namespaced_service_account, sandbox_account),
    ]
    missing = []
    for kind, read, name in dict.fromkeys(reads):
        try:
            request_json(read, name, namespace)
        except PermissionDenied:
            return None
        except ApiException as exc:
            if exc.status != 404:
                raise
            missing.append(f"{kind}/{name}")
    if not missing:
        return None
    severity = ("error" if blocking or f"serviceaccount/{sandbox_account}" in missing
                else "warning")
    return Finding(
        severity, f"the sandboxkit RBAC is not (fully) installed in namespace {namespace}",
        "not found: " + ", ".join(missing),
        f"kubectl apply -n {namespace} -f {RBAC_MANIFEST}   "
        f"(or: sandboxkit rbac apply -n {namespace})", "NotFound")
