"""Apply, verify and remove the RBAC sandboxkit needs in a namespace (``k8s/rbac/k8s.yaml``).

Two identities: ``ci-fixer-app`` creates sandboxes and is bound to the Role
``ci-fixer-sandbox-manager`` (the seed design's rules, :data:`SEED_RULES`);
``ci-fixer-sandbox`` runs the untrusted code and may do nothing at all. The seed bound both
accounts; binding only the app's keeps a command inside a sandbox from starting sandboxes,
exec'ing into its neighbours or reading the namespace's Secrets.

Why SubjectAccessReviews for :func:`verify`: they ask the cluster's own authorizer, so the
answer holds whatever grants the permission (this Role, an aggregated ClusterRole, a
webhook) and shows what is granted too much, which reading Roles back cannot.
:func:`apply` uses server-side apply, so re-applying is a no-op that leaves uids, and with
them the ServiceAccounts' tokens, untouched.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .backends.kubernetes.api import api_error, request_json
from .backends.kubernetes.client import Connection, connected
from .errors import PermissionDenied, ServiceAccountMissing

if TYPE_CHECKING:
    import pandas

__all__ = [
    "APP_SERVICE_ACCOUNT",
    "BINDING_NAME",
    "ROLE_NAME",
    "SANDBOX_SERVICE_ACCOUNT",
    "SEED_RULES",
    "Rule",
    "apply",
    "can_i",
    "connect_as",
    "load_manifests",
    "manifest_path",
    "missing_rules_yaml",
    "uninstall",
    "verify",
    "whoami",
]

ROLE_NAME = "ci-fixer-sandbox-manager"
BINDING_NAME = "ci-fixer-sandbox-binding"
APP_SERVICE_ACCOUNT = "ci-fixer-app"
SANDBOX_SERVICE_ACCOUNT = "ci-fixer-sandbox"
FIELD_MANAGER = "sandboxkit"
_RBAC_GROUP = "rbac.authorization.k8s.io"
# A verdict is one line: it names this many failures, the frame has them all.
_VERDICT_FAILURES = 5
_ALL_VERBS = ("get", "list", "watch", "create", "update", "patch", "delete")


@dataclass(frozen=True)
class Rule:
    """One resource of a Role rule: ``resource`` may name a subresource (``pods/exec``)."""

    api_group: str
    resource: str
    verbs: tuple[str, ...]


# The seed design's Role, one entry per resource. `patch` on jobs is also what a warm-pool
# claim needs (a conditional label PATCH, sandboxkit.pool); nothing beyond the seed's.
SEED_RULES: tuple[Rule, ...] = (
    Rule("batch", "jobs", _ALL_VERBS),
    Rule("", "pods", ("get", "list", "watch", "delete")),
    Rule("", "pods/exec", ("create",)),
    Rule("", "pods/log", ("get",)),
    Rule("", "configmaps", _ALL_VERBS),
    Rule("", "secrets", _ALL_VERBS),
)


@dataclass(frozen=True)
class _Check:
    """One access question; ``namespace`` "" asks at cluster scope."""

    api_group: str
    resource: str
    verb: str
    namespace: str
    expected: bool


def _forbidden_checks(namespace: str) -> list[_Check]:
    """What a sandbox manager must NOT be able to do, and why each matters.

    Pods directly (they escape the Job's shape, TTL and deadline), attach and port-forward
    (exec is the one channel), tokens (minting another account's), RBAC writes, bind and
    escalate (granting itself more), and anything outside its namespace.
    """
    other = "kube-system" if namespace != "kube-system" else "default"
    return [
        _Check("", "pods", "create", namespace, False),
        _Check("", "pods/attach", "create", namespace, False),
        _Check("", "pods/portforward", "create", namespace, False),
        _Check("", "serviceaccounts/token", "create", namespace, False),
        _Check(_RBAC_GROUP, "roles", "create", namespace, False),
        _Check(_RBAC_GROUP, "rolebindings", "create", namespace, False),
        _Check(_RBAC_GROUP, "roles", "escalate", namespace, False),
        _Check(_RBAC_GROUP, "roles", "bind", namespace, False),
        _Check("", "secrets", "get", other, False),
        _Check("batch", "jobs", "create", other, False),
        _Check("", "nodes", "list", "", False),
    ]


def _checks(namespace: str, grants_expected: bool) -> list[_Check]:
    granted = [_Check(rule.api_group, rule.resource, verb, namespace, grants_expected)
               for rule in SEED_RULES for verb in rule.verbs]
    return granted + _forbidden_checks(namespace)


# --- manifests ----------------------------------------------------------------------------


def manifest_path() -> Path:
    """``k8s/rbac/k8s.yaml`` as shipped inside the package (a copy in wheels)."""
    return Path(__file__).parent / "data" / "rbac.yaml"


def load_manifests(namespace: str | None = None, path: str | Path | None = None) -> list[dict]:
    """The manifest's objects; with ``namespace``, each placed in it (as ``kubectl -n``)."""
    text = Path(path or manifest_path()).read_text()
    objects = [obj for obj in yaml.safe_load_all(text) if obj]
    if namespace:
        for obj in objects:
            obj.setdefault("metadata", {})["namespace"] = namespace
    return objects


def _kind_ref(obj: dict[str, Any]) -> str:
    """``serviceaccount`` or ``role.rbac.authorization.k8s.io``, as kubectl prints kinds."""
    group = obj["apiVersion"].rpartition("/")[0]
    return f"{obj['kind'].lower()}.{group}" if group else obj["kind"].lower()


def _manage_denied(exc: Exception, action: str, namespace: str) -> Exception:
    translated = api_error(exc)
    if not isinstance(translated, PermissionDenied):
        return translated
    return PermissionDenied(
        f"{translated.identity or 'you'} may not {action} the sandboxkit RBAC objects in "
        f"namespace {namespace}: that needs a namespace admin (the `admin` ClusterRole), who "
        f"must also hold every permission the Role grants. Ask one to run `kubectl {action} "
        f"-n {namespace} -f k8s/rbac/k8s.yaml`. The API said: {translated}",
        verb=translated.verb, resource=translated.resource, namespace=namespace,
        identity=translated.identity,
    )


def apply(namespace: str | None = None, path: str | Path | None = None, *,
          connection: Connection | None = None) -> list[str]:
    """Server-side apply the manifest; one ``kind/name created|configured|unchanged`` line each.

    Conflicts are forced: the manifest is the source of truth for the fields it sets, and
    fields it does not set (a ServiceAccount's ``secrets``) are left alone.
    """
    from kubernetes.client.exceptions import ApiException
    from kubernetes.dynamic import DynamicClient
    from kubernetes.dynamic.exceptions import NotFoundError

    lines: list[str] = []
    with connected(connection) as conn:
        ns = namespace or conn.namespace
        dynamic = DynamicClient(conn.api_client())
        for obj in load_manifests(ns, path):
            name = obj["metadata"]["name"]
            try:
                resource = dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
                try:
                    before = resource.get(name=name, namespace=ns).metadata.resourceVersion
                except NotFoundError:
                    before = None
                after = resource.server_side_apply(
                    body=obj, namespace=ns, field_manager=FIELD_MANAGER, force_conflicts=True)
            except ApiException as exc:  # the dynamic client's errors are ApiExceptions
                raise _manage_denied(exc, "apply", ns) from exc
            if before is None:
                state = "created"
            elif after.metadata.resourceVersion == before:
                state = "unchanged"
            else:
                state = "configured"
            lines.append(f"{_kind_ref(obj)}/{name} {state}")
    return lines


def uninstall(namespace: str | None = None, path: str | Path | None = None, *,
              connection: Connection | None = None) -> list[str]:
    """Delete what :func:`apply` made (binding first); absent objects are reported, not errors.

    Lines read as kubectl's: ``serviceaccount "ci-fixer-app" deleted`` or ``... not found``.
    """
    from kubernetes.client.exceptions import ApiException
    from kubernetes.dynamic import DynamicClient
    from kubernetes.dynamic.exceptions import NotFoundError

    lines: list[str] = []
    with connected(connection) as conn:
        ns = namespace or conn.namespace
        dynamic = DynamicClient(conn.api_client())
        for obj in reversed(load_manifests(ns, path)):
            name = obj["metadata"]["name"]
            resource = dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
            try:
                resource.delete(name=name, namespace=ns)
                outcome = "deleted"
            except NotFoundError:
                outcome = "not found"
            except ApiException as exc:  # the dynamic client's errors are ApiExceptions
                raise _manage_denied(exc, "delete", ns) from exc
            lines.append(f'{_kind_ref(obj)} "{name}" {outcome}')
    return lines


# --- acting as an account -----------------------------------------------------------------


def connect_as(service_account: str, namespace: str | None = None, *,
               connection: Connection | None = None,
               expiration_seconds: int = 3600) -> Connection:
    """A :class:`Connection` that authenticates as ``service_account`` and nothing else.

    Why: least privilege is only shown by acting with it. The token comes from the
    TokenRequest API (``kubectl create token``), so it expires and is bound to the
    ServiceAccount's uid; server, CA and TLS settings are ``connection``'s, and no client
    certificate or other credential of the caller is carried over. Creating the token needs
    ``create serviceaccounts/token`` (a namespace admin has it; ``ci-fixer-app`` does not).
    The token lives only in the returned configuration: no repr, log or message shows it.
    """
    from kubernetes.client import Configuration
    from kubernetes.client.exceptions import ApiException

    with connected(connection) as conn:
        ns = namespace or conn.namespace
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"expirationSeconds": expiration_seconds}}
        try:
            review = request_json(conn.core().create_namespaced_service_account_token,
                                  service_account, ns, body)
        except ApiException as exc:
            if exc.status == 404:
                raise ServiceAccountMissing(
                    f"no ServiceAccount {service_account} in namespace {ns}: create it "
                    f"(`sandboxkit rbac apply -n {ns}` makes {APP_SERVICE_ACCOUNT} and "
                    f"{SANDBOX_SERVICE_ACCOUNT})", reason="NotFound") from None
            raise
        source = conn.configuration
        configuration = Configuration()
        configuration.host = source.host
        configuration.verify_ssl = source.verify_ssl
        configuration.ssl_ca_cert = source.ssl_ca_cert
        configuration.ca_cert_data = source.ca_cert_data
        configuration.tls_server_name = source.tls_server_name
        configuration.proxy = source.proxy
        configuration.no_proxy = source.no_proxy
        configuration.api_key = {"authorization": f"Bearer {review['status']['token']}"}
    return Connection(configuration, ns,
                      f"ServiceAccount {service_account} of {ns} (TokenRequest token)")


