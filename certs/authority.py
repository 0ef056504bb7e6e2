"""A development certificate authority for TLS on every hop of the local mesh.

One CA signs a server certificate for PostgreSQL, the local S3 endpoint and each
service, and a client certificate per service for mutual TLS. Keys are EC P-256,
written as unencrypted PKCS8 PEM with mode 0600; certificates get mode 0644.
Files are replaced atomically, so a reader never sees half a key.

These certificates are for laptops and tests only; on AWS the ALB, RDS and the
mesh CA come from ACM and the RDS CA bundle.
"""

from __future__ import annotations

import argparse
import fcntl
import ipaddress
import os
import re
import secrets
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_OUT_DIR = Path("certs/out")
DEFAULT_SERVICES = ("orchestrator", "extractor", "validator", "archivist", "identity")
INFRASTRUCTURE = ("postgres", "s3")
# The private DNS namespace the deployment registers services in (Cloud Map);
# compose uses the bare service names.
SERVICE_NAMESPACE = "a2a-mesh.local"
RENEW_BEFORE = timedelta(days=7)
ORGANIZATION = "a2a-mesh development"

# Clocks of containers and hosts drift; a certificate valid from "now" can be
# refused for a few seconds by a peer whose clock runs behind.
_BACKDATE = timedelta(minutes=5)
_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_KEY_MODE = 0o600
_CERT_MODE = 0o644


@dataclass(frozen=True)
class CertPair:
    """A certificate and its private key, as PEM files."""

    cert_path: Path
    key_path: Path

    def load_certificate(self) -> x509.Certificate:
        """The certificate, parsed."""
        return x509.load_pem_x509_certificate(self.cert_path.read_bytes())

    def load_private_key(self) -> ec.EllipticCurvePrivateKey:
        """The private key, parsed; only EC keys are issued here."""
        key = serialization.load_pem_private_key(
            self.key_path.read_bytes(), password=None
        )
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{self.key_path} does not hold an EC private key")
        return key


@dataclass(frozen=True)
class DevCertificates:
    """The CA and everything it signed for a local mesh."""

    ca: CertPair
    servers: Mapping[str, CertPair] = field(default_factory=dict)
    clients: Mapping[str, CertPair] = field(default_factory=dict)

    def server(self, name: str) -> CertPair:
        """The server certificate issued for ``name``."""
        if name not in self.servers:
            raise KeyError(f"no server certificate for {name!r}")
        return self.servers[name]

    def client(self, name: str) -> CertPair:
        """The client certificate issued for ``name``."""
        if name not in self.clients:
            raise KeyError(f"no client certificate for {name!r}")
        return self.clients[name]


def create_ca(out_dir: Path, *, days: int = 30) -> CertPair:
    """Create a new CA in ``out_dir`` as ``ca.pem`` and ``ca.key``."""
    _check_days(days)

    key = ec.generate_private_key(ec.SECP256R1())
    name = _subject("a2a-mesh development CA")
    now = datetime.now(UTC)
    public_key = key.public_key()

    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(signs_certificates=True), critical=True)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False
        )
        .sign(key, hashes.SHA256())
    )

    return _write_pair(out_dir, "ca", cert, key)


def issue_server_cert(
    ca: CertPair,
    out_dir: Path,
    name: str,
    hostnames: Sequence[str],
    *,
    days: int = 30,
) -> CertPair:
    """Issue a serverAuth certificate for ``hostnames`` (DNS names or IPs)."""
    if not hostnames:
        raise ValueError("a server certificate needs at least one hostname")

    san = x509.SubjectAlternativeName(_general_names(hostnames))
    usage = ExtendedKeyUsageOID.SERVER_AUTH
    return _issue_leaf(ca, out_dir, name, name, san, usage, days)


