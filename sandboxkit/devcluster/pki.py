"""The devcluster's certificate authority, serving certificate and admin client certificate.

kubectl and the official client verify the server against a CA named in the kubeconfig and
authenticate with a client certificate, exactly as against kind. Go's TLS stack refuses
server certificates without subjectAltNames, so the serving certificate carries
``localhost``, ``127.0.0.1`` and ``::1``. Files are reused across restarts so kubeconfigs
written earlier keep working; anything unreadable, expired or not chaining to the CA on disk
is regenerated.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "ADMIN_COMMON_NAME",
    "ADMIN_ORGANIZATION",
    "CA_COMMON_NAME",
    "ClusterPki",
    "ensure_pki",
    "server_ssl_context",
    "write_private_file",
]

CA_COMMON_NAME = "sandboxkit-devcluster-ca"
SERVER_COMMON_NAME = "sandboxkit-devcluster"
ADMIN_COMMON_NAME = "sandboxkit-admin"
ADMIN_ORGANIZATION = "system:masters"

_SERVER_SANS: tuple[x509.GeneralName, ...] = (
    x509.DNSName("localhost"),
    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    x509.IPAddress(ipaddress.ip_address("::1")),
)
_CA_LIFETIME = timedelta(days=3650)
_LEAF_LIFETIME = timedelta(days=365)
# Regenerate a little before expiry so a long-running cluster never serves an expired cert.
_RENEW_MARGIN = timedelta(days=1)
# Tolerate small clock skew between this process and clients checking notBefore.
_BACKDATE = timedelta(minutes=5)


@dataclass(frozen=True)
class ClusterPki:
    """Paths of the PEM files in a cluster directory."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.directory / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.directory / "server.key"

    @property
    def admin_cert(self) -> Path:
        return self.directory / "admin.crt"

    @property
    def admin_key(self) -> Path:
        return self.directory / "admin.key"


def write_private_file(path: Path, data: bytes) -> None:
    """Write ``data`` readable by the owner only, even if ``path`` existed with wider modes."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attrs = []
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def _make_ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _new_key()
    now = datetime.now(UTC)
    name = _name(CA_COMMON_NAME)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + _CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _make_leaf(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    subject: x509.Name,
    usage: x509.ObjectIdentifier,
    sans: tuple[x509.GeneralName, ...] = (),
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _new_key()
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(min(now + _LEAF_LIFETIME, ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def _load_pair(
    cert_path: Path, key_path: Path,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    """The certificate and its key, or None if either is missing, unreadable or mismatched."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        return None
    if key.public_key().public_numbers() != cert.public_key().public_numbers():
        return None
    return cert, key


def _fresh(cert: x509.Certificate) -> bool:
    now = datetime.now(UTC)
    return cert.not_valid_before_utc <= now and now + _RENEW_MARGIN < cert.not_valid_after_utc


def _issued_by(cert: x509.Certificate, ca_cert: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _has_server_sans(cert: x509.Certificate) -> bool:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return False
    return all(san in ext.value for san in _SERVER_SANS)


def _write_pair(
    cert_path: Path, key_path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey,
) -> None:
    write_private_file(key_path, _key_pem(key))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def ensure_pki(directory: Path) -> ClusterPki:
    """Create (or reuse) the CA, serving and admin certificates under ``directory``.

    The CA is kept while it is valid, so clients holding its PEM stay valid; a new CA
    forces new leaves because the old ones would no longer chain.
    """
    directory.mkdir(parents=True, exist_ok=True)
    pki = ClusterPki(directory)

    ca = _load_pair(pki.ca_cert, pki.ca_key)
    ca_renewed = ca is None or not _fresh(ca[0])
    if ca is None or ca_renewed:
        ca = _make_ca()
        _write_pair(pki.ca_cert, pki.ca_key, *ca)
    ca_cert, ca_key = ca

    server = None if ca_renewed else _load_pair(pki.server_cert, pki.server_key)
    if server is None or not (
        _fresh(server[0]) and _issued_by(server[0], ca_cert) and _has_server_sans(server[0])
    ):
        server = _make_leaf(ca_cert, ca_key, _name(SERVER_COMMON_NAME),
                            ExtendedKeyUsageOID.SERVER_AUTH, _SERVER_SANS)
        _write_pair(pki.server_cert, pki.server_key, *server)

    admin = None if ca_renewed else _load_pair(pki.admin_cert, pki.admin_key)
    if admin is None or not (_fresh(admin[0]) and _issued_by(admin[0], ca_cert)):
        admin = _make_leaf(ca_cert, ca_key, _name(ADMIN_COMMON_NAME, ADMIN_ORGANIZATION),
                           ExtendedKeyUsageOID.CLIENT_AUTH)
        _write_pair(pki.admin_cert, pki.admin_key, *admin)
    return pki


def server_ssl_context(pki: ClusterPki) -> ssl.SSLContext:
    """TLS settings of the API server: client certificates are requested, never required.

    ``CERT_OPTIONAL`` verifies a presented certificate against the cluster CA and lets
    clients without one (bearer tokens, anonymous) through, as kube-apiserver does with
    ``--client-ca-file``.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(pki.server_cert, pki.server_key)
    context.load_verify_locations(cafile=pki.ca_cert)
    context.verify_mode = ssl.CERT_OPTIONAL
    return context
