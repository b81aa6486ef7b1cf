"""The RBAC authorizer, evaluated the way kube-apiserver's rbac plugin evaluates it.

Matching (verbs, API groups, ``*/subresource``, resourceNames, nonResourceURL prefixes,
ServiceAccount subject namespace defaulting), the order bindings are visited in, the
``RBAC: allowed by ...`` reasons, the ``RBAC: clusterrole... not found`` reasons and the
Forbidden wording all follow Kubernetes, because sandboxkit's RBAC tutorial and
``kubectl auth can-i`` show them verbatim. Members of ``system:masters`` are allowed
everything before RBAC is consulted, as the API server's privileged-group authorizer does.

ClusterRoles with an ``aggregationRule`` are evaluated with the rules the ClusterRole
aggregation controller would have written into them, so a role labelled
``rbac.authorization.k8s.io/aggregate-to-edit`` extends ``edit`` immediately.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from . import errors
from .api import User
from .selectors import label_selector_from_dict

__all__ = [
    "Attributes",
    "Decision",
    "Lister",
    "RbacAuthorizer",
    "access_review_status",
    "aggregate_error",
    "forbidden_error",
    "review_attributes",
    "review_user",
    "rule_allows",
    "service_account_username",
]

PRIVILEGED_GROUP = "system:masters"
_SA_PREFIX = "system:serviceaccount:"

# lister(kind, namespace) -> stored objects of that kind ("Role", "RoleBinding",
# "ClusterRole", "ClusterRoleBinding"); namespace is None for the cluster-scoped kinds.
Lister = Callable[[str, str | None], list[dict[str, Any]]]


@dataclass(frozen=True)
class Attributes:
    """What a request asks to do (``authorizer.Attributes`` in Kubernetes)."""

    user: User
    verb: str
    api_group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    resource_request: bool = True
    path: str = ""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""


def service_account_username(namespace: str, name: str) -> str:
    return f"{_SA_PREFIX}{namespace}:{name}"


def aggregate_error(messages: list[str]) -> str:
    """Join errors as Go's ``utilerrors.Aggregate`` prints them (deduplicated, bracketed)."""
    unique = list(dict.fromkeys(messages))
    if len(unique) == 1:
        return unique[0]
    return "[" + ", ".join(unique) + "]"


def _verb_matches(rule: dict[str, Any], verb: str) -> bool:
    return any(v in ("*", verb) for v in rule.get("verbs") or [])


def _group_matches(rule: dict[str, Any], group: str) -> bool:
    return any(g in ("*", group) for g in rule.get("apiGroups") or [])


def _resource_matches(rule: dict[str, Any], combined: str, subresource: str) -> bool:
    for resource in rule.get("resources") or []:
        if resource in ("*", combined):
            return True
        if subresource and resource == f"*/{subresource}":
            return True
    return False


def _name_matches(rule: dict[str, Any], name: str) -> bool:
    # A rule with resourceNames never matches a request without a name (create, list,
    # watch, deletecollection), exactly as in Kubernetes.
    names = rule.get("resourceNames") or []
    return not names or name in names


def _url_matches(rule: dict[str, Any], path: str) -> bool:
    for url in rule.get("nonResourceURLs") or []:
        if url in ("*", path):
            return True
        if url.endswith("*") and path.startswith(url.rstrip("*")):
            return True
    return False


def rule_allows(attrs: Attributes, rule: dict[str, Any]) -> bool:
    """Whether one PolicyRule covers the request."""
    if not attrs.resource_request:
        return _verb_matches(rule, attrs.verb) and _url_matches(rule, attrs.path)
    combined = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    return (
        _verb_matches(rule, attrs.verb)
        and _group_matches(rule, attrs.api_group)
        and _resource_matches(rule, combined, attrs.subresource)
        and _name_matches(rule, attrs.name)
    )


def _subject_applies(user: User, subject: dict[str, Any], namespace: str) -> bool:
    kind, name = subject.get("kind"), subject.get("name", "")
    if kind == "User":
        return user.name == name
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        # A RoleBinding may name a ServiceAccount without a namespace: it means its own.
        sa_namespace = subject.get("namespace") or namespace
        return bool(sa_namespace) and user.name == service_account_username(sa_namespace, name)
    return False


