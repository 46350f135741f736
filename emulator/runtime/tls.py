"""Key material the emulator makes for itself: a CA, a loopback server certificate, and the app's
client certificate (for certificate-credential sign-in), written to the state directory.

`cryptography` is a runtime dependency; nothing here is meant to be trusted beyond loopback tests.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import os
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Material:
    """Paths of what was written, plus the client certificate's thumbprints."""

    ca_file: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    client_pfx: Path
    client_public_key: rsa.RSAPublicKey
    thumbprint_sha1: str  # base64url of SHA-1(DER): the JWT x5t header
    thumbprint_sha256: str  # base64url of SHA-256(DER): the JWT x5t#S256 header
    thumbprint_hex: str  # what the portal shows and MSAL's "thumbprint" takes

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.server_cert, self.server_key)
        return ctx


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ms-log-agent emulator"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _builder(subject: str, issuer: x509.Name, public: rsa.RSAPublicKey, days: int) -> x509.CertificateBuilder:
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=days))
    )


def _pem_key(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write(path: Path, data: bytes, private: bool = False) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def make(state_dir: Path, names: Sequence[str] = ()) -> Material:
    """Create a fresh CA, server certificate (127.0.0.1, localhost, plus `names`, e.g. the Microsoft
    host names `--impersonate` answers for) and client certificate."""
    state_dir.mkdir(parents=True, exist_ok=True)
    ca_key = _key()
    ca_name = _name("ms-log-agent emulator CA")
    ca = (
        _builder("ms-log-agent emulator CA", ca_name, ca_key.public_key(), 30)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    srv_key = _key()
    srv = (
        _builder("localhost", ca_name, srv_key.public_key(), 30)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    *(x509.DNSName(n) for n in names),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    cli_key = _key()
    cli = _builder(
        "ms-log-agent emulator app", _name("ms-log-agent emulator app"), cli_key.public_key(), 365
    ).sign(cli_key, hashes.SHA256())  # self-signed, as Entra app certificates usually are
    der = cli.public_bytes(serialization.Encoding.DER)
    pem = serialization.Encoding.PEM
    pfx = pkcs12.serialize_key_and_certificates(
        b"emulator-app", cli_key, cli, None, serialization.NoEncryption()
    )
    return Material(
        ca_file=_write(state_dir / "ca.pem", ca.public_bytes(pem)),
        server_cert=_write(state_dir / "server.pem", srv.public_bytes(pem) + ca.public_bytes(pem)),
        server_key=_write(state_dir / "server-key.pem", _pem_key(srv_key), private=True),
        client_cert=_write(state_dir / "client.pem", cli.public_bytes(pem)),
        client_key=_write(state_dir / "client-key.pem", _pem_key(cli_key), private=True),
        client_pfx=_write(state_dir / "client.pfx", pfx, private=True),
        client_public_key=cli_key.public_key(),
        thumbprint_sha1=_b64url(hashlib.sha1(der).digest()),  # noqa: S324 - x5t is defined as SHA-1
        thumbprint_sha256=_b64url(hashlib.sha256(der).digest()),
        thumbprint_hex=hashlib.sha1(der).hexdigest().upper(),  # noqa: S324
    )