# --- verify -------------------------------------------------------------------------------


def _attributes(check: _Check) -> dict[str, str]:
    resource, _, subresource = check.resource.partition("/")
    attributes = {"verb": check.verb, "group": check.api_group, "resource": resource}
    if subresource:
        attributes["subresource"] = subresource
    if check.namespace:
        attributes["namespace"] = check.namespace
    return attributes


def _review(conn: Connection, check: _Check, subject: dict[str, Any] | None) -> dict[str, Any]:
    """The review's status: a SelfSubjectAccessReview, or a SubjectAccessReview for
    ``subject`` (``{"user": ..., "groups": [...]}``)."""
    from kubernetes.client import AuthorizationV1Api

    api = AuthorizationV1Api(conn.api_client())
    spec: dict[str, Any] = {"resourceAttributes": _attributes(check)}
    if subject is None:
        body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                "spec": spec}
        return request_json(api.create_self_subject_access_review, body).get("status") or {}
    body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {**spec, **subject}}
    return request_json(api.create_subject_access_review, body).get("status") or {}


def _decision(status: dict[str, Any]) -> tuple[bool, str]:
    """A review status as (allowed, the authorizer's reason or "")."""
    allowed = bool(status.get("allowed")) and not status.get("denied")
    return allowed, str(status.get("reason") or status.get("evaluationError") or "")


