"""Handshake messages: typed values, their TLS 1.2 wire encoding, and the strict JSON codec.

The JSON form is what travels over HTTP; the TLS encoding (RFC 5246 §7.4, RFC 8422 §5, RFC 7919,
RFC 6066 §3, RFC 7366, RFC 7627) is what goes into the transcript that Finished and the
extended master secret hash. docs/protocol.md defines the mapping between the two.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, TypeVar

from . import ffdhe
from .errors import DecodeError, IllegalParameter, InsufficientSecurity
from .kex import NamedGroup, SignatureScheme, is_ffdhe
from .suites import SUITES, CipherSuite
from .tickets import MAX_TICKET_LENGTH
from .wire import HandshakeType, Reader, handshake_message, u8, u16, vector

__all__ = [
    "DEFAULT_GROUPS",
    "DEFAULT_SIGNATURE_SCHEMES",
    "MAX_FINISHED_RECORD",
    "CertificateMessage",
    "CertificateRequest",
    "CertificateVerify",
    "ClientCertificateType",
    "ClientExtensions",
    "ClientFinish",
    "ClientHello",
    "ClientKeyExchange",
    "ExtensionType",
    "Fields",
    "Finished",
    "NewSessionTicket",
    "ServerExtensions",
    "ServerFlight",
    "ServerHello",
    "ServerHelloDone",
    "ServerKeyExchange",
    "decode_b64",
    "decode_hex",
    "encode_b64",
    "parse_json",
]

RANDOM_LENGTH = 32
MAX_SESSION_ID = 32
#: The largest protected Finished record a handshake message may carry (docs/protocol.md §1.5).
MAX_FINISHED_RECORD = 4096
#: The JSON nesting any message of this protocol needs is 3; deeper input is refused unread.
MAX_JSON_DEPTH = 8
#: The most JSON a body may hold outside its strings: brackets, separators, numbers, true,
#: false and null, whitespace not counted. The largest message of this protocol needs about
#: 100; the bound caps what the parser builds (values, keys, objects, digits) for any body.
MAX_JSON_STRUCTURE = 4096

DEFAULT_GROUPS: tuple[NamedGroup, ...] = (
    NamedGroup.x25519,
    NamedGroup.secp256r1,
    NamedGroup.secp384r1,
    # RFC 7919: offered only with DHE suites, as the curves are only with ECDHE ones.
    NamedGroup.ffdhe2048,
    NamedGroup.ffdhe3072,
)
DEFAULT_SIGNATURE_SCHEMES: tuple[SignatureScheme, ...] = (
    SignatureScheme.rsa_pss_rsae_sha256,
    SignatureScheme.rsa_pkcs1_sha256,
    SignatureScheme.rsa_pss_rsae_sha384,
    SignatureScheme.rsa_pkcs1_sha384,
    SignatureScheme.ecdsa_secp256r1_sha256,
    SignatureScheme.ecdsa_secp384r1_sha384,
)
#: What an absent or null ``signature_algorithms`` decodes to: the four RSA schemes the JSON
#: protocol started with, so that a peer that omits the field keeps encoding the same hello.
ABSENT_SIGNATURE_SCHEMES: tuple[SignatureScheme, ...] = DEFAULT_SIGNATURE_SCHEMES[:4]


class ExtensionType:
    """IANA extension numbers used here."""

    server_name = 0
    supported_groups = 10
    ec_point_formats = 11
    signature_algorithms = 13
    encrypt_then_mac = 22
    extended_master_secret = 23
    session_ticket = 35


# -- strict JSON --------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise DecodeError(f"JSON constant {name} is not allowed")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise DecodeError(f"duplicate JSON key {key!r}")
        result[key] = value
    return result


#: A \u escape of a UTF-16 surrogate (D800-DFFF). Text that holds none cannot decode to one.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_JSON_WHITESPACE = " \t\n\r"
#: For the depth check: objects nest as arrays do, and nothing but brackets matters.
_SQUARE_BRACKETS = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
_OPEN = ord("[")


def _outside_strings(text: str) -> str:
    """The text with every string literal taken out (keys included), for valid JSON.

    Refuses, before anything is parsed, a body with more strings than MAX_JSON_STRUCTURE
    allows (each string but the last needs a separator after it). Every step is one pass of
    a C string method: no cost per character in Python, whatever the body holds.
    """
    if "\\" in text:
        # In valid JSON a backslash only starts an escape inside a string. Escaped backslashes
        # pair up from the left, exactly as the left-to-right replace pairs them; after them,
        # \" is an escaped quote. Every quote left delimits a string.
        text = text.replace("\\\\", "").replace('\\"', "")
    quotes = text.count('"')
    if quotes % 2:
        raise DecodeError("request body is not valid JSON")
    if quotes > 2 * (MAX_JSON_STRUCTURE + 1):
        raise DecodeError(f"request body has more than {MAX_JSON_STRUCTURE + 1} JSON strings")
    return "".join(text.split('"')[::2])


def _deepest(brackets: bytes) -> int:
    depth = deepest = 0
    for byte in brackets:
        if byte == _OPEN:
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _check_structure(text: str) -> None:
    """Refuse nesting deeper than MAX_JSON_DEPTH, and more than MAX_JSON_STRUCTURE characters
    outside strings, before the parser sees the body.

    Brackets inside a string are text, so only what lies outside strings is looked at. Every
    pass over the whole body is a C string method; the one loop in Python reads at most
    MAX_JSON_STRUCTURE brackets (a body with more is refused for that, after the loop has
    told whether its first ones already nest too deep).
    """
    outside = _outside_strings(text)
    brackets = outside.encode("utf-8").translate(_SQUARE_BRACKETS, _NOT_BRACKETS)
    if _deepest(brackets[:MAX_JSON_STRUCTURE]) > MAX_JSON_DEPTH:
        raise DecodeError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    if len(outside) > MAX_JSON_STRUCTURE and (
        len(outside) - sum(outside.count(ch) for ch in _JSON_WHITESPACE) > MAX_JSON_STRUCTURE
    ):
        raise DecodeError(
            f"request body has more than {MAX_JSON_STRUCTURE} characters of JSON outside its strings"
        )


def _refuse_lone_surrogates(value: Any) -> None:
    # A \ud800 escape alone is valid JSON but not Unicode text: it cannot be encoded as UTF-8,
    # so it must not reach a log, a metric label or a handshake field. A paired escape
    # (\ud83d\ude00) decodes to one character and encodes fine.
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise DecodeError("a string in the request body holds a lone UTF-16 surrogate") from None


def parse_json(body: bytes | str) -> dict[str, Any]:
    """Parse a JSON request body strictly: UTF-8, an object at the top, no duplicate
    keys, no NaN/Infinity, no lone UTF-16 surrogates in strings or keys, bounded nesting
    and structure (MAX_JSON_DEPTH, MAX_JSON_STRUCTURE). Failures raise DecodeError."""
    try:
        if isinstance(body, (bytes, bytearray)):
            text = body.decode("utf-8")
        else:
            text = body
            text.encode("utf-8")  # a str may hold surrogates itself, not only as escapes
    except UnicodeError:
        raise DecodeError("request body is not UTF-8") from None
    _check_structure(text)
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except DecodeError:
        raise
    except (ValueError, RecursionError):
        raise DecodeError("request body is not valid JSON") from None
    if not isinstance(value, dict):
        raise DecodeError("request body must be a JSON object")
    if _SURROGATE_ESCAPE.search(text):
        _refuse_lone_surrogates(value)
    return value


_HEX = re.compile(r"[0-9a-fA-F]*")


def decode_hex(
    value: object, name: str, length: int | None = None, *, max_length: int = 4096
) -> bytes:
    if not isinstance(value, str):
        raise DecodeError(f"{name} must be a hex string")
    if len(value) > 2 * max_length:  # first: the pattern below reads every character
        raise DecodeError(f"{name} is too long")
    if len(value) % 2 or not _HEX.fullmatch(value):
        raise DecodeError(f"{name} is not valid hex")
    data = bytes.fromhex(value)
    if length is not None and len(data) != length:
        raise DecodeError(f"{name} must be {length} bytes, not {len(data)}")
    return data


def decode_b64(value: object, name: str, *, max_length: int | None = None) -> bytes:
    """Standard-alphabet base64 with padding, canonical only (RFC 4648 §4)."""
    if not isinstance(value, str):
        raise DecodeError(f"{name} must be a base64 string")
    if max_length is not None and len(value) > (max_length + 2) // 3 * 4:
        raise DecodeError(f"{name} is too long")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise DecodeError(f"{name} is not valid base64") from None
    # Non-zero trailing bits ("QR==") decode to the same bytes as canonical text; refuse them.
    # validate=True keeps "=" to the end, so only the last 4-character quantum can carry them.
    tail = value[-4:]
    if tail and base64.b64encode(base64.b64decode(tail)).decode("ascii") != tail:
        raise DecodeError(f"{name} is not canonical base64")
    # The text check above is a cheap bound before decoding; it admits up to 2 bytes more.
    if max_length is not None and len(data) > max_length:
        raise DecodeError(f"{name} is too long")
    return data


def encode_b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


T = TypeVar("T")


class Fields:
    """Reads a JSON object field by field and rejects what is left over.

    ``with Fields(obj, "hello") as f: random = f.required("random", hex_field(32))``.
    """

    def __init__(self, obj: object, where: str) -> None:
        if not isinstance(obj, dict):
            raise DecodeError(f"{where} must be a JSON object")
        self._obj: dict[str, Any] = obj
        self._where = where
        self._seen: set[str] = set()

    def __enter__(self) -> Fields:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            unknown = sorted(set(self._obj) - self._seen)
            if unknown:
                raise DecodeError(f"unknown field(s) in {self._where}: {', '.join(unknown)}")

    def has(self, key: str) -> bool:
        return key in self._obj

    def required(self, key: str, convert: Callable[[object, str], T]) -> T:
        self._seen.add(key)
        if key not in self._obj:
            raise DecodeError(f"{self._where} lacks required field {key!r}")
        return convert(self._obj[key], key)

    def optional(self, key: str, convert: Callable[[object, str], T], default: T) -> T:
        self._seen.add(key)
        if key not in self._obj or self._obj[key] is None:
            return default
        return convert(self._obj[key], key)


def as_bool(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise DecodeError(f"{name} must be true or false")
    return value


def as_str(value: object, name: str, *, max_length: int = 255) -> str:
    if not isinstance(value, str):
        raise DecodeError(f"{name} must be a string")
    if len(value) > max_length:
        raise DecodeError(f"{name} is longer than {max_length} characters")
    return value


def as_str_list(
    value: object, name: str, *, max_items: int = 64, allow_empty: bool = False
) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DecodeError(f"{name} must be a list of strings")
    if (not value and not allow_empty) or len(value) > max_items:
        raise DecodeError(f"{name} must have 1 to {max_items} entries")
    return list(value)


def as_int(value: object, name: str, *, minimum: int = 0, maximum: int = (1 << 63) - 1) -> int:
    # bool is an int in Python and 1.0 is a float: neither is accepted where an integer belongs.
    if not isinstance(value, int) or isinstance(value, bool):
        raise DecodeError(f"{name} must be an integer")
    if not minimum <= value <= maximum:
        raise DecodeError(f"{name} must be between {minimum} and {maximum}")
    return value


def hex_field(length: int | None = None, max_length: int = 4096) -> Callable[[object, str], bytes]:
    return lambda v, n: decode_hex(v, n, length, max_length=max_length)


def b64_field(max_length: int | None = None) -> Callable[[object, str], bytes]:
    return lambda v, n: decode_b64(v, n, max_length=max_length)


def _enum_list(
    enum: Any, what: str, *, allow_empty: bool = False
) -> Callable[[object, str], tuple[Any, ...]]:
    def convert(value: object, name: str) -> tuple[Any, ...]:
        names = as_str_list(value, name, allow_empty=allow_empty)
        try:
            items = tuple(enum[n] for n in names)
        except KeyError as exc:
            raise IllegalParameter(f"unknown {what} {exc.args[0]!r}") from None
        if len(set(items)) != len(items):
            raise DecodeError(f"{name} lists an entry twice")
        return items

    return convert


def _point(value: object, name: str) -> bytes:
    point = decode_hex(value, name, max_length=255)
    if not point:  # ECPoint is <1..2^8-1> (RFC 8422 §5.4)
        raise DecodeError(f"{name} must not be empty")
    return point


#: A non-empty list of group names, each once (POST /handshake's ``supported_groups``).
as_groups = _enum_list(NamedGroup, "group")
#: A non-empty list of signature scheme names, each once (``signature_algorithms``).
as_signature_schemes = _enum_list(SignatureScheme, "signature algorithm")


_HOSTNAME = re.compile(
    r"(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)


def as_hostname(value: object, name: str) -> str:
    host = as_str(value, name, max_length=253)
    # RFC 6066 §3: a DNS host name, ASCII, no trailing dot. Kept exactly as sent,
    # since the transcript must hold the bytes the client encoded.
    if not _HOSTNAME.fullmatch(host):
        raise DecodeError(f"{name} is not a valid DNS host name")
    return host


# -- the messages ---------------------------------------------------------------


#: What an absent ``supported_groups`` stands for in JSON (docs/protocol.md §1.2): the three
#: curves, as before the finite-field groups existed, so that older peers encode the same.
ABSENT_GROUPS: tuple[NamedGroup, ...] = tuple(g for g in DEFAULT_GROUPS if not is_ffdhe(g))


@dataclass(frozen=True)
class ClientExtensions:
    extended_master_secret: bool = False
    encrypt_then_mac: bool = False
    server_name: str | None = None
    supported_groups: tuple[NamedGroup, ...] = DEFAULT_GROUPS
    signature_algorithms: tuple[SignatureScheme, ...] = ABSENT_SIGNATURE_SCHEMES
    #: RFC 5077 §3.2: None = not offered, b"" = offered without a ticket, else the ticket.
    session_ticket: bytes | None = field(default=None, repr=False)

    def encode(self) -> bytes:
        """The extensions block in ascending type order (one canonical order for the transcript)."""
        out = b""
        if self.server_name is not None:
            name = self.server_name.encode("ascii")
            out += _extension(ExtensionType.server_name, vector(u8(0) + vector(name, 2), 2))
        if self.supported_groups:
            groups = b"".join(u16(g) for g in self.supported_groups)
            out += _extension(ExtensionType.supported_groups, vector(groups, 2))
            out += _extension(ExtensionType.ec_point_formats, vector(u8(0), 1))
        schemes = b"".join(u16(s) for s in self.signature_algorithms)
        out += _extension(ExtensionType.signature_algorithms, vector(schemes, 2))
        if self.encrypt_then_mac:
            out += _extension(ExtensionType.encrypt_then_mac, b"")
        if self.extended_master_secret:
            out += _extension(ExtensionType.extended_master_secret, b"")
        if self.session_ticket is not None:
            # The extension's data is the ticket itself, with no length of its own (§3.2).
            out += _extension(ExtensionType.session_ticket, self.session_ticket)
        return out

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "extended_master_secret": self.extended_master_secret,
            "encrypt_then_mac": self.encrypt_then_mac,
            "server_name": self.server_name,
            "supported_groups": [g.name for g in self.supported_groups],
            "signature_algorithms": [s.name for s in self.signature_algorithms],
        }
        if self.session_ticket is not None:
            out["session_ticket"] = encode_b64(self.session_ticket)
        return out

    @classmethod
    def from_json(cls, obj: object) -> ClientExtensions:
        with Fields(obj, "extensions") as f:
            return cls(
                extended_master_secret=f.optional("extended_master_secret", as_bool, False),
                encrypt_then_mac=f.optional("encrypt_then_mac", as_bool, False),
                server_name=f.optional("server_name", as_hostname, None),
                supported_groups=f.optional(
                    "supported_groups",
                    # [] means the extension is not sent (an RSA-only offer).
                    _enum_list(NamedGroup, "group", allow_empty=True),
                    ABSENT_GROUPS,
                ),
                signature_algorithms=f.optional(
                    "signature_algorithms",
                    _enum_list(SignatureScheme, "signature algorithm"),
                    ABSENT_SIGNATURE_SCHEMES,
                ),
                session_ticket=f.optional(
                    "session_ticket", b64_field(max_length=MAX_TICKET_LENGTH), None
                ),
            )


def _extension(ext_type: int, data: bytes) -> bytes:
    return u16(ext_type) + vector(data, 2)


@dataclass(frozen=True)
class ServerExtensions:
    extended_master_secret: bool = False
    encrypt_then_mac: bool = False
    ec_point_formats: bool = False
    #: RFC 5077 §3.2: the server will send a NewSessionTicket in this handshake.
    session_ticket: bool = False

    def encode(self) -> bytes:
        out = b""
        if self.ec_point_formats:
            out += _extension(ExtensionType.ec_point_formats, vector(u8(0), 1))
        if self.encrypt_then_mac:
            out += _extension(ExtensionType.encrypt_then_mac, b"")
        if self.extended_master_secret:
            out += _extension(ExtensionType.extended_master_secret, b"")
        if self.session_ticket:
            out += _extension(ExtensionType.session_ticket, b"")
        return out

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "extended_master_secret": self.extended_master_secret,
            "encrypt_then_mac": self.encrypt_then_mac,
            "ec_point_formats": ["uncompressed"] if self.ec_point_formats else None,
        }
        if self.session_ticket:
            out["session_ticket"] = True
        return out

    @classmethod
    def from_json(cls, obj: object) -> ServerExtensions:
        def point_formats(value: object, name: str) -> bool:
            if as_str_list(value, name) != ["uncompressed"]:
                raise IllegalParameter("only uncompressed EC points are supported")
            return True

        with Fields(obj, "extensions") as f:
            return cls(
                extended_master_secret=f.optional("extended_master_secret", as_bool, False),
                encrypt_then_mac=f.optional("encrypt_then_mac", as_bool, False),
                ec_point_formats=f.optional("ec_point_formats", point_formats, False),
                session_ticket=f.optional("session_ticket", as_bool, False),
            )


def _suite_names(value: object, name: str) -> tuple[CipherSuite, ...]:
    names = as_str_list(value, name)
    # A name has no code point unless it is in the table, so an unknown name
    # could not be put into the transcript: it is refused rather than skipped.
    unknown = [n for n in names if n not in SUITES]
    if unknown:
        raise IllegalParameter(f"unknown cipher suite {unknown[0]!r}")
    if len(set(names)) != len(names):
        raise DecodeError(f"{name} lists a suite twice")
    return tuple(SUITES[n] for n in names)


@dataclass(frozen=True)
class ClientHello:
    random: bytes
    cipher_suites: tuple[CipherSuite, ...]
    extensions: ClientExtensions
    session_id: bytes = b""

    msg_type = HandshakeType.client_hello

    def encode(self) -> bytes:
        body = (
            b"\x03\x03"
            + self.random
            + vector(self.session_id, 1)
            + vector(b"".join(u16(s.code) for s in self.cipher_suites), 2)
            + vector(u8(0), 1)  # compression_methods: null only
            + vector(self.extensions.encode(), 2)
        )
        return handshake_message(self.msg_type, body)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "client_random": self.random.hex(),
            "cipher_suites": [s.name for s in self.cipher_suites],
            "extensions": self.extensions.to_json(),
        }
        if self.session_id:
            out["session_id"] = self.session_id.hex()
        return out

    @classmethod
    def from_json(cls, obj: object) -> ClientHello:
        with Fields(obj, "ClientHello") as f:
            random = f.required("client_random", hex_field(RANDOM_LENGTH))
            suites = f.required("cipher_suites", _suite_names)
            session_id = f.optional("session_id", hex_field(max_length=MAX_SESSION_ID), b"")
            extensions = f.optional(
                "extensions", lambda v, n: ClientExtensions.from_json(v), ClientExtensions()
            )
        return cls(random, suites, extensions, session_id)


@dataclass(frozen=True)
class ServerHello:
    random: bytes
    session_id: bytes
    cipher_suite: CipherSuite
    extensions: ServerExtensions

    msg_type = HandshakeType.server_hello

    def encode(self) -> bytes:
        extensions = self.extensions.encode()
        body = (
            b"\x03\x03"
            + self.random
            + vector(self.session_id, 1)
            + u16(self.cipher_suite.code)
            + u8(0)
            # RFC 5246 §7.4.1.3: with no extensions the field is left out, as real stacks do.
            + (vector(extensions, 2) if extensions else b"")
        )
        return handshake_message(self.msg_type, body)


@dataclass(frozen=True)
class CertificateMessage:
    chain_der: tuple[bytes, ...]

    msg_type = HandshakeType.certificate

    def encode(self) -> bytes:
        certs = b"".join(vector(der, 3) for der in self.chain_der)
        return handshake_message(self.msg_type, vector(certs, 3))


#: The longest DH value (dh_p, dh_g, dh_Ys, dh_Yc) the codec reads: ffdhe8192's 1024 bytes.
MAX_DH_VALUE = 1024


@dataclass(frozen=True)
class ServerKeyExchange:
    """ServerECDHParams (an ECDHE suite) or, for an RFC 7919 ``group``, ServerDHParams whose
    dh_p and dh_g are that group's and dh_Ys is ``public_key`` (a DHE suite)."""

    group: NamedGroup
    public_key: bytes
    signature_algorithm: SignatureScheme
    signature: bytes

    msg_type = HandshakeType.server_key_exchange

    @property
    def params(self) -> bytes:
        """ServerECDHParams or ServerDHParams, the part the signature covers (with the randoms)."""
        if is_ffdhe(self.group):
            group = ffdhe.FFDHE_GROUPS[self.group]
            # RFC 5246 §7.4.3: dh_p, dh_g, dh_Ys, each opaque <1..2^16-1>.
            return vector(group.p_bytes, 2) + vector(group.g_bytes, 2) + vector(self.public_key, 2)
        return u8(3) + u16(self.group) + vector(self.public_key, 1)

    def encode(self) -> bytes:
        body = self.params + u16(self.signature_algorithm) + vector(self.signature, 2)
        return handshake_message(self.msg_type, body)

    def to_json(self) -> dict[str, Any]:
        if is_ffdhe(self.group):
            group = ffdhe.FFDHE_GROUPS[self.group]
            return {
                "dh_p": group.p_bytes.hex(),
                "dh_g": group.g_bytes.hex(),
                "dh_Ys": self.public_key.hex(),
                "signature_algorithm": self.signature_algorithm.name,
                "signature": encode_b64(self.signature),
            }
        return {
            "curve_type": "named_curve",
            "named_curve": self.group.name,
            "public_key": self.public_key.hex(),
            "signature_algorithm": self.signature_algorithm.name,
            "signature": encode_b64(self.signature),
        }

    @classmethod
    def from_json(cls, obj: object) -> ServerKeyExchange:
        def named(enum: Any, what: str) -> Callable[[object, str], Any]:
            def convert(value: object, name: str) -> Any:
                try:
                    return enum[as_str(value, name)]
                except KeyError:
                    raise IllegalParameter(f"unknown {what}") from None

            return convert

        def curve_type(value: object, name: str) -> str:
            if value != "named_curve":
                raise IllegalParameter("only named curves are supported (RFC 8422 §5.4)")
            return "named_curve"

        def dh_value(value: object, name: str) -> bytes:
            data = decode_hex(value, name, max_length=MAX_DH_VALUE)
            if not data:  # dh_p, dh_g and dh_Ys are <1..2^16-1> (RFC 5246 §7.4.3)
                raise DecodeError(f"{name} must not be empty")
            return data

        if isinstance(obj, dict) and "dh_p" in obj:
            with Fields(obj, "server_key_exchange") as f:
                p = f.required("dh_p", dh_value)
                g = f.required("dh_g", dh_value)
                public = f.required("dh_Ys", dh_value)
                scheme = f.required(
                    "signature_algorithm", named(SignatureScheme, "signature algorithm")
                )
                signature = f.required("signature", b64_field(max_length=1024))
            group = ffdhe.group_for_params(p, g)
            if group is None:
                # RFC 7919 §3: a client that offered groups may refuse other parameters.
                raise InsufficientSecurity("the server's DH parameters are not an RFC 7919 group")
            return cls(NamedGroup(group.code), public, scheme, signature)
        with Fields(obj, "server_key_exchange") as f:
            f.optional("curve_type", curve_type, "named_curve")
            return cls(
                group=f.required("named_curve", named(NamedGroup, "named curve")),
                public_key=f.required("public_key", _point),
                signature_algorithm=f.required(
                    "signature_algorithm", named(SignatureScheme, "signature algorithm")
                ),
                signature=f.required("signature", b64_field(max_length=1024)),
            )


