"""Create and update validation with the API server's field paths and wording.

Clients and tutorials show these messages to people (``Job.batch "x" is invalid:
spec.template.spec.restartPolicy: Unsupported value: "Always": supported values:
"OnFailure", "Never"``), and sandboxkit's own diagnostics match on them, so every cause is
built the way ``k8s.io/apimachinery/pkg/util/validation/field`` renders it. Objects are
validated after defaulting (and, for Jobs, after selector generation), as on a real server.

Known differences: the value printed for ``field is immutable`` on structured fields is
compact JSON rather than a Go struct dump, and the pod update error lists the changed
paths rather than a ``cmp.Diff`` of the Go structs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from . import errors
from .formats import (
    is_config_map_key,
    is_dns1035_label,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_label_value,
    is_path_segment_name,
    is_qualified_name,
)
from .quantity import QuantityError, canonical_quantity, parse_quantity
from .resources import ResourceType
from .selectors import label_selector_from_dict

__all__ = ["validate"]

Obj = dict[str, Any]
NameCheck = Callable[[str], list[str]]

_MAX_INT32 = 2147483647
_ANNOTATIONS_LIMIT = 256 * 1024
_RBAC_GROUP = "rbac.authorization.k8s.io"
_POD_UPDATABLE = ",".join((
    "`spec.containers[*].image`",
    "`spec.initContainers[*].image`",
    "`spec.activeDeadlineSeconds`",
    "`spec.tolerations` (only additions to existing tolerations)",
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously "
    "negative)",
))
_STANDARD_CONTAINER_RESOURCES = frozenset({"cpu", "memory", "ephemeral-storage"})


def _go_quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def render(value: Any) -> str:
    """A bad value as ``field.Error`` prints it: ``"x"``, ``5``, ``map[string]string{...}``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return _go_quote(value)
    if isinstance(value, Mapping) and all(isinstance(v, str) for v in value.values()):
        body = ", ".join(f"{_go_quote(k)}:{_go_quote(v)}" for k, v in sorted(value.items()))
        return "map[string]string{" + body + "}"
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "[]string{" + ", ".join(_go_quote(v) for v in value) + "}"
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


class _Causes:
    """Collects ``metav1.StatusCause`` entries in the order the API server emits them."""

    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []

    def _add(self, reason: str, path: str, message: str) -> None:
        self.items.append({"reason": reason, "message": message, "field": path})

    def invalid(self, path: str, value: Any, detail: str) -> None:
        self.invalid_shown(path, render(value), detail)

    def invalid_shown(self, path: str, shown: str, detail: str) -> None:
        """An invalid value whose Go rendering was built by the caller."""
        self._add("FieldValueInvalid", path, f"Invalid value: {shown}: {detail}")

    def required(self, path: str, detail: str = "") -> None:
        self._add("FieldValueRequired", path,
                  "Required value" + (f": {detail}" if detail else ""))

    def forbidden(self, path: str, detail: str) -> None:
        self._add("FieldValueForbidden", path, f"Forbidden: {detail}")

    def not_supported(self, path: str, value: Any, valid: Iterable[str]) -> None:
        supported = ", ".join(_go_quote(v) for v in valid)
        self._add("FieldValueNotSupported", path,
                  f"Unsupported value: {render(value)}: supported values: {supported}")

    def duplicate(self, path: str, value: Any) -> None:
        self._add("FieldValueDuplicate", path, f"Duplicate value: {render(value)}")

    def not_found(self, path: str, value: Any) -> None:
        self._add("FieldValueNotFound", path, f"Not found: {render(value)}")

    def too_long(self, path: str, limit: int) -> None:
        self._add("FieldValueTooLong", path, f"Too long: may not be more than {limit} bytes")

    def each(self, path: str, value: str, messages: list[str]) -> None:
        for message in messages:
            self.invalid(path, value, message)

    def nonnegative(self, path: str, value: Any) -> None:
        if isinstance(value, int) and value < 0:
            self.invalid(path, value, "must be greater than or equal to 0")


