"""The lab's small PKI: issue a demo CA and server certificates, and verify a server's chain.

RFC 5280 profile as used by TLS 1.2 servers (RFC 5246 §7.4.2, RFC 8422 §5.3); chain and host
name checks are delegated to ``cryptography.x509.verification`` (the WebPKI profile).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypedDict, TypeVar

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from .errors import (
    BadCertificate,
    CertificateExpired,
    DecodeError,
    UnknownCA,
    UnsupportedCertificate,
)

__all__ = [
    "AUTHENTICATIONS",
    "ECDSA_CURVES",
    "KEY_EXCHANGES",
    "MAX_CHAIN_LENGTH",
    "MIN_RSA_KEY_SIZE",
    "SERVER_CHAIN_CACHE",
    "CertificateDescription",
    "ChainVerificationCache",
    "Issued",
    "IssuedEcdsa",
    "certificate_chain_pem",
    "create_ca",
    "describe_certificate",
    "fingerprint_sha256",
    "issue_ecdsa_server_certificate",
    "issue_server_certificate",
    "load_certificate_chain",
    "load_ec_private_key",
    "load_private_key",
    "verify_server_chain",
    "verify_server_chain_cached",
]

MIN_RSA_KEY_SIZE = 2048
# A TLS server sends its leaf and intermediates only; a longer list is junk, not a chain.
MAX_CHAIN_LENGTH = 10
KEY_EXCHANGES = ("rsa", "ecdhe", "dhe")
#: The server certificate key types, one per suite family (kdf_lib.suites.Authentication).
AUTHENTICATIONS = ("rsa", "ecdsa")
#: The curves an ECDSA server certificate may use: the lab's NIST groups (RFC 8422 §5.1.1).
ECDSA_CURVES: dict[str, ec.EllipticCurve] = {
    "secp256r1": ec.SECP256R1(),
    "secp384r1": ec.SECP384R1(),
}
# Certificates start a little in the past so that containers whose clocks differ by a few
# minutes do not see a freshly issued certificate as "not yet valid".
NOT_BEFORE_BACKDATE = timedelta(minutes=5)

_PUBLIC_EXPONENT = 65537
_SIGNATURE_HASH = hashes.SHA256()
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n[A-Za-z0-9+/=\r\n]*?-----END \1-----")
_PEM_SEPARATOR = re.compile(rb"\s*")
# RFC 1123 host names (LDH labels of at most 63 characters); a whole "*" leftmost label is
# allowed in a SAN entry (RFC 6125 §6.4.3).
_DNS_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DNS_NAME = re.compile(rf"(?:\*\.)?(?:{_DNS_LABEL}\.)*{_DNS_LABEL}")
_MAX_DNS_NAME_LENGTH = 253
# cryptography appends "(encountered processing <Certificate(...)>)" to its reasons.
_ENCOUNTERED_SUFFIX = re.compile(r"\s*\(encountered processing .*\)\s*$", re.S)
_MALFORMED_EXTENSION_ERRORS = (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType)
_EXTENDED_KEY_USAGE_NAMES = {
    ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
    ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
    ExtendedKeyUsageOID.CODE_SIGNING: "codeSigning",
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "emailProtection",
    ExtendedKeyUsageOID.TIME_STAMPING: "timeStamping",
    ExtendedKeyUsageOID.OCSP_SIGNING: "OCSPSigning",
    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE: "anyExtendedKeyUsage",
}

ExtensionT = TypeVar("ExtensionT", bound=x509.ExtensionType)


@dataclass(frozen=True)
class Issued:
    """A certificate together with its private key. The key never appears in ``repr``."""

    certificate: x509.Certificate
    private_key: rsa.RSAPrivateKey = field(repr=False)

    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def private_key_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM (the caller decides where it may go)."""
        return _private_key_pem(self.private_key)


@dataclass(frozen=True)
class IssuedEcdsa:
    """An ECDSA server certificate with its EC private key (never in ``repr``)."""

    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey = field(repr=False)

    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def private_key_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM (the caller decides where it may go)."""
        return _private_key_pem(self.private_key)


def _private_key_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class CertificateDescription(TypedDict):
    """Public facts about a certificate, for the lab's step trace."""

    subject: str
    issuer: str
    serial_number: str
    not_before: str
    not_after: str
    subject_alt_names: list[str]
    public_key_type: str
    public_key_size: int | None
    key_usage: list[str]
    extended_key_usage: list[str]
    is_ca: bool
    self_issued: bool
    signature_hash: str | None
    fingerprint_sha256: str