def _describe_subject(subject: dict[str, Any], binding_namespace: str) -> str:
    kind, name = subject.get("kind", ""), subject.get("name", "")
    if kind == "ServiceAccount":
        return f'{kind} "{name}/{subject.get("namespace") or binding_namespace}"'
    return f'{kind} "{name}"'


def _describe_binding(binding: dict[str, Any], subject: dict[str, Any]) -> str:
    """The ``allowed by`` source as Kubernetes' binding describers print it."""
    meta, ref = binding["metadata"], binding.get("roleRef") or {}
    namespace = meta.get("namespace") or ""
    if binding.get("kind") == "ClusterRoleBinding":
        label = f'ClusterRoleBinding "{meta["name"]}"'
    else:
        label = f'RoleBinding "{meta["name"]}/{namespace}"'
    role = f'{ref.get("kind", "")} "{ref.get("name", "")}"'
    return f"{label} of {role} to {_describe_subject(subject, namespace)}"


class _Snapshot:
    """Objects listed once per evaluation, so one request sees one consistent policy."""

    def __init__(self, lister: Lister) -> None:
        self._lister = lister
        self._cluster_roles: dict[str, dict[str, Any]] | None = None
        self._roles: dict[str, dict[str, dict[str, Any]]] = {}

    def cluster_roles(self) -> dict[str, dict[str, Any]]:
        if self._cluster_roles is None:
            listed = self._lister("ClusterRole", None)
            self._cluster_roles = {o["metadata"]["name"]: o for o in listed}
        return self._cluster_roles

    def roles(self, namespace: str) -> dict[str, dict[str, Any]]:
        if namespace not in self._roles:
            listed = self._lister("Role", namespace)
            self._roles[namespace] = {o["metadata"]["name"]: o for o in listed}
        return self._roles[namespace]

    def cluster_role_rules(self, name: str, seen: frozenset[str] = frozenset()) -> list[dict]:
        role = self.cluster_roles().get(name)
        if role is None:
            raise LookupError(f'clusterrole.rbac.authorization.k8s.io "{name}" not found')
        aggregation = role.get("aggregationRule")
        if not aggregation:
            return list(role.get("rules") or [])
        # What the aggregation controller writes: the union of the rules of every other
        # ClusterRole some selector matches, in name order, without duplicates.
        rules: list[dict[str, Any]] = []
        selectors = [label_selector_from_dict(s)
                     for s in aggregation.get("clusterRoleSelectors") or []]
        for other_name in sorted(self.cluster_roles()):
            other = self.cluster_roles()[other_name]
            labels = other["metadata"].get("labels") or {}
            if other_name == name or other_name in seen:
                continue
            if not any(s.matches(labels) for s in selectors):
                continue
            for rule in self.cluster_role_rules(other_name, seen | {name}):
                if rule not in rules:
                    rules.append(rule)
        return rules

    def role_ref_rules(self, ref: dict[str, Any], namespace: str) -> list[dict[str, Any]]:
        kind, name = ref.get("kind", ""), ref.get("name", "")
        if kind == "ClusterRole":
            return self.cluster_role_rules(name)
        if kind == "Role":
            role = self.roles(namespace).get(name)
            if role is None:
                raise LookupError(f'role.rbac.authorization.k8s.io "{name}" not found')
            return list(role.get("rules") or [])
        raise LookupError(f'unsupported role reference kind: "{kind}"')


@dataclass(frozen=True)
class _Grant:
    """One rule and the binding it came through, as ``_visit`` yields it."""

    source: str
    rule: dict[str, Any]