# ---------------------------------------------------------------------------------------
# object metadata


def _mask_trailing_dash(name: str) -> str:
    """generateName prefixes may end in '-': validate them as if a suffix followed."""
    return name[:-1] + "a" if len(name) > 1 and name.endswith("-") else name


def _name_check(rt: ResourceType) -> NameCheck:
    if rt.group == "" and rt.kind == "Namespace":
        return is_dns1123_label
    if rt.group == "" and rt.kind == "Service":
        return is_dns1035_label
    if rt.group == _RBAC_GROUP:
        return is_path_segment_name
    return is_dns1123_subdomain


def _labels(c: _Causes, path: str, labels: Any) -> None:
    if not isinstance(labels, Mapping):
        return
    for key, value in sorted(labels.items()):
        c.each(path, key, is_qualified_name(key))
        c.each(path, str(value), is_label_value(str(value)))


def _annotations(c: _Causes, path: str, annotations: Any) -> None:
    if not isinstance(annotations, Mapping):
        return
    size = 0
    for key, value in sorted(annotations.items()):
        c.each(path, key, is_qualified_name(key.lower()))
        size += len(key) + len(str(value))
    if size > _ANNOTATIONS_LIMIT:
        c.too_long(path, _ANNOTATIONS_LIMIT)


def _object_meta(c: _Causes, rt: ResourceType, meta: Obj) -> None:
    check = _name_check(rt)
    generate = meta.get("generateName") or ""
    name = meta.get("name") or ""
    if generate:
        c.each("metadata.generateName", generate, check(_mask_trailing_dash(generate)))
    if not name:
        c.required("metadata.name", "name or generateName is required")
    else:
        c.each("metadata.name", name, check(name))
    namespace = meta.get("namespace") or ""
    if rt.namespaced:
        if not namespace:
            c.required("metadata.namespace")
        else:
            c.each("metadata.namespace", namespace, is_dns1123_label(namespace))
    elif namespace:
        c.forbidden("metadata.namespace", "not allowed on this type")
    _labels(c, "metadata.labels", meta.get("labels"))
    _annotations(c, "metadata.annotations", meta.get("annotations"))
    for i, ref in enumerate(meta.get("ownerReferences") or []):
        for key in ("apiVersion", "kind", "name", "uid"):
            if not ref.get(key):
                c.required(f"metadata.ownerReferences[{i}].{key}", "must not be empty")
    for i, finalizer in enumerate(meta.get("finalizers") or []):
        c.each(f"metadata.finalizers[{i}]", finalizer, is_qualified_name(finalizer))


def _object_meta_update(c: _Causes, meta: Obj, old_meta: Obj) -> None:
    for key in ("name", "namespace", "uid"):
        new_value, old_value = meta.get(key) or "", old_meta.get(key) or ""
        if old_value and new_value != old_value:
            c.invalid(f"metadata.{key}", new_value, "field is immutable")


# ---------------------------------------------------------------------------------------
# pods


class _BadQuantity(Exception):
    """A quantity the body decoder would reject before validation ever ran."""


def _quantity(text: Any) -> Any:
    try:
        return parse_quantity(str(text))
    except QuantityError as exc:
        raise _BadQuantity(str(exc)) from None


def _resources(c: _Causes, path: str, resources: Any) -> None:
    if not isinstance(resources, Mapping):
        return
    limits = resources.get("limits") or {}
    requests = resources.get("requests") or {}
    for section, values in (("limits", limits), ("requests", requests)):
        for name, text in sorted(values.items()):
            key_path = f"{path}.{section}[{name}]"
            if name not in _STANDARD_CONTAINER_RESOURCES and "/" not in name \
                    and not name.startswith("hugepages-"):
                c.invalid(key_path, name, "must be a standard resource for containers")
            if _quantity(text) < 0:
                c.invalid(key_path, canonical_quantity(str(text)),
                          "must be greater than or equal to 0")
    for name, text in sorted(requests.items()):
        if name in limits and _quantity(text) > _quantity(limits[name]):
            c.invalid(f"{path}.requests", canonical_quantity(str(text)),
                      f"must be less than or equal to {name} limit of "
                      f"{canonical_quantity(str(limits[name]))}")