def issue_client_cert(
    ca: CertPair,
    out_dir: Path,
    name: str,
    *,
    days: int = 30,
    file_stem: str | None = None,
) -> CertPair:
    """Issue a clientAuth certificate naming the caller ``name``.

    The files are ``{file_stem}.pem`` and ``{file_stem}.key``, by default
    named after the caller.
    """
    san = x509.SubjectAlternativeName([x509.DNSName(name)])
    usage = ExtendedKeyUsageOID.CLIENT_AUTH
    stem = file_stem or name
    return _issue_leaf(ca, out_dir, stem, name, san, usage, days)


def ensure_dev_certs(
    out_dir: Path,
    services: Sequence[str] = DEFAULT_SERVICES,
    *,
    servers_only: Sequence[str] = (),
    days: int = 30,
    ca_days: int = 365,
) -> DevCertificates:
    """Make sure ``out_dir`` holds a usable CA and certificates for the mesh.

    An existing CA is kept unless it is broken or close to expiry, so that
    whatever already trusts it keeps working; a leaf is reissued only when it
    no longer matches the CA, its hostnames or its lifetime. ``servers_only``
    names servers that call no mesh service, so get no client certificate.
    """
    with _exclusive(out_dir):
        return _ensure_dev_certs(out_dir, services, servers_only, days, ca_days)


def _ensure_dev_certs(
    out_dir: Path,
    services: Sequence[str],
    servers_only: Sequence[str],
    days: int,
    ca_days: int,
) -> DevCertificates:
    ca = CertPair(out_dir / "ca.pem", out_dir / "ca.key")
    if not _ca_is_reusable(ca):
        ca = create_ca(out_dir, days=ca_days)

    servers: dict[str, CertPair] = {}
    for name in dict.fromkeys((*INFRASTRUCTURE, *servers_only, *services)):
        hostnames = [name, f"{name}.{SERVICE_NAMESPACE}", "localhost", "127.0.0.1"]
        pair = CertPair(out_dir / f"{name}.pem", out_dir / f"{name}.key")
        if not _leaf_is_reusable(pair, ca, ExtendedKeyUsageOID.SERVER_AUTH, hostnames):
            pair = issue_server_cert(ca, out_dir, name, hostnames, days=days)
        servers[name] = pair

    clients: dict[str, CertPair] = {}
    for name in services:
        file_name = f"{name}-client"
        pair = CertPair(out_dir / f"{file_name}.pem", out_dir / f"{file_name}.key")
        if not _leaf_is_reusable(pair, ca, ExtendedKeyUsageOID.CLIENT_AUTH, [name]):
            pair = issue_client_cert(ca, out_dir, name, days=days, file_stem=file_name)
        clients[name] = pair

    return DevCertificates(ca=ca, servers=servers, clients=clients)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: create the development certificate set and list its files."""
    parser = argparse.ArgumentParser(
        prog="python -m certs.authority",
        description="Create a development CA and the mesh's TLS certificates.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of the certificate command (``a2a-mesh certs`` too)."""
    parser.add_argument("out_dir", nargs="?", type=Path, default=DEFAULT_OUT_DIR)
    parser.add_argument(
        "--service",
        action="append",
        dest="services",
        help="a service: server and client certificate (repeatable; default: all)",
    )
    parser.add_argument(
        "--server",
        action="append",
        dest="servers",
        help="a server that calls no service, such as keycloak (repeatable)",
    )
    parser.add_argument("--days", type=int, default=30, help="leaf lifetime")


def run(args: argparse.Namespace) -> int:
    """Make the certificates ``args`` ask for and list their files."""
    services = tuple(args.services) if args.services else DEFAULT_SERVICES
    made = ensure_dev_certs(
        args.out_dir, services, servers_only=tuple(args.servers or ()), days=args.days
    )

    out = made.ca.cert_path.parent
    rows = [("ca", "", made.ca)]
    rows += [("server", name, pair) for name, pair in made.servers.items()]
    rows += [("client", name, pair) for name, pair in made.clients.items()]
    lines = [f"{kind:<7}{name:<14}{pair.cert_path}" for kind, name, pair in rows]
    lines.append(f"private keys (mode 0600) are beside their certificates in {out}")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


