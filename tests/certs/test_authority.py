"""Tests of the development certificate authority."""

from __future__ import annotations

import ipaddress
import ssl
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from certs.authority import (
    SERVICE_NAMESPACE,
    CertPair,
    create_ca,
    ensure_dev_certs,
    issue_client_cert,
    issue_server_cert,
    main,
)
from services.launcher.cli import main as cli_main

HOSTNAMES = ["postgres", "localhost", "127.0.0.1"]

_Extension = TypeVar("_Extension", bound=x509.ExtensionType)


@pytest.fixture
def ca(tmp_path: Path) -> CertPair:
    return create_ca(tmp_path / "ca")


def _extension(pair: CertPair, kind: type[_Extension]) -> _Extension:
    return pair.load_certificate().extensions.get_extension_for_class(kind).value


def _verify_server(
    ca: CertPair, leaf: CertPair, name: x509.DNSName | x509.IPAddress
) -> None:
    store = Store([ca.load_certificate()])
    verifier = PolicyBuilder().store(store).build_server_verifier(name)
    verifier.verify(leaf.load_certificate(), [])


def _handshake(
    client: ssl.SSLContext, server: ssl.SSLContext, server_hostname: str
) -> None:
    """Run a TLS handshake in memory; raises what either side raises."""
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    client_end = client.wrap_bio(to_client, to_server, server_hostname=server_hostname)
    server_end = server.wrap_bio(to_server, to_client, server_side=True)

    for _ in range(10):
        finished = 0
        for end in (client_end, server_end):
            try:
                end.do_handshake()
                finished += 1
            except ssl.SSLWantReadError:
                pass
        if finished == 2:
            return

    raise AssertionError("the handshake did not finish")


def _mutual_tls_contexts(
    ca: CertPair, server: CertPair, client: CertPair
) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    client_context = ssl.create_default_context(cafile=ca.cert_path)
    client_context.load_cert_chain(client.cert_path, client.key_path)
    server_context = ssl.create_default_context(
        ssl.Purpose.CLIENT_AUTH, cafile=ca.cert_path
    )
    server_context.load_cert_chain(server.cert_path, server.key_path)
    server_context.verify_mode = ssl.CERT_REQUIRED
    return client_context, server_context


def test_create_ca_is_a_self_signed_certificate_authority(ca: CertPair) -> None:
    cert = ca.load_certificate()
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    usage = _extension(ca, x509.KeyUsage)

    cert.verify_directly_issued_by(cert)
    assert constraints.critical
    assert constraints.value.ca
    assert usage.key_cert_sign
    assert ca.cert_path.name == "ca.pem"
    assert ca.key_path.name == "ca.key"


def test_issue_server_cert_puts_ip_and_dns_names_in_san(
    ca: CertPair, tmp_path: Path
) -> None:
    pair = issue_server_cert(ca, tmp_path, "postgres", HOSTNAMES)

    san = _extension(pair, x509.SubjectAlternativeName)

    assert san.get_values_for_type(x509.DNSName) == ["postgres", "localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1")
    ]
    assert pair.cert_path == tmp_path / "postgres.pem"
    assert pair.key_path == tmp_path / "postgres.key"


def test_issue_server_cert_allows_server_auth_only(
    ca: CertPair, tmp_path: Path
) -> None:
    pair = issue_server_cert(ca, tmp_path, "s3", ["s3"])

    usage = _extension(pair, x509.ExtendedKeyUsage)
    constraints = _extension(pair, x509.BasicConstraints)

    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert not constraints.ca


def test_issue_client_cert_allows_client_auth_only(
    ca: CertPair, tmp_path: Path
) -> None:
    pair = issue_client_cert(ca, tmp_path, "orchestrator")

    usage = _extension(pair, x509.ExtendedKeyUsage)

    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert pair.cert_path == tmp_path / "orchestrator.pem"


def test_issue_server_cert_without_hostnames_raises(
    ca: CertPair, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="hostname"):
        issue_server_cert(ca, tmp_path, "empty", [])