def can_i(conn: Connection, api_group: str, resource: str, verb: str,
          namespace: str) -> tuple[bool, str]:
    """Whether the caller may ``verb`` ``resource`` (``pods/exec`` names a subresource) in
    ``namespace``, and the authorizer's reason: ``kubectl auth can-i`` for one question."""
    return _decision(_review(conn, _Check(api_group, resource, verb, namespace, True), None))


def _review_denied(exc: PermissionDenied, subject: dict[str, Any] | None) -> PermissionDenied:
    who = exc.identity or "you"
    if subject is None:
        advice = ("every authenticated user may normally create them (the system:basic-user "
                  "ClusterRole); ask a cluster administrator to restore that binding")
        resource = "selfsubjectaccessreviews.authorization.k8s.io"
    else:
        advice = ("asking about another identity needs cluster-wide `create "
                  "subjectaccessreviews` (cluster-admin has it): run verify() with such "
                  "credentials, or as that ServiceAccount without service_account=")
        resource = "subjectaccessreviews.authorization.k8s.io"
    return PermissionDenied(f"{who} may not create {resource}, which verify() needs: "
                            f"{advice}. The API said: {exc}",
                            verb="create", resource=resource, identity=exc.identity)


def whoami(conn: Connection) -> str:
    """The caller's user name (SelfSubjectReview), or "" where the cluster cannot say."""
    from kubernetes.client import AuthenticationV1Api

    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    try:
        review = request_json(AuthenticationV1Api(conn.api_client()).create_self_subject_review,
                              body)
    except Exception:  # an older cluster or a denial: verify works without the name
        return ""
    return str(((review.get("status") or {}).get("userInfo") or {}).get("username") or "")