class ClientCertificateType(IntEnum):
    """RFC 5246 §7.4.4 ClientCertificateType values this lab names (RFC 8422 §5.5 adds
    ecdsa_sign)."""

    rsa_sign = 1
    ecdsa_sign = 64


#: Most entries a CertificateRequest list may carry in JSON (types, schemes, authorities).
MAX_CERTIFICATE_REQUEST_ENTRIES = 16
#: Longest DER distinguished name a CertificateRequest may name.
MAX_DISTINGUISHED_NAME = 1024


def _distinguished_names(value: object, name: str) -> tuple[bytes, ...]:
    if not isinstance(value, list) or len(value) > MAX_CERTIFICATE_REQUEST_ENTRIES:
        raise DecodeError(
            f"{name} must be a list of at most {MAX_CERTIFICATE_REQUEST_ENTRIES} base64 DER names"
        )
    names = tuple(decode_b64(v, name, max_length=MAX_DISTINGUISHED_NAME) for v in value)
    if not all(names):
        raise DecodeError(f"{name} holds an empty name")  # DistinguishedName is <1..2^16-1>
    return names


@dataclass(frozen=True)
class CertificateRequest:
    """RFC 5246 §7.4.4: the server asks the client for a certificate, between
    ServerKeyExchange (or Certificate) and ServerHelloDone."""

    certificate_types: tuple[ClientCertificateType, ...]
    signature_algorithms: tuple[SignatureScheme, ...]
    #: DER-encoded DistinguishedNames of the CAs the server accepts (may be empty).
    certificate_authorities: tuple[bytes, ...] = ()

    msg_type = HandshakeType.certificate_request

    def encode(self) -> bytes:
        types = bytes(self.certificate_types)
        schemes = b"".join(u16(s) for s in self.signature_algorithms)
        authorities = b"".join(vector(dn, 2) for dn in self.certificate_authorities)
        body = vector(types, 1) + vector(schemes, 2) + vector(authorities, 2)
        return handshake_message(self.msg_type, body)

    def to_json(self) -> dict[str, Any]:
        return {
            "certificate_types": [t.name for t in self.certificate_types],
            "signature_algorithms": [s.name for s in self.signature_algorithms],
            "certificate_authorities": [encode_b64(dn) for dn in self.certificate_authorities],
        }

    @classmethod
    def from_json(cls, obj: object) -> CertificateRequest:
        with Fields(obj, "certificate_request") as f:
            return cls(
                certificate_types=f.required(
                    "certificate_types", _enum_list(ClientCertificateType, "certificate type")
                ),
                signature_algorithms=f.required(
                    "signature_algorithms", _enum_list(SignatureScheme, "signature algorithm")
                ),
                certificate_authorities=f.required("certificate_authorities", _distinguished_names),
            )