@pytest.mark.parametrize("name", ["../escape", "ca", "", "a/b"])
def test_issue_server_cert_with_unsafe_name_raises(
    ca: CertPair, tmp_path: Path, name: str
) -> None:
    with pytest.raises(ValueError, match="invalid certificate name"):
        issue_server_cert(ca, tmp_path, name, ["localhost"])


def test_private_keys_are_0600_and_certificates_0644(
    ca: CertPair, tmp_path: Path
) -> None:
    pair = issue_server_cert(ca, tmp_path, "validator", HOSTNAMES)

    for key in (ca.key_path, pair.key_path):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    for cert in (ca.cert_path, pair.cert_path):
        assert stat.S_IMODE(cert.stat().st_mode) == 0o644


def test_private_key_is_unencrypted_pkcs8(ca: CertPair, tmp_path: Path) -> None:
    pair = issue_client_cert(ca, tmp_path, "archivist")

    assert pair.key_path.read_text().startswith("-----BEGIN PRIVATE KEY-----")


def test_server_chain_verifies_against_ca_for_dns_and_ip(
    ca: CertPair, tmp_path: Path
) -> None:
    pair = issue_server_cert(ca, tmp_path, "postgres", HOSTNAMES)

    _verify_server(ca, pair, x509.DNSName("postgres"))
    _verify_server(ca, pair, x509.IPAddress(ipaddress.ip_address("127.0.0.1")))


def test_server_chain_for_unlisted_hostname_fails(ca: CertPair, tmp_path: Path) -> None:
    pair = issue_server_cert(ca, tmp_path, "postgres", HOSTNAMES)

    with pytest.raises(VerificationError):
        _verify_server(ca, pair, x509.DNSName("elsewhere.example"))


def test_server_chain_against_another_ca_fails(ca: CertPair, tmp_path: Path) -> None:
    other = create_ca(tmp_path / "other")
    pair = issue_server_cert(ca, tmp_path, "postgres", HOSTNAMES)

    with pytest.raises(VerificationError):
        _verify_server(other, pair, x509.DNSName("postgres"))


def test_client_chain_verifies_against_ca(ca: CertPair, tmp_path: Path) -> None:
    pair = issue_client_cert(ca, tmp_path, "extractor")
    store = Store([ca.load_certificate()])
    verifier = PolicyBuilder().store(store).build_client_verifier()

    verified = verifier.verify(pair.load_certificate(), [])

    assert verified.subjects == [x509.DNSName("extractor")]


def test_mutual_tls_handshake_over_ip_address_succeeds(
    ca: CertPair, tmp_path: Path
) -> None:
    server = issue_server_cert(ca, tmp_path, "archivist", HOSTNAMES)
    client = issue_client_cert(ca, tmp_path, "orchestrator")

    _handshake(*_mutual_tls_contexts(ca, server, client), "127.0.0.1")


def test_server_certificate_used_as_client_certificate_is_refused(
    ca: CertPair, tmp_path: Path
) -> None:
    server = issue_server_cert(ca, tmp_path, "archivist", HOSTNAMES)
    client_context, server_context = _mutual_tls_contexts(ca, server, server)

    with pytest.raises(ssl.SSLCertVerificationError) as caught:
        _handshake(client_context, server_context, "127.0.0.1")

    # X509_V_ERR_INVALID_PURPOSE: the certificate lacks the clientAuth usage.
    assert caught.value.verify_code == 26


def test_ensure_dev_certs_issues_infrastructure_and_service_certificates(
    tmp_path: Path,
) -> None:
    made = ensure_dev_certs(tmp_path, ["orchestrator", "archivist"])

    assert set(made.servers) == {"postgres", "s3", "orchestrator", "archivist"}
    assert set(made.clients) == {"orchestrator", "archivist"}
    assert made.ca.cert_path == tmp_path / "ca.pem"
    assert made.client("archivist").cert_path == tmp_path / "archivist-client.pem"
    _verify_server(made.ca, made.server("s3"), x509.DNSName("s3"))


