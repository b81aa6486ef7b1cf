"""Admission plugins: NamespaceLifecycle, LimitRanger, ServiceAccount and ResourceQuota.

PodSecurity lives in :mod:`.podsecurity` and runs between ServiceAccount and ResourceQuota.

Each is an :data:`~sandboxkit.devcluster.api.Admission` callable, run by ``Api`` on every
create and update in the order of :func:`default_plugins` -- upstream's order. Rejections
are the API server's: ``namespaces "x" not found`` (404), and 403 Forbidden worded
``pods "<name>" is forbidden: <reason>`` with the reasons' upstream text, because clients
(and sandboxkit's diagnostics) match on them.

Which name a rejection shows follows upstream too: a mutating plugin (ServiceAccount) runs
before a generateName is expanded, so it names the prefix (``pods "job-" is forbidden``);
validating plugins (quota, limits, lifecycle) run after, so they name the generated pod.

Quota usage is computed here, from live objects, and shared with the quota controller that
keeps ResourceQuota status up to date.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from . import clock
from .api import Admission, Api, User
from .errors import ApiError, not_found, status_details
from .podsecurity import pod_security
from .quantity import canonical_quantity, parse_quantity
from .resources import RESOURCES, ResourceType, require

__all__ = [
    "Quantity",
    "default_plugins",
    "limit_ranger",
    "namespace_lifecycle",
    "namespace_usage",
    "object_usage",
    "pretty_print",
    "resource_quota",
    "service_account",
]

PODS = require("", "v1", "pods")
NAMESPACES = require("", "v1", "namespaces")
SERVICE_ACCOUNTS = require("", "v1", "serviceaccounts")
LIMIT_RANGES = require("", "v1", "limitranges")
RESOURCE_QUOTAS = require("", "v1", "resourcequotas")

TOKEN_MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
TOKEN_VOLUME_PREFIX = "kube-api-access-"
# serviceaccount.WarnOnlyBoundTokenExpirationSeconds: what the admission plugin requests
TOKEN_EXPIRATION_SECONDS = 3607
MIRROR_POD_ANNOTATION = "kubernetes.io/config.mirror"
LIMIT_RANGER_ANNOTATION = "kubernetes.io/limit-ranger"
_NAME_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
TERMINAL_PHASES = ("Succeeded", "Failed")


# -- errors ------------------------------------------------------------------------------------
def _generated(meta: dict[str, Any]) -> bool:
    """Whether ``name`` is ``generateName`` plus the API server's 5-character suffix."""
    prefix, name = meta.get("generateName", ""), meta.get("name", "")
    suffix = name[len(prefix):]
    return bool(prefix) and name.startswith(prefix) and len(suffix) == 5 and all(
        ch in _NAME_SUFFIX_ALPHABET for ch in suffix)


def _name(obj: dict[str, Any], *, mutating: bool) -> str:
    """The name ``admission.NewForbidden`` shows: the generateName before it is expanded."""
    meta = obj.get("metadata", {})
    if mutating and _generated(meta):
        return meta["generateName"]
    return meta.get("name") or meta.get("generateName") or "Unknown"


def _forbidden(
    rt: ResourceType, name: str, reason: str, causes: list[dict[str, str]] | None = None
) -> ApiError:
    details = status_details(name, rt.group, rt.plural)
    if causes:
        details["causes"] = causes
    return ApiError(403, "Forbidden", f'{rt.qualified} "{name}" is forbidden: {reason}', details)


# -- quantities --------------------------------------------------------------------------------
_EXPONENT_FORM = re.compile(r"^[+-]?[0-9.]+[eE][-+]?[0-9]+$")