@dataclass(frozen=True)
class CertificateVerify:
    """RFC 5246 §7.4.8: the client's signature over the handshake messages so far (from
    ClientHello up to and including ClientKeyExchange), with its certificate's key."""

    signature_algorithm: SignatureScheme
    signature: bytes

    msg_type = HandshakeType.certificate_verify

    def encode(self) -> bytes:
        body = u16(self.signature_algorithm) + vector(self.signature, 2)
        return handshake_message(self.msg_type, body)

    def to_json(self) -> dict[str, Any]:
        return {
            "signature_algorithm": self.signature_algorithm.name,
            "signature": encode_b64(self.signature),
        }

    @classmethod
    def from_json(cls, obj: object) -> CertificateVerify:
        def scheme(value: object, name: str) -> SignatureScheme:
            try:
                return SignatureScheme[as_str(value, name)]
            except KeyError:
                raise IllegalParameter("unknown signature algorithm") from None

        with Fields(obj, "certificate_verify") as f:
            algorithm = f.required("signature_algorithm", scheme)
            signature = f.required("signature", b64_field(max_length=1024))
        if not signature:
            raise DecodeError("signature must not be empty")
        return cls(algorithm, signature)


@dataclass(frozen=True)
class ServerHelloDone:
    msg_type = HandshakeType.server_hello_done

    def encode(self) -> bytes:
        return handshake_message(self.msg_type, b"")