def _container(c: _Causes, path: str, container: Obj, volume_names: set[str]) -> None:
    name = container.get("name") or ""
    if not name:
        c.required(f"{path}.name")
    else:
        c.each(f"{path}.name", name, is_dns1123_label(name))
    if not container.get("image"):
        c.required(f"{path}.image")
    policy = container.get("imagePullPolicy")
    if policy not in (None, "", "Always", "IfNotPresent", "Never"):
        c.not_supported(f"{path}.imagePullPolicy", policy, ("Always", "IfNotPresent", "Never"))
    for i, port in enumerate(container.get("ports") or []):
        port_path = f"{path}.ports[{i}]"
        number = port.get("containerPort")
        if not number:
            c.required(f"{port_path}.containerPort")
        elif not 1 <= number <= 65535:
            c.invalid(f"{port_path}.containerPort", number,
                      "must be between 1 and 65535, inclusive")
        protocol = port.get("protocol")
        if protocol not in (None, "TCP", "UDP", "SCTP"):
            c.not_supported(f"{port_path}.protocol", protocol, ("SCTP", "TCP", "UDP"))
    for i, env in enumerate(container.get("env") or []):
        env_name = env.get("name") or ""
        if not env_name:
            c.required(f"{path}.env[{i}].name")
        elif "=" in env_name or not all(" " <= ch <= "~" for ch in env_name):
            c.invalid(f"{path}.env[{i}].name", env_name,
                      "a valid environment variable name must consist only of printable ASCII "
                      "characters other than '='")
    for i, mount in enumerate(container.get("volumeMounts") or []):
        mount_name = mount.get("name") or ""
        if not mount_name:
            c.required(f"{path}.volumeMounts[{i}].name")
        elif mount_name not in volume_names:
            c.not_found(f"{path}.volumeMounts[{i}].name", mount_name)
        if not mount.get("mountPath"):
            c.required(f"{path}.volumeMounts[{i}].mountPath")
    _resources(c, f"{path}.resources", container.get("resources"))


def _pod_spec(c: _Causes, path: str, spec: Obj) -> None:
    volume_names: set[str] = set()
    for i, volume in enumerate(spec.get("volumes") or []):
        name = volume.get("name") or ""
        if not name:
            c.required(f"{path}.volumes[{i}].name")
        else:
            c.each(f"{path}.volumes[{i}].name", name, is_dns1123_label(name))
            if name in volume_names:
                c.duplicate(f"{path}.volumes[{i}].name", name)
            volume_names.add(name)
    names: set[str] = set()
    containers = spec.get("containers") or []
    if not containers:
        c.required(f"{path}.containers")
    for key, items in (("containers", containers), ("initContainers",
                                                    spec.get("initContainers") or [])):
        for i, container in enumerate(items):
            _container(c, f"{path}.{key}[{i}]", container, volume_names)
            name = container.get("name") or ""
            if name and name in names:
                c.duplicate(f"{path}.{key}[{i}].name", name)
            names.add(name)
    policy = spec.get("restartPolicy") or ""
    if not policy:
        c.required(f"{path}.restartPolicy")
    elif policy not in ("Always", "OnFailure", "Never"):
        c.not_supported(f"{path}.restartPolicy", policy, ("Always", "OnFailure", "Never"))
    dns = spec.get("dnsPolicy")
    if dns not in (None, "", "ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"):
        c.not_supported(f"{path}.dnsPolicy", dns,
                        ("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"))
    deadline = spec.get("activeDeadlineSeconds")
    if deadline is not None and not 1 <= deadline <= _MAX_INT32:
        c.invalid(f"{path}.activeDeadlineSeconds", deadline,
                  f"must be between 1 and {_MAX_INT32}, inclusive")
    account = spec.get("serviceAccountName")
    if account:
        c.each(f"{path}.serviceAccountName", account, is_dns1123_subdomain(account))


