"""The cluster CA, serving and admin certificates, and the server TLS context."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import stat
import threading
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from sandboxkit.devcluster.authn import CertSubject
from sandboxkit.devcluster.pki import ClusterPki, ensure_pki, server_ssl_context


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_files_names_and_modes(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path / "cluster")
    for key in (pki.ca_key, pki.server_key, pki.admin_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    ca = _cert(pki.ca_cert)
    assert ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        "sandboxkit-devcluster-ca")
    admin = _cert(pki.admin_cert)
    assert admin.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        "sandboxkit-admin")
    assert admin.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == (
        "system:masters")
    sans = _cert(pki.server_cert).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    assert set(sans.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")}
    for leaf in (pki.server_cert, pki.admin_cert):
        _cert(leaf).verify_directly_issued_by(ca)


def test_existing_files_are_reused_and_broken_ones_replaced(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path)
    before = {p: p.read_bytes() for p in (pki.ca_cert, pki.server_cert, pki.admin_cert)}
    ensure_pki(tmp_path)
    assert {p: p.read_bytes() for p in before} == before

    pki.server_key.write_bytes(b"garbage")
    ensure_pki(tmp_path)
    assert pki.ca_cert.read_bytes() == before[pki.ca_cert]
    assert pki.server_cert.read_bytes() != before[pki.server_cert]
    assert pki.admin_cert.read_bytes() == before[pki.admin_cert]

    pki.ca_cert.unlink()
    ensure_pki(tmp_path)
    ca = _cert(pki.ca_cert)
    for leaf in (pki.server_cert, pki.admin_cert):
        _cert(leaf).verify_directly_issued_by(ca)


def _serve_once(pki: ClusterPki) -> tuple[int, list[dict | None], threading.Thread]:
    context = server_ssl_context(pki)
    listener = socket.create_server(("127.0.0.1", 0))
    seen: list[dict | None] = []

    def run() -> None:
        with listener:
            for _ in range(2):
                conn, _ = listener.accept()
                with context.wrap_socket(conn, server_side=True) as tls:
                    seen.append(tls.getpeercert())
                    tls.sendall(b"ok")

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return listener.getsockname()[1], seen, thread


def test_server_context_accepts_clients_with_and_without_certificates(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path)
    port, seen, thread = _serve_once(pki)

    with_cert = ssl.create_default_context(cafile=str(pki.ca_cert))
    with_cert.load_cert_chain(pki.admin_cert, pki.admin_key)
    without_cert = ssl.create_default_context(cafile=str(pki.ca_cert))
    for client in (with_cert, without_cert):
        with socket.create_connection(("127.0.0.1", port)) as raw, \
                client.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.recv(2) == b"ok"
    thread.join(timeout=10)

    assert CertSubject.from_peercert(seen[0]) == CertSubject("sandboxkit-admin",
                                                             ("system:masters",))
    assert CertSubject.from_peercert(seen[1]) is None