@dataclass(frozen=True)
class ClientKeyExchange:
    """The RSA-encrypted pre-master secret, the client's ECDH public key, or its DH public
    value (``dh_public``, ClientDiffieHellmanPublic, RFC 5246 §7.4.7.2)."""

    encrypted_pre_master_secret: bytes | None = field(default=None, repr=False)
    public_key: bytes | None = None
    dh_public: bytes | None = None

    msg_type = HandshakeType.client_key_exchange

    def encode(self) -> bytes:
        if self.encrypted_pre_master_secret is not None:
            # RFC 5246 §7.4.7.1: TLS 1.0 and later send a 2-byte length before the ciphertext.
            body = vector(self.encrypted_pre_master_secret, 2)
        elif self.dh_public is not None:
            body = vector(self.dh_public, 2)  # dh_Yc <1..2^16-1>
        else:
            assert self.public_key is not None
            body = vector(self.public_key, 1)  # RFC 8422 §5.7 ClientECDiffieHellmanPublic
        return handshake_message(self.msg_type, body)

    def to_json(self) -> dict[str, Any]:
        if self.encrypted_pre_master_secret is not None:
            return {"encrypted_pre_master_secret": encode_b64(self.encrypted_pre_master_secret)}
        if self.dh_public is not None:
            return {"dh_Yc": self.dh_public.hex()}
        assert self.public_key is not None
        return {"public_key": self.public_key.hex()}

    @classmethod
    def from_json(cls, obj: object) -> ClientKeyExchange:
        with Fields(obj, "client_key_exchange") as f:
            forms = ("encrypted_pre_master_secret", "public_key", "dh_Yc")
            if sum(f.has(name) for name in forms) > 1:
                raise DecodeError(
                    "client_key_exchange carries either an encrypted pre-master secret or a public key"
                )
            if f.has("dh_Yc"):
                value = f.required("dh_Yc", hex_field(max_length=MAX_DH_VALUE))
                if not value:
                    raise DecodeError("dh_Yc must not be empty")
                return cls(dh_public=value)
            if f.has("public_key"):
                key = f.required("public_key", hex_field(max_length=255))
                if not key:
                    raise DecodeError("public_key must not be empty")
                return cls(public_key=key)
            return cls(
                encrypted_pre_master_secret=f.required(
                    "encrypted_pre_master_secret", b64_field(max_length=1024)
                )
            )


