"""The services' error model: every failure is JSON ``{"error": {"code", "message", ...}}``.

Protocol errors come from kdf_lib (codes named after TLS alerts); service errors (unknown
connection, body too large, peer unreachable) are :class:`ServiceError`. Both are
``kdf_lib.errors.LabError`` (code, message, status, details), so one handler answers them.
Neither a traceback nor an HTML page ever reaches a client.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from kdf_lib.errors import LabError, LocalProtocolError, TLSError

from .metrics import note_error

log = logging.getLogger("lab")

#: Stable codes for HTTP-level failures that werkzeug raises before a view runs, or that
#: gunicorn answers itself for requests that are not valid HTTP (lab_common.gunicorn_worker).
HTTP_CODES = {
    400: "bad_request",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    411: "length_required",
    413: "body_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    417: "expectation_failed",
    421: "misdirected_request",  # a Host the service does not answer for (lab_common.origin)
    431: "headers_too_large",
    500: "internal_error",
    501: "not_implemented",
}

#: Every code a :class:`ServiceError` may carry, besides kdf_lib's alert codes and HTTP_CODES.
#: The metrics count only known codes (lab_common.metrics), and a test checks that each code
#: written in the services is listed here: a new code goes here first.
SERVICE_CODES = frozenset(
    {
        "http_error",  # an HTTP failure without its own entry in HTTP_CODES
        "malformed_connection_id",
        "no_connection",
        "unknown_connection",
        "unknown_session",
        "resume_conflict",  # client_svc: resume with a suite, key exchange or EMS the session lacks
        "handshake_incomplete",  # client_svc: a pcap of a connection whose handshake failed
        "connection_lost",
        "outcome_unknown",
        "upstream_unavailable",
        "upstream_timeout",
        "upstream_bad_response",
        "peer_error",  # server_svc refused without a code of its own
        "demo_disabled",
        "demo_unavailable",
        "demo_failed",
        "invalid_host",  # lab_common.origin
        "cross_site_request",  # lab_common.origin
        "too_many_records",  # server_svc: more records in one request than it opens
        "body_too_fragmented",  # lab_common.http: a chunked body too costly to read
        "state_unavailable",  # lab_common.redis_state: the shared state store cannot be reached
        "state_conflict",  # lab_common.redis_state: a stale replica's write was fenced off
        "connection_busy",  # lab_common.redis_state: a connection's lock was held too long
    }
)


class ServiceError(LabError):
    """A failure of the service around the protocol (not a TLS alert): its code and status
    are given per instance; ``details`` become fields of the error body."""

    def __init__(self, code: str, message: str, status: int, **details: Any) -> None:
        super().__init__(message, **details)
        self.code = code
        self.status = status


def error_response(code: str, message: str, status: int, **details: Any) -> tuple[Response, int]:
    body: dict[str, Any] = {"code": code, "message": message}
    body.update(details)
    return jsonify({"error": body}), status


def register_error_handlers(app: Flask) -> None:
    """One handler per family, so every error body has the same shape."""

    @app.errorhandler(LabError)
    def _lab_error(exc: LabError) -> tuple[Response, int]:
        if isinstance(exc, LocalProtocolError):
            # The service misused kdf_lib: its bug, not the client's.
            return _unexpected(exc)
        note_error(exc.code)
        event = "alert" if isinstance(exc, TLSError) else "error"
        log.info(
            "protocol error" if event == "alert" else "service error",
            extra={"event": event, "code": exc.code, "status": exc.status},
        )
        return error_response(exc.code, exc.message, exc.status, **exc.details)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> tuple[Response, int]:
        status = exc.code or 500
        code = HTTP_CODES.get(status, "http_error")
        note_error(code)
        message = {
            404: "no such endpoint",
            405: "method not allowed on this endpoint",
            413: f"request body larger than {app.config.get('MAX_CONTENT_LENGTH')} bytes",
        }.get(status, exc.description or code)
        return error_response(code, message, status)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> tuple[Response, int]:
        note_error("internal_error")
        # Only the type goes to the log: an exception message might quote input.
        log.error(
            "unexpected failure", extra={"event": "internal_error", "exception": type(exc).__name__}
        )
        return error_response("internal_error", "the service failed unexpectedly", 500)
