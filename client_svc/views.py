"""client_svc's HTTP API: run handshakes against server_svc and send protected messages."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, current_app, jsonify

from kdf_lib.errors import DecodeError, TLSError
from kdf_lib.messages import Fields, as_bool, as_str, as_str_list
from kdf_lib.suites import SUITES
from lab_common.contract import (
    HANDSHAKE,
    HEALTH,
    MAX_PLAINTEXT_CHARS,
    MESSAGE,
    SESSION,
    is_connection_id,
    is_session_id,
    route,
)
from lab_common.errors import ServiceError
from lab_common.http import json_body, refuse_oversized_body
from lab_common.metrics import metrics

from . import config
from .driver import Driver, HandshakeRequest

bp = Blueprint("client", __name__)
# Every request's body is read, whole and within MAX_CONTENT_LENGTH, before any view runs.
bp.before_app_request(refuse_oversized_body)


def _driver() -> Driver:
    driver: Driver = current_app.extensions["driver"]
    return driver


def _key_exchange(value: object, name: str) -> str:
    if value not in ("rsa", "ecdhe"):
        raise DecodeError(f"{name} must be 'rsa' or 'ecdhe'")
    return str(value)


def _session_id(value: object, name: str) -> str:
    if not is_session_id(value):
        raise DecodeError(f"{name} must be a session ID in lowercase hex")
    return value


def _suite_names(value: object, name: str) -> tuple[str, ...]:
    names = as_str_list(value, name, max_items=len(SUITES))
    if len(set(names)) != len(names):
        raise DecodeError(f"{name} lists a suite twice")
    return tuple(names)


def _connection_id(value: object, name: str) -> str:
    if not is_connection_id(value):
        raise ServiceError(
            "malformed_connection_id", f"{name} must be 32 lowercase hex digits", 400
        )
    return value


@bp.post(HANDSHAKE)
def handshake() -> Any:
    with Fields(json_body(optional=True), "handshake request") as f:
        request = HandshakeRequest(
            key_exchange=f.optional("key_exchange", _key_exchange, None),
            cipher_suite=f.optional("cipher_suite", as_str, None),
            cipher_suites=f.optional("cipher_suites", _suite_names, None),
            resume=f.optional("resume", _session_id, None),
            extended_master_secret=f.optional("extended_master_secret", as_bool, True),
            encrypt_then_mac=f.optional("encrypt_then_mac", as_bool, True),
        )
    if request.cipher_suite is not None and request.cipher_suites is not None:
        raise DecodeError("give cipher_suite or cipher_suites, not both")
    driver = _driver()
    started = time.perf_counter()
    try:
        entry = driver.handshake(request)
    except (TLSError, ServiceError) as exc:
        metrics().handshake(
            resumed=request.resume is not None,
            key_exchange=request.key_exchange or "unknown",
            suite=request.cipher_suite or "default",
            outcome=exc.code,
        )
        raise
    answer = driver.describe(entry)
    metrics().handshake(
        resumed=answer["resumed"],
        key_exchange=answer["key_exchange"],
        suite=answer["cipher_suite"],
        outcome="established",
        seconds=time.perf_counter() - started,
    )
    return jsonify(answer)


@bp.post(MESSAGE)
def message() -> Any:
    with Fields(json_body(), "message request") as f:
        plaintext = f.required(
            "plaintext", lambda v, n: as_str(v, n, max_length=MAX_PLAINTEXT_CHARS)
        )
        connection_id = f.optional("connection_id", _connection_id, None)
        auto_reconnect = f.optional("auto_reconnect", as_bool, config.current().auto_reconnect)
    data = plaintext.encode("utf-8")
    try:
        answer = _driver().send(connection_id, data, auto_reconnect=auto_reconnect)
    except (TLSError, ServiceError) as exc:
        metrics().message(exc.code)
        raise
    metrics().message("delivered", sent=len(data), received=len(answer["reply"]["plaintext"]))
    return jsonify(answer)


@bp.get(route(SESSION))
def session(connection_id: str) -> Any:
    driver = _driver()
    entry = driver.state.connection(_connection_id(connection_id, "connection_id"))
    with entry.lock:
        summary = entry.handshake.summary(reveal_secrets=driver.reveal_secrets)
        summary["messages"] = entry.messages
        summary["failure"] = entry.failure
    summary["connection_id"] = entry.connection_id
    summary["server_fingerprints"] = entry.server_view.get("fingerprints")
    summary["exchanges"] = entry.recorded_exchanges()
    summary["secrets_revealed"] = driver.reveal_secrets
    return jsonify(summary)


@bp.get(HEALTH)
def healthz() -> Any:
    driver = _driver()
    settings = config.current()
    return jsonify(
        {
            "status": "ok",
            "service": "client_svc",
            "server_url": settings.server_url,
            "server_name": driver.server_name,
            "connections": len(driver.state.connections),
            "sessions": len(driver.state.sessions),
            "keylog": bool(settings.sslkeylogfile),
            "upstream_timeouts": {
                "connect": settings.upstream_connect_timeout,
                "read": settings.upstream_read_timeout,
            },
            "upstream_limits": {
                "max_response_bytes": settings.upstream_max_response_bytes,
                "server_max_body_bytes": settings.server_max_body_bytes,
            },
            "auto_reconnect": config.current().auto_reconnect,
        }
    )
