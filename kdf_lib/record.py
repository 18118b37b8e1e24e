"""TLS 1.2 record protection: seal and open complete records for one direction.

RFC 5246 §6.2 (record layer, CBC with MAC-then-encrypt), RFC 7366 (encrypt-then-MAC),
RFC 5288 (AES-GCM), RFC 7905 (ChaCha20-Poly1305). Every integrity failure raises
the same :class:`~kdf_lib.errors.BadRecordMac` from a single place.
"""

from __future__ import annotations

import hmac as _stdlib_hmac
import secrets
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import IntEnum

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from .errors import BadRecordMac, RecordOverflow, SequenceExhausted
from .role import Role
from .suites import BulkCipher, CipherSuite, KeyMaterial

__all__ = [
    "HEADER_LENGTH",
    "MAX_CIPHERTEXT",
    "MAX_PLAINTEXT",
    "PROTOCOL_VERSION",
    "ContentType",
    "RecordHeader",
    "RecordProtection",
    "connection_record_layers",
    "count_records",
    "fragment_plaintext",
    "split_records",
]


class ContentType(IntEnum):
    """RFC 5246 §6.2.1."""

    change_cipher_spec = 20
    alert = 21
    handshake = 22
    application_data = 23


PROTOCOL_VERSION = b"\x03\x03"  # TLS 1.2
HEADER_LENGTH = 5
MAX_PLAINTEXT = 1 << 14  # §6.2.1: TLSPlaintext.length <= 2^14
MAX_CIPHERTEXT = (1 << 14) + 2048  # §6.2.3: TLSCiphertext.length <= 2^14 + 2048
MAX_SEQUENCE = (1 << 64) - 1

_MAC_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
}
_SEQ_STRUCT = struct.Struct(">Q")
_LEN_STRUCT = struct.Struct(">H")
# seq_num(8) + type(1) + version(2) + length(2) in one pack: this runs twice per record.
_PSEUDO_HEADER_STRUCT = struct.Struct(">QB2sH")


@dataclass(frozen=True)
class RecordHeader:
    content_type: int
    version: bytes
    length: int


def _pseudo_header(seq: int, content_type: int, length: int) -> bytes:
    """seq_num + type + version + length: the MAC header / AEAD additional data (§6.2.3.1, §6.2.3.3)."""
    return _PSEUDO_HEADER_STRUCT.pack(seq, content_type, PROTOCOL_VERSION, length)


def split_records(data: bytes) -> Iterator[tuple[RecordHeader, bytes]]:
    """Walk complete records laid back to back, as on a TLS connection.

    Yields ``(header, fragment)``. Framing is checked strictly: truncated or
    trailing bytes, a wrong version or an oversized length raise
    :class:`BadRecordMac`, because on a protected connection a damaged header is
    indistinguishable from a damaged record (and must look the same to an attacker).
    """
    view = memoryview(data)
    offset, total = 0, len(view)
    if total == 0:
        raise BadRecordMac()  # an empty record must look like every other damaged one
    while offset < total:
        if total - offset < HEADER_LENGTH:
            raise BadRecordMac()
        content_type = view[offset]
        version = bytes(view[offset + 1 : offset + 3])
        (length,) = _LEN_STRUCT.unpack_from(view, offset + 3)
        start = offset + HEADER_LENGTH
        end = start + length
        if version != PROTOCOL_VERSION or end > total or content_type not in _CONTENT_TYPES:
            raise BadRecordMac()
        if length > MAX_CIPHERTEXT:
            raise RecordOverflow("record longer than 2^14 + 2048 bytes")
        yield RecordHeader(content_type, version, length), bytes(view[start:end])
        offset = end


_CONTENT_TYPES = frozenset(int(c) for c in ContentType)


def count_records(data: bytes, limit: int) -> int:
    """How many records lie back to back in ``data``, counted by their headers alone.

    Nothing is opened or checked (:func:`split_records` does that), and the count stops at
    ``limit + 1``: a holder of a record limit learns that a body is over it at a cost bounded
    by the limit, not by the body. A piece too short for a header counts as one record.
    """
    offset, total, count = 0, len(data), 0
    while offset < total and count <= limit:
        count += 1
        if total - offset < HEADER_LENGTH:
            break
        (length,) = _LEN_STRUCT.unpack_from(data, offset + 3)
        offset += HEADER_LENGTH + length
    return count