# --- issuing -------------------------------------------------------------------------------


def create_ca(
    common_name: str, *, now: datetime, valid_days: int = 3650, key_size: int = 2048
) -> Issued:
    """Create a self-signed root CA that may sign end-entity certificates only (pathlen 0).

    Raises:
        ValueError: ``now`` is naive, ``valid_days`` is not positive or ``key_size`` is too small.
    """
    _require_aware(now, "now")
    _require_positive(valid_days, "valid_days")
    key = _generate_rsa_key(key_size)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - NOT_BEFORE_BACKDATE)
        .not_valid_after(now + timedelta(days=valid_days))
        # pathlen 0: this CA signs leaves directly, never another CA.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, _SIGNATURE_HASH)
    )
    return Issued(certificate=certificate, private_key=key)


def issue_server_certificate(
    ca: Issued,
    server_name: str,
    *,
    now: datetime,
    valid_days: int = 825,
    key_size: int = 2048,
    extra_names: Sequence[str] = (),
    key_usage_key_encipherment: bool = True,
    ca_flag: bool = False,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> Issued:
    """Issue a TLS server certificate for ``server_name`` (and ``extra_names``) signed by ``ca``.

    Names that parse as IP addresses become iPAddress SAN entries, the rest dNSName entries.
    ``key_usage_key_encipherment=False``, ``ca_flag=True`` and an explicit validity window exist
    so that tests can produce certificates the verifier must refuse.

    Raises:
        ValueError: a naive datetime, an empty or invalid name, an empty validity window or a
            key size below :data:`MIN_RSA_KEY_SIZE`.
    """
    _require_aware(now, "now")
    _require_positive(valid_days, "valid_days")
    names = list(dict.fromkeys([server_name, *extra_names]))
    alt_names = [_general_name(name) for name in names]
    start = now - NOT_BEFORE_BACKDATE if not_before is None else not_before
    if not_after is None:
        # A leaf that outlives its issuer fails verification once the issuer expires anyway.
        end = min(now + timedelta(days=valid_days), ca.certificate.not_valid_after_utc)
    else:
        end = not_after
    _require_aware(start, "not_before")
    _require_aware(end, "not_after")
    if end <= start:
        raise ValueError("not_after must be later than not_before")

    key = _generate_rsa_key(key_size)
    certificate = _sign_server_certificate(
        ca,
        key,
        alt_names,
        start,
        end,
        key_usage=_key_usage(digital_signature=True, key_encipherment=key_usage_key_encipherment),
        ca_flag=ca_flag,
    )
    return Issued(certificate=certificate, private_key=key)


def issue_ecdsa_server_certificate(
    ca: Issued,
    server_name: str,
    *,
    now: datetime,
    valid_days: int = 825,
    curve: str = "secp256r1",
    extra_names: Sequence[str] = (),
) -> IssuedEcdsa:
    """Issue an ECDSA server certificate (ECDHE_ECDSA suites) for ``server_name`` signed by
    ``ca``'s RSA key, to sit beside the RSA one: a CA of one key type may sign leaves of the
    other (RFC 5246 §7.4.2; the client's signature_algorithms offers the RSA schemes too).

    ``curve`` is a key of :data:`ECDSA_CURVES`. The key usage is digitalSignature alone: an
    EC key signs ServerKeyExchange and never decrypts anything (RFC 8422 §5.3).

    Raises:
        ValueError: a naive datetime, an empty or invalid name or an unknown curve.
    """
    _require_aware(now, "now")
    _require_positive(valid_days, "valid_days")
    if curve not in ECDSA_CURVES:
        raise ValueError(f"curve must be one of {tuple(ECDSA_CURVES)}, not {curve!r}")
    names = list(dict.fromkeys([server_name, *extra_names]))
    alt_names = [_general_name(name) for name in names]
    start = now - NOT_BEFORE_BACKDATE
    end = min(now + timedelta(days=valid_days), ca.certificate.not_valid_after_utc)
    key = ec.generate_private_key(ECDSA_CURVES[curve])
    certificate = _sign_server_certificate(
        ca, key, alt_names, start, end, key_usage=_key_usage(digital_signature=True), ca_flag=False
    )
    return IssuedEcdsa(certificate=certificate, private_key=key)


def _sign_server_certificate(
    ca: Issued,
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    alt_names: Sequence[x509.DNSName | x509.IPAddress],
    start: datetime,
    end: datetime,
    *,
    key_usage: x509.KeyUsage,
    ca_flag: bool,
) -> x509.Certificate:
    """A server leaf for ``key`` whose subject is the first of ``alt_names``."""
    server_name = str(alt_names[0].value)
    ca_key_identifier = ca.certificate.extensions.get_extension_for_class(
        x509.SubjectKeyIdentifier
    ).value
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, server_name)]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=ca_flag, path_length=None), critical=True)
        .add_extension(key_usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_key_identifier),
            critical=False,
        )
        .sign(ca.private_key, _SIGNATURE_HASH)
    )