@dataclass(frozen=True)
class Finished:
    verify_data: bytes = field(repr=False)

    msg_type = HandshakeType.finished

    def encode(self) -> bytes:
        return handshake_message(self.msg_type, self.verify_data)

    @classmethod
    def decode(cls, data: bytes, verify_data_length: int = 12) -> Finished:
        """Parse a Finished handshake message from a decrypted record (exactly one message)."""
        reader = Reader(data)
        if reader.uint(1) != HandshakeType.finished:
            raise DecodeError("expected a Finished message")
        body = reader.take(reader.uint(3))
        reader.finish()
        if len(body) != verify_data_length:
            raise DecodeError(f"verify_data must be {verify_data_length} bytes")
        return cls(body)


@dataclass(frozen=True)
class NewSessionTicket:
    """RFC 5077 §3.3: the server's sealed session state, for the client to present when it
    resumes. It joins the transcript before the server's Finished."""

    lifetime_hint: int
    ticket: bytes = field(repr=False)

    msg_type = HandshakeType.new_session_ticket

    def encode(self) -> bytes:
        body = self.lifetime_hint.to_bytes(4, "big") + vector(self.ticket, 2)
        return handshake_message(self.msg_type, body)

    def to_json(self) -> dict[str, Any]:
        return {"lifetime_hint": self.lifetime_hint, "ticket": encode_b64(self.ticket)}

    @classmethod
    def from_json(cls, obj: object) -> NewSessionTicket:
        with Fields(obj, "NewSessionTicket") as f:
            lifetime = f.required("lifetime_hint", lambda v, n: as_int(v, n, maximum=2**32 - 1))
            ticket = f.required("ticket", b64_field(max_length=MAX_TICKET_LENGTH))
        return cls(lifetime, ticket)