def fragment_plaintext(data: bytes) -> list[bytes]:
    """Cut application data into record-sized pieces (at most 2^14 bytes each, §6.2.1).

    Empty data gives one empty fragment, which TLS allows for application data.
    """
    if not data:
        return [b""]
    return [data[i : i + MAX_PLAINTEXT] for i in range(0, len(data), MAX_PLAINTEXT)]


@dataclass
class RecordProtection:
    """The record protection state of one direction of one connection.

    Holds the write (or read) keys and the implicit 64-bit sequence number,
    which starts at 0 when the keys become active and is never sent (§6.1).
    Use one instance to seal on the sending side and a twin with the same keys
    to open on the receiving side.
    """

    suite: CipherSuite
    mac_key: bytes = field(repr=False)
    enc_key: bytes = field(repr=False)
    fixed_iv: bytes = field(repr=False)
    encrypt_then_mac: bool = False
    seq: int = 0
    random_bytes: Callable[[int], bytes] = field(default=secrets.token_bytes, repr=False)

    def __post_init__(self) -> None:
        suite = self.suite
        if len(self.enc_key) != suite.enc_key_length:
            raise ValueError(f"{suite.name} needs a {suite.enc_key_length}-byte key")
        if len(self.fixed_iv) != suite.fixed_iv_length:
            raise ValueError(f"{suite.name} needs a {suite.fixed_iv_length}-byte fixed IV")
        if len(self.mac_key) != suite.mac_key_length:
            raise ValueError(f"{suite.name} needs a {suite.mac_key_length}-byte MAC key")
        self._is_aead = suite.is_aead
        if suite.bulk_cipher is BulkCipher.CHACHA20_POLY1305:
            # RFC 7905 §2 XORs the sequence number into the write IV: as integers, one operation.
            self._nonce_mask = int.from_bytes(self.fixed_iv, "big")
        # The keyed cipher and MAC objects are made on first use and kept for the next records
        # until release(): each holds OpenSSL state (about 2.4 KB for an AEAD), and a server
        # keeps thousands of idle connections (docs/performance.md).
        self._aead: AESGCM | ChaCha20Poly1305 | None = None
        self._hmac: hmac.HMAC | None = None
        self._aes: algorithms.AES | None = None

    def release(self) -> None:
        """Drop the keyed cipher and MAC objects; the next record makes them again.

        Only memory changes: the keys, the sequence number and every result stay the same.
        A holder of many idle connections calls this after each burst of records.
        """
        self._aead = None
        self._hmac = None
        self._aes = None

    def _aead_cipher(self) -> AESGCM | ChaCha20Poly1305:
        aead = self._aead
        if aead is None:
            if self.suite.bulk_cipher is BulkCipher.AES_GCM:
                aead = AESGCM(self.enc_key)
            else:
                aead = ChaCha20Poly1305(self.enc_key)
            self._aead = aead
        return aead

    def _block_cipher(self) -> algorithms.AES:
        aes = self._aes
        if aes is None:
            aes = self._aes = algorithms.AES(self.enc_key)
        return aes

    # -- sequence numbers ---------------------------------------------------

    def _next_seq(self) -> int:
        if self.seq > MAX_SEQUENCE:
            # §6.1: sequence numbers never wrap; the connection needs new keys.
            raise SequenceExhausted("sequence number space exhausted; run a new handshake")
        return self.seq

    # -- sealing -------------------------------------------------------------

    def seal(self, content_type: int, plaintext: bytes) -> bytes:
        """Protect one plaintext fragment and return the complete record (header + fragment)."""
        if len(plaintext) > MAX_PLAINTEXT:
            raise RecordOverflow("plaintext fragment longer than 2^14 bytes")
        content_type = int(content_type)
        if content_type not in _CONTENT_TYPES:
            raise ValueError(f"unknown content type {content_type}")
        seq = self._next_seq()
        if self._is_aead:
            fragment = self._seal_aead(seq, content_type, plaintext)
        elif self.encrypt_then_mac:
            fragment = self._seal_cbc_etm(seq, content_type, plaintext)
        else:
            fragment = self._seal_cbc_mte(seq, content_type, plaintext)
        self.seq = seq + 1
        return (
            bytes((content_type,)) + PROTOCOL_VERSION + _LEN_STRUCT.pack(len(fragment)) + fragment
        )

    def seal_many(self, content_type: int, data: bytes) -> bytes:
        """Seal ``data`` as as many records as it takes, back to back."""
        return b"".join(self.seal(content_type, piece) for piece in fragment_plaintext(data))

    def _aead_nonce(self, seq: int, explicit: bytes) -> bytes:
        if self.suite.bulk_cipher is BulkCipher.AES_GCM:
            # RFC 5288 §3: salt (implicit, from the key block) + nonce_explicit.
            return self.fixed_iv + explicit
        # RFC 7905 §2: the padded sequence number XORed with the 12-byte write IV.
        return (self._nonce_mask ^ seq).to_bytes(12, "big")

    def _seal_aead(self, seq: int, content_type: int, plaintext: bytes) -> bytes:
        # The explicit nonce is the sequence number: unique per key, as RFC 5288 §3 requires.
        explicit = _SEQ_STRUCT.pack(seq) if self.suite.record_iv_length else b""
        aad = _pseudo_header(seq, content_type, len(plaintext))
        aead = self._aead_cipher()
        return explicit + aead.encrypt(self._aead_nonce(seq, explicit), plaintext, aad)

    def _mac(self, data: bytes) -> bytes:
        keyed = self._hmac
        if keyed is None:
            assert self.suite.mac_name is not None
            keyed = self._hmac = hmac.HMAC(self.mac_key, _MAC_HASHES[self.suite.mac_name]())
        h = keyed.copy()
        h.update(data)
        return h.finalize()

    def _cbc_padding(self, length: int) -> bytes:
        block = self.suite.block_size
        pad = block - (length + 1) % block
        if pad == block:
            pad = 0
        return bytes((pad,)) * (pad + 1)

    def _encrypt_cbc(self, data: bytes) -> bytes:
        iv = self.random_bytes(self.suite.record_iv_length)
        encryptor = Cipher(self._block_cipher(), modes.CBC(iv)).encryptor()
        return iv + encryptor.update(data) + encryptor.finalize()

    def _seal_cbc_mte(self, seq: int, content_type: int, plaintext: bytes) -> bytes:
        mac = self._mac(_pseudo_header(seq, content_type, len(plaintext)) + plaintext)
        data = plaintext + mac
        return self._encrypt_cbc(data + self._cbc_padding(len(data)))

    def _seal_cbc_etm(self, seq: int, content_type: int, plaintext: bytes) -> bytes:
        # RFC 7366 §3: the MAC covers IV + ciphertext, with the ciphertext's length.
        body = self._encrypt_cbc(plaintext + self._cbc_padding(len(plaintext)))
        return body + self._mac(_pseudo_header(seq, content_type, len(body)) + body)

    # -- opening -------------------------------------------------------------

    def open(self, record: bytes) -> tuple[ContentType, bytes]:
        """Open exactly one complete record; returns ``(content_type, plaintext)``.

        Raises:
            BadRecordMac: any integrity failure: MAC, padding, tag, length, header.
            RecordOverflow: the record or its plaintext is longer than TLS allows.
        """
        records = list(split_records(record))
        if len(records) != 1:
            raise BadRecordMac()
        header, fragment = records[0]
        return self._open_fragment(header, fragment)

    def open_many(self, data: bytes) -> list[tuple[ContentType, bytes]]:
        """Open records laid back to back. All or nothing: on any failure no
        sequence number is consumed."""
        start = self.seq
        opened = []
        try:
            for header, fragment in split_records(data):
                opened.append(self._open_fragment(header, fragment))
        except BaseException:
            self.seq = start
            raise
        return opened

    def _open_fragment(self, header: RecordHeader, fragment: bytes) -> tuple[ContentType, bytes]:
        seq = self._next_seq()
        if self._is_aead:
            plaintext = self._open_aead(seq, header.content_type, fragment)
        elif self.encrypt_then_mac:
            plaintext = self._open_cbc_etm(seq, header.content_type, fragment)
        else:
            plaintext = self._open_cbc_mte(seq, header.content_type, fragment)
        if plaintext is None:
            raise BadRecordMac()
        if len(plaintext) > MAX_PLAINTEXT:
            raise RecordOverflow("decrypted fragment longer than 2^14 bytes")
        self.seq = seq + 1
        return ContentType(header.content_type), plaintext

    def _open_aead(self, seq: int, content_type: int, fragment: bytes) -> bytes | None:
        explicit_length = self.suite.record_iv_length
        sealed_length = len(fragment) - explicit_length
        if sealed_length < self.suite.tag_length:
            return None
        explicit = fragment[:explicit_length]
        aad = _pseudo_header(seq, content_type, sealed_length - self.suite.tag_length)
        try:
            return self._aead_cipher().decrypt(
                self._aead_nonce(seq, explicit), fragment[explicit_length:], aad
            )
        except InvalidTag:
            return None

    def _decrypt_cbc(self, body: bytes) -> bytes:
        iv_length = self.suite.record_iv_length
        decryptor = Cipher(self._block_cipher(), modes.CBC(body[:iv_length])).decryptor()
        return decryptor.update(body[iv_length:]) + decryptor.finalize()

    @staticmethod
    def _padding_ok(data: bytes, min_length: int) -> tuple[bool, int]:
        """Check TLS CBC padding, examining every possible padding byte (no early exit).

        Returns ``(good, padding_length)``; on bad padding the length is 0 so the
        caller still computes a MAC over the whole record (§6.2.3.2, against
        padding oracles).
        """
        pad = data[-1]
        good = pad + 1 + min_length <= len(data)
        # Compare the last 256 bytes (all of a shorter record) with what they would be if the
        # padding were right: one compare_digest of a fixed length, whatever the claimed length.
        window = data[-256:]
        keep = max(len(window) - pad - 1, 0)
        expected = window[:keep] + bytes((pad,)) * (pad + 1)
        padding_matches = _stdlib_hmac.compare_digest(window, expected)
        good = good and padding_matches
        return good, (pad + 1 if good else 0)

    def _open_cbc_mte(self, seq: int, content_type: int, fragment: bytes) -> bytes | None:
        suite = self.suite
        mac_length, block = suite.mac_length, suite.block_size
        body_length = len(fragment) - suite.record_iv_length
        if body_length < max(block, mac_length + 1) or body_length % block:
            return None
        data = self._decrypt_cbc(fragment)
        good, strip = self._padding_ok(data, mac_length)
        content_end = len(data) - strip - mac_length
        plaintext = data[:content_end]
        received_mac = data[content_end : content_end + mac_length]
        expected = self._mac(_pseudo_header(seq, content_type, len(plaintext)) + plaintext)
        mac_ok = _stdlib_hmac.compare_digest(expected, received_mac)
        return plaintext if (good and mac_ok) else None

    def _open_cbc_etm(self, seq: int, content_type: int, fragment: bytes) -> bytes | None:
        suite = self.suite
        mac_length, block = suite.mac_length, suite.block_size
        body_length = len(fragment) - mac_length
        cipher_length = body_length - suite.record_iv_length
        if cipher_length < block or cipher_length % block:
            return None
        body, received_mac = fragment[:body_length], fragment[body_length:]
        expected = self._mac(_pseudo_header(seq, content_type, body_length) + body)
        if not _stdlib_hmac.compare_digest(expected, received_mac):
            return None
        data = self._decrypt_cbc(body)
        good, strip = self._padding_ok(data, 0)
        return data[: len(data) - strip] if good else None


def connection_record_layers(
    keys: KeyMaterial,
    side: Role,
    *,
    encrypt_then_mac: bool = False,
    random_bytes: Callable[[int], bytes] = secrets.token_bytes,
) -> tuple[RecordProtection, RecordProtection]:
    """(write, read) record protection for ``side``, both at sequence 0. Raises ValueError for
    anything but a :class:`Role` (or its value)."""
    side = Role(side)
    peer = side.peer
    use_etm = encrypt_then_mac and not keys.suite.is_aead

    def layer(writer: Role) -> RecordProtection:
        mac_key, enc_key, fixed_iv = keys.for_writer(writer)
        return RecordProtection(
            keys.suite,
            mac_key,
            enc_key,
            fixed_iv,
            encrypt_then_mac=use_etm,
            random_bytes=random_bytes,
        )

    return layer(side), layer(peer)