def test_servers_that_call_nobody_get_no_client_certificate(tmp_path: Path) -> None:
    made = ensure_dev_certs(tmp_path, ["extractor"], servers_only=["keycloak"])

    assert set(made.servers) == {"postgres", "s3", "keycloak", "extractor"}
    assert set(made.clients) == {"extractor"}
    assert not (tmp_path / "keycloak-client.pem").exists()
    _verify_server(made.ca, made.server("keycloak"), x509.DNSName("keycloak"))


@pytest.mark.parametrize(
    "hostname",
    [
        x509.DNSName("archivist"),
        x509.DNSName(f"archivist.{SERVICE_NAMESPACE}"),
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ],
    ids=["compose-name", "cloud-map-name", "localhost", "loopback"],
)
def test_service_certificate_answers_to_every_name_it_is_reached_by(
    tmp_path: Path, hostname: x509.DNSName | x509.IPAddress
) -> None:
    made = ensure_dev_certs(tmp_path, ["archivist"])

    _verify_server(made.ca, made.server("archivist"), hostname)


def test_ensure_dev_certs_reuses_existing_ca_and_certificates(tmp_path: Path) -> None:
    first = ensure_dev_certs(tmp_path, ["validator"])
    ca_pem = first.ca.cert_path.read_bytes()
    leaf_pem = first.server("postgres").cert_path.read_bytes()

    second = ensure_dev_certs(tmp_path, ["validator"])

    assert second.ca.cert_path.read_bytes() == ca_pem
    assert second.server("postgres").cert_path.read_bytes() == leaf_pem


def test_ensure_dev_certs_replaces_ca_close_to_expiry(tmp_path: Path) -> None:
    old = create_ca(tmp_path, days=2)
    old_pem = old.cert_path.read_bytes()

    made = ensure_dev_certs(tmp_path, ["validator"])

    assert made.ca.cert_path.read_bytes() != old_pem
    _verify_server(made.ca, made.server("validator"), x509.DNSName("validator"))


def test_ensure_dev_certs_reissues_leaf_signed_by_another_ca(tmp_path: Path) -> None:
    ensure_dev_certs(tmp_path, ["validator"])
    foreign_ca = create_ca(tmp_path / "foreign")
    issue_server_cert(foreign_ca, tmp_path, "postgres", HOSTNAMES)

    made = ensure_dev_certs(tmp_path, ["validator"])

    _verify_server(made.ca, made.server("postgres"), x509.DNSName("postgres"))


def test_leaf_never_outlives_its_ca(tmp_path: Path) -> None:
    ca = create_ca(tmp_path, days=3)

    pair = issue_server_cert(ca, tmp_path, "s3", ["s3"], days=30)

    ca_end = ca.load_certificate().not_valid_after_utc
    assert pair.load_certificate().not_valid_after_utc == ca_end


def test_main_lists_certificate_paths_but_no_key_material(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main([str(tmp_path), "--service", "orchestrator"])

    printed = capsys.readouterr().out
    assert status == 0
    assert str(tmp_path / "ca.pem") in printed
    assert str(tmp_path / "orchestrator-client.pem") in printed
    assert "PRIVATE KEY" not in printed
    assert (tmp_path / "orchestrator.key").exists()


def test_cli_certs_issues_servers_alone_for_the_deployment(tmp_path: Path) -> None:
    # The ECS README's step: the four services and Keycloak, 90 days.
    status = cli_main(
        [
            "certs",
            str(tmp_path),
            "--service",
            "extractor",
            "--server",
            "keycloak",
            "--days",
            "90",
        ]
    )

    keycloak = CertPair(tmp_path / "keycloak.pem", tmp_path / "keycloak.key")
    lifetime = keycloak.load_certificate().not_valid_after_utc - datetime.now(UTC)
    assert status == 0
    assert (tmp_path / "extractor-client.pem").exists()
    assert not (tmp_path / "keycloak-client.pem").exists()
    assert timedelta(days=89) < lifetime <= timedelta(days=90)