@contextmanager
def _exclusive(out_dir: Path) -> Iterator[None]:
    # Two launchers sharing a folder must not each write half of a new CA.
    out_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
    fd = os.open(out_dir / ".lock", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _issue_leaf(
    ca: CertPair,
    out_dir: Path,
    file_stem: str,
    common_name: str,
    san: x509.SubjectAlternativeName,
    usage: x509.ObjectIdentifier,
    days: int,
) -> CertPair:
    _check_name(file_stem)
    _check_days(days)

    ca_cert = ca.load_certificate()
    ca_key = ca.load_private_key()
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)

    # A leaf that outlives its CA would fail verification anyway; say so in
    # the certificate rather than at the first handshake after the CA expires.
    not_after = min(now + timedelta(days=days), ca_cert.not_valid_after_utc)

    cert = (
        x509.CertificateBuilder()
        .subject_name(_subject(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(signs_certificates=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(san, critical=False)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )

    return _write_pair(out_dir, file_stem, cert, key)


def _subject(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_usage(*, signs_certificates: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def _general_names(hostnames: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for hostname in dict.fromkeys(hostnames):
        if not hostname:
            raise ValueError("empty hostname")
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(hostname)))
        except ValueError:
            names.append(x509.DNSName(hostname))
    return names


def _ca_is_reusable(ca: CertPair) -> bool:
    if not (ca.cert_path.is_file() and ca.key_path.is_file()):
        return False

    try:
        cert = ca.load_certificate()
        key = ca.load_private_key()
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    except (ValueError, x509.ExtensionNotFound):
        return False

    if not constraints.value.ca:
        return False

    if not _same_public_key(cert, key):
        return False

    return _remaining(cert) > RENEW_BEFORE


def _leaf_is_reusable(
    pair: CertPair,
    ca: CertPair,
    usage: x509.ObjectIdentifier,
    hostnames: Sequence[str],
) -> bool:
    if not (pair.cert_path.is_file() and pair.key_path.is_file()):
        return False

    try:
        cert = pair.load_certificate()
        key = pair.load_private_key()
        cert.verify_directly_issued_by(ca.load_certificate())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False

    if list(san.value) != _general_names(hostnames):
        return False

    if list(eku.value) != [usage]:
        return False

    if not _same_public_key(cert, key):
        return False

    return _remaining(cert) > RENEW_BEFORE


def _same_public_key(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> bool:
    encoding = serialization.Encoding.DER
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    ours = key.public_key().public_bytes(encoding, spki)
    return cert.public_key().public_bytes(encoding, spki) == ours


def _remaining(cert: x509.Certificate) -> timedelta:
    return cert.not_valid_after_utc - datetime.now(UTC)


def _check_name(name: str) -> None:
    if not _NAME_PATTERN.fullmatch(name) or name == "ca":
        raise ValueError(
            f"invalid certificate name {name!r}: use letters, digits, '.', '_' "
            "or '-' (it becomes a file name), and not 'ca'"
        )


def _check_days(days: int) -> None:
    if days < 1:
        raise ValueError(f"a certificate must be valid for at least a day, not {days}")


def _write_pair(
    out_dir: Path,
    name: str,
    cert: x509.Certificate,
    key: ec.EllipticCurvePrivateKey,
) -> CertPair:
    out_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
    pair = CertPair(out_dir / f"{name}.pem", out_dir / f"{name}.key")

    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_file(pair.key_path, key_pem, _KEY_MODE)
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    _write_file(pair.cert_path, cert_pem, _CERT_MODE)

    return pair


def _write_file(path: Path, data: bytes, mode: int) -> None:
    # The key is created with its final mode, so it is never readable by others
    # even for a moment; the rename makes the new content appear all at once.
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            # The umask may have removed bits from the requested mode.
            os.fchmod(handle.fileno(), mode)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


if __name__ == "__main__":
    sys.exit(main())