def _pod_template(c: _Causes, path: str, template: Any) -> Obj:
    if not isinstance(template, Mapping):
        c.required(path)
        return {}
    meta = template.get("metadata") or {}
    _labels(c, f"{path}.metadata.labels", meta.get("labels"))
    _annotations(c, f"{path}.metadata.annotations", meta.get("annotations"))
    _pod_spec(c, f"{path}.spec", template.get("spec") or {})
    return dict(template)


def _validate_pod(c: _Causes, obj: Obj, old: Obj | None) -> None:
    spec = obj.get("spec") or {}
    _pod_spec(c, "spec", spec)
    if old is None:
        return
    munged = json.loads(json.dumps(old.get("spec") or {}))
    changed = _changed_paths("spec", munged, spec)
    allowed = ("spec.containers[", "spec.initContainers[")
    disallowed = [p for p in changed
                  if not (p.startswith(allowed) and p.endswith("].image"))
                  and p not in ("spec.activeDeadlineSeconds", "spec.terminationGracePeriodSeconds")
                  and not _toleration_addition(p, munged, spec)]
    if disallowed:
        c.forbidden("spec", f"pod updates may not change fields other than {_POD_UPDATABLE}\n"
                    + "\n".join(f"  {p}" for p in disallowed))


def _toleration_addition(path: str, old_spec: Obj, spec: Obj) -> bool:
    if not path.startswith("spec.tolerations"):
        return False
    old = old_spec.get("tolerations") or []
    new = spec.get("tolerations") or []
    return all(t in new for t in old)


def _changed_paths(path: str, old: Any, new: Any) -> list[str]:
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        found: list[str] = []
        for key in sorted(set(old) | set(new)):
            found.extend(_changed_paths(f"{path}.{key}", old.get(key), new.get(key)))
        return found
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        found = []
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            found.extend(_changed_paths(f"{path}[{i}]", a, b))
        return found
    return [] if old == new else [path]


# ---------------------------------------------------------------------------------------
# workloads


def _selector_matches_template(c: _Causes, spec: Obj) -> None:
    selector = spec.get("selector")
    if not isinstance(selector, Mapping):
        return
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels")
    if not label_selector_from_dict(selector).matches(labels):
        # Go prints an absent label map as a nil map
        shown = render(labels) if labels else "map[string]string(nil)"
        c.invalid_shown("spec.template.metadata.labels", shown,
                        "`selector` does not match template `labels`")


def _validate_job(c: _Causes, obj: Obj, old: Obj | None) -> None:
    spec = obj.get("spec") or {}
    meta = obj.get("metadata") or {}
    for key in ("parallelism", "completions", "activeDeadlineSeconds", "backoffLimit",
                "ttlSecondsAfterFinished"):
        c.nonnegative(f"spec.{key}", spec.get(key))
    mode = spec.get("completionMode")
    if mode not in (None, "NonIndexed", "Indexed"):
        c.not_supported("spec.completionMode", mode, ("NonIndexed", "Indexed"))
    template = _pod_template(c, "spec.template", spec.get("template"))
    policy = (template.get("spec") or {}).get("restartPolicy") or ""
    if template and not policy:
        c.required("spec.template.spec.restartPolicy", 'valid values: "OnFailure", "Never"')
    elif template and policy not in ("OnFailure", "Never"):
        c.not_supported("spec.template.spec.restartPolicy", policy, ("OnFailure", "Never"))
    if not spec.get("manualSelector") and isinstance(spec.get("selector"), Mapping):
        labels = (template.get("metadata") or {}).get("labels") or {}
        uid, name = meta.get("uid") or "", meta.get("name") or ""
        if not uid:
            c.required("metadata.uid")
        for key, expected in (("batch.kubernetes.io/controller-uid", uid),
                              ("batch.kubernetes.io/job-name", name)):
            label_path = f"spec.template.metadata.labels[{key}]"
            if key not in labels:
                c.required(label_path, expected)
            elif labels[key] != expected:
                c.invalid(label_path, labels, expected)
    if not isinstance(spec.get("selector"), Mapping):
        c.required("spec.selector")
    else:
        _selector_matches_template(c, spec)
    if old is not None:
        old_spec = old.get("spec") or {}
        immutable = ["completions", "selector"]
        if not old_spec.get("suspend"):
            immutable.append("template")
        for key in immutable:
            if spec.get(key) != old_spec.get(key):
                c.invalid(f"spec.{key}", spec.get(key), "field is immutable")


