"""The cipher suites the lab speaks, as one table of parameters, and the key-block split.

Code points and lengths are from the IANA TLS registry, RFC 5246 Appendix C,
RFC 5288/5289 (GCM), RFC 7905 (ChaCha20-Poly1305); the split order is RFC 5246 §6.3.
DHE suites (RFC 5246, RFC 5288, RFC 7905) use the RFC 7919 groups.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from .role import Role

__all__ = [
    "DEFAULT_SUITE",
    "SUITES",
    "SUITES_BY_CODE",
    "Authentication",
    "BulkCipher",
    "CipherSuite",
    "KeyBlockPart",
    "KeyExchange",
    "KeyMaterial",
    "get_suite",
    "key_block_layout",
    "split_key_block",
]


class KeyExchange(StrEnum):
    RSA = "rsa"
    ECDHE_RSA = "ecdhe"
    #: Finite-field ephemeral DH (RFC 7919 groups), signed by the RSA certificate.
    DHE = "dhe"
    #: The same key exchange: ECDHE_ECDSA suites differ from ECDHE_RSA ones only in the
    #: certificate that signs the ECDH key (:class:`Authentication`).
    ECDHE = "ecdhe"


class Authentication(StrEnum):
    """The server certificate's key type, which signs ServerKeyExchange (RFC 8422 §2, §5.3)."""

    RSA = "rsa"
    ECDSA = "ecdsa"


class BulkCipher(StrEnum):
    AES_CBC = "aes_cbc"
    AES_GCM = "aes_gcm"
    CHACHA20_POLY1305 = "chacha20_poly1305"


@dataclass(frozen=True)
class CipherSuite:
    """One row of the suite table.

    ``fixed_iv_length`` is the IV length that goes into the key block. For GCM it
    is the 4-byte implicit salt (RFC 5288 §3), for ChaCha20-Poly1305 the 12-byte
    nonce mask (RFC 7905 §2). For CBC suites RFC 5246 §6.3 says the IVs are only
    generated for implicit-nonce ciphers, yet OpenSSL and the published vectors
    include 16-byte client/server_write_IV in the block; TLS 1.2 CBC records carry
    an explicit IV, so these bytes are derived but never used. They sit at the
    end of the block, so including them changes no other key.
    """

    name: str
    code: int
    key_exchange: KeyExchange
    bulk_cipher: BulkCipher
    enc_key_length: int
    fixed_iv_length: int
    record_iv_length: int
    mac_name: str | None  # HMAC hash for CBC suites, None for AEAD
    mac_length: int
    prf_hash: str
    block_size: int = 0
    tag_length: int = 0
    authentication: Authentication = Authentication.RSA

    @property
    def is_aead(self) -> bool:
        return self.bulk_cipher is not BulkCipher.AES_CBC

    @property
    def kind(self) -> str:
        """``"aead"`` or ``"cbc_hmac"``."""
        return "aead" if self.is_aead else "cbc_hmac"

    @property
    def mac_key_length(self) -> int:
        return self.mac_length

    @property
    def key_block_length(self) -> int:
        return 2 * (self.mac_key_length + self.enc_key_length + self.fixed_iv_length)

    def describe(self) -> dict[str, object]:
        """The suite's parameters as plain JSON-able data."""
        return {
            "name": self.name,
            "code": f"0x{self.code:04X}",
            "key_exchange": self.key_exchange.value,
            "authentication": self.authentication.value,
            "cipher": self.bulk_cipher.value,
            "kind": self.kind,
            "mac": f"hmac-{self.mac_name}" if self.mac_name else None,
            "mac_key_length": self.mac_key_length,
            "enc_key_length": self.enc_key_length,
            "fixed_iv_length": self.fixed_iv_length,
            "record_iv_length": self.record_iv_length,
            "prf_hash": self.prf_hash,
            "key_block_length": self.key_block_length,
        }


def _cbc(
    name: str,
    code: int,
    kx: KeyExchange,
    key: int,
    mac: str,
    prf_hash: str,
    auth: Authentication = Authentication.RSA,
) -> CipherSuite:
    mac_length = {"sha1": 20, "sha256": 32, "sha384": 48}[mac]
    return CipherSuite(
        name,
        code,
        kx,
        BulkCipher.AES_CBC,
        key,
        16,
        16,
        mac,
        mac_length,
        prf_hash,
        block_size=16,
        authentication=auth,
    )