# --- encoding ------------------------------------------------------------------------------


def load_certificate_chain(pem: bytes | str) -> list[x509.Certificate]:
    """Parse one or more PEM certificates, strictly.

    Only ``CERTIFICATE`` blocks separated by whitespace are accepted; any other text, any other
    block type, a certificate that does not parse or more than :data:`MAX_CHAIN_LENGTH`
    certificates is an error.

    Raises:
        TypeError: ``pem`` is neither bytes nor str.
        DecodeError: the input is not a clean list of certificates.
    """
    if isinstance(pem, str):
        try:
            data = pem.encode("ascii")
        except UnicodeEncodeError:
            raise DecodeError("certificate PEM contains non-ASCII characters") from None
    elif isinstance(pem, bytes):
        data = pem
    else:
        raise TypeError(f"pem must be bytes or str, not {type(pem).__name__}")

    certificates: list[x509.Certificate] = []
    position = 0
    for match in _PEM_BLOCK.finditer(data):
        if not _PEM_SEPARATOR.fullmatch(data, position, match.start()):
            raise DecodeError("unexpected data outside PEM certificate blocks")
        position = match.end()
        label = match.group(1).decode("ascii")
        if label != "CERTIFICATE":
            raise DecodeError(f"expected a CERTIFICATE PEM block, found {label!r}")
        if len(certificates) == MAX_CHAIN_LENGTH:
            raise DecodeError(f"certificate chain is longer than {MAX_CHAIN_LENGTH}")
        certificates.append(_parse_certificate(match.group(0), len(certificates)))
    if not _PEM_SEPARATOR.fullmatch(data, position):
        raise DecodeError("unexpected data outside PEM certificate blocks")
    if not certificates:
        raise DecodeError("no PEM certificate found")
    return certificates


def certificate_chain_pem(chain: Sequence[x509.Certificate]) -> list[str]:
    """One PEM string per certificate, in chain order."""
    return [
        certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")
        for certificate in chain
    ]


def load_private_key(pem: bytes | str) -> rsa.RSAPrivateKey:
    """Load an unencrypted PEM private key; only RSA keys of at least 2048 bits are accepted.

    Raises:
        ValueError: the PEM does not hold an unencrypted RSA private key of a usable size.
    """
    data = pem.encode("ascii") if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        # cryptography raises TypeError when the key is encrypted and no password was given.
        raise ValueError("encrypted private keys are not supported") from None
    except (ValueError, UnsupportedAlgorithm):
        raise ValueError("not a PEM private key that can be loaded") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"the server key must be an RSA key, not {_key_type_name(key)}")
    if key.key_size < MIN_RSA_KEY_SIZE:
        raise ValueError(f"RSA key has {key.key_size} bits; at least {MIN_RSA_KEY_SIZE} needed")
    return key


