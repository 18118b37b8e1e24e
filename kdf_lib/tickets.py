"""Session tickets (RFC 5077): the server's session state, sealed for the client to keep.

A ticket has RFC 5077 §4's recommended layout::

    struct {
        opaque key_name[16];
        opaque iv[16];
        opaque encrypted_state<0..2^16-1>;
        opaque mac[32];
    } ticket;

``encrypted_state`` is AES-128-CBC (PKCS#7 padding) of the state below under the key named
``key_name``; ``mac`` is HMAC-SHA256 over ``key_name``, ``iv`` and ``encrypted_state`` (with
its length) under that key's MAC key: encrypt-then-MAC, checked before anything is decrypted.
The state is RFC 5077 §4's ``StatePlaintext`` plus what the lab must also keep::

    struct {
        ProtocolVersion protocol_version;      0x0303
        CipherSuite cipher_suite;
        CompressionMethod compression_method;  0 (null)
        opaque master_secret[48];
        ClientIdentity client_identity;        anonymous(0), or certificate_based(1) with
                                               the client certificate's SHA-256 (32 bytes)
                                               and its subject (RFC 4514 text, <0..2^16-1>)
        uint32 timestamp;                      when the ticket was issued, seconds since 1970
        uint8 extended_master_secret;          RFC 7627 §5.3: a resumption keeps it
        opaque server_name<0..2^8-1>;          RFC 6066 §3: never resumed for another name
    } StatePlaintext;

Only the server reads a ticket, so its content is the server's own business (RFC 5077 §4); a
client stores it as opaque bytes. A verified client certificate is kept as its fingerprint and
subject rather than RFC 5077's whole certificate_list: tickets stay small, and a resumed session
shows the same identity (RFC 5077 §4 leaves the content to the server). Keys live in a :class:`TicketKeys` ring: the current key seals
and opens, previous keys only open, so that rotating keys does not break tickets in flight.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .client_auth import MAX_SUBJECT_LENGTH, PeerIdentity
from .errors import DecodeError
from .prf import MASTER_SECRET_LENGTH
from .suites import SUITES_BY_CODE, CipherSuite
from .wire import Reader, u8, u16, vector

__all__ = [
    "DEFAULT_TICKET_LIFETIME",
    "KEY_NAME_LENGTH",
    "MAX_TICKET_LENGTH",
    "TicketKey",
    "TicketKeys",
    "TicketState",
]

KEY_NAME_LENGTH = 16
_IV_LENGTH = 16
_AES_KEY_LENGTH = 16
_MAC_KEY_LENGTH = 32
_MAC_LENGTH = 32
#: The longest ticket this lab issues or accepts (RFC 5077 §3.3 allows up to 2^16 - 1 bytes).
MAX_TICKET_LENGTH = 1024
#: How long a ticket may be used, and the lifetime hint sent with it (RFC 5077 §3.3).
DEFAULT_TICKET_LIFETIME = 3600
#: Tickets from a clock this far ahead are still taken (replicas' clocks differ a little).
_CLOCK_SKEW = 60
_TLS12 = b"\x03\x03"
_ANONYMOUS = 0
_CERTIFICATE_BASED = 1
_FINGERPRINT_LENGTH = 32


@dataclass(frozen=True)
class TicketState:
    """What a ticket carries: enough for the server to resume the session without a cache."""

    suite: CipherSuite
    master_secret: bytes = field(repr=False)
    extended_master_secret: bool
    server_name: str | None
    issued: int
    #: The verified client certificate of the session (mutual TLS), if any.
    client_identity: PeerIdentity | None = None

    def encode(self) -> bytes:
        name = (self.server_name or "").encode("ascii")
        identity = self.client_identity
        if identity is None:
            client = u8(_ANONYMOUS)
        else:
            subject = identity.subject.encode()
            if len(subject) > MAX_SUBJECT_LENGTH:
                raise ValueError("a client identity's subject is too long for a ticket")
            client = u8(_CERTIFICATE_BASED) + bytes.fromhex(identity.sha256) + vector(subject, 2)
        return (
            _TLS12
            + u16(self.suite.code)
            + u8(0)
            + self.master_secret
            + client
            + self.issued.to_bytes(4, "big")
            + u8(1 if self.extended_master_secret else 0)
            + vector(name, 1)
        )

    @classmethod
    def decode(cls, data: bytes) -> TicketState:
        reader = Reader(data)
        if reader.take(2) != _TLS12:
            raise DecodeError("ticket state is not TLS 1.2")
        suite = SUITES_BY_CODE.get(reader.uint(2))
        if suite is None or reader.uint(1) != 0:
            raise DecodeError("ticket state names an unknown suite or compression")
        master = reader.take(MASTER_SECRET_LENGTH)
        kind = reader.uint(1)
        identity = None
        if kind == _CERTIFICATE_BASED:
            fingerprint = reader.take(_FINGERPRINT_LENGTH).hex()
            subject = reader.vector(2, maximum=MAX_SUBJECT_LENGTH)
            try:
                identity = PeerIdentity(subject.decode(), fingerprint)
            except UnicodeDecodeError:
                raise DecodeError("ticket state has a malformed client subject") from None
        elif kind != _ANONYMOUS:
            raise DecodeError("ticket state names an unknown kind of client identity")
        issued = reader.uint(4)
        ems = reader.uint(1)
        name = reader.take(reader.uint(1))
        reader.finish()
        if ems not in (0, 1):
            raise DecodeError("ticket state has a bad extended_master_secret flag")
        return cls(suite, master, bool(ems), name.decode("ascii") or None, issued, identity)


@dataclass(frozen=True)
class TicketKey:
    """One ticket key: a public name and two secret keys (AES-128 and HMAC-SHA256)."""

    name: bytes
    aes_key: bytes = field(repr=False)
    mac_key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.name) != KEY_NAME_LENGTH:
            raise ValueError(f"a ticket key name is {KEY_NAME_LENGTH} bytes")
        if len(self.aes_key) != _AES_KEY_LENGTH or len(self.mac_key) != _MAC_KEY_LENGTH:
            raise ValueError("a ticket key is a 16-byte AES key and a 32-byte HMAC key")

    @classmethod
    def generate(cls, random_bytes: Callable[[int], bytes] = secrets.token_bytes) -> TicketKey:
        return cls(
            random_bytes(KEY_NAME_LENGTH),
            random_bytes(_AES_KEY_LENGTH),
            random_bytes(_MAC_KEY_LENGTH),
        )

    def _mac(self, data: bytes) -> bytes:
        mac = crypto_hmac.HMAC(self.mac_key, hashes.SHA256())
        mac.update(data)
        return mac.finalize()


class TicketKeys:
    """A ring of ticket keys: ``current`` seals and opens, ``previous`` only open.

    Args:
        current: the key that seals new tickets.
        previous: older keys, newest first; tickets sealed under them still open.
        lifetime: seconds a ticket stays usable; also the lifetime hint sent with it.
        clock: seconds since 1970 (tickets carry their issue time).
    """

    def __init__(
        self,
        current: TicketKey,
        previous: Sequence[TicketKey] = (),
        *,
        lifetime: int = DEFAULT_TICKET_LIFETIME,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if lifetime < 1:
            raise ValueError("a ticket lifetime is at least one second")
        self.current = current
        self.previous = tuple(previous)
        self.lifetime = lifetime
        self.clock = clock
        self._by_name = {key.name: key for key in (current, *self.previous)}

    def __repr__(self) -> str:
        names = ", ".join(key.name.hex()[:8] for key in (self.current, *self.previous))
        return f"<TicketKeys {names}>"

    def rotated(self, new: TicketKey, *, keep: int = 1) -> TicketKeys:
        """A ring with ``new`` as the current key; the ``keep`` newest older keys still open."""
        older = (self.current, *self.previous)[: max(keep, 0)]
        return TicketKeys(new, older, lifetime=self.lifetime, clock=self.clock)

    def now(self) -> int:
        return int(self.clock())

    def seal(
        self, state: TicketState, random_bytes: Callable[[int], bytes] = secrets.token_bytes
    ) -> bytes:
        key = self.current
        iv = random_bytes(_IV_LENGTH)
        padder = padding.PKCS7(128).padder()
        padded = padder.update(state.encode()) + padder.finalize()
        encryptor = Cipher(algorithms.AES(key.aes_key), modes.CBC(iv)).encryptor()
        encrypted = encryptor.update(padded) + encryptor.finalize()
        body = key.name + iv + vector(encrypted, 2)
        return body + key._mac(body)

    def open(self, ticket: bytes) -> TicketState | None:
        """The state inside ``ticket``, or None when the server cannot or will not use it: an
        unknown or retired key, a bad MAC, a malformed or expired ticket (RFC 5077 §3.3: the
        server then runs a full handshake). Every refusal looks the same to the caller."""
        if not _IV_LENGTH + KEY_NAME_LENGTH + 2 + _MAC_LENGTH <= len(ticket) <= MAX_TICKET_LENGTH:
            return None
        key = self._by_name.get(ticket[:KEY_NAME_LENGTH])
        if key is None:
            return None
        body, mac = ticket[:-_MAC_LENGTH], ticket[-_MAC_LENGTH:]
        if not hmac.compare_digest(key._mac(body), mac):
            return None
        try:
            reader = Reader(body[KEY_NAME_LENGTH:])
            iv = reader.take(_IV_LENGTH)
            encrypted = reader.take(reader.uint(2))
            reader.finish()
            if not encrypted or len(encrypted) % 16:
                return None
            decryptor = Cipher(algorithms.AES(key.aes_key), modes.CBC(iv)).decryptor()
            unpadder = padding.PKCS7(128).unpadder()
            plain = decryptor.update(encrypted) + decryptor.finalize()
            state = TicketState.decode(unpadder.update(plain) + unpadder.finalize())
        except (DecodeError, ValueError):
            # The MAC held, so only a key holder made this: refuse it all the same.
            return None
        now = self.now()
        if not state.issued - _CLOCK_SKEW <= now < state.issued + self.lifetime:
            return None
        return state
