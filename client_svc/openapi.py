"""client_svc's OpenAPI 3.1 document, served at ``GET /openapi.json``.

It describes the JSON API of client_svc.views (and the page's and demos' routes when those
blueprints are registered). The client API is still growing, so request and answer objects
here are open to fields they do not list; the types of the fields they do list are checked.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app, jsonify
from flask.typing import ResponseReturnValue

from kdf_lib.kex import NamedGroup, SignatureScheme
from kdf_lib.prf import HASHES
from kdf_lib.suites import SUITES
from lab_common import contract
from lab_common.openapi import (
    CONNECTION_ID,
    FINGERPRINT,
    HOST_STATUSES,
    STORE_HEALTH,
    Schema,
    build_document,
    closed_object,
    error_schema,
    json_request,
    metrics_path,
    nullable,
    responses,
)

from .store import RESUMPTION_MODES

#: client_svc wraps server_svc's refusals (502), may add details beside code and message.
CLIENT_ERROR = error_schema(extra_fields=True)
ERROR_STATUSES = (400, 403, 404, 409, 413, 415, 421, 500, 502, 503, 504)

_COUNT: Schema = {"type": "integer", "minimum": 0}
_FINGERPRINTS = closed_object(
    {"master_secret": FINGERPRINT, "key_block": FINGERPRINT},
    ["master_secret", "key_block"],
    closed=False,
)
_BOOL_OR_NULL = nullable({"type": "boolean"})


def _open(properties: dict[str, Schema], required: list[str] | None = None) -> Schema:
    return closed_object(properties, required or [], closed=False)


def _names(enum: Any) -> Schema:
    return {
        "type": "array",
        "items": {"type": "string", "enum": [member.name for member in enum]},
        "minItems": 1,
        "uniqueItems": True,
    }


HANDSHAKE_REQUEST = _open(
    {
        "key_exchange": nullable({"type": "string", "enum": ["rsa", "ecdhe", "dhe"]}),
        "cipher_suite": nullable({"type": "string", "maxLength": 255}),
        "cipher_suites": nullable(
            {"type": "array", "items": {"type": "string"}, "uniqueItems": True}
        ),
        "resume": nullable({"type": "string", "pattern": "^(?:[0-9a-f]{2}){1,32}$"}),
        "extended_master_secret": _BOOL_OR_NULL,
        "encrypt_then_mac": _BOOL_OR_NULL,
        "resumption": nullable({"type": "string", "enum": list(RESUMPTION_MODES)}),
        "supported_groups": nullable(_names(NamedGroup)),
        "signature_algorithms": nullable(_names(SignatureScheme)),
        # Mutual TLS: false answers a CertificateRequest with an empty Certificate.
        "client_certificate": _BOOL_OR_NULL,
    }
)

HANDSHAKE_ANSWER = _open(
    {
        "connection_id": CONNECTION_ID,
        "session_id": {"type": "string"},
        "cipher_suite": {"type": "string", "enum": sorted(SUITES)},
        "key_exchange": {"type": "string", "enum": ["rsa", "ecdhe", "dhe"]},
        "resumed": {"type": "boolean"},
        "extended_master_secret": {"type": "boolean"},
        "encrypt_then_mac": {"type": "boolean"},
        "resumption": {"type": "string", "enum": list(RESUMPTION_MODES)},
        "session_ticket": nullable(
            closed_object(
                {
                    "lifetime_hint": {"type": "integer", "minimum": 0},
                    "length": {"type": "integer", "minimum": 1},
                },
                ["lifetime_hint", "length"],
            )
        ),
        "client_random": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "server_random": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "fingerprints": _FINGERPRINTS,
        "server_fingerprints": nullable(_FINGERPRINTS),
        "fingerprints_match": {"type": "boolean"},
        "client_identity": nullable(
            closed_object(
                {"subject": {"type": "string"}, "sha256": {"type": "string"}},
                ["subject", "sha256"],
            )
        ),
        "key_block_layout": {"type": "array", "items": {"type": "object"}},
        "trace": {"type": "array", "items": {"type": "object"}},
        "secrets_revealed": {"type": "boolean"},
    },
    ["connection_id", "cipher_suite", "resumed", "fingerprints", "trace"],
)

MESSAGE_REQUEST = _open(
    {
        "plaintext": {"type": "string", "maxLength": contract.MAX_PLAINTEXT_CHARS},
        "connection_id": nullable(CONNECTION_ID),
        "auto_reconnect": _BOOL_OR_NULL,
    },
    ["plaintext"],
)

_RECORDS = _open({"seq": _COUNT, "record": {"type": "string"}, "records": _COUNT})
MESSAGE_ANSWER = _open(
    {
        "connection_id": CONNECTION_ID,
        "sent": _RECORDS,
        "reply": _open({**_RECORDS["properties"], "plaintext": {"type": "string"}}),
    },
    ["connection_id", "sent", "reply"],
)

SESSION_VIEW = _open(
    {
        "side": {"const": "client"},
        "state": {"type": "string"},
        "connection_id": CONNECTION_ID,
        "messages": _COUNT,
        "trace": {"type": "array"},
        "exchanges": {"type": "array"},
        "secrets_revealed": {"type": "boolean"},
    },
    ["side", "state", "connection_id", "trace"],
)

HEALTH = _open(
    {
        "status": {"const": "ok"},
        "service": {"const": "client_svc"},
        **STORE_HEALTH,
    },
    ["status", "service", "replica", "state_backend", "state", "connections", "sessions"],
)

PRF_REQUEST = _open(
    {
        "secret": {"type": "string", "pattern": "^(?:[0-9a-fA-F]{2}){0,1024}$"},
        "label": {"type": "string", "maxLength": 255},
        "seed": {"type": "string", "pattern": "^(?:[0-9a-fA-F]{2}){0,1024}$"},
        "length": {"type": "integer", "minimum": 1, "maximum": 1024},
        "hash_name": nullable({"type": "string", "enum": sorted(HASHES)}),
    },
    ["secret", "label", "seed", "length"],
)
PRF_ANSWER = _open({"output": {"type": "string"}, "blocks": {"type": "array"}}, ["output"])

DEMO_ANSWER = _open({"demo": {"type": "string"}, "steps": {"type": "array"}}, ["demo"])


def _errors() -> dict[int, Schema]:
    return dict.fromkeys(ERROR_STATUSES, CLIENT_ERROR)


def _post(summary: str, request: Schema, answer: Schema, *, body_required: bool = True) -> Any:
    return {
        "post": {
            "summary": summary,
            "requestBody": json_request(request, required=body_required),
            "responses": responses(answer, _errors()),
        }
    }


def _get(summary: str, answer: Schema, **extra: Any) -> Any:
    return {"get": {"summary": summary, **extra, "responses": responses(answer, _errors())}}


def _paths(blueprints: set[str]) -> dict[str, Any]:
    paths: dict[str, Any] = {
        contract.HANDSHAKE: _post(
            "Run a TLS 1.2 handshake against server_svc",
            HANDSHAKE_REQUEST,
            HANDSHAKE_ANSWER,
            body_required=False,
        ),
        contract.MESSAGE: _post(
            "Send a message through the protected channel, get the echo",
            MESSAGE_REQUEST,
            MESSAGE_ANSWER,
        ),
        contract.SESSION: _get(
            "The client's view of one connection",
            SESSION_VIEW,
            parameters=[
                {"name": "connection_id", "in": "path", "required": True, "schema": CONNECTION_ID}
            ],
        ),
        contract.SESSION_PCAP: _get(
            "The connection as a pcapng capture for Wireshark",
            {},
            parameters=[
                {"name": "connection_id", "in": "path", "required": True, "schema": CONNECTION_ID}
            ],
        ),
        contract.HEALTH: _get("Liveness and counts", HEALTH),
        contract.OPENAPI: _get("This document", {"type": "object"}),
        contract.METRICS: metrics_path(dict.fromkeys((*HOST_STATUSES, 500), CLIENT_ERROR)),
    }
    # The capture is binary; only its errors are JSON.
    paths[contract.SESSION_PCAP]["get"]["responses"]["200"] = {
        "description": "pcapng (docs/protocol.md, the Wireshark export); the key log line "
        "is in it only with REVEAL_SECRETS=1",
        "headers": {
            contract.KEY_LOG_HEADER: {
                "description": "embedded: a Decryption Secrets Block holds the key log line; "
                "absent: decrypt with client_svc's SSLKEYLOGFILE",
                "schema": {"type": "string", "enum": ["embedded", "absent"]},
            },
            contract.CAPTURE_HEADER: {
                "description": "complete: the capture holds every message the connection "
                "carried; truncated: only the first ones (MAX_CAPTURED_MESSAGES messages, "
                "MAX_CAPTURED_BYTES bytes of records), and its last packet's comment says so",
                "schema": {"type": "string", "enum": ["complete", "truncated"]},
            },
            "Content-Disposition": {"schema": {"type": "string"}},
        },
        "content": {contract.PCAP_MEDIA_TYPE: {"schema": {"type": "string"}}},
    }
    if "web" in blueprints:
        paths[contract.PAGE] = {
            "get": {
                "summary": "The live page",
                # The page is HTML; its errors are JSON like every other answer's.
                "responses": {
                    **responses({}, dict.fromkeys((*HOST_STATUSES, 500), CLIENT_ERROR)),
                    "200": {"description": "HTML", "content": {"text/html": {"schema": {}}}},
                },
            }
        }
        paths[contract.PRF_CALCULATOR] = _post("PRF rounds for the page", PRF_REQUEST, PRF_ANSWER)
    demos = {
        "demos": (
            (contract.DEMO_FORWARD_SECRECY, False),
            (contract.DEMO_TAMPER, True),
            (contract.DEMO_MISMATCH, True),
            (contract.DEMO_MITM, False),
        ),
        "resumption_demo": ((contract.DEMO_RESUMPTION, False),),
        "mtls_demo": ((contract.DEMO_MTLS, False),),
    }
    for blueprint, routes in demos.items():
        if blueprint not in blueprints:
            continue
        for route_path, body_required in routes:
            paths[route_path] = _post(
                f"The {route_path.rsplit('/', 1)[-1]} demo",
                _open({}),
                DEMO_ANSWER,
                body_required=body_required,
            )
    return paths


def document(app: Flask) -> dict[str, Any]:
    return build_document(
        "client_svc",
        "1",
        "The TLS 1.2 client side of the lab: it runs handshakes against server_svc and "
        'sends protected messages. Errors are `{"error": {"code", "message", ...}}`.',
        _paths(set(app.blueprints)),
    )


def openapi_view() -> ResponseReturnValue:
    return jsonify(document(current_app))