def load_ec_private_key(pem: bytes | str) -> ec.EllipticCurvePrivateKey:
    """Load an unencrypted PEM private key for an ECDSA certificate: an EC key on one of
    :data:`ECDSA_CURVES`.

    Raises:
        ValueError: the PEM does not hold an unencrypted EC private key on such a curve.
    """
    data = pem.encode("ascii") if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise ValueError("encrypted private keys are not supported") from None
    except (ValueError, UnsupportedAlgorithm):
        raise ValueError("not a PEM private key that can be loaded") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"the ECDSA server key must be an EC key, not {_key_type_name(key)}")
    if key.curve.name not in ECDSA_CURVES:
        raise ValueError(f"EC key on {key.curve.name}; the lab signs on {tuple(ECDSA_CURVES)}")
    return key


def fingerprint_sha256(cert: x509.Certificate) -> str:
    """Lowercase hex SHA-256 over the certificate's DER encoding."""
    return cert.fingerprint(hashes.SHA256()).hex()


def describe_certificate(cert: x509.Certificate) -> CertificateDescription:
    """Public facts about ``cert`` for display; contains nothing secret."""
    extensions = cert.extensions
    public_key_type, public_key_size = _public_key_facts(cert)
    try:
        signature_hash = cert.signature_hash_algorithm
    except UnsupportedAlgorithm:
        signature_hash = None
    return CertificateDescription(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        serial_number=format(cert.serial_number, "x"),
        not_before=cert.not_valid_before_utc.isoformat(),
        not_after=cert.not_valid_after_utc.isoformat(),
        subject_alt_names=_subject_alt_names(extensions),
        public_key_type=public_key_type,
        public_key_size=public_key_size,
        key_usage=_key_usage_names(extensions),
        extended_key_usage=_extended_key_usage_names(extensions),
        is_ca=_is_ca(extensions),
        self_issued=cert.issuer == cert.subject,
        signature_hash=None if signature_hash is None else signature_hash.name,
        fingerprint_sha256=fingerprint_sha256(cert),
    )


# --- verification --------------------------------------------------------------------------


def verify_server_chain(
    chain: Sequence[x509.Certificate],
    trust_anchors: Sequence[x509.Certificate],
    server_name: str,
    *,
    now: datetime,
    key_exchange: str,
    authentication: str = "rsa",
) -> x509.Certificate:
    """Verify a server's certificate chain for ``server_name`` at ``now`` and return the leaf.

    ``chain[0]`` is the leaf, the rest are untrusted intermediates. The leaf is first checked
    on its own (validity, name, CA flag, key, key usage for ``key_exchange``; an RSA key, or
    for ``authentication="ecdsa"`` an EC key on one of :data:`ECDSA_CURVES`), then the chain
    is built and verified to ``trust_anchors`` by cryptography's WebPKI verifier.

    Raises:
        TypeError: a chain element or trust anchor is not a certificate.
        ValueError: ``now`` is naive, ``trust_anchors`` is empty, ``server_name`` is not a valid
            DNS name or IP address, ``key_exchange`` is not one of :data:`KEY_EXCHANGES` or
            ``authentication`` not one of :data:`AUTHENTICATIONS`.
        CertificateExpired: a certificate is outside its validity period at ``now``.
        BadCertificate: the leaf is not valid for ``server_name``, or is malformed.
        UnsupportedCertificate: the leaf's key or key usage cannot serve ``key_exchange``, or
            the leaf is a CA certificate.
        UnknownCA: the chain does not lead to one of ``trust_anchors``.
    """
    return _verify_server_path(
        chain,
        trust_anchors,
        server_name,
        now=now,
        key_exchange=key_exchange,
        authentication=authentication,
    )[0]


