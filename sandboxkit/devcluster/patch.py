"""PATCH bodies: JSON patch, JSON merge patch, strategic merge patch and server-side apply.

kubectl uses strategic merge patch for ``apply``, ``label``, ``scale`` and ``edit``, and the
Python client sends it by default, so list fields must merge by the same keys a real
server uses (containers by name, env by name, conditions by type...) or a patch would wipe
sibling entries. The merge keys live in a small schema per kind below, transcribed from
the ``patchStrategy``/``patchMergeKey`` tags of the Kubernetes types the devcluster serves.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

import jsonpatch
import yaml

from . import clock, errors

__all__ = [
    "APPLY_PATCH",
    "JSON_PATCH",
    "MERGE_PATCH",
    "PATCH_TYPES",
    "STRATEGIC_MERGE_PATCH",
    "apply_patch",
    "json_merge_patch",
    "server_side_apply",
    "strategic_merge_patch",
]

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, APPLY_PATCH)

Obj = dict[str, Any]

# ---------------------------------------------------------------------------------------
# patch metadata: a node is {"strategy": ..., "key": ..., "fields": {child: node}}


def _node(strategy: str = "", key: str = "", **fields: Obj) -> Obj:
    return {"strategy": strategy, "key": key, "fields": fields}


def _merge(key: str = "", **fields: Obj) -> Obj:
    return _node("merge", key, **fields)


_CONDITIONS = _merge("type")
_META = _node(finalizers=_merge(), ownerReferences=_merge("uid"))
_CONTAINER = _node(
    env=_merge("name"),
    ports=_merge("containerPort"),
    volumeMounts=_merge("mountPath"),
    volumeDevices=_merge("devicePath"),
)
_POD_SPEC = _node(
    containers=_merge("name", **_CONTAINER["fields"]),
    initContainers=_merge("name", **_CONTAINER["fields"]),
    ephemeralContainers=_merge("name", **_CONTAINER["fields"]),
    volumes=_node("merge,retainKeys", "name"),
    imagePullSecrets=_merge("name"),
    hostAliases=_merge("ip"),
    topologySpreadConstraints=_merge("topologyKey"),
    resourceClaims=_node("merge,retainKeys", "name"),
    schedulingGates=_merge("name"),
)
_TEMPLATE = _node(metadata=_META, spec=_POD_SPEC)

_SCHEMAS: dict[str, Obj] = {
    "Pod": _node(metadata=_META, spec=_POD_SPEC,
                 status=_node(conditions=_CONDITIONS, podIPs=_merge("ip"),
                              hostIPs=_merge("ip"))),
    "Job": _node(metadata=_META, spec=_node(template=_TEMPLATE),
                 status=_node(conditions=_CONDITIONS)),
    "Deployment": _node(metadata=_META,
                        spec=_node(template=_TEMPLATE, strategy=_node("retainKeys")),
                        status=_node(conditions=_CONDITIONS)),
    "Service": _node(metadata=_META, spec=_node(ports=_merge("port")),
                     status=_node(conditions=_merge("type"))),
    "Namespace": _node(metadata=_META, status=_node(conditions=_CONDITIONS)),
    "Node": _node(metadata=_META, status=_node(conditions=_CONDITIONS,
                                               addresses=_merge("type"))),
    "ServiceAccount": _node(metadata=_META, secrets=_merge("name")),
    "PersistentVolumeClaim": _node(metadata=_META, status=_node(conditions=_CONDITIONS)),
    "PodDisruptionBudget": _node(metadata=_META, status=_node(conditions=_CONDITIONS)),
}
_DEFAULT_SCHEMA = _node(metadata=_META)

_DIRECTIVE = "$patch"
_RETAIN_KEYS = "$retainKeys"
_DELETE_PRIMITIVE = "$deleteFromPrimitiveList/"
_SET_ORDER = "$setElementOrder/"


def _child(schema: Obj | None, key: str) -> Obj | None:
    if schema is None:
        return None
    return schema["fields"].get(key)


class _PatchError(Exception):
    """A malformed strategic merge patch; ``code`` is the status the API server answers."""

    def __init__(self, message: str, code: int = 400) -> None:
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------------------------------
# strategic merge patch


def _strip_directives(value: Any) -> Any:
    """A patch subtree that lands where nothing existed, minus directives and nulls."""
    if isinstance(value, Mapping):
        return {k: _strip_directives(v) for k, v in value.items()
                if v is not None and not k.startswith("$")}
    if isinstance(value, list):
        return [_strip_directives(v) for v in value
                if not (isinstance(v, Mapping) and _DIRECTIVE in v)]
    return value


def _merge_map(original: Obj, patch: Mapping[str, Any], schema: Obj | None) -> Obj:
    directive = patch.get(_DIRECTIVE)
    if directive == "replace":
        return _strip_directives({k: v for k, v in patch.items() if k != _DIRECTIVE})
    if directive == "delete":
        return {}
    if directive is not None:
        raise _PatchError(f"unknown patch type: {directive} in map: {dict(patch)}", 500)
    result = dict(original)
    retain = patch.get(_RETAIN_KEYS)
    if retain is not None:
        if not isinstance(retain, list):
            raise _PatchError("invalid patch format of retainKeys")
        result = {k: v for k, v in result.items() if k in retain}
    orders: dict[str, list[Any]] = {}
    for key, value in patch.items():
        if key in (_DIRECTIVE, _RETAIN_KEYS):
            continue
        if key.startswith(_DELETE_PRIMITIVE):
            field = key[len(_DELETE_PRIMITIVE):]
            if not isinstance(value, list):
                raise _PatchError("invalid patch format of primitive list")
            current = result.get(field)
            if isinstance(current, list):
                result[field] = [v for v in current if v not in value]
            continue
        if key.startswith(_SET_ORDER):
            if not isinstance(value, list):
                raise _PatchError("invalid patch format of setElementOrder list")
            orders[key[len(_SET_ORDER):]] = value
            continue
        if value is None:
            result.pop(key, None)
            continue
        sub = _child(schema, key)
        current = result.get(key)
        if isinstance(value, Mapping) and isinstance(current, Mapping):
            result[key] = _merge_map(dict(current), value, sub)
        elif isinstance(value, list) and isinstance(current, list):
            result[key] = _merge_list(current, value, sub)
        elif isinstance(value, Mapping) and value.get(_DIRECTIVE) == "delete":
            result.pop(key, None)
        else:
            result[key] = _strip_directives(value)
    for field, order in orders.items():
        if isinstance(result.get(field), list):
            result[field] = _apply_order(result[field], order, _child(schema, field))
    return result


def _key_of(item: Any, key: str) -> Any:
    if not isinstance(item, Mapping):
        raise _PatchError(f"invalid element type in merging list:{item}", 500)
    if key not in item:
        raise _PatchError(f"map: {_go_map(item)} does not contain declared merge key: {key}",
                          500)
    return item[key]


def _go_map(item: Mapping[str, Any]) -> str:
    return "map[" + " ".join(f"{k}:{v}" for k, v in sorted(item.items())) + "]"


def _merge_list(original: list[Any], patch: list[Any], schema: Obj | None) -> list[Any]:
    if schema is None or "merge" not in schema["strategy"].split(","):
        return _strip_directives(patch)
    key = schema["key"]
    if not key:
        # a set of primitives: union, original order first
        merged = list(original)
        merged.extend(v for v in patch if v not in merged)
        return merged
    if any(isinstance(item, Mapping) and item.get(_DIRECTIVE) == "replace" for item in patch):
        return _strip_directives([item for item in patch
                                  if not (isinstance(item, Mapping) and _DIRECTIVE in item)])
    merged = [copy.deepcopy(item) for item in original]
    for item in patch:
        if isinstance(item, Mapping) and item.get(_DIRECTIVE) == "delete":
            wanted = _key_of(item, key)
            merged = [m for m in merged if not (isinstance(m, Mapping) and m.get(key) == wanted)]
            continue
        wanted = _key_of(item, key)
        for index, existing in enumerate(merged):
            if isinstance(existing, Mapping) and existing.get(key) == wanted:
                merged[index] = _merge_map(dict(existing), item, schema)
                break
        else:
            merged.append(_strip_directives(item))
    return merged


def _apply_order(items: list[Any], order: list[Any], schema: Obj | None) -> list[Any]:
    """Put the listed elements in ``$setElementOrder`` order; unlisted ones keep their place
    after them, which is where kubectl apply's server-only entries end up too."""
    key = schema["key"] if schema else ""

    def identity(item: Any) -> Any:
        return item.get(key) if key and isinstance(item, Mapping) else item

    wanted = [o.get(key) if key and isinstance(o, Mapping) else o for o in order]
    listed = [i for w in wanted for i in items if identity(i) == w]
    rest = [i for i in items if identity(i) not in wanted]
    return listed + rest


