"""Client authentication (mutual TLS): the server's policy, the client's identity, its
certificate's checks and the CertificateVerify signature.

RFC 5246 §7.4.4 (CertificateRequest), §7.4.6 (the client's Certificate), §7.4.8
(CertificateVerify); RFC 5280 with cryptography's client verifier for the chain.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any, TypeVar

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from .errors import (
    BadCertificate,
    CertificateExpired,
    UnknownCA,
    UnsupportedCertificate,
)
from .kex import (
    SignatureScheme,
    scheme_uses_ecdsa,
    sign_digitally_signed,
    signing_schemes,
    verify_digitally_signed,
)
from .pki import (
    ECDSA_CURVES,
    MAX_CHAIN_LENGTH,
    MIN_RSA_KEY_SIZE,
    Issued,
    IssuedEcdsa,
    fingerprint_sha256,
)

__all__ = [
    "MAX_SUBJECT_LENGTH",
    "VERIFIABLE_SCHEMES",
    "ClientAuth",
    "ClientPrivateKey",
    "ClientPublicKey",
    "PeerIdentity",
    "choose_signature_scheme",
    "fits",
    "issue_client_certificate",
    "issue_ecdsa_client_certificate",
    "sign_certificate_verify",
    "verify_certificate_verify",
    "verify_client_chain",
]

#: The longest client certificate subject (RFC 4514 text, in UTF-8 bytes) a server accepts:
#: a session ticket carries it (kdf_lib.tickets), and tickets are bounded.
MAX_SUBJECT_LENGTH = 256

_T = TypeVar("_T", bound=x509.ExtensionType)

#: The schemes a lab server verifies a CertificateVerify with: RSA and ECDSA client keys.
VERIFIABLE_SCHEMES: tuple[SignatureScheme, ...] = signing_schemes()

ClientPrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
ClientPublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


class ClientAuth(Enum):
    """Whether a server asks for a client certificate, and whether it insists on one."""

    NONE = "none"
    OPTIONAL = "optional"
    REQUIRED = "required"


@dataclass(frozen=True)
class PeerIdentity:
    """A verified client certificate as the session keeps it: its subject and SHA-256."""

    subject: str
    sha256: str

    @classmethod
    def of(cls, certificate: x509.Certificate) -> PeerIdentity:
        return cls(certificate.subject.rfc4514_string(), fingerprint_sha256(certificate))

    def to_json(self) -> dict[str, Any]:
        return {"subject": self.subject, "sha256": self.sha256}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PeerIdentity:
        return cls(str(data["subject"]), str(data["sha256"]))


def verify_client_chain(
    chain: Sequence[x509.Certificate],
    trust_anchors: Sequence[x509.Certificate],
    *,
    now: datetime,
) -> x509.Certificate:
    """Verify a client's certificate chain (leaf first) to ``trust_anchors`` and return the leaf.

    The leaf must be valid at ``now``, no CA, hold an RSA key of at least 2048 bits allowed to
    sign (keyUsage digitalSignature, extendedKeyUsage clientAuth when present), and chain to a
    trust anchor under cryptography's client verifier (RFC 5280).

    Raises:
        CertificateExpired: a certificate is outside its validity window.
        UnsupportedCertificate: the key or its usages cannot sign a CertificateVerify.
        UnknownCA: the chain does not lead to a trust anchor (RFC 5246 §7.2.2 unknown_ca).
        BadCertificate: anything else wrong with the certificate.
    """
    if not trust_anchors:
        raise ValueError("at least one trust anchor is required")
    if not chain:
        raise BadCertificate("the client sent no certificate")
    if len(chain) > MAX_CHAIN_LENGTH:
        raise BadCertificate(f"a certificate chain has at most {MAX_CHAIN_LENGTH} certificates")
    leaf = chain[0]
    _check_client_leaf(leaf, now)
    verifier = PolicyBuilder().store(Store(list(trust_anchors))).time(now).build_client_verifier()
    try:
        verifier.verify(leaf, list(chain[1:]))
    except VerificationError as error:
        text = str(error).lower()
        if "candidates exhausted" in text or leaf.issuer == leaf.subject:
            raise UnknownCA("the client certificate was not issued by a trusted CA") from None
        if "not valid at validation time" in text:
            raise CertificateExpired("a certificate in the client's chain has expired") from None
        raise BadCertificate("the client certificate chain does not verify") from None
    return leaf


def _check_client_leaf(leaf: x509.Certificate, now: datetime) -> None:
    """The leaf's own properties, checked first so that each failure has a precise alert."""
    if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
        raise CertificateExpired("the client certificate is outside its validity period")
    try:
        extensions = leaf.extensions
        public_key = leaf.public_key()
    except (ValueError, x509.DuplicateExtension, UnsupportedAlgorithm):
        raise BadCertificate("the client certificate is malformed") from None
    basic = _extension(extensions, x509.BasicConstraints)
    if basic is not None and basic.ca:
        raise UnsupportedCertificate("the client certificate is a CA certificate")
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if public_key.curve.name not in ECDSA_CURVES:
            raise UnsupportedCertificate(f"client EC key on {public_key.curve.name}")
    elif not isinstance(public_key, rsa.RSAPublicKey):
        raise UnsupportedCertificate("a client certificate holds an RSA or an EC key")
    elif public_key.key_size < MIN_RSA_KEY_SIZE:
        raise UnsupportedCertificate(f"client RSA key has fewer than {MIN_RSA_KEY_SIZE} bits")
    key_usage = _extension(extensions, x509.KeyUsage)
    if key_usage is not None and not key_usage.digital_signature:
        raise UnsupportedCertificate("client certificate keyUsage lacks digitalSignature")
    usages = _extension(extensions, x509.ExtendedKeyUsage)
    if usages is not None and ExtendedKeyUsageOID.CLIENT_AUTH not in usages:
        raise UnsupportedCertificate("client certificate extendedKeyUsage lacks clientAuth")
    if len(leaf.subject.rfc4514_string().encode()) > MAX_SUBJECT_LENGTH:
        raise BadCertificate(f"client certificate subject is longer than {MAX_SUBJECT_LENGTH}")