def _gcm(
    name: str,
    code: int,
    kx: KeyExchange,
    key: int,
    prf_hash: str,
    auth: Authentication = Authentication.RSA,
) -> CipherSuite:
    return CipherSuite(
        name,
        code,
        kx,
        BulkCipher.AES_GCM,
        key,
        4,
        8,
        None,
        0,
        prf_hash,
        tag_length=16,
        authentication=auth,
    )


def _chacha20(name: str, code: int, auth: Authentication) -> CipherSuite:
    return CipherSuite(
        name,
        code,
        KeyExchange.ECDHE,
        BulkCipher.CHACHA20_POLY1305,
        32,
        12,
        0,
        None,
        0,
        "sha256",
        tag_length=16,
        authentication=auth,
    )


_RSA, _ECDHE = KeyExchange.RSA, KeyExchange.ECDHE_RSA
_ECDSA = Authentication.ECDSA

_TABLE: tuple[CipherSuite, ...] = (
    _cbc("TLS_RSA_WITH_AES_128_CBC_SHA", 0x002F, _RSA, 16, "sha1", "sha256"),
    _cbc("TLS_RSA_WITH_AES_256_CBC_SHA", 0x0035, _RSA, 32, "sha1", "sha256"),
    _cbc("TLS_RSA_WITH_AES_128_CBC_SHA256", 0x003C, _RSA, 16, "sha256", "sha256"),
    _cbc("TLS_RSA_WITH_AES_256_CBC_SHA256", 0x003D, _RSA, 32, "sha256", "sha256"),
    _gcm("TLS_RSA_WITH_AES_128_GCM_SHA256", 0x009C, _RSA, 16, "sha256"),
    _gcm("TLS_RSA_WITH_AES_256_GCM_SHA384", 0x009D, _RSA, 32, "sha384"),
    _cbc("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", 0xC013, _ECDHE, 16, "sha1", "sha256"),
    _cbc("TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", 0xC014, _ECDHE, 32, "sha1", "sha256"),
    _cbc("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", 0xC027, _ECDHE, 16, "sha256", "sha256"),
    _cbc("TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384", 0xC028, _ECDHE, 32, "sha384", "sha384"),
    _gcm("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", 0xC02F, _ECDHE, 16, "sha256"),
    _gcm("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", 0xC030, _ECDHE, 32, "sha384"),
    _chacha20("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", 0xCCA8, Authentication.RSA),
    # RFC 5289 §3.1-3.2 and RFC 7905: the ECDHE_RSA suites' record protection and PRF hash,
    # with an ECDSA certificate signing the ECDH key.
    _cbc("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", 0xC023, _ECDHE, 16, "sha256", "sha256", _ECDSA),
    _cbc("TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384", 0xC024, _ECDHE, 32, "sha384", "sha384", _ECDSA),
    _gcm("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", 0xC02B, _ECDHE, 16, "sha256", _ECDSA),
    _gcm("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", 0xC02C, _ECDHE, 32, "sha384", _ECDSA),
    _chacha20("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", 0xCCA9, _ECDSA),
)
# RFC 5246 Appendix A.5, RFC 5288 §3 and RFC 7905 §2: the DHE_RSA suites protect records
# exactly as their ECDHE_RSA namesakes; only the key exchange differs.
_DHE = KeyExchange.DHE
_TABLE += (
    _gcm("TLS_DHE_RSA_WITH_AES_128_GCM_SHA256", 0x009E, _DHE, 16, "sha256"),
    _gcm("TLS_DHE_RSA_WITH_AES_256_GCM_SHA384", 0x009F, _DHE, 32, "sha384"),
    _cbc("TLS_DHE_RSA_WITH_AES_128_CBC_SHA256", 0x0067, _DHE, 16, "sha256", "sha256"),
    _cbc("TLS_DHE_RSA_WITH_AES_256_CBC_SHA256", 0x006B, _DHE, 32, "sha256", "sha256"),
    CipherSuite(
        "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        0xCCAA,
        _DHE,
        BulkCipher.CHACHA20_POLY1305,
        32,
        12,
        0,
        None,
        0,
        "sha256",
        tag_length=16,
    ),
)