def _verify_server_path(
    chain: Sequence[x509.Certificate],
    trust_anchors: Sequence[x509.Certificate],
    server_name: str,
    *,
    now: datetime,
    key_exchange: str,
    authentication: str = "rsa",
) -> tuple[x509.Certificate, ...]:
    """:func:`verify_server_chain`, returning the path the verifier built (leaf first, trust
    anchor last)."""
    _require_aware(now, "now")
    if key_exchange not in KEY_EXCHANGES:
        raise ValueError(f"key_exchange must be one of {KEY_EXCHANGES}, not {key_exchange!r}")
    if authentication not in AUTHENTICATIONS:
        raise ValueError(f"authentication must be one of {AUTHENTICATIONS}, not {authentication!r}")
    for certificate in (*chain, *trust_anchors):
        if not isinstance(certificate, x509.Certificate):
            raise TypeError(f"expected x509.Certificate, not {type(certificate).__name__}")
    if not trust_anchors:
        raise ValueError("at least one trust anchor is required")
    if not chain:
        raise BadCertificate("the server sent no certificate")

    subject = _verification_subject(server_name)
    # Raises ValueError for a syntactically invalid DNS name, before any certificate is judged.
    verifier = (
        PolicyBuilder().store(Store(list(trust_anchors))).time(now).build_server_verifier(subject)
    )
    leaf = chain[0]
    _check_leaf(
        leaf,
        server_name,
        subject,
        now=now,
        key_exchange=key_exchange,
        authentication=authentication,
    )
    try:
        path = verifier.verify(leaf, list(chain[1:]))
    except VerificationError as error:
        raise _classify_verification_error(str(error), chain, now) from None
    return (leaf, *path[1:])


class ChainVerificationCache:
    """Results of :func:`verify_server_chain` that succeeded, as browsers' verifiers keep them.

    An entry is keyed by everything the verification depends on except the time: the SHA-256
    of the chain's DER certificates, of the trust anchors' DER certificates, the server name,
    the key exchange and the authentication. It holds the path the verifier built (leaf to
    trust anchor). A hit is used only if every certificate of that path is within its validity
    window at ``now`` and the leaf still names the server; otherwise the chain is verified
    from scratch, so a refusal is the same error it would be without the cache. Failures are
    never kept. Bounded: the least recently used entry goes first. Thread-safe.
    """

    def __init__(self, maxsize: int = 32) -> None:
        if maxsize <= 0:
            raise ValueError("maxsize must be positive")
        self.maxsize = maxsize
        self._entries: OrderedDict[bytes, tuple[x509.Certificate, ...]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def verify(
        self,
        chain: Sequence[x509.Certificate],
        trust_anchors: Sequence[x509.Certificate],
        server_name: str,
        *,
        now: datetime,
        key_exchange: str,
        authentication: str = "rsa",
    ) -> tuple[x509.Certificate, bool]:
        """:func:`verify_server_chain`, through the cache: the leaf, and whether the result
        came from the cache. Raises what :func:`verify_server_chain` raises."""
        _require_aware(now, "now")
        for certificate in (*chain, *trust_anchors):
            if not isinstance(certificate, x509.Certificate):
                raise TypeError(f"expected x509.Certificate, not {type(certificate).__name__}")
        subject = _verification_subject(server_name)
        key = _cache_key(chain, trust_anchors, server_name, key_exchange, authentication)
        with self._lock:
            path = self._entries.get(key)
            if path is not None:
                self._entries.move_to_end(key)
        # The time and the host name are judged on every handshake (RFC 5280 §6.1.3 (a)(2),
        # RFC 6125 §6): only what does not change with them is taken from the cache.
        if (
            path is not None
            and all(_valid_at(certificate, now) for certificate in path)
            and _names_match(path[0].extensions, subject)
        ):
            return path[0], True
        path = _verify_server_path(
            chain,
            trust_anchors,
            server_name,
            now=now,
            key_exchange=key_exchange,
            authentication=authentication,
        )
        with self._lock:
            self._entries[key] = path
            self._entries.move_to_end(key)
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)
        return path[0], False


#: The cache client handshakes verify servers' chains through (:class:`ChainVerificationCache`).
SERVER_CHAIN_CACHE = ChainVerificationCache()


def verify_server_chain_cached(
    chain: Sequence[x509.Certificate],
    trust_anchors: Sequence[x509.Certificate],
    server_name: str,
    *,
    now: datetime,
    key_exchange: str,
    authentication: str = "rsa",
) -> tuple[x509.Certificate, bool]:
    """:func:`verify_server_chain` through :data:`SERVER_CHAIN_CACHE`: the leaf, and whether
    the result came from the cache."""
    return SERVER_CHAIN_CACHE.verify(
        chain,
        trust_anchors,
        server_name,
        now=now,
        key_exchange=key_exchange,
        authentication=authentication,
    )