def fits(scheme: SignatureScheme, key: ClientPrivateKey | ClientPublicKey) -> bool:
    """Whether ``key`` makes (or checks) ``scheme``'s signatures: ECDSA schemes for EC keys,
    the RSA ones for RSA keys (RFC 5246 §7.4.1.4.1)."""
    if scheme not in VERIFIABLE_SCHEMES:
        return False
    is_ec = isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey)
    return scheme_uses_ecdsa(scheme) == is_ec


def choose_signature_scheme(
    offered: Sequence[SignatureScheme],
    own: Sequence[SignatureScheme],
    key: ClientPrivateKey,
) -> SignatureScheme | None:
    """The first of ``offered`` (the CertificateRequest's order) that this client supports and
    its key can make; None when there is none."""
    return next((s for s in offered if s in own and fits(s, key)), None)


def sign_certificate_verify(
    private_key: ClientPrivateKey, scheme: SignatureScheme, handshake_messages: bytes
) -> bytes:
    """RFC 5246 §7.4.8: the signature over every handshake message from ClientHello up to, not
    including, CertificateVerify, hashed with ``scheme``'s hash (an ECDSA one DER-encoded)."""
    return sign_digitally_signed(private_key, scheme, handshake_messages)


def verify_certificate_verify(
    public_key: ClientPublicKey,
    scheme: SignatureScheme,
    signature: bytes,
    handshake_messages: bytes,
) -> None:
    """Raise DecryptError unless ``signature`` is the certificate key's signature over the
    handshake messages (RFC 5246 §7.2.2: a signature that does not verify is decrypt_error);
    IllegalParameter for a scheme that does not fit the key."""
    verify_digitally_signed(
        public_key,
        scheme,
        signature,
        handshake_messages,
        message="CertificateVerify",
        key_of="the client certificate's key",
    )


def issue_client_certificate(
    ca: Issued, common_name: str, *, now: datetime, valid_days: int = 825, key_size: int = 2048
) -> Issued:
    """Issue a TLS client certificate (extendedKeyUsage clientAuth) for ``common_name`` with a
    new RSA key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    return Issued(_client_certificate(ca, common_name, key, now, valid_days), key)


def issue_ecdsa_client_certificate(
    ca: Issued, common_name: str, *, now: datetime, curve: str = "secp256r1", valid_days: int = 825
) -> IssuedEcdsa:
    """The same with a new EC key on ``curve`` (a key of :data:`kdf_lib.pki.ECDSA_CURVES`)."""
    key = ec.generate_private_key(ECDSA_CURVES[curve])
    return IssuedEcdsa(_client_certificate(ca, common_name, key, now, valid_days), key)


def _client_certificate(
    ca: Issued, common_name: str, key: ClientPrivateKey, now: datetime, valid_days: int
) -> x509.Certificate:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    issuer_key = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    end = min(now + timedelta(days=valid_days), ca.certificate.not_valid_after_utc)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(end)
        # cryptography's client verifier (the WebPKI profile) requires a subjectAltName; a URI
        # names the service, as SPIFFE IDs do in service meshes.
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(_service_uri(common_name))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_key.value),
            critical=False,
        )
        .sign(ca.private_key, hashes.SHA256())
    )


def _service_uri(name: str) -> str:
    return f"spiffe://tls-lab/{name}"


def _extension(extensions: x509.Extensions, kind: type[_T]) -> _T | None:
    try:
        return extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None
