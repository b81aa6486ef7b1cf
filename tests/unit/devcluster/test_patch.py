"""PATCH media types: strategic merge keys, directives, errors and server-side apply."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sandboxkit.devcluster.errors import ApiError
from sandboxkit.devcluster.patch import apply_patch, json_merge_patch, server_side_apply

SMP = "application/strategic-merge-patch+json"

POD: dict[str, Any] = {
    "metadata": {"name": "p", "labels": {"a": "1"}, "finalizers": ["x"],
                 "ownerReferences": [{"uid": "u1", "name": "j"}]},
    "spec": {
        "containers": [
            {"name": "a", "image": "i1",
             "env": [{"name": "E", "value": "1"}, {"name": "F", "value": "2"}],
             "ports": [{"containerPort": 80, "name": "http"}]},
            {"name": "b", "image": "j"},
        ],
        "tolerations": [{"key": "t"}],
        "volumes": [{"name": "v", "emptyDir": {}}],
    },
    "status": {"conditions": [{"type": "Ready", "status": "False"},
                              {"type": "Initialized", "status": "True"}]},
}


def smp(patch: dict[str, Any], kind: str = "Pod", original: dict[str, Any] = POD
        ) -> dict[str, Any]:
    return apply_patch(SMP, original, json.dumps(patch).encode(), kind)


def test_containers_merge_by_name_and_env_by_name() -> None:
    out = smp({"spec": {"containers": [{"name": "a", "image": "i2",
                                        "env": [{"name": "G", "value": "3"},
                                                {"name": "E", "$patch": "delete"}]}]}})
    assert out["spec"]["containers"] == [
        {"name": "a", "image": "i2", "env": [{"name": "F", "value": "2"},
                                             {"name": "G", "value": "3"}],
         "ports": [{"containerPort": 80, "name": "http"}]},
        {"name": "b", "image": "j"},
    ]
    assert POD["spec"]["containers"][0]["image"] == "i1"


def test_ports_merge_by_container_port() -> None:
    out = smp({"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 80,
                                                                  "protocol": "TCP"}]}]}})
    assert out["spec"]["containers"][0]["ports"] == [
        {"containerPort": 80, "name": "http", "protocol": "TCP"}]


def test_tolerations_replace_and_null_deletes() -> None:
    out = smp({"spec": {"tolerations": [{"key": "u"}]},
               "metadata": {"labels": {"a": None, "b": "2"}}})
    assert out["spec"]["tolerations"] == [{"key": "u"}]
    assert out["metadata"]["labels"] == {"b": "2"}


def test_finalizers_are_a_set_with_delete_directive() -> None:
    out = smp({"metadata": {"finalizers": ["y", "x"],
                            "$deleteFromPrimitiveList/finalizers": ["x"]}})
    assert out["metadata"]["finalizers"] == ["y"]


def test_owner_references_by_uid_and_conditions_by_type() -> None:
    out = smp({"metadata": {"ownerReferences": [{"uid": "u2", "name": "k"}]},
               "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
    assert [r["uid"] for r in out["metadata"]["ownerReferences"]] == ["u1", "u2"]
    assert out["status"]["conditions"] == [{"type": "Ready", "status": "True"},
                                           {"type": "Initialized", "status": "True"}]


def test_list_replace_directive_and_map_replace() -> None:
    out = smp({"spec": {"containers": [{"name": "q", "image": "z"}, {"$patch": "replace"}]}})
    assert out["spec"]["containers"] == [{"name": "q", "image": "z"}]
    out = smp({"metadata": {"$patch": "replace", "name": "p"}})
    assert out["metadata"] == {"name": "p"}


def test_retain_keys_and_set_element_order() -> None:
    out = smp({"spec": {"volumes": [{"name": "v", "hostPath": {"path": "/x"},
                                     "$retainKeys": ["name", "hostPath"]}],
                        "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}]}})
    assert out["spec"]["volumes"] == [{"name": "v", "hostPath": {"path": "/x"}}]
    assert [c["name"] for c in out["spec"]["containers"]] == ["b", "a"]


def test_job_template_merges_containers() -> None:
    job = {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "1"},
                                                         {"name": "d", "image": "2"}]}}}}
    out = smp({"spec": {"template": {"spec": {"containers": [{"name": "d", "image": "3"}]}}}},
              kind="Job", original=job)
    assert out["spec"]["template"]["spec"]["containers"] == [{"name": "c", "image": "1"},
                                                             {"name": "d", "image": "3"}]


def test_rbac_rules_replace() -> None:
    role = {"rules": [{"verbs": ["get"], "resources": ["pods"], "apiGroups": [""]}]}
    out = smp({"rules": [{"verbs": ["list"], "resources": ["jobs"], "apiGroups": ["batch"]}]},
              kind="Role", original=role)
    assert out["rules"] == [{"verbs": ["list"], "resources": ["jobs"], "apiGroups": ["batch"]}]


def test_missing_merge_key_is_server_error() -> None:
    with pytest.raises(ApiError) as caught:
        smp({"spec": {"containers": [{"image": "x"}]}})
    assert caught.value.code == 500
    assert caught.value.message == "map: map[image:x] does not contain declared merge key: name"


def test_merge_patch() -> None:
    out = apply_patch("application/merge-patch+json", POD,
                      b'{"metadata": {"labels": null}, "spec": {"tolerations": []}}', "Pod")
    assert "labels" not in out["metadata"]
    assert out["spec"]["tolerations"] == []
    assert json_merge_patch({"a": {"b": 1, "c": 2}}, {"a": {"b": None}}) == {"a": {"c": 2}}


def test_json_patch_and_its_errors() -> None:
    body = json.dumps([{"op": "add", "path": "/metadata/labels/b", "value": "2"}]).encode()
    out = apply_patch("application/json-patch+json", POD, body, "Pod")
    assert out["metadata"]["labels"] == {"a": "1", "b": "2"}
    body = json.dumps([{"op": "replace", "path": "/spec/nope/x", "value": 1}]).encode()
    with pytest.raises(ApiError) as caught:
        apply_patch("application/json-patch+json", POD, body, "Pod")
    assert (caught.value.code, caught.value.reason) == (422, "Invalid")
    assert caught.value.message == "the server rejected our request due to an error in our request"
    assert caught.value.details == {"causes": [{
        "reason": "UnexpectedServerResponse",
        "message": "replace operation does not apply: doc is missing path: /spec/nope/x: "
                   "missing value"}]}
    with pytest.raises(ApiError) as caught:
        apply_patch("application/json-patch+json", POD, b"{not json", "Pod")
    assert caught.value.code == 400


def test_unknown_media_type_is_415() -> None:
    with pytest.raises(ApiError) as caught:
        apply_patch("application/json", POD, b"{}", "Pod")
    assert (caught.value.code, caught.value.reason) == (415, "UnsupportedMediaType")
    assert caught.value.message == (
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json-patch+json, application/merge-patch+json, "
        "application/strategic-merge-patch+json, application/apply-patch+yaml")


def test_content_type_parameters_ignored() -> None:
    out = apply_patch("application/merge-patch+json; charset=utf-8", POD,
                      b'{"metadata": {"labels": {"z": "1"}}}', "Pod")
    assert out["metadata"]["labels"] == {"a": "1", "z": "1"}


def test_server_side_apply_records_managed_fields() -> None:
    applied = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "p", "labels": {"b": "2"}},
               "spec": {"containers": [{"name": "a", "image": "i9"}]}}
    out = server_side_apply(POD, applied, "kubectl", force=False)
    assert out["metadata"]["labels"] == {"a": "1", "b": "2"}
    assert [c["image"] for c in out["spec"]["containers"]] == ["i9", "j"]
    assert out["spec"]["containers"][0]["env"][0]["name"] == "E"
    (entry,) = out["metadata"]["managedFields"]
    assert entry["manager"] == "kubectl"
    assert entry["operation"] == "Apply"
    assert entry["fieldsType"] == "FieldsV1"
    assert entry["apiVersion"] == "v1"
    assert entry["fieldsV1"]["f:spec"]["f:containers"] == {
        'k:{"name":"a"}': {".": {}, "f:name": {}, "f:image": {}}}
    again = server_side_apply(out, applied, "kubectl", force=False)
    assert len(again["metadata"]["managedFields"]) == 1


def test_server_side_apply_create_and_yaml_patch() -> None:
    created = server_side_apply(None, {"apiVersion": "v1", "kind": "ConfigMap",
                                       "metadata": {"name": "c"}, "data": {"k": "v"}}, "me")
    assert created["data"] == {"k": "v"}
    out = apply_patch("application/apply-patch+yaml", created, b"data:\n  k2: v2\n",
                      "ConfigMap")
    assert out["data"] == {"k": "v", "k2": "v2"}
