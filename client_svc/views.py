"""client_svc's HTTP API: run handshakes against server_svc and send protected messages.

Each view decodes its request, calls one :class:`~client_svc.service.ClientService` method, answers.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Any

from flask import Blueprint, Response, current_app, jsonify

from kdf_lib.errors import DecodeError
from kdf_lib.messages import (
    Fields,
    as_bool,
    as_groups,
    as_signature_schemes,
    as_str,
    as_str_list,
)
from kdf_lib.suites import SUITES, KeyExchange
from lab_common.contract import (
    CAPTURE_HEADER,
    HANDSHAKE,
    HEALTH,
    KEY_LOG_HEADER,
    MAX_PLAINTEXT_CHARS,
    MESSAGE,
    PCAP_MEDIA_TYPE,
    SESSION,
    SESSION_PCAP,
    is_session_id,
    route,
)
from lab_common.http import connection_id_field, json_body, refuse_oversized_body

from .service import ClientService
from .store import RESUMPTION_MODES, HandshakeRequest

bp = Blueprint("client", __name__)
# Every request's body is read, whole and within MAX_CONTENT_LENGTH, before any view runs.
bp.before_app_request(refuse_oversized_body)


def _service() -> ClientService:
    service: ClientService = current_app.extensions["client_service"]
    return service


def _key_exchange(value: object, name: str) -> KeyExchange:
    for key_exchange in KeyExchange:
        if value == key_exchange.value:
            return key_exchange
    raise DecodeError(f"{name} must be {' or '.join(repr(kx.value) for kx in KeyExchange)}")


def _session_id(value: object, name: str) -> str:
    if not is_session_id(value):
        raise DecodeError(f"{name} must be a session ID in lowercase hex")
    return value


def _suite_names(value: object, name: str) -> tuple[str, ...]:
    names = as_str_list(value, name, max_items=len(SUITES))
    if len(set(names)) != len(names):
        raise DecodeError(f"{name} lists a suite twice")
    return tuple(names)


def _resumption(value: object, name: str) -> str:
    if value not in RESUMPTION_MODES:
        raise DecodeError(f"{name} must be one of {', '.join(RESUMPTION_MODES)}")
    return str(value)


def _names(
    convert: Callable[[object, str], tuple[Enum, ...]],
) -> Callable[[object, str], tuple[str, ...]]:
    """Names of groups or schemes as the spec names them, each checked (kdf_lib.messages)."""
    return lambda value, name: tuple(item.name for item in convert(value, name))


@bp.post(HANDSHAKE)
def handshake() -> Any:
    with Fields(json_body(optional=True), "handshake request") as f:
        request = HandshakeRequest(
            key_exchange=f.optional("key_exchange", _key_exchange, None),
            cipher_suite=f.optional("cipher_suite", as_str, None),
            cipher_suites=f.optional("cipher_suites", _suite_names, None),
            resume=f.optional("resume", _session_id, None),
            extended_master_secret=f.optional("extended_master_secret", as_bool, None),
            encrypt_then_mac=f.optional("encrypt_then_mac", as_bool, True),
            resumption=f.optional("resumption", _resumption, "session_id"),
            supported_groups=f.optional("supported_groups", _names(as_groups), None),
            signature_algorithms=f.optional(
                "signature_algorithms", _names(as_signature_schemes), None
            ),
            client_certificate=f.optional("client_certificate", as_bool, True),
        )
    if request.cipher_suite is not None and request.cipher_suites is not None:
        raise DecodeError("give cipher_suite or cipher_suites, not both")
    return jsonify(_service().connect(request))


@bp.post(MESSAGE)
def message() -> Any:
    with Fields(json_body(), "message request") as f:
        plaintext = f.required(
            "plaintext", lambda v, n: as_str(v, n, max_length=MAX_PLAINTEXT_CHARS)
        )
        connection_id = f.optional("connection_id", connection_id_field, None)
        auto_reconnect = f.optional("auto_reconnect", as_bool, None)
    return jsonify(_service().message(connection_id, plaintext, auto_reconnect))


@bp.get(route(SESSION))
def session(connection_id: str) -> Any:
    return jsonify(_service().session(connection_id_field(connection_id, "connection_id")))


@bp.get(route(SESSION_PCAP))
def session_pcap(connection_id: str) -> Any:
    connection_id = connection_id_field(connection_id, "connection_id")
    capture, embedded, truncated = _service().pcap(connection_id)
    return Response(
        capture,
        mimetype=PCAP_MEDIA_TYPE,
        headers={
            "Content-Disposition": f'attachment; filename="tls-lab-{connection_id}.pcapng"',
            KEY_LOG_HEADER: "embedded" if embedded else "absent",
            CAPTURE_HEADER: "truncated" if truncated else "complete",
            "Cache-Control": "no-store",
        },
    )


@bp.get(HEALTH)
def healthz() -> Any:
    return jsonify(_service().health())