# -- the flights: the messages as the two HTTP exchanges carry them -----------------


@dataclass(frozen=True)
class ServerFlight:
    """Everything the server sends in answer to a ClientHello (one HTTP response)."""

    server_hello: ServerHello
    certificate_pem: tuple[str, ...]
    server_key_exchange: ServerKeyExchange | None
    finished_record: bytes | None  # only when resuming
    #: Only when resuming, and only when the ServerHello carries session_ticket.
    new_session_ticket: NewSessionTicket | None = None
    #: Only in a full handshake, when the server asks for a client certificate.
    certificate_request: CertificateRequest | None = None

    @property
    def resumed(self) -> bool:
        return self.finished_record is not None

    def to_json(self) -> dict[str, Any]:
        hello = self.server_hello
        out: dict[str, Any] = {
            "session_id": hello.session_id.hex(),
            "server_random": hello.random.hex(),
            "cipher_suite": hello.cipher_suite.name,
            "resumed": self.resumed,
            "extensions": hello.extensions.to_json(),
            "certificate_chain": list(self.certificate_pem),
        }
        if self.server_key_exchange is not None:
            out["server_key_exchange"] = self.server_key_exchange.to_json()
        if self.certificate_request is not None:
            out["certificate_request"] = self.certificate_request.to_json()
        if self.new_session_ticket is not None:
            out["new_session_ticket"] = self.new_session_ticket.to_json()
        if self.finished_record is not None:
            out["finished_record"] = encode_b64(self.finished_record)
        return out

    @classmethod
    def from_json(cls, obj: object) -> ServerFlight:
        def suite(value: object, name: str) -> CipherSuite:
            if not isinstance(value, str) or value not in SUITES:
                raise IllegalParameter("server chose an unknown cipher suite")
            return SUITES[value]

        def pem_list(value: object, name: str) -> tuple[str, ...]:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise DecodeError("certificate_chain must be a list of PEM strings")
            if len(value) > 8:
                raise DecodeError("certificate_chain is too long")
            return tuple(value)

        with Fields(obj, "ServerHello") as f:
            session_id = f.required("session_id", hex_field(max_length=32))
            random = f.required("server_random", hex_field(32))
            chosen = f.required("cipher_suite", suite)
            resumed = f.required("resumed", as_bool)
            extensions = f.required("extensions", lambda v, n: ServerExtensions.from_json(v))
            no_chain: tuple[str, ...] = ()
            chain = f.optional("certificate_chain", pem_list, no_chain)
            ske = f.optional(
                "server_key_exchange", lambda v, n: ServerKeyExchange.from_json(v), None
            )
            request = f.optional(
                "certificate_request", lambda v, n: CertificateRequest.from_json(v), None
            )
            ticket = f.optional(
                "new_session_ticket", lambda v, n: NewSessionTicket.from_json(v), None
            )
            finished = f.optional(
                "finished_record", b64_field(max_length=MAX_FINISHED_RECORD), None
            )
        if resumed != (finished is not None):
            raise DecodeError("a resumed ServerHello carries finished_record, a full one does not")
        if ticket is not None and not resumed:
            raise DecodeError(
                "a full handshake's NewSessionTicket comes with the server's Finished"
            )
        if request is not None and resumed:
            raise DecodeError("a resumed handshake carries no certificate_request")
        hello = ServerHello(random, session_id, chosen, extensions)
        return cls(hello, chain, ske, finished, ticket, request)