def _cache_key(
    chain: Sequence[x509.Certificate],
    trust_anchors: Sequence[x509.Certificate],
    server_name: str,
    key_exchange: str,
    authentication: str,
) -> bytes:
    digest = hashlib.sha256()
    # Length-prefixed fields, so that no two different inputs give the same byte string.
    fields = (
        *(certificate.public_bytes(serialization.Encoding.DER) for certificate in chain),
        b"",
        *(anchor.public_bytes(serialization.Encoding.DER) for anchor in trust_anchors),
        b"",
        server_name.encode("utf-8", "surrogatepass"),
        key_exchange.encode("utf-8", "surrogatepass"),
        authentication.encode("utf-8", "surrogatepass"),
    )
    for value in fields:
        digest.update(len(value).to_bytes(4, "big"))
        digest.update(value)
    return digest.digest()


def _check_leaf(
    leaf: x509.Certificate,
    server_name: str,
    subject: x509.DNSName | x509.IPAddress,
    *,
    now: datetime,
    key_exchange: str,
    authentication: str = "rsa",
) -> None:
    """The leaf's own properties, checked here so failures map to precise errors.

    The order follows cryptography's verifier (validity, then names, then profile) so that a
    certificate with several defects gets the same error either way.
    """
    if not _valid_at(leaf, now):
        raise CertificateExpired(_validity_message(leaf, now))
    try:
        extensions = leaf.extensions
    except _MALFORMED_EXTENSION_ERRORS:
        raise BadCertificate("certificate has a malformed extension") from None
    if not _names_match(extensions, subject):
        raise BadCertificate(f"certificate is not valid for host {server_name!r}")
    if _is_ca(extensions):
        raise UnsupportedCertificate(
            "server certificate is a CA certificate (basicConstraints CA:TRUE)"
        )
    extended_key_usage = _extension(extensions, x509.ExtendedKeyUsage)
    if extended_key_usage is not None and ExtendedKeyUsageOID.SERVER_AUTH not in extended_key_usage:
        raise UnsupportedCertificate("certificate extendedKeyUsage does not include serverAuth")
    try:
        public_key = leaf.public_key()
    except UnsupportedAlgorithm:
        raise UnsupportedCertificate("certificate public key algorithm is not supported") from None
    _check_leaf_key(public_key, authentication)
    key_usage = _extension(extensions, x509.KeyUsage)
    # An absent keyUsage extension places no restriction (RFC 5280 §4.2.1.3).
    if key_usage is None:
        return
    if key_exchange == "rsa" and not key_usage.key_encipherment:
        # RFC 5246 §7.4.2: the premaster secret is encrypted to this key.
        raise UnsupportedCertificate(
            "certificate keyUsage lacks keyEncipherment, required for RSA key exchange"
        )
    # DHE_RSA as ECDHE_RSA (RFC 5246 §7.4.2): the key signs ServerKeyExchange.
    if key_exchange in ("ecdhe", "dhe") and not key_usage.digital_signature:
        # RFC 8422 §5.3 (ECDHE_RSA, ECDHE_ECDSA): the key signs ServerKeyExchange.
        raise UnsupportedCertificate(
            "certificate keyUsage lacks digitalSignature, required for "
            f"{key_exchange.upper()} key exchange"
        )


def _check_leaf_key(public_key: object, authentication: str) -> None:
    """The leaf's key type must be the suite's: an EC key on a lab curve for ECDHE_ECDSA
    (RFC 8422 §5.3), an RSA key of a usable size for the others (RFC 5246 §7.4.2)."""
    if authentication == "ecdsa":
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            raise UnsupportedCertificate(
                f"an ECDSA suite needs an EC certificate key, not {_key_type_name(public_key)}"
            )
        if public_key.curve.name not in ECDSA_CURVES:
            raise UnsupportedCertificate(
                f"server EC key is on {public_key.curve.name}; supported: {tuple(ECDSA_CURVES)}"
            )
        return
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise UnsupportedCertificate(
            f"server certificate key must be RSA, not {_key_type_name(public_key)}"
        )
    if public_key.key_size < MIN_RSA_KEY_SIZE:
        raise UnsupportedCertificate(
            f"server RSA key has {public_key.key_size} bits; at least {MIN_RSA_KEY_SIZE} required"
        )


