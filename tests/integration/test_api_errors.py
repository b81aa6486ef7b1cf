"""API fidelity: bad requests are answered with a ``metav1.Status`` and leave the server
serving.

Bodies no typed client would send (malformed JSON, one over the 3 MiB request limit) go
out as raw HTTPS requests with the kubeconfig's credentials.
"""

from __future__ import annotations

from typing import Any

import pytest
from api_support import raw_request, status_of, unique
from kubernetes import client
from kubernetes.client.rest import ApiException

# kube-apiserver's --max-request-body-bytes default (DefaultMaxRequestBodyBytes).
REQUEST_LIMIT = 3 * 1024 * 1024
RFC1123_SUBDOMAIN = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' "
    "or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex "
    "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)


def _assert_failure_status(body: Any, code: int, reason: str) -> dict[str, Any]:
    assert isinstance(body, dict), body
    assert (body["kind"], body["apiVersion"], body["status"]) == ("Status", "v1", "Failure")
    assert (body["code"], body["reason"]) == (code, reason), body
    assert body["message"]
    return body


def _still_serving(api_client: Any, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    assert core.read_namespace(namespace).status.phase == "Active"
    name = unique("alive")
    core.create_namespaced_config_map(namespace, {"metadata": {"name": name}})
    core.delete_namespaced_config_map(name, namespace)


@pytest.mark.parametrize("payload", [
    b'{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"',
    b"{not json at all}",
    b'["a", "list"]',
])
def test_malformed_json_is_a_bad_request(api_client: Any, namespace: str,
                                         payload: bytes) -> None:
    code, headers, body = raw_request(api_client, "POST",
                                      f"/api/v1/namespaces/{namespace}/configmaps", payload)
    assert code == 400
    assert headers["Content-Type"].startswith("application/json")
    _assert_failure_status(body, 400, "BadRequest")
    _still_serving(api_client, namespace)


def test_unknown_paths_are_not_found(api_client: Any, namespace: str) -> None:
    for path in (f"/api/v1/namespaces/{namespace}/notaresource",
                 "/api/v1/notaresource",
                 "/apis/fidelity.example.com/v1/widgets"):
        code, _, body = raw_request(api_client, "GET", path)
        assert code == 404, path
        _assert_failure_status(body, 404, "NotFound")
        assert body["message"] == "the server could not find the requested resource"
    _still_serving(api_client, namespace)


@pytest.mark.kubectl
def test_kubectl_unknown_resource_type(kubectl: Any, namespace: str) -> None:
    out = kubectl("get", "notaresources", "-n", namespace)
    assert out.returncode == 1
    assert 'the server doesn\'t have a resource type "notaresources"' in out.stderr


@pytest.mark.kubectl
def test_invalid_name_is_unprocessable_with_causes(api_client: Any, kubectl: Any,
                                                   namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    with pytest.raises(ApiException) as invalid:
        core.create_namespaced_config_map(namespace, {"metadata": {"name": "Bad_Name"}})
    body = status_of(invalid.value)
    assert (body["code"], body["reason"]) == (422, "Invalid")
    detail = f'Invalid value: "Bad_Name": {RFC1123_SUBDOMAIN}'
    assert body["message"] == f'ConfigMap "Bad_Name" is invalid: metadata.name: {detail}'
    assert body["details"] == {
        "name": "Bad_Name", "kind": "ConfigMap",
        "causes": [{"reason": "FieldValueInvalid", "message": detail, "field": "metadata.name"}],
    }

    out = kubectl("create", "configmap", "Bad_Name", "-n", namespace)
    assert out.returncode == 1
    assert 'ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name"' in (
        out.stderr)
    _still_serving(api_client, namespace)


def test_missing_required_fields_are_unprocessable(api_client: Any, namespace: str) -> None:
    core, batch = client.CoreV1Api(api_client), client.BatchV1Api(api_client)
    with pytest.raises(ApiException) as no_containers:
        core.create_namespaced_pod(namespace, {"metadata": {"name": "empty"}, "spec": {
            "containers": []}})
    body = status_of(no_containers.value)
    assert (body["code"], body["reason"]) == (422, "Invalid")
    assert body["message"].startswith('Pod "empty" is invalid: ')
    assert {"reason": "FieldValueRequired", "message": "Required value",
            "field": "spec.containers"} in body["details"]["causes"]

    with pytest.raises(ApiException) as no_name:
        core.create_namespaced_config_map(namespace, {"metadata": {"labels": {"a": "b"}}})
    body = status_of(no_name.value)
    assert (body["code"], body["reason"]) == (422, "Invalid")
    assert {"reason": "FieldValueRequired",
            "message": "Required value: name or generateName is required",
            "field": "metadata.name"} in body["details"]["causes"]

    job = {"metadata": {"name": "no-image"}, "spec": {"template": {"spec": {
        "restartPolicy": "Never", "containers": [{"name": "main"}]}}}}
    with pytest.raises(ApiException) as no_image:
        batch.create_namespaced_job(namespace, job)
    body = status_of(no_image.value)
    assert (body["code"], body["reason"]) == (422, "Invalid")
    assert body["message"].startswith('Job.batch "no-image" is invalid: ')
    assert body["details"]["group"] == "batch"
    assert body["details"]["kind"] == "Job"
    assert {"reason": "FieldValueRequired", "message": "Required value",
            "field": "spec.template.spec.containers[0].image"} in body["details"]["causes"]
    _still_serving(api_client, namespace)


def test_body_over_the_request_limit_is_too_large(api_client: Any, namespace: str) -> None:
    # Just over the limit, so the server answers after draining what is left of the body.
    filler = "x" * (REQUEST_LIMIT + 16 * 1024)
    payload = ('{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"big"},'
               f'"data":{{"k":"{filler}"}}}}').encode()
    code, _, body = raw_request(api_client, "POST",
                                f"/api/v1/namespaces/{namespace}/configmaps", payload)
    assert code == 413
    _assert_failure_status(body, 413, "RequestEntityTooLarge")
    assert body["message"] == f"Request entity too large: limit is {REQUEST_LIMIT}"
    with pytest.raises(ApiException) as missing:
        client.CoreV1Api(api_client).read_namespaced_config_map("big", namespace)
    assert missing.value.status == 404
    _still_serving(api_client, namespace)


def test_mismatched_namespace_is_a_bad_request(api_client: Any, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    with pytest.raises(ApiException) as wrong_namespace:
        core.create_namespaced_config_map(
            namespace, {"metadata": {"name": "x", "namespace": "some-other-namespace"}})
    body = status_of(wrong_namespace.value)
    assert (body["code"], body["reason"]) == (400, "BadRequest")
    assert body["message"] == ("the namespace of the provided object does not match the "
                               "namespace sent on the request")
    _still_serving(api_client, namespace)


def test_bad_delete_options_are_refused_before_the_object_is_read(api_client: Any,
                                                                  namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    name = unique("cm")
    core.create_namespaced_config_map(namespace, {"metadata": {"name": name}})
    for target in (name, "does-not-exist"):
        with pytest.raises(ApiException) as bogus:
            core.delete_namespaced_config_map(target, namespace, propagation_policy="Bogus")
        body = status_of(bogus.value)
        assert (body["code"], body["reason"]) == (422, "Invalid")
        assert body["message"] == (
            'DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: Unsupported value: '
            '"Bogus": supported values: "Foreground", "Background", "Orphan", "nil"')
    assert core.read_namespaced_config_map(name, namespace).metadata.deletion_timestamp is None
    _still_serving(api_client, namespace)


def test_delete_preconditions_conflict(api_client: Any, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    name = unique("cm")
    created = core.create_namespaced_config_map(namespace, {"metadata": {"name": name}})
    wrong = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid="not-the-uid"))
    with pytest.raises(ApiException) as conflict:
        core.delete_namespaced_config_map(name, namespace, body=wrong)
    body = status_of(conflict.value)
    assert (body["code"], body["reason"]) == (409, "Conflict")
    assert body["message"] == (
        f'Operation cannot be fulfilled on ConfigMap "{name}": the UID in the precondition '
        f"(not-the-uid) does not match the UID in record ({created.metadata.uid}). The object "
        "might have been deleted and then recreated")
    right = client.V1DeleteOptions(preconditions=client.V1Preconditions(
        uid=created.metadata.uid, resource_version=created.metadata.resource_version))
    assert core.delete_namespaced_config_map(name, namespace, body=right)["status"] == "Success"