def _validate_deployment(c: _Causes, obj: Obj, old: Obj | None) -> None:
    spec = obj.get("spec") or {}
    c.nonnegative("spec.replicas", spec.get("replicas"))
    c.nonnegative("spec.revisionHistoryLimit", spec.get("revisionHistoryLimit"))
    selector = spec.get("selector")
    if not isinstance(selector, Mapping):
        c.required("spec.selector")
    elif not selector.get("matchLabels") and not selector.get("matchExpressions"):
        c.invalid("spec.selector", selector, "empty selector is invalid for deployment")
    else:
        _selector_matches_template(c, spec)
    template = _pod_template(c, "spec.template", spec.get("template"))
    policy = (template.get("spec") or {}).get("restartPolicy")
    if template and policy != "Always":
        c.not_supported("spec.template.spec.restartPolicy", policy or "", ("Always",))
    if old is not None and selector != (old.get("spec") or {}).get("selector"):
        c.invalid("spec.selector", selector, "field is immutable")


# ---------------------------------------------------------------------------------------
# RBAC


def _subject(c: _Causes, path: str, subject: Obj, namespaced: bool) -> None:
    name = subject.get("name") or ""
    group = subject.get("apiGroup") or ""
    kind = subject.get("kind") or ""
    if not name:
        c.required(f"{path}.name")
    if kind == "ServiceAccount":
        if name:
            c.each(f"{path}.name", name, is_dns1123_subdomain(name))
        if group:
            c.not_supported(f"{path}.apiGroup", group, ("",))
        if not namespaced and not subject.get("namespace"):
            c.required(f"{path}.namespace")
    elif kind in ("User", "Group"):
        if group != _RBAC_GROUP:
            c.not_supported(f"{path}.apiGroup", group, (_RBAC_GROUP,))
    else:
        c.not_supported(f"{path}.kind", kind, ("ServiceAccount", "User", "Group"))


def _role_ref_text(ref: Mapping[str, Any]) -> str:
    return (f'rbac.RoleRef{{APIGroup:{_go_quote(ref.get("apiGroup") or "")}, '
            f'Kind:{_go_quote(ref.get("kind") or "")}, Name:{_go_quote(ref.get("name") or "")}}}')


def _validate_binding(c: _Causes, obj: Obj, old: Obj | None, namespaced: bool) -> None:
    ref = obj.get("roleRef") or {}
    if (ref.get("apiGroup") or "") != _RBAC_GROUP:
        c.not_supported("roleRef.apiGroup", ref.get("apiGroup") or "", (_RBAC_GROUP,))
    kinds = ("Role", "ClusterRole") if namespaced else ("ClusterRole",)
    if ref.get("kind") not in kinds:
        c.not_supported("roleRef.kind", ref.get("kind") or "", kinds)
    if not ref.get("name"):
        c.required("roleRef.name")
    else:
        c.each("roleRef.name", ref["name"], is_path_segment_name(ref["name"]))
    for i, subject in enumerate(obj.get("subjects") or []):
        _subject(c, f"subjects[{i}]", subject, namespaced)
    if old is not None and (old.get("roleRef") or {}) != ref:
        c.invalid_shown("roleRef", _role_ref_text(ref), "cannot change roleRef")


