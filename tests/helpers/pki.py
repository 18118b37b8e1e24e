"""The tests' certificates: one CA and one server identity per run, and one builder for the
certificates kdf_lib.pki does not issue (self-signed leaves, foreign keys, wrong extensions)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kdf_lib import pki
from kdf_lib.handshake import ServerConfig

#: The moment the run's certificates are issued at.
NOW = datetime.now(UTC)
#: The run's CA's name (the mitm demo's CA copies it: a name is not trust).
CA_NAME = "TLS Lab Test CA"
#: The name the server's certificate is for, which client_svc checks (its SERVER_NAME).
SERVER_NAME = "server"

SubjectKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@lru_cache(maxsize=1)
def identity() -> tuple[pki.Issued, pki.Issued]:
    """The run's CA and the server certificate it issued for :data:`SERVER_NAME`.

    RSA key generation is the slow part of a test run, so every test shares these two (the
    root conftest's ``ca`` and ``server_identity``, the in-memory pair, the attacker's Peer).
    """
    ca = pki.create_ca(CA_NAME, now=NOW)
    return ca, pki.issue_server_certificate(ca, SERVER_NAME, now=NOW)


@lru_cache(maxsize=1)
def ecdsa_identity() -> pki.IssuedEcdsa:
    """The run's ECDSA (P-256) server certificate for :data:`SERVER_NAME`, issued by the run's
    CA beside the RSA one, as the compose ``certs`` step does."""
    return pki.issue_ecdsa_server_certificate(identity()[0], SERVER_NAME, now=NOW)


def server_config(
    server: pki.Issued | None = None,
    ecdsa: pki.IssuedEcdsa | None = None,
    *,
    rsa_only: bool = False,
) -> ServerConfig:
    """A server that presents ``server`` (by default the run's RSA identity) for RSA-signed
    suites and ``ecdsa`` (by default the run's ECDSA identity) for ECDSA-signed ones;
    ``rsa_only=True`` gives it no ECDSA certificate, so it never chooses those suites."""
    chosen = server or identity()[1]
    if rsa_only:
        return ServerConfig((chosen.certificate,), chosen.private_key)
    ecdsa_chosen = ecdsa or ecdsa_identity()
    return ServerConfig(
        (chosen.certificate,),
        chosen.private_key,
        ecdsa_certificate_chain=(ecdsa_chosen.certificate,),
        ecdsa_private_key=ecdsa_chosen.private_key,
    )


def rsa_key(key_size: int = 2048) -> rsa.RSAPrivateKey:
    """A fresh RSA key of any size (kdf_lib.pki refuses to make one below 2048 bits)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=key_size)


def build_certificate(
    subject_key: SubjectKey,
    issuer: pki.Issued | None,
    *,
    name: str = SERVER_NAME,
    now: datetime = NOW,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    digital_signature: bool = True,
    key_encipherment: bool = True,
    extended_key_usage: x509.ObjectIdentifier = ExtendedKeyUsageOID.SERVER_AUTH,
    authority_key_id: bool = True,
) -> x509.Certificate:
    """A leaf for ``name`` and ``subject_key`` that is well formed for the WebPKI profile
    except where the arguments say; ``issuer=None`` makes it self-signed by ``subject_key``
    (naming its own key as the authority key, as ``openssl req -x509`` does).

    The validity window is ``not_before`` to ``not_after``, by default ``now`` minus 5 minutes
    to ``now`` plus 30 days.
    """
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    public_key = subject_key.public_key()
    if issuer is None:
        issuer_name, signing_key = subject, subject_key
        issuer_key_id = x509.SubjectKeyIdentifier.from_public_key(public_key)
    else:
        issuer_name, signing_key = issuer.certificate.subject, issuer.private_key
        issuer_key_id = issuer.certificate.extensions.get_extension_for_class(
            x509.SubjectKeyIdentifier
        ).value
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - pki.NOT_BEFORE_BACKDATE if not_before is None else not_before)
        .not_valid_after(now + timedelta(days=30) if not_after is None else not_after)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=digital_signature,
                content_commitment=False,
                key_encipherment=key_encipherment,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([extended_key_usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    if authority_key_id:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_key_id),
            critical=False,
        )
    return builder.sign(signing_key, hashes.SHA256())