def _describe_failure(row: dict[str, Any], namespace: str) -> str:
    where = ("" if row["namespace"] == namespace
             else " cluster-wide" if not row["namespace"] else f" in {row['namespace']}")
    outcome = "denied" if row["expected"] else "allowed"
    return f"{row['resource']} {row['verb']}{where} {outcome}"


def missing_rules_yaml(rows: list[dict[str, Any]]) -> str:
    """Role rules granting exactly the expected-but-denied rows, resources sharing verbs
    merged into one rule; JSON lists are YAML flow sequences, as in k8s/rbac/k8s.yaml."""
    missing: dict[tuple[str, str], list[str]] = {}
    for row in rows:
        if row["expected"] and not row["allowed"]:
            missing.setdefault((row["api_group"], row["resource"]), []).append(row["verb"])
    rules: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for (group, resource), verbs in missing.items():
        rules.setdefault((group, tuple(verbs)), []).append(resource)
    if not rules:
        return ""
    lines = ["rules:"]
    for (group, verbs), resources in rules.items():
        lines += [f"  - apiGroups: {json.dumps([group])}",
                  f"    resources: {json.dumps(resources)}",
                  f"    verbs: {json.dumps(list(verbs))}"]
    return "\n".join(lines) + "\n"


def verify(namespace: str | None = None, service_account: str | None = None, *,
           connection: Connection | None = None) -> pandas.DataFrame:
    """Ask the cluster what an identity may do in ``namespace``, against what it should.

    Without ``service_account``: the caller (SelfSubjectAccessReview). With it: that
    ServiceAccount of ``namespace`` (SubjectAccessReview, as its token would authenticate).
    Every row of :data:`SEED_RULES` is expected allowed, and a set of dangerous permissions
    denied; for ``ci-fixer-sandbox`` nothing at all is expected allowed. Columns: api_group,
    resource, verb, namespace ("" = cluster scope), expected, allowed, ok, reason;
    ``attrs``: ``verdict`` (one line), ``missing_yaml`` (Role rules to add, "" if none),
    ``identity`` (the user name asked about, "" if the cluster would not say).
    """
    import pandas

    with connected(connection) as conn:
        ns = namespace or conn.namespace
        subject: dict[str, Any] | None = None
        if service_account:
            identity = f"system:serviceaccount:{ns}:{service_account}"
            subject = {"user": identity, "groups": [
                "system:serviceaccounts", f"system:serviceaccounts:{ns}",
                "system:authenticated"]}
        else:
            identity = whoami(conn)
        rows: list[dict[str, Any]] = []
        for check in _checks(ns, service_account != SANDBOX_SERVICE_ACCOUNT):
            try:
                status = _review(conn, check, subject)
            except PermissionDenied as exc:
                raise _review_denied(exc, subject) from exc
            allowed, reason = _decision(status)
            if not (reason or allowed):
                reason = "no role bound to this identity grants it"
            rows.append({"api_group": check.api_group, "resource": check.resource,
                         "verb": check.verb, "namespace": check.namespace,
                         "expected": check.expected, "allowed": allowed,
                         "ok": allowed == check.expected, "reason": reason})
    who = service_account or identity.rpartition(":")[2] or "current identity"
    failures = [_describe_failure(row, ns) for row in rows if not row["ok"]]
    if failures:
        shown = failures[:_VERDICT_FAILURES]
        more = len(failures) - len(shown)
        verdict = (f"{who} in {ns}: {len(failures)} of {len(rows)} checks fail: "
                   + ", ".join(shown) + (f" and {more} more" if more else ""))
    else:
        verdict = f"{who} in {ns}: all {len(rows)} checks pass"
    frame = pandas.DataFrame(rows, columns=["api_group", "resource", "verb", "namespace",
                                            "expected", "allowed", "ok", "reason"])
    frame.attrs.update(verdict=verdict, missing_yaml=missing_rules_yaml(rows), identity=identity)
    return frame