def _classify_verification_error(
    message: str, chain: Sequence[x509.Certificate], now: datetime
) -> BadCertificate:
    """Turn cryptography's message-only VerificationError into the lab's error classes.

    The leaf was already checked, so what remains is mostly chain building; own checks on the
    rest of the chain come first, the message text is the fallback.
    """
    reason = _ENCOUNTERED_SUFFIX.sub("", message).removeprefix("validation failed: ").strip()
    lowered = reason.lower()
    if "not valid at validation time" in lowered or not all(_valid_at(c, now) for c in chain):
        return CertificateExpired(
            "a certificate in the chain (or its trust anchor) has expired or is not yet valid"
        )
    if "subjectaltname" in lowered:
        return BadCertificate(f"certificate name check failed: {reason}")
    if "basicconstraints" in lowered:
        return UnsupportedCertificate(f"certificate basicConstraints not acceptable: {reason}")
    if "eku" in lowered or "key usage" in lowered:
        return UnsupportedCertificate(f"certificate key usage not acceptable: {reason}")
    leaf = chain[0]
    if "candidates exhausted" in lowered:
        if leaf.issuer == leaf.subject:
            return UnknownCA("self-signed certificate is not trusted")
        return UnknownCA("certificate was not issued by a trusted certificate authority")
    if leaf.issuer == leaf.subject and len(chain) == 1:
        # A self-signed leaf without authorityKeyIdentifier fails the WebPKI profile before
        # chain building; what matters to the user is that nobody vouches for it.
        return UnknownCA("self-signed certificate is not trusted")
    return BadCertificate(f"certificate verification failed: {reason}")


# --- helpers -------------------------------------------------------------------------------


def _require_aware(moment: datetime, name: str) -> None:
    if not isinstance(moment, datetime):
        raise TypeError(f"{name} must be a datetime, not {type(moment).__name__}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (UTC)")


def _require_positive(value: int, name: str) -> None:
    if value <= 0:
        raise ValueError(f"{name} must be positive")


def _generate_rsa_key(key_size: int) -> rsa.RSAPrivateKey:
    if key_size < MIN_RSA_KEY_SIZE:
        raise ValueError(f"key_size must be at least {MIN_RSA_KEY_SIZE}")
    return rsa.generate_private_key(public_exponent=_PUBLIC_EXPONENT, key_size=key_size)


