"""Hand-made TLS records with the client's real keys: valid ones, and ones broken in one place.

kdf_lib's record layer only ever writes good records, so these are built from the RFC
(RFC 5246 §6.2.3.2 MAC-then-encrypt, RFC 7366 encrypt-then-MAC) with primitives directly.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from kdf_lib.record import ContentType
from kdf_lib.role import Role
from kdf_lib.suites import CipherSuite

from .peer import Peer

BLOCK = 16
APPLICATION_DATA = int(ContentType.application_data)


@dataclass(frozen=True)
class ClientWriteKeys:
    suite: CipherSuite
    mac_key: bytes = field(repr=False)
    enc_key: bytes = field(repr=False)
    encrypt_then_mac: bool


def client_write_keys(peer: Peer) -> ClientWriteKeys:
    schedule = peer.handshake._schedule
    assert schedule is not None and peer.connection is not None
    mac_key, enc_key, _ = schedule.keys.for_writer(Role.CLIENT)
    return ClientWriteKeys(schedule.suite, mac_key, enc_key, peer.connection.encrypt_then_mac)


def header(length: int, content_type: int = APPLICATION_DATA) -> bytes:
    return bytes((content_type,)) + b"\x03\x03" + struct.pack(">H", length)


def _mac(keys: ClientWriteKeys, seq: int, length: int, data: bytes) -> bytes:
    assert keys.suite.mac_name is not None
    pseudo_header = struct.pack(">Q", seq) + header(length)
    return hmac.new(
        keys.mac_key, pseudo_header + data, getattr(hashlib, keys.suite.mac_name)
    ).digest()


def _cbc(keys: ClientWriteKeys, data: bytes) -> bytes:
    iv = secrets.token_bytes(BLOCK)
    encryptor = Cipher(algorithms.AES(keys.enc_key), modes.CBC(iv)).encryptor()
    return iv + encryptor.update(data) + encryptor.finalize()


def good_padding(length: int) -> bytes:
    """TLS CBC padding for ``length`` bytes of data (RFC 5246 §6.2.3.2)."""
    pad = (BLOCK - (length + 1) % BLOCK) % BLOCK
    return bytes((pad,)) * (pad + 1)


def bad_padding(length: int) -> bytes:
    """Padding of the right total length whose bytes disagree with its length byte."""
    padding = bytearray(good_padding(length))
    if len(padding) == 1:
        padding = bytearray(bytes((BLOCK,)) * (BLOCK + 1))
    padding[0] ^= 0x01
    return bytes(padding)


def lying_padding(length: int) -> bytes:
    """Padding whose length byte (255) claims more bytes than the record holds."""
    return b"\xff" * len(good_padding(length))


def cbc_record(
    keys: ClientWriteKeys,
    seq: int,
    plaintext: bytes,
    *,
    padding: Callable[[int], bytes] = good_padding,
    mac_bad: bool = False,
) -> bytes:
    """An application-data record for the connection's CBC mode, broken as asked.

    MAC-then-encrypt: HMAC over the plaintext, then padding, then CBC. Encrypt-then-MAC:
    padding and CBC, then HMAC over IV and ciphertext. Either way a bad ``padding`` leaves
    a correct MAC, which is what a padding oracle attack needs the receiver to reveal.
    """
    if keys.encrypt_then_mac:
        body = _cbc(keys, plaintext + padding(len(plaintext)))
        tag = _mac(keys, seq, len(body), body)
        if mac_bad:
            tag = _flip_last(tag)
        return header(len(body) + len(tag)) + body + tag
    tag = _mac(keys, seq, len(plaintext), plaintext)
    data = plaintext + (_flip_last(tag) if mac_bad else tag)
    body = _cbc(keys, data + padding(len(data)))
    return header(len(body)) + body


def _flip_last(data: bytes) -> bytes:
    return data[:-1] + bytes((data[-1] ^ 0x01,))


def flip(record: bytes, index: int, mask: int = 0x01) -> bytes:
    changed = bytearray(record)
    changed[index] ^= mask
    return bytes(changed)


def reframe(fragment: bytes, content_type: int = APPLICATION_DATA) -> bytes:
    """A record around ``fragment`` with a header that matches its length."""
    return header(len(fragment), content_type) + fragment