SUITES: dict[str, CipherSuite] = {s.name: s for s in _TABLE}
SUITES_BY_CODE: dict[int, CipherSuite] = {s.code: s for s in _TABLE}
#: The suite offered for each key exchange when the caller names none. RSA's is the seed
#: documents' example suite, and the default of all.
DEFAULT_SUITES: dict[KeyExchange, CipherSuite] = {
    KeyExchange.RSA: SUITES["TLS_RSA_WITH_AES_256_CBC_SHA256"],
    KeyExchange.ECDHE_RSA: SUITES["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"],
    KeyExchange.DHE: SUITES["TLS_DHE_RSA_WITH_AES_128_GCM_SHA256"],
}
DEFAULT_SUITE = DEFAULT_SUITES[KeyExchange.RSA]


def get_suite(name_or_code: str | int) -> CipherSuite:
    """Look a suite up by IANA name or code point. Raises KeyError if unknown."""
    if isinstance(name_or_code, int) and not isinstance(name_or_code, bool):
        return SUITES_BY_CODE[name_or_code]
    if isinstance(name_or_code, str):
        return SUITES[name_or_code]
    raise TypeError(f"expected a suite name or code, not {type(name_or_code).__name__}")


@dataclass(frozen=True)
class KeyBlockPart:
    """Where one key sits in the key block: public layout, no key bytes."""

    name: str
    start: int
    length: int

    @property
    def end(self) -> int:
        return self.start + self.length


#: RFC 5246 §6.3 order. The seed texts list the write keys first; real stacks use this order.
_SPLIT_ORDER = (
    "client_write_mac_key",
    "server_write_mac_key",
    "client_write_key",
    "server_write_key",
    "client_write_iv",
    "server_write_iv",
)


def key_block_layout(suite: CipherSuite) -> list[KeyBlockPart]:
    """The byte ranges of the six keys in ``suite``'s key block, in RFC order."""
    lengths = {
        "client_write_mac_key": suite.mac_key_length,
        "server_write_mac_key": suite.mac_key_length,
        "client_write_key": suite.enc_key_length,
        "server_write_key": suite.enc_key_length,
        "client_write_iv": suite.fixed_iv_length,
        "server_write_iv": suite.fixed_iv_length,
    }
    parts, offset = [], 0
    for name in _SPLIT_ORDER:
        parts.append(KeyBlockPart(name, offset, lengths[name]))
        offset += lengths[name]
    return parts


@dataclass(frozen=True)
class KeyMaterial:
    """The six values split from a key block. No field appears in repr()."""

    suite: CipherSuite
    client_write_mac_key: bytes = field(repr=False)
    server_write_mac_key: bytes = field(repr=False)
    client_write_key: bytes = field(repr=False)
    server_write_key: bytes = field(repr=False)
    client_write_iv: bytes = field(repr=False)
    server_write_iv: bytes = field(repr=False)

    def for_writer(self, side: Role) -> tuple[bytes, bytes, bytes]:
        """(mac_key, enc_key, fixed_iv) that ``side`` sends with. Raises ValueError for
        anything but a :class:`Role` (or its value)."""
        if Role(side) is Role.CLIENT:
            return self.client_write_mac_key, self.client_write_key, self.client_write_iv
        return self.server_write_mac_key, self.server_write_key, self.server_write_iv


def split_key_block(suite: CipherSuite, block: bytes) -> KeyMaterial:
    """Split a key block into the six keys in RFC 5246 §6.3 order.

    Raises:
        ValueError: ``block`` is not ``suite.key_block_length`` bytes long.
    """
    if not isinstance(block, (bytes, bytearray, memoryview)):
        raise TypeError(f"block must be bytes, not {type(block).__name__}")
    block = bytes(block)
    # An exact length catches a key block derived for another suite.
    if len(block) != suite.key_block_length:
        raise ValueError(
            f"{suite.name} needs a {suite.key_block_length}-byte key block, got {len(block)}"
        )
    values = {p.name: bytes(block[p.start : p.end]) for p in key_block_layout(suite)}
    return KeyMaterial(suite=suite, **values)