def _key_usage(
    *,
    digital_signature: bool = False,
    key_encipherment: bool = False,
    key_cert_sign: bool = False,
    crl_sign: bool = False,
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _parse_ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


def _general_name(name: str) -> x509.DNSName | x509.IPAddress:
    if not isinstance(name, str):
        raise TypeError(f"names must be str, not {type(name).__name__}")
    address = _parse_ip(name)
    if address is not None:
        return x509.IPAddress(address)
    if len(name) > _MAX_DNS_NAME_LENGTH or not _DNS_NAME.fullmatch(name):
        # Checked here because cryptography's verifier would refuse the name later anyway.
        raise ValueError(
            f"invalid DNS name {name!r}: letters, digits and inner hyphens only (no underscores),"
            " A-labels for international names"
        )
    return x509.DNSName(name)


def _verification_subject(server_name: str) -> x509.DNSName | x509.IPAddress:
    if not isinstance(server_name, str):
        raise TypeError(f"server_name must be str, not {type(server_name).__name__}")
    address = _parse_ip(server_name)
    if address is not None:
        return x509.IPAddress(address)
    return x509.DNSName(server_name)


def _parse_certificate(block: bytes, index: int) -> x509.Certificate:
    try:
        certificate = x509.load_pem_x509_certificate(block)
        # Extensions are parsed lazily; parse them now so a malformed one fails here.
        _ = certificate.extensions
    except _MALFORMED_EXTENSION_ERRORS:
        raise DecodeError(f"certificate {index} in the chain could not be parsed") from None
    return certificate


def _valid_at(certificate: x509.Certificate, now: datetime) -> bool:
    # RFC 5280 §4.1.2.5: the validity period includes both ends.
    return certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc


def _validity_message(certificate: x509.Certificate, now: datetime) -> str:
    if now < certificate.not_valid_before_utc:
        return f"certificate is not valid before {certificate.not_valid_before_utc.isoformat()}"
    return f"certificate expired at {certificate.not_valid_after_utc.isoformat()}"


def _extension(extensions: x509.Extensions, kind: type[ExtensionT]) -> ExtensionT | None:
    try:
        return extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _is_ca(extensions: x509.Extensions) -> bool:
    basic_constraints = _extension(extensions, x509.BasicConstraints)
    return basic_constraints is not None and basic_constraints.ca


def _names_match(extensions: x509.Extensions, subject: x509.DNSName | x509.IPAddress) -> bool:
    """RFC 6125 §6.4 matching against subjectAltName only (the CN is not consulted)."""
    alt_names = _extension(extensions, x509.SubjectAlternativeName)
    if alt_names is None:
        return False
    if isinstance(subject, x509.IPAddress):
        return subject.value in alt_names.get_values_for_type(x509.IPAddress)
    host = subject.value.lower()
    first_label, _, parent = host.partition(".")
    for pattern in (name.lower() for name in alt_names.get_values_for_type(x509.DNSName)):
        if pattern == host:
            return True
        # A wildcard is a whole leftmost label and matches exactly one label (§6.4.3).
        if pattern.startswith("*.") and parent and first_label and pattern[2:] == parent:
            return True
    return False


def _subject_alt_names(extensions: x509.Extensions) -> list[str]:
    alt_names = _extension(extensions, x509.SubjectAlternativeName)
    if alt_names is None:
        return []
    names: list[str] = []
    for name in alt_names:
        if isinstance(name, x509.DNSName):
            names.append(name.value)
        elif isinstance(name, x509.IPAddress):
            names.append(str(name.value))
        else:
            names.append(f"{type(name).__name__}:{name.value}")
    return names


def _key_usage_names(extensions: x509.Extensions) -> list[str]:
    key_usage = _extension(extensions, x509.KeyUsage)
    if key_usage is None:
        return []
    flags = {
        "digitalSignature": key_usage.digital_signature,
        "contentCommitment": key_usage.content_commitment,
        "keyEncipherment": key_usage.key_encipherment,
        "dataEncipherment": key_usage.data_encipherment,
        "keyAgreement": key_usage.key_agreement,
        "keyCertSign": key_usage.key_cert_sign,
        "cRLSign": key_usage.crl_sign,
    }
    # encipherOnly/decipherOnly are only defined (and readable) when keyAgreement is set.
    if key_usage.key_agreement:
        flags["encipherOnly"] = key_usage.encipher_only
        flags["decipherOnly"] = key_usage.decipher_only
    return [name for name, present in flags.items() if present]


def _extended_key_usage_names(extensions: x509.Extensions) -> list[str]:
    extended_key_usage = _extension(extensions, x509.ExtendedKeyUsage)
    if extended_key_usage is None:
        return []
    return [_EXTENDED_KEY_USAGE_NAMES.get(oid, oid.dotted_string) for oid in extended_key_usage]


def _public_key_facts(cert: x509.Certificate) -> tuple[str, int | None]:
    try:
        public_key = cert.public_key()
    except UnsupportedAlgorithm:
        return "unsupported", None
    if isinstance(public_key, rsa.RSAPublicKey | dsa.DSAPublicKey | ec.EllipticCurvePublicKey):
        return _key_type_name(public_key), public_key.key_size
    return _key_type_name(public_key), None


def _key_type_name(key: object) -> str:
    kinds: tuple[tuple[tuple[type, ...], str], ...] = (
        ((rsa.RSAPublicKey, rsa.RSAPrivateKey), "RSA"),
        ((ec.EllipticCurvePublicKey, ec.EllipticCurvePrivateKey), "EC"),
        ((dsa.DSAPublicKey, dsa.DSAPrivateKey), "DSA"),
        ((ed25519.Ed25519PublicKey, ed25519.Ed25519PrivateKey), "Ed25519"),
        ((ed448.Ed448PublicKey, ed448.Ed448PrivateKey), "Ed448"),
    )
    for types, name in kinds:
        if isinstance(key, types):
            return name
    return type(key).__name__