@dataclass(frozen=True)
class Quantity:
    """A ``resource.Quantity``: exact value plus the format its canonical spelling keeps."""

    value: Decimal
    format: str = "DecimalSI"

    @classmethod
    def parse(cls, text: Any) -> Quantity:
        text = str(text).strip()
        if text.endswith(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei")):
            fmt = "BinarySI"
        elif _EXPONENT_FORM.match(text):
            fmt = "DecimalExponent"
        else:
            fmt = "DecimalSI"
        return cls(parse_quantity(text), fmt)

    def __add__(self, other: Quantity) -> Quantity:
        # Quantity.Add keeps the receiver's format unless the receiver is zero
        return Quantity(self.value + other.value, self.format if self.value else other.format)

    def __str__(self) -> str:
        plain = format(self.value.normalize(), "f")
        if self.value == 0:
            return "0"
        if self.format == "BinarySI" and self.value == self.value.to_integral_value() and abs(
            self.value
        ) >= 1024:
            whole = int(self.value)
            return canonical_quantity(f"{whole // 1024}Ki") if whole % 1024 == 0 else str(whole)
        if self.format == "DecimalExponent":
            return canonical_quantity(f"{plain}e0")
        return canonical_quantity(plain)


ONE = Quantity(Decimal(1))
ZERO = Quantity(Decimal(0))


def pretty_print(usage: dict[str, Quantity]) -> str:
    """``cpu=500m,memory=1Gi``: sorted by name, as quota errors list resources."""
    return ",".join(f"{name}={usage[name]}" for name in sorted(usage))


# -- NamespaceLifecycle ------------------------------------------------------------------------
def namespace_lifecycle(
    api: Api, rt: ResourceType, operation: str, obj: dict[str, Any],
    old: dict[str, Any] | None, user: User,
) -> None:
    """Nothing goes into a namespace that does not exist; nothing new into a dying one."""
    namespace = obj.get("metadata", {}).get("namespace")
    if not rt.namespaced or rt.ephemeral or not namespace:
        return
    ns = api.get_or_none(NAMESPACES, None, namespace)
    if ns is None:
        raise not_found("namespaces", "", namespace)
    terminating = ns.get("status", {}).get("phase") == "Terminating" or (
        "deletionTimestamp" in ns["metadata"])
    if operation == "CREATE" and terminating:
        raise _forbidden(
            rt, _name(obj, mutating=False),
            f"unable to create new content in namespace {namespace} because it is being "
            "terminated",
            [{"reason": "NamespaceTerminating",
              "message": f"namespace {namespace} is being terminated",
              "field": "metadata.namespace"}],
        )


# -- LimitRanger -------------------------------------------------------------------------------
def _limit_items(limit_range: dict[str, Any]) -> list[dict[str, Any]]:
    """LimitRange items with the API server's defaults (default <- max, request <- default/min)."""
    items = []
    for raw in limit_range.get("spec", {}).get("limits") or []:
        item = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
        if item.get("type") == "Container":
            default = item.setdefault("default", {})
            request = item.setdefault("defaultRequest", {})
            for key, value in (item.get("max") or {}).items():
                default.setdefault(key, value)
            for key, value in default.items():
                request.setdefault(key, value)
            for key, value in (item.get("min") or {}).items():
                request.setdefault(key, value)
        items.append(item)
    return items


def _containers(pod: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    spec = pod.get("spec", {})
    return [("container", c) for c in spec.get("containers") or []] + [
        ("init container", c) for c in spec.get("initContainers") or []]


def _apply_limit_defaults(pod: dict[str, Any], items: list[dict[str, Any]]) -> None:
    requests: dict[str, Any] = {}
    limits: dict[str, Any] = {}
    for item in items:
        if item.get("type") == "Container":
            requests.update(item.get("defaultRequest") or {})
            limits.update(item.get("default") or {})
    notes = []
    for label, container in _containers(pod):
        resources = container.setdefault("resources", {})
        set_requests = [k for k in requests if k not in (resources.get("requests") or {})]
        set_limits = [k for k in limits if k not in (resources.get("limits") or {})]
        for key in set_requests:
            resources.setdefault("requests", {})[key] = requests[key]
        for key in set_limits:
            resources.setdefault("limits", {})[key] = limits[key]
        if set_requests:
            notes.append(f"{', '.join(sorted(set_requests))} request for {label} "
                         f"{container.get('name', '')}")
        if set_limits:
            notes.append(f"{', '.join(sorted(set_limits))} limit for {label} "
                         f"{container.get('name', '')}")
    if notes:
        annotations = pod["metadata"].setdefault("annotations", {})
        annotations[LIMIT_RANGER_ANNOTATION] = "LimitRanger plugin set: " + "; ".join(notes)


def _check_min(kind: str, res: str, bound: Any, req: dict[str, Any], lim: dict[str, Any]
               ) -> str | None:
    enforced = Quantity.parse(bound)
    if res not in req:
        return f"minimum {res} usage per {kind} is {enforced}.  No request is specified."
    if Quantity.parse(req[res]).value < enforced.value:
        return (f"minimum {res} usage per {kind} is {enforced}, but request is "
                f"{Quantity.parse(req[res])}.")
    if res in lim and Quantity.parse(lim[res]).value < enforced.value:
        return (f"minimum {res} usage per {kind} is {enforced}, but limit is "
                f"{Quantity.parse(lim[res])}.")
    return None


def _check_max(kind: str, res: str, bound: Any, req: dict[str, Any], lim: dict[str, Any]
               ) -> str | None:
    enforced = Quantity.parse(bound)
    if res not in lim:
        return f"maximum {res} usage per {kind} is {enforced}.  No limit is specified."
    if Quantity.parse(lim[res]).value > enforced.value:
        return (f"maximum {res} usage per {kind} is {enforced}, but limit is "
                f"{Quantity.parse(lim[res])}.")
    if res in req and Quantity.parse(req[res]).value > enforced.value:
        return (f"maximum {res} usage per {kind} is {enforced}, but request is "
                f"{Quantity.parse(req[res])}.")
    return None


def _check_ratio(kind: str, res: str, bound: Any, req: dict[str, Any], lim: dict[str, Any]
                 ) -> str | None:
    enforced = Quantity.parse(bound)
    request = Quantity.parse(req[res]).value if res in req else Decimal(0)
    limit = Quantity.parse(lim[res]).value if res in lim else Decimal(0)
    prefix = f"{res} max limit to request ratio per {kind} is {enforced}"
    if request == 0:
        return f"{prefix}, but no request is specified or request is 0."
    if limit == 0:
        return f"{prefix}, but no limit is specified or limit is 0."
    ratio = limit / request
    if ratio > enforced.value:
        return f"{prefix}, but provided ratio is {float(ratio):f}."
    return None


def _pod_totals(pod: dict[str, Any], field: str) -> dict[str, Quantity]:
    """A pod's requests or limits: max(sum of containers, any init container) + overhead."""
    spec = pod.get("spec", {})
    total: dict[str, Quantity] = {}
    for container in spec.get("containers") or []:
        for key, value in ((container.get("resources") or {}).get(field) or {}).items():
            total[key] = total.get(key, ZERO) + Quantity.parse(value)
    for container in spec.get("initContainers") or []:
        for key, value in ((container.get("resources") or {}).get(field) or {}).items():
            amount = Quantity.parse(value)
            if key not in total or amount.value > total[key].value:
                total[key] = amount
    for key, value in (spec.get("overhead") or {}).items():
        total[key] = total.get(key, ZERO) + Quantity.parse(value)
    return total


def _limit_errors(pod: dict[str, Any], items: list[dict[str, Any]]) -> list[str]:
    checks = (("min", _check_min), ("max", _check_max), ("maxLimitRequestRatio", _check_ratio))
    found: list[str] = []
    for item in items:
        kind = item.get("type")
        if kind == "Container":
            subjects = [
                ((c.get("resources") or {}).get("requests") or {},
                 (c.get("resources") or {}).get("limits") or {})
                for _, c in _containers(pod)]
        elif kind == "Pod":
            subjects = [({k: str(v) for k, v in _pod_totals(pod, "requests").items()},
                         {k: str(v) for k, v in _pod_totals(pod, "limits").items()})]
        else:
            continue
        for req, lim in subjects:
            for field, check in checks:
                for res, bound in (item.get(field) or {}).items():
                    message = check(kind, res, bound, req, lim)
                    if message is not None and message not in found:
                        found.append(message)
    return found


def limit_ranger(
    api: Api, rt: ResourceType, operation: str, obj: dict[str, Any],
    old: dict[str, Any] | None, user: User,
) -> None:
    """Default container requests/limits from LimitRanges, then enforce min/max/ratio."""
    if rt is not PODS or operation != "CREATE":
        return
    ranges = api.list(LIMIT_RANGES, obj["metadata"].get("namespace"))[0]
    for limit_range in ranges:
        _apply_limit_defaults(obj, _limit_items(limit_range))
    for limit_range in ranges:
        errors = _limit_errors(obj, _limit_items(limit_range))
        if errors:
            shown = errors[0] if len(errors) == 1 else f"[{', '.join(errors)}]"
            raise _forbidden(rt, _name(obj, mutating=False), shown)


# -- ServiceAccount ----------------------------------------------------------------------------
def _token_volume(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "projected": {
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_SECONDS,
                                         "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt",
                               "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {
                    "apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ],
            "defaultMode": 420,
        },
    }


def _mount_token(pod: dict[str, Any]) -> None:
    spec = pod["spec"]
    volumes = spec.get("volumes") or []
    existing = next((v["name"] for v in volumes
                     if v.get("name", "").startswith(TOKEN_VOLUME_PREFIX)), None)
    name = existing or TOKEN_VOLUME_PREFIX + "".join(
        secrets.choice(_NAME_SUFFIX_ALPHABET) for _ in range(5))
    mounted = False
    for _, container in _containers(pod):
        mounts = container.get("volumeMounts") or []
        if any(m.get("mountPath") == TOKEN_MOUNT_PATH for m in mounts):
            continue
        container["volumeMounts"] = [
            *mounts, {"name": name, "readOnly": True, "mountPath": TOKEN_MOUNT_PATH}]
        mounted = True
    if mounted and existing is None:
        spec["volumes"] = [*volumes, _token_volume(name)]


def service_account(
    api: Api, rt: ResourceType, operation: str, obj: dict[str, Any],
    old: dict[str, Any] | None, user: User,
) -> None:
    """Default the pod's ServiceAccount, require it to exist, mount its API token."""
    if rt is not PODS or operation != "CREATE":
        return
    meta, spec = obj["metadata"], obj.setdefault("spec", {})
    if MIRROR_POD_ANNOTATION in (meta.get("annotations") or {}):
        return
    name = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    spec["serviceAccountName"] = spec["serviceAccount"] = name
    namespace = meta.get("namespace", "")
    account = api.get_or_none(SERVICE_ACCOUNTS, namespace, name)
    if account is None:
        raise _forbidden(
            rt, _name(obj, mutating=True),
            f'error looking up service account {namespace}/{name}: serviceaccount "{name}" '
            "not found",
        )
    automount = spec.get("automountServiceAccountToken")
    if automount is None:
        automount = account.get("automountServiceAccountToken")
    if automount is not False:
        _mount_token(obj)
    if not spec.get("imagePullSecrets") and account.get("imagePullSecrets"):
        spec["imagePullSecrets"] = [dict(s) for s in account["imagePullSecrets"]]


# -- ResourceQuota -----------------------------------------------------------------------------
# if a quota tracks one of these, every container must state it (a historical rule upstream
# keeps for compatibility)
_MUST_SPECIFY = frozenset({"cpu", "memory", "requests.cpu", "requests.memory", "limits.cpu",
                           "limits.memory"})
_POD_RESOURCES = frozenset({
    "count/pods", "pods", "cpu", "memory", "ephemeral-storage", "requests.cpu",
    "requests.memory", "requests.ephemeral-storage", "limits.cpu", "limits.memory",
    "limits.ephemeral-storage"})
# object counts that also answer to their pre-``count/`` names
_LEGACY_COUNTS = {"configmaps": "configmaps", "secrets": "secrets",
                  "resourcequotas": "resourcequotas", "services": "services",
                  "persistentvolumeclaims": "persistentvolumeclaims",
                  "replicationcontrollers": "replicationcontrollers"}


def _compute_usage(requests: dict[str, Quantity], limits: dict[str, Quantity]
                   ) -> dict[str, Quantity]:
    """``podComputeUsageHelper``: requests/limits under their quota resource names."""
    usage = {"pods": ONE}
    for res in ("cpu", "memory", "ephemeral-storage"):
        if res in requests:
            usage[res] = usage[f"requests.{res}"] = requests[res]
        if res in limits:
            usage[f"limits.{res}"] = limits[res]
    for res, amount in requests.items():
        if res.startswith("hugepages-"):
            usage[res] = usage[f"requests.{res}"] = amount
        elif "/" in res and not res.startswith(("kubernetes.io/", "requests.")):
            usage[f"requests.{res}"] = amount
    return usage


def _pod_charged(pod: dict[str, Any]) -> bool:
    """Terminal pods, and pods past their deletion grace, no longer use compute quota."""
    if pod.get("status", {}).get("phase") in TERMINAL_PHASES:
        return False
    meta = pod["metadata"]
    if "deletionTimestamp" in meta and meta.get("deletionGracePeriodSeconds") is not None:
        deadline = clock.parse_time(meta["deletionTimestamp"]) + timedelta(
            seconds=int(meta["deletionGracePeriodSeconds"]))
        if clock.now() > deadline:
            return False
    return True


def object_usage(rt: ResourceType, obj: dict[str, Any]) -> dict[str, Quantity]:
    """What one object charges against quota (``count/pods`` even for finished pods)."""
    usage = {f"count/{rt.qualified}": ONE}
    if rt is PODS:
        if _pod_charged(obj):
            usage.update(_compute_usage(_pod_totals(obj, "requests"), _pod_totals(obj, "limits")))
        return usage
    if not rt.group and rt.plural in _LEGACY_COUNTS:
        usage[_LEGACY_COUNTS[rt.plural]] = ONE
    return usage


def _tracks(rt: ResourceType, resource: str) -> bool:
    """Whether quota resource name ``resource`` is measured on objects of type ``rt``."""
    if rt is PODS:
        return resource in _POD_RESOURCES or resource.startswith(
            ("hugepages-", "requests.hugepages-")) or (
            resource.startswith("requests.") and "/" in resource)
    return resource == f"count/{rt.qualified}" or (
        not rt.group and _LEGACY_COUNTS.get(rt.plural) == resource)


def _best_effort(pod: dict[str, Any]) -> bool:
    return not (_pod_totals(pod, "requests") or _pod_totals(pod, "limits"))


def _scope_matches(scope: str, operator: str, values: list[str], pod: dict[str, Any]) -> bool:
    spec = pod.get("spec", {})
    if scope in ("Terminating", "NotTerminating"):
        terminating = spec.get("activeDeadlineSeconds") is not None
        return terminating if scope == "Terminating" else not terminating
    if scope in ("BestEffort", "NotBestEffort"):
        return _best_effort(pod) == (scope == "BestEffort")
    if scope == "PriorityClass":
        name = spec.get("priorityClassName", "")
        return {"Exists": bool(name), "DoesNotExist": not name, "In": name in values,
                "NotIn": name not in values}.get(operator, False)
    return False


def _quota_selects(quota: dict[str, Any], rt: ResourceType, obj: dict[str, Any]) -> bool:
    """Whether a quota's scopes cover the object (scoped quotas only count pods)."""
    spec = quota.get("spec", {})
    selectors = [(s, "Exists", []) for s in spec.get("scopes") or []] + [
        (e.get("scopeName", ""), e.get("operator", ""), e.get("values") or [])
        for e in (spec.get("scopeSelector") or {}).get("matchExpressions") or []]
    if not selectors:
        return True
    return rt is PODS and all(_scope_matches(s, op, v, obj) for s, op, v in selectors)


def _hard(quota: dict[str, Any]) -> dict[str, Quantity]:
    return {k: Quantity.parse(v) for k, v in (quota.get("spec", {}).get("hard") or {}).items()}


def namespace_usage(api: Api, quota: dict[str, Any]) -> dict[str, Quantity]:
    """What the objects in the quota's namespace use of each resource the quota limits."""
    namespace = quota["metadata"]["namespace"]
    hard = _hard(quota)
    used = dict.fromkeys(hard, ZERO)
    for rt in RESOURCES:
        if not rt.namespaced or rt.ephemeral or not any(_tracks(rt, r) for r in hard):
            continue
        for obj in api.list(rt, namespace)[0]:
            if not _quota_selects(quota, rt, obj):
                continue
            for res, amount in object_usage(rt, obj).items():
                if res in used:
                    used[res] = used[res] + amount
    return used


def _missing_requests(pod: dict[str, Any], required: set[str]) -> str | None:
    """``must specify limits.cpu for: app; requests.memory for: app,init``, or None."""
    missing: dict[str, set[str]] = {}
    for _, container in _containers(pod):
        resources = container.get("resources") or {}
        have = _compute_usage(
            {k: Quantity.parse(v) for k, v in (resources.get("requests") or {}).items()},
            {k: Quantity.parse(v) for k, v in (resources.get("limits") or {}).items()})
        for res in required - set(have):
            missing.setdefault(res, set()).add(container.get("name", ""))
    if not missing:
        return None
    parts = [f"{res} for: {','.join(sorted(names))}" for res, names in sorted(missing.items())]
    return "must specify " + "; ".join(parts)


def resource_quota(
    api: Api, rt: ResourceType, operation: str, obj: dict[str, Any],
    old: dict[str, Any] | None, user: User,
) -> None:
    """Reject a create that would take a namespace over any of its ResourceQuotas."""
    namespace = obj.get("metadata", {}).get("namespace")
    if operation != "CREATE" or not rt.namespaced or rt.ephemeral or not namespace:
        return
    quotas = api.list(RESOURCE_QUOTAS, namespace)[0]
    name = _name(obj, mutating=False)
    usage = object_usage(rt, obj)
    relevant = []
    for quota in quotas:
        hard = _hard(quota)
        tracked = {r for r in hard if _tracks(rt, r)}
        if not tracked or not _quota_selects(quota, rt, obj):
            continue
        if rt is PODS:
            missing = _missing_requests(obj, tracked & _MUST_SPECIFY)
            if missing is not None:
                raise _forbidden(rt, name, f"failed quota: {quota['metadata']['name']}: {missing}")
        relevant.append((quota, hard))
    for quota, hard in relevant:
        requested = {r: q for r, q in usage.items() if r in hard and q.value != 0}
        if not requested:
            continue
        used = namespace_usage(api, quota)
        exceeded = sorted(r for r, q in requested.items() if used[r].value + q.value
                          > hard[r].value)
        if exceeded:
            raise _forbidden(
                rt, name,
                f"exceeded quota: {quota['metadata']['name']}, "
                f"requested: {pretty_print({r: requested[r] for r in exceeded})}, "
                f"used: {pretty_print({r: used[r] for r in exceeded})}, "
                f"limited: {pretty_print({r: hard[r] for r in exceeded})}",
            )


def default_plugins() -> list[Admission]:
    """The plugins in the API server's order (quota last: it sees the defaulted pod)."""
    return [namespace_lifecycle, limit_ranger, service_account, pod_security, resource_quota]
