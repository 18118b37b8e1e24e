"""One exception tree for the lab, named after the TLS alerts of RFC 5246 §7.2.

Every error carries a stable ``code`` (the alert name, used in JSON error bodies),
the RFC ``alert`` number and an ``http_status`` hint that the services map to a
response status. Messages never contain secret values or decryption details.
"""

from __future__ import annotations

from enum import IntEnum
from typing import ClassVar


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


class TLSError(Exception):
    """Base class of every error raised by kdf_lib for protocol reasons.

    Subclasses fix ``code``, ``alert`` and ``http_status``. The message is a
    human sentence that is safe to show and to log.
    """

    code: ClassVar[str] = "internal_error"
    alert: ClassVar[AlertDescription] = AlertDescription.internal_error
    http_status: ClassVar[int] = 400

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.default_message())

    @classmethod
    def default_message(cls) -> str:
        return cls.code.replace("_", " ")

    @property
    def message(self) -> str:
        return str(self.args[0])

    def to_dict(self) -> dict[str, str]:
        """The JSON error body ``{"code", "message"}``."""
        return {"code": self.code, "message": self.message}


class UnexpectedMessage(TLSError):
    """A message arrived that the state machine does not accept in its state."""

    code = "unexpected_message"
    alert = AlertDescription.unexpected_message
    http_status = 409


class BadRecordMac(TLSError):
    """A record failed authentication. Deliberately carries no detail (padding, MAC, tag, length)."""

    code = "bad_record_mac"
    alert = AlertDescription.bad_record_mac
    http_status = 400

    def __init__(self, message: str | None = None) -> None:
        # The message is fixed on purpose: every integrity failure must look the same.
        super().__init__("record authentication failed")


class RecordOverflow(TLSError):
    code = "record_overflow"
    alert = AlertDescription.record_overflow
    http_status = 413


class HandshakeFailure(TLSError):
    code = "handshake_failure"
    alert = AlertDescription.handshake_failure
    http_status = 400


class BadCertificate(TLSError):
    code = "bad_certificate"
    alert = AlertDescription.bad_certificate
    http_status = 400


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
    http_status = 400


class DecodeError(TLSError):
    """A message could not be parsed: bad JSON, wrong field, bad hex/base64, wrong length."""

    code = "decode_error"
    alert = AlertDescription.decode_error
    http_status = 400


class DecryptError(TLSError):
    """A handshake cryptographic check failed: Finished verify_data or a signature."""

    code = "decrypt_error"
    alert = AlertDescription.decrypt_error
    http_status = 400


class ProtocolVersion(TLSError):
    code = "protocol_version"
    alert = AlertDescription.protocol_version
    http_status = 400


class InsufficientSecurity(TLSError):
    code = "insufficient_security"
    alert = AlertDescription.insufficient_security
    http_status = 400


class InternalError(TLSError):
    code = "internal_error"
    alert = AlertDescription.internal_error
    http_status = 500


class UnsupportedExtension(TLSError):
    code = "unsupported_extension"
    alert = AlertDescription.unsupported_extension
    http_status = 400


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
)


class SequenceExhausted(TLSError):
    """The 64-bit sequence number would wrap (RFC 5246 §6.1): the connection must be replaced."""

    code = "sequence_exhausted"
    alert = AlertDescription.internal_error
    http_status = 409


ALL_ERRORS = (*ALL_ERRORS, SequenceExhausted)

#: Fatal alerts by name, as a peer may send them (close_notify is the one non-error alert the lab
#: takes, see ``_Machine.receive_alert``).
ALERTS: dict[str, type[TLSError]] = {
    error.code: error for error in ALL_ERRORS if error.code in AlertDescription.__members__
}
