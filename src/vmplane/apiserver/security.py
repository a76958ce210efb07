"""Who may talk to the API, and over what: a bearer token, and TLS off loopback.

The token is generated at first start into ``<data-dir>/token`` (mode 0600) and compared in
constant time. Binding to anything but a loopback address requires TLS: the operator's certificate
and key, or a CA and server certificate generated here with ``cryptography`` into
``<data-dir>/tls/`` (the CA goes into the kubeconfig).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "TlsFiles",
    "ensure_self_signed",
    "is_loopback",
    "issue_server_cert",
    "load_or_create_token",
    "new_ca",
    "server_ssl_context",
]


def _write_private(path: Path, data: bytes) -> None:
    """Write a secret file readable by its owner only (created 0600, never widened)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o600)


def load_or_create_token(data_dir: Path) -> str:
    """The API token, generated on first start."""
    path = data_dir / "token"
    if path.exists():
        os.chmod(path, 0o600)  # a token from before files were kept private
        token = path.read_text().strip()
        if token:
            return token
    token = secrets.token_urlsafe(32)
    _write_private(path, (token + "\n").encode())
    return token


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class TlsFiles:
    cert: Path
    key: Path
    ca: Path | None


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _sans(host: str) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName("localhost"), x509.DNSName(socket.gethostname())]
    addresses = {"127.0.0.1", "::1"}
    if host and host not in ("0.0.0.0", "::"):
        addresses.add(host.strip("[]"))
    for address in sorted(addresses):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(address)))
        except ValueError:
            names.append(x509.DNSName(address))
    return names


def new_ca() -> tuple[bytes, bytes]:
    """A fresh serving CA: its certificate and its private key, both PEM."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vmplane-ca")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(ca_key, hashes.SHA256())
    )
    return ca_cert.public_bytes(serialization.Encoding.PEM), _key_pem(ca_key)


def issue_server_cert(data_dir: Path, host: str, ca_cert_pem: bytes, ca_key_pem: bytes) -> TlsFiles:
    """A server certificate for ``host`` signed by the given CA, written under ``<data-dir>/tls``."""
    tls_dir = data_dir / "tls"
    files = TlsFiles(cert=tls_dir / "server.crt", key=tls_dir / "server.key", ca=tls_dir / "ca.crt")
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    ca_key = serialization.load_pem_private_key(ca_key_pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError("the serving CA key is not an EC key")
    now = dt.datetime.now(dt.UTC)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vmplane")]))
        .issuer_name(ca_cert.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(_sans(host)), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    tls_dir.mkdir(parents=True, exist_ok=True)
    _write_private(files.key, _key_pem(server_key))
    files.cert.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    (tls_dir / "ca.crt").write_bytes(ca_cert_pem)
    return files


def ensure_self_signed(data_dir: Path, host: str) -> TlsFiles:
    """A CA and a server certificate for ``host`` under ``<data-dir>/tls``, made once."""
    tls_dir = data_dir / "tls"
    files = TlsFiles(cert=tls_dir / "server.crt", key=tls_dir / "server.key", ca=tls_dir / "ca.crt")
    if files.cert.exists() and files.key.exists() and files.ca is not None and files.ca.exists():
        return files
    ca_cert_pem, ca_key_pem = new_ca()
    tls_dir.mkdir(parents=True, exist_ok=True)
    _write_private(tls_dir / "ca.key", ca_key_pem)
    return issue_server_cert(data_dir, host, ca_cert_pem, ca_key_pem)


def server_ssl_context(files: TlsFiles) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(files.cert, files.key)
    return context
