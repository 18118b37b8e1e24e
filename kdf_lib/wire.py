"""TLS presentation-language encoding: the bounds-checked reader and the writers.

RFC 5246 §4 (vectors with 1/2/3-byte length prefixes) and §7.4 (the handshake
message header). Peer bytes are only ever read through :class:`Reader`.
"""

from __future__ import annotations

from enum import IntEnum

from .errors import DecodeError

__all__ = ["HandshakeType", "Reader", "handshake_message", "u8", "u16", "u24", "vector"]


class HandshakeType(IntEnum):
    """RFC 5246 §7.4."""

    client_hello = 1
    server_hello = 2
    new_session_ticket = 4  # RFC 5077 §3.3
    certificate = 11
    server_key_exchange = 12
    certificate_request = 13
    server_hello_done = 14
    certificate_verify = 15
    client_key_exchange = 16
    finished = 20


def u8(value: int) -> bytes:
    return value.to_bytes(1, "big")


def u16(value: int) -> bytes:
    return value.to_bytes(2, "big")


def u24(value: int) -> bytes:
    return value.to_bytes(3, "big")


def vector(data: bytes, length_bytes: int) -> bytes:
    """``data`` with its length prefix (``opaque x<0..2^(8*length_bytes)-1>``)."""
    if len(data) >= 1 << (8 * length_bytes):
        raise ValueError(f"{len(data)} bytes do not fit a {length_bytes}-byte length prefix")
    return len(data).to_bytes(length_bytes, "big") + data


def handshake_message(msg_type: HandshakeType, body: bytes) -> bytes:
    """The 4-byte handshake header (type, uint24 length) followed by the body (§7.4)."""
    return u8(msg_type) + u24(len(body)) + body


class Reader:
    """Reads TLS structures from peer bytes; every overrun raises DecodeError."""

    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._pos = 0

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    def take(self, count: int) -> bytes:
        if count < 0 or count > self.remaining:
            raise DecodeError("message is truncated")
        start = self._pos
        self._pos += count
        return bytes(self._data[start : self._pos])

    def uint(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def vector(self, length_bytes: int, minimum: int = 0, maximum: int | None = None) -> bytes:
        length = self.uint(length_bytes)
        top = (1 << (8 * length_bytes)) - 1 if maximum is None else maximum
        if not minimum <= length <= top:
            raise DecodeError(f"vector length {length} outside {minimum}..{top}")
        return self.take(length)

    def finish(self) -> None:
        """Assert that nothing is left over."""
        if self.remaining:
            raise DecodeError("trailing bytes after message")