@dataclass(frozen=True)
class ClientFinish:
    """The client's second flight (one HTTP request): key exchange (full only) and Finished."""

    client_key_exchange: ClientKeyExchange | None
    finished_record: bytes
    #: The client's Certificate (RFC 5246 §7.4.6), PEM, leaf first: present (possibly empty)
    #: exactly when the server sent a CertificateRequest; None when it did not.
    certificate_chain: tuple[str, ...] | None = None
    #: RFC 5246 §7.4.8: only after a non-empty client certificate.
    certificate_verify: CertificateVerify | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"finished_record": encode_b64(self.finished_record)}
        if self.certificate_chain is not None:
            out["certificate_chain"] = list(self.certificate_chain)
        if self.client_key_exchange is not None:
            out["client_key_exchange"] = self.client_key_exchange.to_json()
        if self.certificate_verify is not None:
            out["certificate_verify"] = self.certificate_verify.to_json()
        return out

    @classmethod
    def from_json(cls, obj: object) -> ClientFinish:
        def pem_list(value: object, name: str) -> tuple[str, ...]:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise DecodeError("certificate_chain must be a list of PEM strings")
            if len(value) > 8:
                raise DecodeError("certificate_chain is too long")
            return tuple(value)

        with Fields(obj, "client finish") as f:
            chain = f.optional("certificate_chain", pem_list, None)
            cke = f.optional(
                "client_key_exchange", lambda v, n: ClientKeyExchange.from_json(v), None
            )
            verify = f.optional(
                "certificate_verify", lambda v, n: CertificateVerify.from_json(v), None
            )
            record = f.required("finished_record", b64_field(max_length=MAX_FINISHED_RECORD))
        if verify is not None and not chain:
            raise DecodeError("certificate_verify follows a non-empty certificate_chain only")
        return cls(cke, record, chain, verify)
