"""kdf_lib.pki: issuing the lab's certificates, strict PEM loading and server chain verification.

Also drives the ``server_svc.certs`` provisioning CLI. RSA key generation is the slow part,
so keys come from module-scoped fixtures and hand-built certificates reuse existing keys.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from helpers.pki import CA_NAME, build_certificate
from helpers.served import REPO_ROOT

from kdf_lib import pki
from kdf_lib.errors import (
    BadCertificate,
    CertificateExpired,
    DecodeError,
    TLSError,
    UnknownCA,
    UnsupportedCertificate,
)
from server_svc import certs

# kdf_lib.pki's issuing is what these tests check, at a fixed moment and for a name with
# several labels: they make their own CA rather than use the run's (helpers.pki).
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
SERVER_NAME = "server.tls-lab.test"


@pytest.fixture(scope="module")
def ca() -> pki.Issued:
    return pki.create_ca(CA_NAME, now=NOW)


@pytest.fixture(scope="module")
def server(ca: pki.Issued) -> pki.Issued:
    return pki.issue_server_certificate(
        ca, SERVER_NAME, now=NOW, extra_names=["localhost", "127.0.0.1"]
    )


@pytest.fixture(scope="module")
def impostor_ca() -> pki.Issued:
    # Same subject name as the trusted CA: only the signature can tell them apart.
    return pki.create_ca(CA_NAME, now=NOW)


def verify(
    chain: list[x509.Certificate],
    ca: pki.Issued,
    server_name: str = SERVER_NAME,
    *,
    now: datetime = NOW,
    key_exchange: str = "rsa",
) -> x509.Certificate:
    return pki.verify_server_chain(
        chain, [ca.certificate], server_name, now=now, key_exchange=key_exchange
    )


def expect_error(error_type: type[TLSError], chain: list[x509.Certificate], ca: pki.Issued, **kw):
    """Verification fails with exactly ``error_type`` (not merely a subclass of it)."""
    with pytest.raises(TLSError) as caught:
        verify(chain, ca, **kw)
    assert type(caught.value) is error_type, caught.value
    return caught.value


def hand_built_leaf(
    subject_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    signer: pki.Issued | None,
    **defects: Any,
) -> x509.Certificate:
    """A leaf for SERVER_NAME that is well formed for the WebPKI profile except where
    ``defects`` say (see helpers.pki.build_certificate); ``signer=None`` makes it self-signed."""
    return build_certificate(subject_key, signer, name=SERVER_NAME, now=NOW, **defects)


# --- issuing -------------------------------------------------------------------------------


def test_ca_certificate_follows_the_profile(ca: pki.Issued) -> None:
    extensions = ca.certificate.extensions
    basic_constraints = extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic_constraints.critical and basic_constraints.value.ca
    assert basic_constraints.value.path_length == 0
    key_usage = extensions.get_extension_for_class(x509.KeyUsage)
    assert key_usage.critical and key_usage.value.key_cert_sign and key_usage.value.crl_sign
    assert not key_usage.value.digital_signature
    extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert ca.certificate.issuer == ca.certificate.subject
    ca.certificate.verify_directly_issued_by(ca.certificate)


def test_server_certificate_follows_the_profile(ca: pki.Issued, server: pki.Issued) -> None:
    certificate = server.certificate
    extensions = certificate.extensions
    alt_names = extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert alt_names.get_values_for_type(x509.DNSName) == [SERVER_NAME, "localhost"]
    assert [str(ip) for ip in alt_names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    key_usage = extensions.get_extension_for_class(x509.KeyUsage)
    assert key_usage.critical
    assert key_usage.value.digital_signature and key_usage.value.key_encipherment
    eku = extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert not extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    aki = extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ca_ski = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ca_ski.digest
    certificate.verify_directly_issued_by(ca.certificate)
    assert certificate.public_key().key_size == 2048


def test_issuing_refuses_keys_below_2048_bits_and_naive_times(ca: pki.Issued) -> None:
    with pytest.raises(ValueError, match="2048"):
        pki.create_ca(CA_NAME, now=NOW, key_size=1024)
    with pytest.raises(ValueError, match="2048"):
        pki.issue_server_certificate(ca, SERVER_NAME, now=NOW, key_size=1024)
    with pytest.raises(ValueError, match="timezone"):
        pki.create_ca(CA_NAME, now=NOW.replace(tzinfo=None))


@pytest.mark.parametrize("name", ["server_svc", "-server", "server.", "bücher.example", ""])
def test_issuing_refuses_names_a_verifier_would_reject(ca: pki.Issued, name: str) -> None:
    with pytest.raises(ValueError, match="invalid DNS name"):
        pki.issue_server_certificate(ca, name, now=NOW)


def test_issued_repr_does_not_contain_key_material(server: pki.Issued) -> None:
    text = repr(server)
    numbers = server.private_key.private_numbers()
    assert "private_key" not in text
    assert "PRIVATE KEY" not in text
    for secret in (numbers.d, numbers.p, numbers.q):
        assert str(secret) not in text
        assert format(secret, "x") not in text


def test_private_key_pem_round_trips_as_unencrypted_pkcs8(server: pki.Issued) -> None:
    pem = server.private_key_pem()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    loaded = pki.load_private_key(pem)
    assert loaded.private_numbers() == server.private_key.private_numbers()
    assert pki.load_private_key(pem.decode()).public_key() == server.private_key.public_key()


def test_load_private_key_refuses_non_rsa_and_junk() -> None:
    ec_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(ValueError, match="RSA"):
        pki.load_private_key(ec_pem)
    with pytest.raises(ValueError):
        pki.load_private_key(b"not a key")


# --- verification --------------------------------------------------------------------------


@pytest.mark.parametrize("key_exchange", ["rsa", "ecdhe"])
def test_valid_chain_verifies_and_returns_the_leaf(
    ca: pki.Issued, server: pki.Issued, key_exchange: str
) -> None:
    leaf = verify([server.certificate], ca, key_exchange=key_exchange)
    assert leaf == server.certificate


@pytest.mark.parametrize("name", ["localhost", "127.0.0.1", "SERVER.tls-lab.TEST"])
def test_every_subject_alt_name_verifies(ca: pki.Issued, server: pki.Issued, name: str) -> None:
    assert verify([server.certificate], ca, name) == server.certificate


def test_wildcard_name_matches_exactly_one_label(ca: pki.Issued) -> None:
    wildcard = pki.issue_server_certificate(
        ca, SERVER_NAME, now=NOW, extra_names=["*.tls-lab.test"]
    ).certificate
    assert verify([wildcard], ca, "api.tls-lab.test") == wildcard
    for name in ("a.api.tls-lab.test", "tls-lab.test"):
        expect_error(BadCertificate, [wildcard], ca, server_name=name)


def test_chain_that_includes_the_root_still_verifies(ca: pki.Issued, server: pki.Issued) -> None:
    assert verify([server.certificate, ca.certificate], ca) == server.certificate


def test_self_signed_leaf_is_unknown_ca(ca: pki.Issued, server: pki.Issued) -> None:
    self_signed = hand_built_leaf(server.private_key, signer=None)
    error = expect_error(UnknownCA, [self_signed], ca)
    assert error.code == "unknown_ca"
    assert "self-signed" in error.message


def test_self_signed_leaf_without_authority_key_id_is_unknown_ca(
    ca: pki.Issued, server: pki.Issued
) -> None:
    # cryptography refuses it for the missing extension before it builds a chain;
    # the user still needs to hear that nobody vouches for the certificate.
    self_signed = hand_built_leaf(server.private_key, signer=None, authority_key_id=False)
    error = expect_error(UnknownCA, [self_signed], ca)
    assert "self-signed" in error.message


def test_leaf_from_another_ca_with_the_same_name_is_unknown_ca(
    ca: pki.Issued, impostor_ca: pki.Issued
) -> None:
    leaf = pki.issue_server_certificate(impostor_ca, SERVER_NAME, now=NOW).certificate
    expect_error(UnknownCA, [leaf], ca)
    # Supplying the impostor CA as an "intermediate" must not help.
    expect_error(UnknownCA, [leaf, impostor_ca.certificate], ca)


def test_wrong_host_name_is_bad_certificate(ca: pki.Issued, server: pki.Issued) -> None:
    error = expect_error(BadCertificate, [server.certificate], ca, server_name="evil.example")
    assert error.message == "certificate is not valid for host 'evil.example'"
    expect_error(BadCertificate, [server.certificate], ca, server_name="10.0.0.1")
    # The CN is not consulted and a SAN does not match a subdomain of itself.
    expect_error(BadCertificate, [server.certificate], ca, server_name="a." + SERVER_NAME)


def test_expired_leaf_is_certificate_expired(ca: pki.Issued, server: pki.Issued) -> None:
    after_expiry = server.certificate.not_valid_after_utc + timedelta(seconds=1)
    error = expect_error(CertificateExpired, [server.certificate], ca, now=after_expiry)
    assert "expired" in error.message


def test_not_yet_valid_leaf_is_certificate_expired(ca: pki.Issued) -> None:
    future = pki.issue_server_certificate(
        ca,
        SERVER_NAME,
        now=NOW,
        not_before=NOW + timedelta(days=1),
        not_after=NOW + timedelta(days=9),
    )
    error = expect_error(CertificateExpired, [future.certificate], ca)
    assert "not valid before" in error.message
    assert verify([future.certificate], ca, now=NOW + timedelta(days=2)) == future.certificate


def test_expired_trust_anchor_is_certificate_expired(ca: pki.Issued) -> None:
    # The leaf is still valid; only the CA has expired, so this goes through the mapping of
    # cryptography's VerificationError rather than the leaf pre-checks.
    ca_expiry = ca.certificate.not_valid_after_utc
    outliving = pki.issue_server_certificate(
        ca, SERVER_NAME, now=NOW, not_after=ca_expiry + timedelta(days=30)
    )
    expect_error(CertificateExpired, [outliving.certificate], ca, now=ca_expiry + timedelta(days=1))


def test_ca_flag_leaf_is_refused(ca: pki.Issued) -> None:
    ca_leaf = pki.issue_server_certificate(ca, SERVER_NAME, now=NOW, ca_flag=True)
    assert ca_leaf.certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for key_exchange in ("rsa", "ecdhe"):
        error = expect_error(
            UnsupportedCertificate, [ca_leaf.certificate], ca, key_exchange=key_exchange
        )
        assert "CA" in error.message


def test_rsa_key_exchange_needs_key_encipherment_but_ecdhe_does_not(ca: pki.Issued) -> None:
    signing_only = pki.issue_server_certificate(
        ca, SERVER_NAME, now=NOW, key_usage_key_encipherment=False
    )
    error = expect_error(UnsupportedCertificate, [signing_only.certificate], ca, key_exchange="rsa")
    assert "keyEncipherment" in error.message
    leaf = verify([signing_only.certificate], ca, key_exchange="ecdhe")
    assert leaf == signing_only.certificate


def test_ecdhe_key_exchange_needs_digital_signature(ca: pki.Issued, server: pki.Issued) -> None:
    encipher_only = hand_built_leaf(server.private_key, signer=ca, digital_signature=False)
    error = expect_error(UnsupportedCertificate, [encipher_only], ca, key_exchange="ecdhe")
    assert "digitalSignature" in error.message
    assert verify([encipher_only], ca, key_exchange="rsa") == encipher_only


def test_hand_built_leaf_is_accepted_when_nothing_is_wrong(
    ca: pki.Issued, server: pki.Issued
) -> None:
    # Guards the tests below: their leaves fail for the defect under test, not for the builder.
    good = hand_built_leaf(server.private_key, signer=ca)
    assert verify([good], ca) == good


def test_non_rsa_leaf_is_refused(ca: pki.Issued) -> None:
    ec_leaf = hand_built_leaf(ec.generate_private_key(ec.SECP256R1()), signer=ca)
    error = expect_error(UnsupportedCertificate, [ec_leaf], ca, key_exchange="ecdhe")
    assert error.message == "server certificate key must be RSA, not EC"


def test_rsa_leaf_below_2048_bits_is_refused(ca: pki.Issued) -> None:
    # cryptography's verifier only enforces the modulus size on keys that verify signatures,
    # not on the leaf's own key: this check is the lab's.
    weak_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    weak_leaf = hand_built_leaf(weak_key, signer=ca)
    error = expect_error(UnsupportedCertificate, [weak_leaf], ca)
    assert "1024" in error.message


def test_leaf_without_server_auth_is_refused(ca: pki.Issued, server: pki.Issued) -> None:
    client_leaf = hand_built_leaf(
        server.private_key, signer=ca, extended_key_usage=ExtendedKeyUsageOID.CLIENT_AUTH
    )
    expect_error(UnsupportedCertificate, [client_leaf], ca)


def test_caller_errors_are_value_errors(ca: pki.Issued, server: pki.Issued) -> None:
    chain = [server.certificate]
    with pytest.raises(ValueError, match="trust anchor"):
        pki.verify_server_chain(chain, [], SERVER_NAME, now=NOW, key_exchange="rsa")
    with pytest.raises(ValueError, match="key_exchange"):
        verify(chain, ca, key_exchange="psk")
    with pytest.raises(ValueError, match="timezone"):
        verify(chain, ca, now=NOW.replace(tzinfo=None))
    with pytest.raises(TypeError):
        pki.verify_server_chain(
            [server.certificate_pem()], [ca.certificate], SERVER_NAME, now=NOW, key_exchange="rsa"
        )


def test_empty_chain_is_bad_certificate(ca: pki.Issued) -> None:
    expect_error(BadCertificate, [], ca)


# --- describing and encoding ---------------------------------------------------------------


def test_describe_certificate_has_public_facts_only(server: pki.Issued) -> None:
    description = pki.describe_certificate(server.certificate)
    assert description["subject"] == f"CN={SERVER_NAME}"
    assert description["issuer"] == f"CN={CA_NAME}"
    assert description["serial_number"] == format(server.certificate.serial_number, "x")
    assert description["not_after"] == server.certificate.not_valid_after_utc.isoformat()
    assert description["subject_alt_names"] == [SERVER_NAME, "localhost", "127.0.0.1"]
    assert (description["public_key_type"], description["public_key_size"]) == ("RSA", 2048)
    assert description["key_usage"] == ["digitalSignature", "keyEncipherment"]
    assert description["extended_key_usage"] == ["serverAuth"]
    assert description["is_ca"] is False
    assert description["fingerprint_sha256"] == pki.fingerprint_sha256(server.certificate)

    text = json.dumps(description)
    numbers = server.private_key.private_numbers()
    for secret in (numbers.d, numbers.p, numbers.q, numbers.dmp1, numbers.dmq1, numbers.iqmp):
        assert str(secret) not in text
        assert format(secret, "x") not in text
    assert "PRIVATE" not in text


def test_fingerprint_is_sha256_of_der(server: pki.Issued) -> None:
    der = server.certificate.public_bytes(serialization.Encoding.DER)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(der)
    assert pki.fingerprint_sha256(server.certificate) == digest.finalize().hex()


def test_chain_pem_round_trips(ca: pki.Issued, server: pki.Issued) -> None:
    chain = [server.certificate, ca.certificate]
    pems = pki.certificate_chain_pem(chain)
    assert len(pems) == 2 and all(p.startswith("-----BEGIN CERTIFICATE-----") for p in pems)
    assert pki.load_certificate_chain("".join(pems)) == chain
    assert pki.load_certificate_chain("\n".join(pems).encode()) == chain
    crlf = "".join(pems).replace("\n", "\r\n")
    assert pki.load_certificate_chain(crlf) == chain


def corrupt_certificate_pem(pem: str) -> str:
    lines = pem.splitlines()
    middle = len(lines) // 2
    lines[middle] = "A" * len(lines[middle])
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    "make_input",
    [
        pytest.param(lambda s: b"", id="empty"),
        pytest.param(lambda s: "  \n\n", id="whitespace-only"),
        pytest.param(lambda s: b"\x00\x01junk", id="junk"),
        pytest.param(lambda s: s.private_key_pem(), id="private-key-block"),
        pytest.param(lambda s: s.certificate_pem() + s.private_key_pem(), id="cert-then-key"),
        pytest.param(lambda s: b"subject=CN=x\n" + s.certificate_pem(), id="text-before"),
        pytest.param(lambda s: s.certificate_pem() + b"trailing", id="text-after"),
        pytest.param(
            lambda s: s.certificate_pem().replace(b"END CERTIFICATE", b"END CERT"), id="unclosed"
        ),
        pytest.param(
            lambda s: corrupt_certificate_pem(s.certificate_pem().decode()), id="corrupt-der"
        ),
        pytest.param(lambda s: s.certificate_pem().decode() + "é", id="non-ascii"),
        pytest.param(lambda s: s.certificate_pem() * 11, id="too-many"),
    ],
)
def test_load_certificate_chain_rejects_anything_but_certificates(
    server: pki.Issued, make_input
) -> None:
    with pytest.raises(DecodeError):
        pki.load_certificate_chain(make_input(server))


def test_private_key_block_is_named_but_not_echoed(server: pki.Issued) -> None:
    key_pem = server.private_key_pem()
    with pytest.raises(DecodeError) as caught:
        pki.load_certificate_chain(server.certificate_pem() + key_pem)
    assert caught.value.message == "expected a CERTIFICATE PEM block, found 'PRIVATE KEY'"
    key_body = key_pem.decode().splitlines()[1]
    assert key_body not in str(caught.value)


def test_load_certificate_chain_rejects_wrong_types() -> None:
    with pytest.raises(TypeError):
        pki.load_certificate_chain(None)  # type: ignore[arg-type]


# --- the provisioning CLI ------------------------------------------------------------------


def cli_argv(tmp_path: Path, *extra: str) -> list[str]:
    return [
        "--server-dir", str(tmp_path / "server"),
        "--trust-dir", str(tmp_path / "trust"),
        "--server-name", "server",
        "--extra-name", "localhost",
        *extra,
    ]  # fmt: skip


def run_cli(tmp_path: Path, *extra: str, now: datetime | None = None) -> dict[str, object]:
    """Run ``certs.main`` in process; it must succeed and print exactly one JSON line."""
    return json.loads(_capture_main(cli_argv(tmp_path, *extra), now))


def _capture_main(argv: list[str], now: datetime | None) -> str:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert certs.main(argv, now=now) == 0
    lines = buffer.getvalue().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def snapshot(tmp_path: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(path.relative_to(tmp_path)): (path.read_bytes(), path.stat().st_mtime_ns)
        for path in sorted(tmp_path.rglob("*"))
        if path.is_file()
    }


def test_certs_cli_creates_then_reuses_then_force_regenerates(tmp_path: Path) -> None:
    # First run through the real entry point.
    completed = subprocess.run(
        [sys.executable, "-m", "server_svc.certs", *cli_argv(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    created = json.loads(completed.stdout)
    assert created["action"] == "created"
    assert "PRIVATE" not in completed.stdout + completed.stderr

    key_path = tmp_path / "server" / "server.key"
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    # Only the leaf goes to chain.pem, only the CA certificate to the trust dir, no CA key.
    chain = pki.load_certificate_chain((tmp_path / "server" / "chain.pem").read_bytes())
    anchors = pki.load_certificate_chain((tmp_path / "trust" / "ca.pem").read_bytes())
    assert len(chain) == 1 and len(anchors) == 1
    assert sorted(snapshot(tmp_path)) == [
        "server/chain.pem",
        "server/client-ca.pem",
        "server/ecdsa-chain.pem",
        "server/ecdsa-server.key",
        "server/server.key",
        "trust/ca.pem",
    ]
    key = pki.load_private_key(key_path.read_bytes())
    assert key.public_key() == chain[0].public_key()
    now = datetime.now(UTC)
    for name in ("server", "localhost"):
        pki.verify_server_chain(chain, anchors, name, now=now, key_exchange="rsa")
    assert created["leaf_fingerprint_sha256"] == pki.fingerprint_sha256(chain[0])

    before = snapshot(tmp_path)
    reused = run_cli(tmp_path)
    assert reused["action"] == "reusing"
    assert reused["leaf_fingerprint_sha256"] == created["leaf_fingerprint_sha256"]
    assert snapshot(tmp_path) == before

    forced = run_cli(tmp_path, "--force")
    assert forced["action"] == "created"
    assert forced["leaf_fingerprint_sha256"] != created["leaf_fingerprint_sha256"]
    assert forced["ca_fingerprint_sha256"] != created["ca_fingerprint_sha256"]
    after = snapshot(tmp_path)
    assert all(after[name][0] != before[name][0] for name in before)


def test_certs_cli_regenerates_for_new_names_damage_and_near_expiry(tmp_path: Path) -> None:
    first = run_cli(tmp_path)
    assert first["action"] == "created"

    renamed = run_cli(tmp_path, "--extra-name", "server.internal")
    assert renamed["action"] == "created"
    assert "server.internal" in str(renamed["reason"])

    leaf_expiry = datetime.fromisoformat(str(renamed["leaf_not_after"]))
    near_expiry = run_cli(
        tmp_path, "--extra-name", "server.internal", now=leaf_expiry - timedelta(days=10)
    )
    assert near_expiry["action"] == "created"
    assert "renewing" in str(near_expiry["reason"])

    (tmp_path / "trust" / "ca.pem").write_text("not a certificate")
    damaged = run_cli(tmp_path)
    assert damaged["action"] == "created"
    assert str(damaged["reason"]).startswith("unreadable")


def test_certs_cli_keeps_the_ca_key_only_when_asked(tmp_path: Path) -> None:
    ca_key_path = tmp_path / "secret" / "ca.key"
    owner = f"{os.getuid()}:{os.getgid()}"
    record = run_cli(tmp_path, "--keep-ca-key", str(ca_key_path), "--owner", owner)
    assert record["ca_key_kept_at"] == str(ca_key_path)
    assert stat.S_IMODE(ca_key_path.stat().st_mode) == 0o600
    ca_key = pki.load_private_key(ca_key_path.read_bytes())
    anchor = pki.load_certificate_chain((tmp_path / "trust" / "ca.pem").read_bytes())[0]
    assert ca_key.public_key() == anchor.public_key()
    key_stat = (tmp_path / "server" / "server.key").stat()
    assert (key_stat.st_uid, key_stat.st_gid) == (os.getuid(), os.getgid())


def test_the_certs_step_makes_the_state_key_once_and_keeps_it(tmp_path: Path) -> None:
    key_file = tmp_path / "state" / "state.key"
    printed = []
    for _ in range(2):
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            assert certs.main([*cli_argv(tmp_path), "--state-key", str(key_file)]) == 0
        printed.append([json.loads(line) for line in buffer.getvalue().splitlines()])
        if len(printed) == 1:
            first_key = key_file.read_bytes()
    assert [lines[0]["action"] for lines in printed] == ["created", "reusing"]
    assert all(lines[0]["event"] == "state_key" for lines in printed)
    assert key_file.read_bytes() == first_key and len(first_key) == 32
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert first_key.hex() not in json.dumps(printed)