def strategic_merge_patch(original: Obj, patch: Mapping[str, Any], kind: str) -> Obj:
    """Apply a strategic merge patch to ``original`` for an object of ``kind``."""
    try:
        return _merge_map(copy.deepcopy(original), patch, _SCHEMAS.get(kind, _DEFAULT_SCHEMA))
    except _PatchError as exc:
        if exc.code == 400:
            raise errors.bad_request(str(exc)) from None
        raise errors.ApiError(exc.code, "", str(exc)) from None


# ---------------------------------------------------------------------------------------
# JSON merge patch and JSON patch


def json_merge_patch(original: Any, patch: Any) -> Any:
    """RFC 7386: objects merge key by key, null deletes, anything else replaces."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(original) if isinstance(original, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = json_merge_patch(result.get(key), value)
    return result


def _unprocessable(message: str) -> errors.ApiError:
    """The API server's generic 422 for a patch that parsed but could not be applied."""
    return errors.ApiError(
        422, "Invalid", "the server rejected our request due to an error in our request",
        {"causes": [{"reason": "UnexpectedServerResponse", "message": message}]},
    )


def _json_body(patch_body: bytes) -> Any:
    try:
        return json.loads(patch_body or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.bad_request(str(exc)) from None


def _apply_json_patch(original: Obj, patch_body: bytes) -> Obj:
    """Apply operations one at a time so a failure can be worded as the API server words
    it (``replace operation does not apply: doc is missing path: /x: missing value``)."""
    operations = _json_body(patch_body)
    if not isinstance(operations, list):
        raise errors.bad_request(
            "json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    document: Any = original
    for operation in operations:
        op = operation.get("op", "") if isinstance(operation, Mapping) else ""
        path = operation.get("path", "") if isinstance(operation, Mapping) else ""
        try:
            document = jsonpatch.JsonPatch([operation]).apply(document)
        except jsonpatch.JsonPatchTestFailed:
            raise _unprocessable(f"testing value {path} failed: test failed") from None
        except (jsonpatch.JsonPatchConflict, jsonpatch.JsonPointerException):
            raise _unprocessable(
                f"{op} operation does not apply: doc is missing path: {path}: missing value"
            ) from None
        except jsonpatch.JsonPatchException as exc:
            raise _unprocessable(f"Unexpected kind: {op}" if op else str(exc)) from None
    if not isinstance(document, dict):
        raise _unprocessable("the patched document is not an object")
    return document


def apply_patch(content_type: str, original: Obj, patch_body: bytes, kind: str) -> Obj:
    """The object ``original`` becomes under a PATCH request of ``content_type``.

    ``original`` is not modified. Server-side apply needs a field manager, so it goes
    through :func:`server_side_apply`; any other media type is the API server's 415.
    """
    media = content_type.split(";", 1)[0].strip().lower()
    if media == JSON_PATCH:
        return _apply_json_patch(original, patch_body)
    if media == MERGE_PATCH:
        patch = _json_body(patch_body)
        if not isinstance(patch, Mapping):
            raise errors.bad_request("Invalid JSON Patch")
        return json_merge_patch(original, patch)
    if media == STRATEGIC_MERGE_PATCH:
        patch = _json_body(patch_body)
        if not isinstance(patch, Mapping):
            raise errors.bad_request("invalid JSON document")
        return strategic_merge_patch(original, patch, kind)
    if media == APPLY_PATCH:
        try:
            applied = yaml.safe_load(patch_body or b"")
        except yaml.YAMLError as exc:
            raise errors.bad_request(f"error decoding YAML: {exc}") from None
        if not isinstance(applied, dict):
            raise errors.bad_request("error decoding YAML: the applied object is not a map")
        return _ssa_merge(original, applied, _SCHEMAS.get(kind, _DEFAULT_SCHEMA))
    raise errors.ApiError(
        415, "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        + ", ".join(PATCH_TYPES),
    )


# ---------------------------------------------------------------------------------------
# server-side apply (simplified)


def _ssa_merge(original: Any, applied: Any, schema: Obj | None) -> Any:
    if isinstance(original, Mapping) and isinstance(applied, Mapping):
        result = dict(original)
        for key, value in applied.items():
            result[key] = _ssa_merge(original.get(key), value, _child(schema, key))
        return result
    if isinstance(original, list) and isinstance(applied, list) and schema is not None \
            and "merge" in schema["strategy"].split(","):
        key = schema["key"]
        if not key:
            return list(original) + [v for v in applied if v not in original]
        merged = list(original)
        for item in applied:
            wanted = item.get(key) if isinstance(item, Mapping) else None
            for index, existing in enumerate(merged):
                if isinstance(existing, Mapping) and existing.get(key) == wanted:
                    merged[index] = _ssa_merge(existing, item, schema)
                    break
            else:
                merged.append(copy.deepcopy(item))
        return merged
    return copy.deepcopy(applied)


def _fields_v1(applied: Any, schema: Obj | None) -> Obj:
    """The ``FieldsV1`` set of an applied configuration: ``f:`` fields, ``k:`` keyed items."""
    out: Obj = {}
    if not isinstance(applied, Mapping):
        return out
    for key, value in applied.items():
        if key in ("apiVersion", "kind"):
            continue
        sub = _child(schema, key)
        entry: Obj = {}
        if isinstance(value, Mapping):
            entry = _fields_v1(value, sub)
        elif isinstance(value, list) and sub is not None and sub["key"]:
            for item in value:
                if isinstance(item, Mapping) and sub["key"] in item:
                    ident = json.dumps({sub["key"]: item[sub["key"]]}, separators=(",", ":"))
                    entry[f"k:{ident}"] = {".": {}, **_fields_v1(item, sub)}
        elif isinstance(value, list) and sub is not None and "merge" in sub["strategy"]:
            for item in value:
                entry[f"v:{json.dumps(item, separators=(',', ':'))}"] = {}
        out[f"f:{key}"] = entry
    return out


def server_side_apply(
    original: Obj | None, applied: Obj, field_manager: str, force: bool = False
) -> Obj:
    """Merge an applied configuration into ``original`` (None on create) for ``field_manager``.

    Maps merge recursively, lists with a merge key merge per key, everything else is
    replaced by the applied value, and the manager's ``managedFields`` entry (operation
    Apply, FieldsV1) is replaced. Conflict detection is simplified: fields owned by other
    managers are overwritten without a 409 whatever ``force`` says, and fields dropped from
    a later apply are not removed.
    """
    kind = applied.get("kind", "")
    schema = _SCHEMAS.get(kind, _DEFAULT_SCHEMA)
    body = copy.deepcopy(applied)
    merged = _ssa_merge(copy.deepcopy(original), body, schema) if original else body
    metadata = merged.setdefault("metadata", {})
    managed = [entry for entry in (original or {}).get("metadata", {}).get("managedFields") or []
               if not (entry.get("manager") == field_manager
                       and entry.get("operation") == "Apply")]
    managed.append({
        "manager": field_manager,
        "operation": "Apply",
        "apiVersion": applied.get("apiVersion", ""),
        "time": clock.rfc3339(),
        "fieldsType": "FieldsV1",
        "fieldsV1": _fields_v1(applied, schema),
    })
    metadata["managedFields"] = managed
    return merged