class RbacAuthorizer:
    """Authorizes requests against the Roles and bindings ``lister`` returns."""

    def __init__(self, lister: Lister) -> None:
        self._lister = lister

    def _visit(self, user: User, namespace: str) -> Iterator[_Grant | str]:
        """Every rule granted to ``user`` in ``namespace``, cluster bindings first.

        A binding whose role cannot be resolved yields its error message instead.
        """
        snapshot = _Snapshot(self._lister)
        bindings = sorted(self._lister("ClusterRoleBinding", None),
                          key=lambda b: b["metadata"]["name"])
        scoped = [("", b) for b in bindings]
        if namespace:
            role_bindings = sorted(self._lister("RoleBinding", namespace),
                                   key=lambda b: b["metadata"]["name"])
            scoped += [(namespace, b) for b in role_bindings]
        for binding_namespace, binding in scoped:
            subject = next((s for s in binding.get("subjects") or []
                            if _subject_applies(user, s, binding_namespace)), None)
            if subject is None:
                continue
            try:
                rules = snapshot.role_ref_rules(binding.get("roleRef") or {}, binding_namespace)
            except LookupError as exc:
                yield str(exc.args[0])
                continue
            source = _describe_binding(binding, subject)
            for rule in rules:
                yield _Grant(source, rule)

    def authorize(self, attrs: Attributes) -> Decision:
        if PRIVILEGED_GROUP in attrs.user.groups:
            return Decision(True)
        failures: list[str] = []
        for item in self._visit(attrs.user, attrs.namespace):
            if isinstance(item, str):
                failures.append(item)
            elif rule_allows(attrs, item.rule):
                return Decision(True, f"RBAC: allowed by {item.source}")
        return Decision(False, f"RBAC: {aggregate_error(failures)}" if failures else "")

    def rules_for(self, user: User, namespace: str) -> dict[str, Any]:
        """The ``SubjectRulesReviewStatus`` a SelfSubjectRulesReview answers with."""
        resource_rules: list[dict[str, Any]] = []
        non_resource_rules: list[dict[str, Any]] = []
        failures: list[str] = []
        for item in self._visit(user, namespace):
            if isinstance(item, str):
                failures.append(item)
                continue
            rule = item.rule
            if rule.get("resources"):
                entry: dict[str, Any] = {"verbs": list(rule.get("verbs") or [])}
                for key in ("apiGroups", "resources", "resourceNames"):
                    if rule.get(key):
                        entry[key] = list(rule[key])
                resource_rules.append(entry)
            if rule.get("nonResourceURLs"):
                non_resource_rules.append({
                    "verbs": list(rule.get("verbs") or []),
                    "nonResourceURLs": list(rule["nonResourceURLs"]),
                })
        status: dict[str, Any] = {
            "resourceRules": resource_rules,
            "nonResourceRules": non_resource_rules,
            "incomplete": False,
        }
        if failures:
            status["evaluationError"] = aggregate_error(failures)
        return status


def access_review_status(decision: Decision) -> dict[str, Any]:
    """``SubjectAccessReviewStatus``; RBAC never denies outright, it only has no opinion."""
    status: dict[str, Any] = {"allowed": decision.allowed}
    if decision.reason:
        status["reason"] = decision.reason
    return status


def forbidden_error(attrs: Attributes, reason: str = "") -> errors.ApiError:
    """The 403 the API server returns for a denied request, with RBAC's reason appended."""
    if attrs.resource_request:
        err = errors.forbidden(
            attrs.user.name, attrs.verb, attrs.resource, attrs.api_group,
            attrs.namespace or None, attrs.name, attrs.subresource,
        )
        message, details = err.message, err.details
    else:
        message = f'forbidden: User "{attrs.user.name}" cannot {attrs.verb} path "{attrs.path}"'
        details = None
    if reason:
        message = f"{message}: {reason}"
    return errors.ApiError(403, "Forbidden", message, details)


def review_attributes(spec: dict[str, Any], user: User) -> Attributes:
    """Attributes of a (Self|Local)SubjectAccessReview spec, checked on behalf of ``user``."""
    resource = spec.get("resourceAttributes")
    if resource is not None:
        return Attributes(
            user=user,
            verb=resource.get("verb") or "",
            api_group=resource.get("group") or "",
            resource=resource.get("resource") or "",
            subresource=resource.get("subresource") or "",
            namespace=resource.get("namespace") or "",
            name=resource.get("name") or "",
        )
    non_resource = spec.get("nonResourceAttributes") or {}
    return Attributes(
        user=user,
        verb=non_resource.get("verb") or "",
        resource_request=False,
        path=non_resource.get("path") or "",
    )


def review_user(spec: dict[str, Any]) -> User:
    """The user a SubjectAccessReview asks about (no groups are added: the spec is literal)."""
    extra = {k: tuple(v or ()) for k, v in (spec.get("extra") or {}).items()}
    return User(
        name=spec.get("user") or "",
        groups=tuple(spec.get("groups") or ()),
        uid=spec.get("uid") or "",
        extra=extra,
    )
