"""Building blocks for the services' OpenAPI 3.1 documents (served at ``GET /openapi.json``).

The schemas say what the strict codec (kdf_lib.messages) accepts: exact hex and base64
patterns, closed objects, integer ranges; and every answer, errors included, has one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from kdf_lib.errors import ALL_ERRORS, TLSError

from .contract import CONNECTION_ID_PATTERN
from .settings import STATE_BACKENDS

Schema = dict[str, Any]

OPENAPI_VERSION = "3.1.0"

#: ``connection_id``: 16 bytes as 32 lowercase hex digits.
CONNECTION_ID: Schema = {"type": "string", "pattern": f"^{CONNECTION_ID_PATTERN}$"}
#: A SHA-256 fingerprint as the services write it.
FINGERPRINT: Schema = {"type": "string", "pattern": "^[0-9a-f]{64}$"}

#: What werkzeug and the services raise around the protocol, by status (lab_common.errors).
SERVICE_CODES: dict[int, tuple[str, ...]] = {
    400: ("bad_request", "malformed_connection_id", "invalid_host"),
    403: ("cross_site_request",),
    404: ("not_found", "unknown_connection"),
    405: ("method_not_allowed",),
    413: ("body_too_large", "body_too_fragmented", "too_many_records"),
    415: ("unsupported_media_type",),
    409: ("state_conflict",),
    421: ("misdirected_request",),
    500: ("internal_error",),
    503: ("state_unavailable", "connection_busy"),
}
#: What lab_common.origin answers before any operation runs: a missing, malformed (400) or
#: foreign Host (421); and for a state-changing request from another site's page, 403.
HOST_STATUSES = (400, 421)
CROSS_SITE_STATUSES = (*HOST_STATUSES, 403)

_DESCRIPTIONS = {
    200: "Success",
    400: "The request or a protocol message in it was refused",
    403: "Switched off (a demo that needs REVEAL_SECRETS), or sent by a page of another site",
    404: "No such endpoint, connection or session",
    405: "Method not allowed",
    409: "The message does not fit the connection's state",
    413: "The body, a record or its plaintext is too large",
    415: "The body is not application/json",
    421: "The Host is not one of the service's names (ALLOWED_HOSTS)",
    500: "The service failed unexpectedly",
    502: "The peer service refused or could not be used",
    503: "The shared state store (STATE_BACKEND=redis) is unavailable, or the connection busy; nothing was changed",
    504: "The peer service did not answer in time",
}


def hex_string(*, min_bytes: int = 0, max_bytes: int, lowercase: bool = False) -> Schema:
    """Hex of ``min_bytes``..``max_bytes`` bytes (either case unless ``lowercase``)."""
    digit = "[0-9a-f]" if lowercase else "[0-9a-fA-F]"
    if min_bytes == max_bytes:
        return {"type": "string", "pattern": f"^{digit}{{{2 * max_bytes}}}$"}
    return {"type": "string", "pattern": f"^(?:{digit}{{2}}){{{min_bytes},{max_bytes}}}$"}


def base64_string(max_bytes: int | None = None) -> Schema:
    """Standard-alphabet base64 with ``=`` padding (RFC 4648 §4), as kdf_lib.messages.decode_b64.

    A pattern cannot say "canonical" (zero trailing bits): such text matches here and is
    still refused with decode_error.
    """
    schema: Schema = {
        "type": "string",
        "pattern": "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$",
        "contentEncoding": "base64",
    }
    if max_bytes is not None:
        schema["maxLength"] = (max_bytes + 2) // 3 * 4
    return schema


def nullable(schema: Schema) -> Schema:
    """``schema`` or ``null`` (the codec reads ``null`` in an optional field as absent)."""
    return {"anyOf": [schema, {"type": "null"}]}


def closed_object(
    properties: Mapping[str, Schema], required: Iterable[str] = (), *, closed: bool = True
) -> Schema:
    """An object with these properties; ``closed`` refuses any other (as Fields does)."""
    schema: Schema = {"type": "object", "properties": dict(properties)}
    required = list(required)
    if required:
        schema["required"] = required
    if closed:
        schema["additionalProperties"] = False
    return schema


def error_codes_by_status(*, never_raised: tuple[type[TLSError], ...] = ()) -> dict[int, list[str]]:
    """Every error code, protocol (kdf_lib.errors) and service, grouped by HTTP status;
    without the protocol errors (and their subclasses) a service cannot answer."""
    by_status: dict[int, set[str]] = {}
    for error in ALL_ERRORS:
        if issubclass(error, never_raised):
            continue
        by_status.setdefault(error.status, set()).add(error.code)
    for status, codes in SERVICE_CODES.items():
        by_status.setdefault(status, set()).update(codes)
    return {status: sorted(codes) for status, codes in sorted(by_status.items())}


def error_schema(codes: Iterable[str] | None = None, *, extra_fields: bool = False) -> Schema:
    """``{"error": {"code", "message"}}``; ``codes`` limits the code, ``extra_fields`` allows
    details beside it (client_svc adds ``peer`` and ``peer_status``)."""
    code: Schema = {"type": "string"}
    if codes is not None:
        code["enum"] = sorted(set(codes))
    inner = closed_object(
        {"code": code, "message": {"type": "string"}}, ["code", "message"], closed=not extra_fields
    )
    return closed_object({"error": inner}, ["error"])


def json_response(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def responses(
    ok: Schema, errors: Mapping[int, Schema], *, ok_description: str = "Success"
) -> dict[str, Schema]:
    """The responses object: 200 with ``ok`` and each error status with its schema."""
    out = {"200": json_response(ok, ok_description)}
    for status, schema in sorted(errors.items()):
        out[str(status)] = json_response(schema, _DESCRIPTIONS.get(status, "Error"))
    return out


def json_request(schema: Schema, *, required: bool = True) -> Schema:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def build_document(title: str, version: str, description: str, paths: dict[str, Any]) -> Schema:
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": title, "version": version, "description": description},
        "paths": paths,
    }


def metrics_path(errors: Mapping[int, Schema]) -> dict[str, Any]:
    """``GET /metrics``: Prometheus text exposition format; its error answers by status."""
    answers = {
        "200": {
            "description": "Prometheus text format 0.0.4",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    }
    for status, schema in sorted(errors.items()):
        answers[str(status)] = json_response(schema, _DESCRIPTIONS.get(status, "Error"))
    return {
        "get": {
            "summary": "Prometheus metrics: handshakes, messages, failures by code, latencies",
            "responses": answers,
        }
    }


#: What both services' /healthz say of their replica and its state store (lab_common.store.held).
STORE_HEALTH: dict[str, Schema] = {
    "replica": {"type": "string", "description": "the replica's host name (Lab-Replica)"},
    "state_backend": {"type": "string", "enum": list(STATE_BACKENDS)},
    "state": {
        "type": "string",
        "enum": ["ok", "unavailable"],
        "description": "whether the state store answers; the counts are null when it does not",
    },
    "connections": nullable({"type": "integer", "minimum": 0}),
    "sessions": nullable({"type": "integer", "minimum": 0}),
}
