"""server_svc's OpenAPI 3.1 document, served at ``GET /openapi.json``.

Request schemas follow the strict codec of kdf_lib.messages (docs/protocol.md §1.5):
closed objects, exact hex and base64, size caps. Every answer is documented, errors included.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from kdf_lib.errors import ALERTS
from kdf_lib.kex import NamedGroup, SignatureScheme
from kdf_lib.messages import (
    MAX_DH_VALUE,
    MAX_FINISHED_RECORD,
    MAX_SESSION_ID,
    RANDOM_LENGTH,
    ClientCertificateType,
)
from kdf_lib.record import MAX_PLAINTEXT
from kdf_lib.suites import SUITES
from kdf_lib.tickets import MAX_TICKET_LENGTH
from kdf_lib.trace import StepKind
from lab_common import contract
from lab_common.contract import MAX_RECORD_BYTES, MAX_RECORDS_PER_REQUEST, MIN_REPLY_FRAGMENT
from lab_common.openapi import (
    CONNECTION_ID,
    CROSS_SITE_STATUSES,
    FINGERPRINT,
    HOST_STATUSES,
    STORE_HEALTH,
    Schema,
    base64_string,
    build_document,
    closed_object,
    error_codes_by_status,
    error_schema,
    hex_string,
    json_request,
    json_response,
    metrics_path,
    nullable,
    responses,
)

SUITE_NAME: Schema = {"type": "string", "enum": sorted(SUITES)}
GROUP_NAME: Schema = {"type": "string", "enum": [g.name for g in NamedGroup]}
SCHEME_NAME: Schema = {"type": "string", "enum": [s.name for s in SignatureScheme]}
HOSTNAME: Schema = {
    "type": "string",
    "minLength": 1,
    "maxLength": 253,
    "pattern": (
        "^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
        "(?:\\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
    ),
}


def _names(item: Schema, *, min_items: int) -> Schema:
    return {
        "type": "array",
        "items": item,
        "minItems": min_items,
        "maxItems": 64,
        "uniqueItems": True,
    }


CLIENT_HELLO = closed_object(
    {
        "client_random": hex_string(min_bytes=RANDOM_LENGTH, max_bytes=RANDOM_LENGTH),
        "cipher_suites": _names(SUITE_NAME, min_items=1),
        "session_id": nullable(hex_string(max_bytes=MAX_SESSION_ID)),
        "extensions": nullable(
            closed_object(
                {
                    "extended_master_secret": nullable({"type": "boolean"}),
                    "encrypt_then_mac": nullable({"type": "boolean"}),
                    "server_name": nullable(HOSTNAME),
                    "supported_groups": nullable(_names(GROUP_NAME, min_items=0)),
                    "signature_algorithms": nullable(_names(SCHEME_NAME, min_items=1)),
                    # RFC 5077: "" offers tickets, a ticket resumes from it.
                    "session_ticket": nullable(base64_string(MAX_TICKET_LENGTH)),
                }
            )
        ),
    },
    ["client_random", "cipher_suites"],
)

#: RFC 5077 §3.3: the server's sealed session state for the client to keep.
NEW_SESSION_TICKET = closed_object(
    {
        "lifetime_hint": {"type": "integer", "minimum": 0, "maximum": 2**32 - 1},
        "ticket": base64_string(MAX_TICKET_LENGTH),
    },
    ["lifetime_hint", "ticket"],
)

CLIENT_FINISH = closed_object(
    {
        "connection_id": CONNECTION_ID,
        "client_key_exchange": {
            "oneOf": [
                {"type": "null"},
                closed_object(
                    {"encrypted_pre_master_secret": base64_string(1024)},
                    ["encrypted_pre_master_secret"],
                ),
                closed_object(
                    {"public_key": hex_string(min_bytes=1, max_bytes=255)}, ["public_key"]
                ),
                # DHE suites: ClientDiffieHellmanPublic (docs/protocol.md §1.3).
                closed_object(
                    {"dh_Yc": hex_string(min_bytes=1, max_bytes=MAX_DH_VALUE)}, ["dh_Yc"]
                ),
            ]
        },
        "finished_record": base64_string(MAX_FINISHED_RECORD),
        # Mutual TLS (docs/protocol.md §3.10): the client's Certificate, present (possibly
        # empty) exactly when the hello answer carried certificate_request, and its
        # CertificateVerify after a non-empty one.
        "certificate_chain": {"type": "array", "items": {"type": "string"}, "maxItems": 8},
        "certificate_verify": closed_object(
            {"signature_algorithm": SCHEME_NAME, "signature": base64_string(1024)},
            ["signature_algorithm", "signature"],
        ),
    },
    ["connection_id", "finished_record"],
)

MESSAGE = closed_object(
    {
        "connection_id": CONNECTION_ID,
        "record": base64_string(MAX_RECORD_BYTES),
        "reply_fragment_size": nullable(
            {"type": "integer", "minimum": MIN_REPLY_FRAGMENT, "maximum": MAX_PLAINTEXT}
        ),
    },
    ["connection_id", "record"],
)

#: A client's alert: close_notify, or a fatal alert by its RFC 5246 §7.2 name.
ALERT = closed_object(
    {
        "connection_id": CONNECTION_ID,
        "alert": {"type": "string", "enum": ["close_notify", *sorted(ALERTS)]},
    },
    ["connection_id", "alert"],
)

ALERT_ANSWER = closed_object(
    {
        "connection_id": CONNECTION_ID,
        "alert": {"type": "string"},
        # failed: a fatal alert, or close_notify before Finished; established: close_notify
        # on an established connection (docs/protocol.md §1.4c).
        "state": {"type": "string", "enum": ["failed", "established"]},
        "closed": {"const": True},
    },
    ["connection_id", "alert", "state", "closed"],
)

_LOWER_HEX_32 = hex_string(min_bytes=32, max_bytes=32, lowercase=True)

#: RFC 5246 §7.4.4, when server_svc runs with CLIENT_AUTH optional or required.
CERTIFICATE_REQUEST = closed_object(
    {
        "certificate_types": {
            "type": "array",
            "items": {"type": "string", "enum": [t.name for t in ClientCertificateType]},
            "minItems": 1,
        },
        "signature_algorithms": {"type": "array", "items": SCHEME_NAME, "minItems": 1},
        "certificate_authorities": {"type": "array", "items": base64_string(1024)},
    },
    ["certificate_types", "signature_algorithms", "certificate_authorities"],
)

SERVER_HELLO = closed_object(
    {
        "connection_id": CONNECTION_ID,
        "session_id": hex_string(max_bytes=MAX_SESSION_ID, lowercase=True),
        "server_random": _LOWER_HEX_32,
        "cipher_suite": SUITE_NAME,
        "resumed": {"type": "boolean"},
        "extensions": closed_object(
            {
                "extended_master_secret": {"type": "boolean"},
                "encrypt_then_mac": {"type": "boolean"},
                "ec_point_formats": nullable(
                    {"type": "array", "items": {"const": "uncompressed"}, "minItems": 1}
                ),
                # Present (true) when a NewSessionTicket follows in this handshake.
                "session_ticket": {"const": True},
            },
            ["extended_master_secret", "encrypt_then_mac", "ec_point_formats"],
        ),
        "certificate_chain": {"type": "array", "items": {"type": "string"}, "maxItems": 8},
        "server_key_exchange": {
            "oneOf": [
                closed_object(
                    {
                        "curve_type": {"const": "named_curve"},
                        "named_curve": GROUP_NAME,
                        "public_key": hex_string(min_bytes=1, max_bytes=255, lowercase=True),
                        "signature_algorithm": SCHEME_NAME,
                        "signature": base64_string(1024),
                    },
                    ["curve_type", "named_curve", "public_key", "signature_algorithm", "signature"],
                ),
                # DHE suites: ServerDHParams of an RFC 7919 group (docs/protocol.md §1.3).
                closed_object(
                    {
                        "dh_p": hex_string(min_bytes=1, max_bytes=MAX_DH_VALUE, lowercase=True),
                        "dh_g": hex_string(min_bytes=1, max_bytes=MAX_DH_VALUE, lowercase=True),
                        "dh_Ys": hex_string(min_bytes=1, max_bytes=MAX_DH_VALUE, lowercase=True),
                        "signature_algorithm": SCHEME_NAME,
                        "signature": base64_string(1024),
                    },
                    ["dh_p", "dh_g", "dh_Ys", "signature_algorithm", "signature"],
                ),
            ]
        },
        "new_session_ticket": NEW_SESSION_TICKET,
        "certificate_request": CERTIFICATE_REQUEST,
        "finished_record": base64_string(MAX_FINISHED_RECORD),
    },
    [
        "connection_id",
        "session_id",
        "server_random",
        "cipher_suite",
        "resumed",
        "extensions",
        "certificate_chain",
    ],
)

FINGERPRINTS = closed_object(
    {"master_secret": FINGERPRINT, "key_block": FINGERPRINT}, ["master_secret", "key_block"]
)

TRACE_STEP = closed_object(
    {
        "actor": {"type": "string", "enum": ["client", "server"]},
        "flight": {"type": "integer", "minimum": 0},
        "kind": {"type": "string", "enum": [kind.value for kind in StepKind]},
        "action": {"type": "string"},
        "purpose": {"type": "string"},
        "data": {"type": "object"},
        "elapsed_ms": {"type": "number"},
        "replica": {"type": "string"},
        "secrets": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    ["actor", "flight", "kind", "action", "purpose", "data", "elapsed_ms"],
)
TRACE: Schema = {"type": "array", "items": TRACE_STEP}

FINISH_ANSWER = closed_object(
    {
        "connection_id": CONNECTION_ID,
        "finished_record": nullable(base64_string(MAX_FINISHED_RECORD)),
        "fingerprints": FINGERPRINTS,
        "trace": TRACE,
        # A full handshake's NewSessionTicket, when the ServerHello carried session_ticket.
        "new_session_ticket": NEW_SESSION_TICKET,
    },
    ["connection_id", "finished_record", "fingerprints", "trace"],
)

_COUNT: Schema = {"type": "integer", "minimum": 0}

MESSAGE_ANSWER = closed_object(
    {
        "connection_id": CONNECTION_ID,
        "record": base64_string(),
        "received": closed_object(
            {"seq": _COUNT, "records": _COUNT, "bytes": _COUNT}, ["seq", "records", "bytes"]
        ),
        "reply_seq": _COUNT,
    },
    ["connection_id", "record", "received", "reply_seq"],
)

_NULLABLE_STRING = nullable({"type": "string"})
_NULLABLE_BOOL = nullable({"type": "boolean"})

#: kdf_lib's ServerHandshake.summary() plus what the view adds; open to new fields.
SESSION_VIEW = closed_object(
    {
        "side": {"const": "server"},
        "state": {"type": "string"},
        "error": _NULLABLE_STRING,
        "cipher_suite": nullable(SUITE_NAME),
        "key_exchange": nullable({"type": "string", "enum": ["rsa", "ecdhe", "dhe"]}),
        "client_random": _NULLABLE_STRING,
        "server_random": _NULLABLE_STRING,
        "session_id": _NULLABLE_STRING,
        "extended_master_secret": _NULLABLE_BOOL,
        "encrypt_then_mac": _NULLABLE_BOOL,
        "resumed": _NULLABLE_BOOL,
        "closed": _NULLABLE_BOOL,
        "sequence_numbers": nullable(
            closed_object({"write": _COUNT, "read": _COUNT}, ["write", "read"])
        ),
        "fingerprints": nullable(FINGERPRINTS),
        "key_block_layout": nullable({"type": "array", "items": {"type": "object"}}),
        "transcript_sha256": FINGERPRINT,
        "trace": TRACE,
        "secrets": {"type": "object", "additionalProperties": {"type": "string"}},
        "messages": _COUNT,
        "connection_id": CONNECTION_ID,
        "secrets_revealed": {"type": "boolean"},
    },
    ["side", "state", "error", "trace", "messages", "connection_id", "secrets_revealed"],
    closed=False,
)

HEALTH = closed_object(
    {
        "status": {"const": "ok"},
        "service": {"const": "server_svc"},
        **STORE_HEALTH,
        "certificate": closed_object(
            {"subject": {"type": "string"}, "not_after": {"type": "string"}},
            ["subject", "not_after"],
        ),
        "ecdsa_certificate": nullable(
            closed_object(
                {"subject": {"type": "string"}, "not_after": {"type": "string"}},
                ["subject", "not_after"],
            )
        ),
    },
    [
        "status",
        "service",
        "replica",
        "state_backend",
        "state",
        "connections",
        "sessions",
        "certificate",
        "ecdsa_certificate",
    ],
)


def _errors(*statuses: int, method: str = "get") -> dict[int, Schema]:
    """Each status's codes; with the refusals of lab_common.origin that come before any view."""
    # With CLIENT_AUTH, server_svc verifies the client's certificate: it may refuse one.
    codes = error_codes_by_status()
    refusals = HOST_STATUSES if method == "get" else CROSS_SITE_STATUSES
    return {status: error_schema(codes[status]) for status in sorted({*statuses, *refusals})}


