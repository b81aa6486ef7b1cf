"""Who is calling: client certificates, ServiceAccount bearer tokens, anonymous, impersonation.

The order and outcomes follow kube-apiserver: a verified client certificate wins; otherwise
a ``Bearer`` token must be one this cluster issued, for a ServiceAccount (and bound Pod)
that still exists with the same uid, or the request fails with a bare 401; with neither,
the caller is ``system:anonymous``. ``Impersonate-*`` headers then switch identity, each
requested piece authorized separately with verb ``impersonate``, so
``kubectl auth can-i --as=system:serviceaccount:NS:NAME`` behaves as on a real cluster.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from . import errors
from .api import User
from .authz import Attributes, Decision, forbidden_error, service_account_username

__all__ = [
    "ANONYMOUS",
    "AUTHENTICATED",
    "UNAUTHENTICATED",
    "CertSubject",
    "authenticate",
    "impersonate",
    "service_account_groups",
]

AUTHENTICATED = "system:authenticated"
UNAUTHENTICATED = "system:unauthenticated"
ANONYMOUS = "system:anonymous"
_SA_PREFIX = "system:serviceaccount:"
_EXTRA_PREFIX = "impersonate-extra-"
_AUTH_GROUP = "authentication.k8s.io"
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


@dataclass(frozen=True)
class CertSubject:
    """The subject of a client certificate the TLS layer has already verified."""

    common_name: str
    organizations: tuple[str, ...] = ()

    @classmethod
    def from_peercert(cls, peercert: dict[str, Any] | None) -> CertSubject | None:
        """From ``SSLSocket.getpeercert()``, which is empty when no certificate was sent."""
        if not peercert:
            return None
        common_name = ""
        organizations: list[str] = []
        for rdn in peercert.get("subject", ()):
            for key, value in rdn:
                if key == "commonName":
                    common_name = value
                elif key == "organizationName":
                    organizations.append(value)
        return cls(common_name, tuple(organizations))


def service_account_groups(namespace: str) -> tuple[str, str]:
    return ("system:serviceaccounts", f"system:serviceaccounts:{namespace}")


def _header_pairs(headers: Mapping[str, str]) -> list[tuple[str, str]]:
    """All header lines with lower-cased names; a multidict yields repeated lines separately."""
    return [(name.lower(), value) for name, value in headers.items()]


def _first(pairs: list[tuple[str, str]], name: str) -> str:
    return next((value for key, value in pairs if key == name), "")


def _with_authenticated(groups: tuple[str, ...]) -> tuple[str, ...]:
    return groups if AUTHENTICATED in groups else (*groups, AUTHENTICATED)


def _from_token(
    claims: dict[str, Any],
    service_account_uid: Callable[[str, str], str | None],
    pod_uid: Callable[[str, str], str | None],
) -> User | None:
    """The ServiceAccount user for verified claims, if everything they name still exists."""
    binding = claims["kubernetes.io"]
    namespace = binding.get("namespace") or ""
    sa = binding["serviceaccount"]
    sa_name, sa_uid = sa.get("name") or "", sa.get("uid") or ""
    if service_account_uid(namespace, sa_name) != sa_uid:
        return None
    extra: dict[str, tuple[str, ...]] = {}
    pod = binding.get("pod")
    if isinstance(pod, dict):
        if pod_uid(namespace, pod.get("name") or "") != pod.get("uid"):
            return None
        extra["authentication.kubernetes.io/pod-name"] = (pod["name"],)
        extra["authentication.kubernetes.io/pod-uid"] = (pod["uid"],)
    if claims.get("jti"):
        extra["authentication.kubernetes.io/credential-id"] = (f"JTI={claims['jti']}",)
    return User(
        name=service_account_username(namespace, sa_name),
        groups=(*service_account_groups(namespace), AUTHENTICATED),
        uid=sa_uid,
        extra=extra,
    )


def _bearer_token(pairs: list[tuple[str, str]]) -> str:
    """The token of an ``Authorization: Bearer`` header; other schemes are not ours to judge."""
    parts = _first(pairs, "authorization").strip().split(" ")
    if len(parts) < 2 or parts[0].lower() != "bearer":
        return ""
    return parts[1]


def authenticate(
    cert: CertSubject | None,
    headers: Mapping[str, str],
    verify_token: Callable[[str], dict[str, Any] | None],
    service_account_uid: Callable[[str, str], str | None],
    pod_uid: Callable[[str, str], str | None],
    *,
    authorize: Callable[[Attributes], Decision],
) -> User:
    """The identity a request acts as, after impersonation.

    ``verify_token`` is ``TokenIssuer.verify``; ``service_account_uid(ns, name)`` and
    ``pod_uid(ns, name)`` return the uid of the live object or None; ``authorize`` is the
    authorizer consulted for impersonation. Raises ApiError 401 for a bad token, 403 for
    impersonation that is not allowed, 400 for groups or extras without a user.
    """
    pairs = _header_pairs(headers)
    if cert is not None and cert.common_name:
        user = User(cert.common_name, _with_authenticated(cert.organizations))
    elif token := _bearer_token(pairs):
        claims = verify_token(token)
        token_user = _from_token(claims, service_account_uid, pod_uid) if claims else None
        if token_user is None:
            raise errors.unauthorized()
        user = token_user
    else:
        user = User(ANONYMOUS, (UNAUTHENTICATED,))
    return impersonate(user, headers, authorize)


@dataclass(frozen=True)
class _Request:
    """One thing to impersonate, with the ObjectReference Kubernetes prints for it."""

    kind: str
    name: str
    namespace: str = ""
    api_version: str = ""
    field_path: str = ""

    def go_repr(self) -> str:
        # Go's %v of a v1.ObjectReference: its seven fields separated by spaces.
        fields = (self.kind, self.namespace, self.name, "", self.api_version, "",
                  self.field_path)
        return "{" + " ".join(fields) + "}"

    def attributes(self, requestor: User) -> Attributes:
        resource, group, subresource = {
            "ServiceAccount": ("serviceaccounts", "", ""),
            "User": ("users", "", ""),
            "Group": ("groups", "", ""),
            "UserExtra": ("userextras", _AUTH_GROUP, self.field_path),
            "UID": ("uids", _AUTH_GROUP, ""),
        }[self.kind]
        return Attributes(
            user=requestor, verb="impersonate", api_group=group, resource=resource,
            subresource=subresource, namespace=self.namespace, name=self.name,
        )


def _split_service_account(username: str) -> tuple[str, str] | None:
    """``(namespace, name)`` if ``username`` is a well-formed ServiceAccount username."""
    if not username.startswith(_SA_PREFIX):
        return None
    parts = username[len(_SA_PREFIX):].split(":")
    if len(parts) != 2:
        return None
    namespace, name = parts
    if len(namespace) > 63 or not _DNS_LABEL.fullmatch(namespace):
        return None
    if len(name) > 253 or not _DNS_SUBDOMAIN.fullmatch(name):
        return None
    return namespace, name


def _requests(pairs: list[tuple[str, str]]) -> list[_Request]:
    """The impersonation requests in the order kube-apiserver builds and checks them."""
    requests: list[_Request] = []
    username = _first(pairs, "impersonate-user")
    if username:
        sa = _split_service_account(username)
        if sa:
            requests.append(_Request("ServiceAccount", sa[1], namespace=sa[0]))
        else:
            requests.append(_Request("User", username))
    requests += [_Request("Group", v) for k, v in pairs if k == "impersonate-group"]
    requests += [
        _Request("UserExtra", v, api_version=f"{_AUTH_GROUP}/v1",
                 field_path=unquote(k[len(_EXTRA_PREFIX):]))
        for k, v in pairs if k.startswith(_EXTRA_PREFIX)
    ]
    uid = _first(pairs, "impersonate-uid")
    if uid:
        requests.append(_Request("UID", uid, api_version=f"{_AUTH_GROUP}/v1"))
    if requests and not username:
        listed = " ".join(r.go_repr() for r in requests)
        raise errors.bad_request(f"requested [{listed}] without impersonating a user")
    return requests


def impersonate(
    requestor: User,
    headers: Mapping[str, str],
    authorize: Callable[[Attributes], Decision],
) -> User:
    """Apply ``Impersonate-*`` headers, or return ``requestor`` when there are none."""
    pairs = _header_pairs(headers)
    requests = _requests(pairs)
    if not requests:
        return requestor
    groups_given = any(k == "impersonate-group" for k, _ in pairs)
    name, uid = "", ""
    groups: list[str] = []
    extra: dict[str, list[str]] = {}
    for request in requests:
        attrs = request.attributes(requestor)
        decision = authorize(attrs)
        if not decision.allowed:
            raise forbidden_error(attrs, decision.reason)
        if request.kind == "ServiceAccount":
            name = service_account_username(request.namespace, request.name)
            if not groups_given:
                groups = list(service_account_groups(request.namespace))
        elif request.kind == "User":
            name = request.name
        elif request.kind == "Group":
            groups.append(request.name)
        elif request.kind == "UserExtra":
            extra.setdefault(request.field_path, []).append(request.name)
        else:
            uid = request.name
    if name != ANONYMOUS:
        if AUTHENTICATED not in groups and UNAUTHENTICATED not in groups:
            groups.append(AUTHENTICATED)
    elif UNAUTHENTICATED not in groups:
        groups.append(UNAUTHENTICATED)
    return User(name, tuple(groups), uid, {k: tuple(v) for k, v in extra.items()})
