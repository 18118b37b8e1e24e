"""The lab's errors: one shape for all of them, and one tree named after RFC 5246 §7.2's alerts.

Every error carries a stable ``code`` (used in JSON error bodies), a ``message`` that is safe
to show and to log, an HTTP ``status`` and ``details`` (extra JSON fields of the error body).
As h11 does, the tree keeps apart who broke the rules:

- :class:`TLSError` and its subclasses: the *peer* broke the protocol (a remote error). Each
  is named after the alert that answers it and carries the RFC ``alert`` number.
- :class:`LocalProtocolError`: the library's own caller misused it (calling
  ``client_hello()`` twice, sealing on a closed connection). Nothing the peer sent causes it;
  in a service it is a bug, answered as ``internal_error``.

The services' own failures (an unknown connection, an unreachable peer) are
``lab_common.errors.ServiceError``, the same shape. Messages never contain secret values or
decryption details.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any, ClassVar


class AlertDescription(IntEnum):
    """Alert descriptions, RFC 5246 §7.2 and RFC 8446 §6 (for unknown_psk_identity etc.)."""

    close_notify = 0
    unexpected_message = 10
    bad_record_mac = 20
    record_overflow = 22
    handshake_failure = 40
    bad_certificate = 42
    unsupported_certificate = 43
    certificate_revoked = 44
    certificate_expired = 45
    certificate_unknown = 46
    illegal_parameter = 47
    unknown_ca = 48
    access_denied = 49
    decode_error = 50
    decrypt_error = 51
    protocol_version = 70
    insufficient_security = 71
    internal_error = 80
    user_canceled = 90
    no_renegotiation = 100
    unsupported_extension = 110


class LabError(Exception):
    """The shape every error of the lab has: ``code``, ``message``, ``status``, ``details``.

    Subclasses fix ``code`` and ``status`` as class attributes, or set them per instance
    (``ServiceError`` does). ``details`` are extra fields of the JSON error body.
    """

    code: str = "internal_error"
    status: int = 500

    def __init__(self, message: str | None = None, **details: Any) -> None:
        super().__init__(message or self.default_message())
        self.details: dict[str, Any] = details

    @classmethod
    def default_message(cls) -> str:
        return cls.code.replace("_", " ")

    @property
    def message(self) -> str:
        return str(self.args[0])

    @message.setter
    def message(self, text: str) -> None:
        self.args = (text, *self.args[1:])

    def to_dict(self) -> dict[str, Any]:
        """The JSON error body: ``{"code", "message"}`` and the details."""
        return {"code": self.code, "message": self.message, **self.details}


class LocalProtocolError(LabError):
    """The library's caller broke its contract: a method called in a state that does not allow
    it (``client_hello()`` twice, sealing on a closed connection, compacting an unfinished
    handshake). A bug of the caller, never of the peer: a service answers it as a 500."""

    code = "internal_error"
    status = 500


class TLSError(LabError):
    """The peer broke the protocol (a remote error); each subclass names the alert that answers it.

    Subclasses fix ``code``, ``alert`` and ``status`` (the HTTP status a service answers with).
    """

    code = "internal_error"
    alert: ClassVar[AlertDescription] = AlertDescription.internal_error
    status = 400


class UnexpectedMessage(TLSError):
    """A message arrived that the state machine does not accept in its state."""

    code = "unexpected_message"
    alert = AlertDescription.unexpected_message
    status = 409


class BadRecordMac(TLSError):
    """A record failed authentication. Deliberately carries no detail (padding, MAC, tag, length)."""

    code = "bad_record_mac"
    alert = AlertDescription.bad_record_mac
    status = 400

    def __init__(self, message: str | None = None) -> None:
        # The message is fixed on purpose: every integrity failure must look the same.
        super().__init__("record authentication failed")


class RecordOverflow(TLSError):
    code = "record_overflow"
    alert = AlertDescription.record_overflow
    status = 413


class HandshakeFailure(TLSError):
    code = "handshake_failure"
    alert = AlertDescription.handshake_failure
    status = 400


class BadCertificate(TLSError):
    code = "bad_certificate"
    alert = AlertDescription.bad_certificate
    status = 400


class CertificateExpired(BadCertificate):
    code = "certificate_expired"
    alert = AlertDescription.certificate_expired


class UnsupportedCertificate(BadCertificate):
    code = "unsupported_certificate"
    alert = AlertDescription.unsupported_certificate


class UnknownCA(BadCertificate):
    code = "unknown_ca"
    alert = AlertDescription.unknown_ca


class IllegalParameter(TLSError):
    code = "illegal_parameter"
    alert = AlertDescription.illegal_parameter
    status = 400


class DecodeError(TLSError):
    """A message could not be parsed: bad JSON, wrong field, bad hex/base64, wrong length."""

    code = "decode_error"
    alert = AlertDescription.decode_error
    status = 400


class DecryptError(TLSError):
    """A handshake cryptographic check failed: Finished verify_data or a signature."""

    code = "decrypt_error"
    alert = AlertDescription.decrypt_error
    status = 400


class ProtocolVersion(TLSError):
    code = "protocol_version"
    alert = AlertDescription.protocol_version
    status = 400


class InsufficientSecurity(TLSError):
    code = "insufficient_security"
    alert = AlertDescription.insufficient_security
    status = 400


class InternalError(TLSError):
    code = "internal_error"
    alert = AlertDescription.internal_error
    status = 500


class UnsupportedExtension(TLSError):
    code = "unsupported_extension"
    alert = AlertDescription.unsupported_extension
    status = 400


class SequenceExhausted(TLSError):
    """The 64-bit sequence number would wrap (RFC 5246 §6.1): the connection must be replaced."""

    code = "sequence_exhausted"
    alert = AlertDescription.internal_error
    status = 409


#: Every protocol error class, each with its own code.
ALL_ERRORS: tuple[type[TLSError], ...] = (
    UnexpectedMessage,
    BadRecordMac,
    RecordOverflow,
    HandshakeFailure,
    BadCertificate,
    CertificateExpired,
    UnsupportedCertificate,
    UnknownCA,
    IllegalParameter,
    DecodeError,
    DecryptError,
    ProtocolVersion,
    InsufficientSecurity,
    InternalError,
    UnsupportedExtension,
    SequenceExhausted,
)


#: Fatal alerts by name, as a peer may send them (close_notify is the one non-error alert the lab
#: takes, see ``_Machine.receive_alert``).
ALERTS: dict[str, type[TLSError]] = {
    error.code: error for error in ALL_ERRORS if error.code in AlertDescription.__members__
}