def _post(summary: str, request: Schema, answer: Schema, *statuses: int) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "requestBody": json_request(request),
            "responses": responses(answer, _errors(*statuses, method="post")),
        }
    }


@cache
def _paths() -> dict[str, Any]:
    return {
        contract.HELLO: _post(
            "ClientHello in, ServerHello..ServerHelloDone (or a resumed ServerHello + Finished) out",
            CLIENT_HELLO,
            SERVER_HELLO,
            400,
            413,
            415,
            500,
            503,
        ),
        contract.FINISH: _post(
            "ClientKeyExchange and the client Finished record in, the server Finished record out",
            CLIENT_FINISH,
            FINISH_ANSWER,
            400,
            404,
            409,
            413,
            415,
            500,
            503,
        ),
        contract.MESSAGE: _post(
            "Protected application-data records in (at most MAX_RECORDS_PER_REQUEST = "
            f"{MAX_RECORDS_PER_REQUEST} in one request), a protected echo out",
            MESSAGE,
            MESSAGE_ANSWER,
            400,
            404,
            409,
            413,
            415,
            500,
            503,
        ),
        contract.ALERT: _post(
            "The client's alert: a fatal one ends the handshake or connection and its session, "
            "close_notify closes an established connection; on a connection that has ended, "
            "409 unexpected_message",
            ALERT,
            ALERT_ANSWER,
            400,
            404,
            409,
            413,
            415,
            500,
            503,
        ),
        contract.RECORDS: {
            "post": {
                "summary": "/message in binary: complete TLS records as the body, both ways "
                f"(at most {MAX_RECORDS_PER_REQUEST} records in one request)",
                "parameters": [
                    {
                        "name": "connection_id",
                        "in": "path",
                        "required": True,
                        "schema": CONNECTION_ID,
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        contract.RECORDS_MEDIA_TYPE: {
                            "schema": {"type": "string", "format": "binary"}
                        }
                    },
                },
                "responses": {
                    "200": {
                        "description": "The echo's records; TLS-Received-Seq, "
                        "TLS-Received-Records and TLS-Reply-Seq headers carry the sequence numbers",
                        "content": {
                            contract.RECORDS_MEDIA_TYPE: {
                                "schema": {"type": "string", "format": "binary"}
                            }
                        },
                    },
                    **{
                        str(status): json_response(schema, "Error")
                        for status, schema in _errors(
                            400, 404, 409, 413, 415, 500, 503, method="post"
                        ).items()
                    },
                },
            }
        },
        contract.SESSION: {
            "get": {
                "summary": "The server's view of one connection (no secrets unless REVEAL_SECRETS)",
                "parameters": [
                    {
                        "name": "connection_id",
                        "in": "path",
                        "required": True,
                        "schema": CONNECTION_ID,
                    }
                ],
                "responses": responses(SESSION_VIEW, _errors(400, 404, 500, 503)),
            }
        },
        contract.HEALTH: {
            "get": {"summary": "Liveness and counts", "responses": responses(HEALTH, _errors(500))}
        },
        contract.METRICS: metrics_path(_errors(500)),
        contract.OPENAPI: {
            "get": {
                "summary": "This document",
                "responses": responses({"type": "object"}, _errors(500)),
            }
        },
        "/demo/private-key": {
            "get": {
                "summary": "The server's private key, only with REVEAL_SECRETS (forward-secrecy demo)",
                "responses": responses(
                    closed_object(
                        {
                            "private_key_pem": {"type": "string"},
                            "certificate_sha256": FINGERPRINT,
                            "warning": {"type": "string"},
                        },
                        ["private_key_pem", "certificate_sha256", "warning"],
                    ),
                    {403: error_schema(["demo_disabled"]), **_errors(500)},
                ),
            }
        },
    }


def document() -> dict[str, Any]:
    return build_document(
        "server_svc",
        "1",
        "The TLS 1.2 server side of the lab (docs/protocol.md). Errors are "
        '`{"error": {"code", "message"}}` named after TLS alerts.',
        _paths(),
    )
