"""ServiceAccount tokens: bound JWTs and the ``serviceaccounts/token`` (TokenRequest) body.

Tokens carry the same claims as Kubernetes' bound service account tokens (``iss``, ``sub``,
``aud``, ``exp``, ``iat``, ``nbf``, ``jti`` and the private ``kubernetes.io`` claim), so a
workload decoding its token, or a test comparing against a kind cluster, sees the familiar
shape. They are RS256-signed with a key kept in the cluster directory, so tokens stay valid
across restarts of the same cluster.

Verification here covers only what the token itself proves (signature, issuer, audience,
time window); whether the ServiceAccount and bound Pod still exist is checked by ``authn``,
which can see the cluster's objects.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from . import errors
from .clock import rfc3339
from .pki import write_private_file

__all__ = [
    "DEFAULT_EXPIRATION_SECONDS",
    "DEFAULT_ISSUER",
    "IssuedToken",
    "TokenIssuer",
    "token_request_response",
]

DEFAULT_ISSUER = "https://kubernetes.default.svc.cluster.local"
DEFAULT_EXPIRATION_SECONDS = 3600
_MIN_EXPIRATION_SECONDS = 600
_MAX_EXPIRATION_SECONDS = 1 << 32
# go-jose's default leeway, which the API server's token validation uses.
_LEEWAY_SECONDS = 60
_KEY_FILE = "sa.key"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expiration: datetime


class TokenIssuer:
    """Signs and verifies ServiceAccount JWTs for one cluster.

    ``api_audiences`` are the audiences the API server itself accepts (kube-apiserver's
    ``--api-audiences``, which defaults to the issuer); a token requested for another
    audience is valid for that audience but will not authenticate to this API server.
    """

    def __init__(
        self,
        key: rsa.RSAPrivateKey,
        issuer: str = DEFAULT_ISSUER,
        api_audiences: Sequence[str] = (DEFAULT_ISSUER,),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = key
        self.issuer = issuer
        self.api_audiences = tuple(api_audiences)
        self._clock = clock
        public_der = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo,
        )
        # Kubernetes derives the key id from the SHA-256 of the DER public key.
        self.key_id = _b64url(hashlib.sha256(public_der).digest())

    @classmethod
    def load_or_create(cls, directory: Path, **kwargs: Any) -> TokenIssuer:
        """The issuer for the signing key in ``directory``, creating the key on first use."""
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / _KEY_FILE
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError):
            key = None
        if not isinstance(key, rsa.RSAPrivateKey):
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            write_private_file(path, key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ))
        return cls(key, **kwargs)

    def issue(
        self,
        namespace: str,
        name: str,
        uid: str,
        expiration_seconds: int = DEFAULT_EXPIRATION_SECONDS,
        audiences: Sequence[str] | None = None,
        *,
        pod: tuple[str, str] | None = None,
    ) -> IssuedToken:
        """A token for ServiceAccount ``namespace/name``; ``pod`` is ``(name, uid)`` to bind to."""
        now = int(self._clock())
        expiry = now + expiration_seconds
        binding: dict[str, Any] = {"namespace": namespace}
        if pod is not None:
            binding["pod"] = {"name": pod[0], "uid": pod[1]}
        binding["serviceaccount"] = {"name": name, "uid": uid}
        claims = {
            "aud": list(audiences) if audiences else list(self.api_audiences),
            "exp": expiry,
            "iat": now,
            "iss": self.issuer,
            "jti": str(uuid.uuid4()),
            "kubernetes.io": binding,
            "nbf": now,
            "sub": f"system:serviceaccount:{namespace}:{name}",
        }
        header = {"alg": "RS256", "kid": self.key_id}
        signing_input = ".".join(
            _b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
        )
        signature = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return IssuedToken(
            f"{signing_input}.{_b64url(signature)}",
            datetime.fromtimestamp(expiry, UTC),
        )

    def verify(self, token: str) -> dict[str, Any] | None:
        """The claims of a token this cluster issued for its API audiences, or None.

        None covers every reason a token is refused (malformed, foreign, bad signature,
        wrong audience, not yet valid, expired): the API server answers all of them with
        the same bare 401.
        """
        parts = token.split(".")
        if len(parts) != 3:
            return None
        try:
            header = json.loads(_b64url_decode(parts[0]))
            claims = json.loads(_b64url_decode(parts[1]))
            signature = _b64url_decode(parts[2])
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(header, dict) or not isinstance(claims, dict):
            return None
        if header.get("alg") != "RS256" or claims.get("iss") != self.issuer:
            return None
        try:
            self._key.public_key().verify(
                signature, f"{parts[0]}.{parts[1]}".encode(), padding.PKCS1v15(), hashes.SHA256(),
            )
        except InvalidSignature:
            return None
        if not self._valid_now(claims) or not self._for_this_api(claims.get("aud")):
            return None
        binding = claims.get("kubernetes.io")
        if not isinstance(binding, dict) or not isinstance(binding.get("serviceaccount"), dict):
            return None
        return claims

    def _valid_now(self, claims: dict[str, Any]) -> bool:
        now = self._clock()
        exp, nbf, iat = claims.get("exp"), claims.get("nbf"), claims.get("iat")
        if not isinstance(exp, int) or now - _LEEWAY_SECONDS > exp:
            return False
        if isinstance(nbf, int) and now + _LEEWAY_SECONDS < nbf:
            return False
        return not (isinstance(iat, int) and now + _LEEWAY_SECONDS < iat)

    def _for_this_api(self, aud: Any) -> bool:
        audiences = [aud] if isinstance(aud, str) else aud
        return isinstance(audiences, list) and any(a in self.api_audiences for a in audiences)


def _invalid_expiration(value: Any, message: str) -> errors.ApiError:
    return errors.invalid(
        "TokenRequest", "authentication.k8s.io", "",
        [{"field": "spec.expirationSeconds", "reason": "FieldValueInvalid",
          "message": f"Invalid value: {value}: {message}"}],
    )


def _invalid_meta(name: str, field: str, value: str, message: str) -> errors.ApiError:
    return errors.invalid(
        "TokenRequest", "authentication.k8s.io", name,
        [{"field": f"metadata.{field}", "reason": "FieldValueInvalid",
          "message": f'Invalid value: "{value}": {message}'}],
    )


def token_request_response(
    issuer: TokenIssuer,
    service_account: dict[str, Any],
    request: dict[str, Any],
    get_pod: Callable[[str], dict[str, Any]],
) -> dict[str, Any]:
    """Answer ``POST .../serviceaccounts/NAME/token`` for an existing ServiceAccount.

    ``request`` is the posted TokenRequest (kubectl sends nulls for unset fields);
    ``get_pod(name)`` returns a Pod in the ServiceAccount's namespace or raises not_found
    (used only for pod-bound requests). Raises ApiError worded as the API server does.
    """
    sa_meta = service_account["metadata"]
    name, namespace = sa_meta["name"], sa_meta["namespace"]
    meta = request.get("metadata") or {}
    if meta.get("name") and meta["name"] != name:
        raise _invalid_meta(name, "name", meta["name"],
                            "must match the service account name if specified")
    if meta.get("namespace") and meta["namespace"] != namespace:
        raise _invalid_meta(name, "namespace", meta["namespace"],
                            "must match the service account namespace if specified")

    spec = request.get("spec") or {}
    audiences = list(spec.get("audiences") or issuer.api_audiences)
    expiration = spec.get("expirationSeconds")
    if expiration is None:
        expiration = DEFAULT_EXPIRATION_SECONDS
    if expiration < _MIN_EXPIRATION_SECONDS:
        raise _invalid_expiration(expiration, "may not specify a duration less than 10 minutes")
    if expiration > _MAX_EXPIRATION_SECONDS:
        raise _invalid_expiration(expiration, "may not specify a duration larger than 2^32 seconds")

    bound = spec.get("boundObjectRef")
    pod: tuple[str, str] | None = None
    if bound:
        pod = _bound_pod(name, bound, get_pod)

    issued = issuer.issue(namespace, name, sa_meta.get("uid", ""), expiration, audiences, pod=pod)
    return {
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "creationTimestamp": rfc3339(),
        },
        "spec": {
            "audiences": audiences,
            "expirationSeconds": expiration,
            "boundObjectRef": bound or None,
        },
        "status": {
            "token": issued.token,
            "expirationTimestamp": rfc3339(issued.expiration),
        },
    }


def _bound_pod(
    sa_name: str,
    ref: dict[str, Any],
    get_pod: Callable[[str], dict[str, Any]],
) -> tuple[str, str]:
    """``(name, uid)`` of the Pod a token is bound to, checked as TokenREST checks it."""
    api_version, kind = ref.get("apiVersion") or "", ref.get("kind") or ""
    group, _, version = api_version.rpartition("/")
    if group or kind != "Pod":
        # Go prints the GroupVersionKind as "group/version, Kind=kind".
        raise errors.bad_request(
            f"cannot bind token to object of type {group}/{version}, Kind={kind}"
        )
    pod = get_pod(ref.get("name") or "")
    if pod.get("spec", {}).get("serviceAccountName") != sa_name:
        raise errors.bad_request(
            f'cannot bind token for serviceaccount "{sa_name}" to pod running with different '
            "serviceaccount name."
        )
    uid = pod["metadata"].get("uid", "")
    if ref.get("uid") and ref["uid"] != uid:
        raise errors.conflict(
            "Pod", "", pod["metadata"]["name"],
            f"the UID in the bound object reference ({ref['uid']}) does not match the UID in "
            "record. The object might have been deleted and then recreated",
        )
    return pod["metadata"]["name"], uid