def _validate_role(c: _Causes, obj: Obj, namespaced: bool) -> None:
    for i, rule in enumerate(obj.get("rules") or []):
        path = f"rules[{i}]"
        if not rule.get("verbs"):
            c.required(f"{path}.verbs", "verbs must contain at least one value")
        urls = rule.get("nonResourceURLs") or []
        if urls:
            if namespaced:
                c.invalid(f"{path}.nonResourceURLs", urls,
                          "namespaced rules cannot apply to non-resource URLs")
            if rule.get("apiGroups") or rule.get("resources") or rule.get("resourceNames"):
                c.invalid(f"{path}.nonResourceURLs", urls,
                          "rules cannot apply to both regular resources and non-resource URLs")
            continue
        if not rule.get("apiGroups"):
            c.required(f"{path}.apiGroups", "resource rules must supply at least one api group")
        if not rule.get("resources"):
            c.required(f"{path}.resources", "resource rules must supply at least one resource")


# ---------------------------------------------------------------------------------------
# config and quota


def _data_keys(c: _Causes, obj: Obj) -> None:
    for section in ("data", "binaryData", "stringData"):
        for key in sorted(obj.get(section) or {}):
            c.each(f"{section}[{key}]", key, is_config_map_key(key))


def _validate_secret(c: _Causes, obj: Obj) -> None:
    _data_keys(c, obj)
    if obj.get("type") == "kubernetes.io/service-account-token":
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        if not annotations.get("kubernetes.io/service-account.name"):
            c.required("metadata.annotations[kubernetes.io/service-account.name]")


def _validate_quota(c: _Causes, obj: Obj) -> None:
    for section in ("spec.hard", "status.hard", "status.used"):
        head, _, tail = section.partition(".")
        values = ((obj.get(head) or {}).get(tail)) or {}
        for name, text in sorted(values.items()):
            if _quantity(text) < 0:
                c.invalid(f"{section}[{name}]", canonical_quantity(str(text)),
                          "must be greater than or equal to 0")


# ---------------------------------------------------------------------------------------


def _kind_rules(c: _Causes, rt: ResourceType, obj: Obj, old: Obj | None) -> None:
    key = (rt.group, rt.kind)
    if key == ("", "Pod"):
        _validate_pod(c, obj, old)
    elif key == ("batch", "Job"):
        _validate_job(c, obj, old)
    elif key == ("apps", "Deployment"):
        _validate_deployment(c, obj, old)
    elif key in ((_RBAC_GROUP, "RoleBinding"), (_RBAC_GROUP, "ClusterRoleBinding")):
        _validate_binding(c, obj, old, rt.namespaced)
    elif key in ((_RBAC_GROUP, "Role"), (_RBAC_GROUP, "ClusterRole")):
        _validate_role(c, obj, rt.namespaced)
    elif key == ("", "ConfigMap"):
        _data_keys(c, obj)
    elif key == ("", "Secret"):
        _validate_secret(c, obj)
    elif key == ("", "ResourceQuota"):
        _validate_quota(c, obj)


def validate(rt: ResourceType, obj: Obj, *, old: Obj | None = None) -> None:
    """Raise the API server's 422 Invalid for ``obj`` (an update of ``old`` when given).

    A quantity that does not parse is a 400 BadRequest instead, because a real server
    fails to decode such a body before validation runs.
    """
    if rt.ephemeral:
        return
    c = _Causes()
    meta = obj.get("metadata") or {}
    try:
        _object_meta(c, rt, meta)
        if old is not None:
            _object_meta_update(c, meta, old.get("metadata") or {})
        _kind_rules(c, rt, obj, old)
    except _BadQuantity as exc:
        raise errors.bad_request(
            f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: {exc}'
        ) from None
    if c.items:
        name = meta.get("name") or meta.get("generateName") or ""
        raise errors.invalid(rt.kind, rt.group, name, c.items)
