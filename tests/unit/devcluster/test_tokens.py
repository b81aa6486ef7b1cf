"""ServiceAccount JWTs and the TokenRequest subresource body."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from sandboxkit.devcluster.errors import ApiError, not_found
from sandboxkit.devcluster.tokens import DEFAULT_ISSUER, TokenIssuer, token_request_response

NOW = 1_700_000_000.0
SA = {"metadata": {"name": "runner", "namespace": "ns1", "uid": "sa-uid"}}


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def payload(token: str) -> dict[str, Any]:
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def test_issue_produces_bound_token_claims(key: rsa.RSAPrivateKey) -> None:
    issuer = TokenIssuer(key, clock=Clock())
    issued = issuer.issue("ns1", "runner", "sa-uid", 3600, pod=("p", "pod-uid"))
    claims = payload(issued.token)
    assert claims["iss"] == DEFAULT_ISSUER
    assert claims["sub"] == "system:serviceaccount:ns1:runner"
    assert claims["aud"] == [DEFAULT_ISSUER]
    assert claims["iat"] == claims["nbf"] == int(NOW)
    assert claims["exp"] == int(NOW) + 3600
    assert claims["jti"]
    assert claims["kubernetes.io"] == {
        "namespace": "ns1",
        "pod": {"name": "p", "uid": "pod-uid"},
        "serviceaccount": {"name": "runner", "uid": "sa-uid"},
    }
    assert issued.expiration.timestamp() == NOW + 3600
    header = json.loads(base64.urlsafe_b64decode(issued.token.split(".")[0] + "=="))
    assert header == {"alg": "RS256", "kid": issuer.key_id}
    assert issuer.verify(issued.token) == claims


def test_verify_rejects_expired_tampered_foreign_and_wrong_audience(
    key: rsa.RSAPrivateKey,
) -> None:
    clock = Clock()
    issuer = TokenIssuer(key, clock=clock)
    token = issuer.issue("ns1", "runner", "sa-uid", 600).token

    clock.now = NOW + 600 + 59  # within go-jose's one-minute leeway
    assert issuer.verify(token) is not None
    clock.now = NOW + 600 + 61
    assert issuer.verify(token) is None
    clock.now = NOW

    head, _, sig = token.split(".")
    forged = dict(payload(token), sub="system:serviceaccount:kube-system:admin")
    forged_body = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    assert issuer.verify(f"{head}.{forged_body}.{sig}") is None
    assert issuer.verify("not-a-jwt") is None
    assert issuer.verify("a.b.c") is None

    other = TokenIssuer(rsa.generate_private_key(public_exponent=65537, key_size=2048),
                        clock=clock)
    assert issuer.verify(other.issue("ns1", "runner", "sa-uid").token) is None

    vault = issuer.issue("ns1", "runner", "sa-uid", audiences=["vault"]).token
    assert payload(vault)["aud"] == ["vault"]
    assert issuer.verify(vault) is None


def test_key_is_persisted_private_and_reused(tmp_path: Path) -> None:
    first = TokenIssuer.load_or_create(tmp_path)
    mode = stat.S_IMODE((tmp_path / "sa.key").stat().st_mode)
    assert mode == 0o600
    second = TokenIssuer.load_or_create(tmp_path)
    assert first.key_id == second.key_id
    assert second.verify(first.issue("ns1", "runner", "u").token) is not None


def _no_pod(name: str) -> dict[str, Any]:
    raise not_found("pods", "", name)


def test_token_request_defaults(key: rsa.RSAPrivateKey) -> None:
    issuer = TokenIssuer(key)
    body = token_request_response(
        issuer, SA,
        {"kind": "TokenRequest", "metadata": {"creationTimestamp": None},
         "spec": {"audiences": None, "expirationSeconds": None, "boundObjectRef": None}},
        _no_pod,
    )
    assert body["kind"] == "TokenRequest"
    assert body["apiVersion"] == "authentication.k8s.io/v1"
    assert body["metadata"]["name"] == "runner"
    assert body["metadata"]["namespace"] == "ns1"
    assert body["spec"] == {"audiences": [DEFAULT_ISSUER], "expirationSeconds": 3600,
                            "boundObjectRef": None}
    claims = issuer.verify(body["status"]["token"])
    assert claims is not None
    assert body["status"]["expirationTimestamp"].endswith("Z")


def test_token_request_validation_messages(key: rsa.RSAPrivateKey) -> None:
    issuer = TokenIssuer(key)
    with pytest.raises(ApiError) as short:
        token_request_response(issuer, SA, {"spec": {"expirationSeconds": 599}}, _no_pod)
    assert short.value.code == 422
    assert short.value.message == (
        'TokenRequest.authentication.k8s.io "" is invalid: spec.expirationSeconds: '
        "Invalid value: 599: may not specify a duration less than 10 minutes"
    )
    with pytest.raises(ApiError) as renamed:
        token_request_response(issuer, SA, {"metadata": {"name": "other"}}, _no_pod)
    assert renamed.value.message == (
        'TokenRequest.authentication.k8s.io "runner" is invalid: metadata.name: '
        'Invalid value: "other": must match the service account name if specified'
    )


def test_token_request_bound_to_pod(key: rsa.RSAPrivateKey) -> None:
    issuer = TokenIssuer(key)
    pods = {
        "p1": {"metadata": {"name": "p1", "uid": "pod-uid"},
               "spec": {"serviceAccountName": "runner"}},
        "p2": {"metadata": {"name": "p2", "uid": "x"}, "spec": {"serviceAccountName": "other"}},
    }

    def get_pod(name: str) -> dict[str, Any]:
        if name not in pods:
            raise not_found("pods", "", name)
        return pods[name]

    ref = {"kind": "Pod", "apiVersion": "v1", "name": "p1"}
    body = token_request_response(issuer, SA, {"spec": {"boundObjectRef": ref}}, get_pod)
    assert payload(body["status"]["token"])["kubernetes.io"]["pod"] == {
        "name": "p1", "uid": "pod-uid"}
    assert body["spec"]["boundObjectRef"] == ref

    with pytest.raises(ApiError) as wrong_sa:
        token_request_response(issuer, SA, {"spec": {"boundObjectRef": dict(ref, name="p2")}},
                               get_pod)
    assert wrong_sa.value.code == 400
    assert wrong_sa.value.message == (
        'cannot bind token for serviceaccount "runner" to pod running with different '
        "serviceaccount name."
    )
    with pytest.raises(ApiError) as stale:
        token_request_response(issuer, SA, {"spec": {"boundObjectRef": dict(ref, uid="old")}},
                               get_pod)
    assert stale.value.code == 409
    assert stale.value.message.startswith('Operation cannot be fulfilled on Pod "p1": the UID')
    with pytest.raises(ApiError) as missing:
        token_request_response(issuer, SA, {"spec": {"boundObjectRef": dict(ref, name="p3")}},
                               get_pod)
    assert missing.value.code == 404
    with pytest.raises(ApiError) as kind:
        token_request_response(
            issuer, SA,
            {"spec": {"boundObjectRef": {"kind": "Deployment", "apiVersion": "apps/v1",
                                         "name": "d"}}},
            get_pod,
        )
    assert kind.value.message == "cannot bind token to object of type apps/v1, Kind=Deployment"
