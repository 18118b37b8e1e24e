"""server_svc's HTTP API: each view decodes JSON, calls one kdf_lib method, answers JSON."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, current_app, jsonify

from kdf_lib.errors import ALERTS, DecodeError, IllegalParameter, TLSError, UnexpectedMessage
from kdf_lib.handshake import ServerHandshake
from kdf_lib.messages import (
    ClientFinish,
    ClientHello,
    Fields,
    as_int,
    as_str,
    b64_field,
    encode_b64,
)
from kdf_lib.record import MAX_PLAINTEXT, count_records
from kdf_lib.role import Role
from kdf_lib.trace import Trace
from lab_common.contract import (
    ALERT,
    FINISH,
    HEALTH,
    HELLO,
    MAX_RECORD_BYTES,
    MAX_RECORDS_PER_REQUEST,
    MESSAGE,
    MIN_REPLY_FRAGMENT,
    OPENAPI,
    RECORDS,
    RECORDS_MEDIA_TYPE,
    SESSION,
    is_connection_id,
    route,
)
from lab_common.errors import ServiceError
from lab_common.http import binary_body, json_body, refuse_oversized_body
from lab_common.metrics import metrics

from . import config
from .openapi import document
from .store import ServerConnection, ServerState

bp = Blueprint("server", __name__)
# Every request's body is read, whole and within MAX_CONTENT_LENGTH, before any view runs.
bp.before_app_request(refuse_oversized_body)

log = logging.getLogger("lab")


def _state() -> ServerState:
    state: ServerState = current_app.extensions["server_state"]
    return state


def _reveal() -> bool:
    return config.current().reveal_secrets


def connection_id_field(value: object, name: str) -> str:
    if not is_connection_id(value):
        raise ServiceError(
            "malformed_connection_id", "connection_id must be 32 lowercase hex digits", 400
        )
    return value


def _lookup(connection_id: str) -> ServerConnection:
    return _state().connection(connection_id_field(connection_id, "connection_id"))


def _reply_fragment_size(value: object, name: str) -> int:
    return as_int(value, name, minimum=MIN_REPLY_FRAGMENT, maximum=MAX_PLAINTEXT)


def _fragments(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


def _count_handshake(
    handshake: ServerHandshake, outcome: str, seconds: float | None = None
) -> None:
    hello = handshake.server_hello
    suite = hello.cipher_suite if hello is not None else None
    metrics().handshake(
        resumed=handshake.connection.resumed if handshake.connection else False,
        key_exchange=suite.key_exchange.value if suite else "unknown",
        suite=suite.name if suite else "none",
        outcome=outcome,
        seconds=seconds,
    )


def _forget_session(handshake: ServerHandshake) -> None:
    """After a fatal alert the connection's session can no longer be resumed (RFC 5246 §7.2.2)."""
    if handshake.server_hello is not None:
        _state().forget_session(handshake.server_hello.session_id)


@bp.post(HELLO)
def hello() -> Any:
    hello = ClientHello.from_json(json_body())
    state = _state()
    handshake = ServerHandshake(
        current_app.extensions["server_config"],
        lookup_session=state.lookup_session,
        trace=Trace(Role.SERVER),
    )
    try:
        flight = handshake.receive_client_hello(hello)
    except TLSError as exc:
        _count_handshake(handshake, exc.code)
        raise
    connection = state.new_connection(handshake)
    log.info(
        "ServerHello sent",
        extra={
            "event": "server_hello",
            "connection_id": connection.connection_id,
            "cipher_suite": flight.server_hello.cipher_suite.name,
            "resumed": flight.resumed,
        },
    )
    return jsonify({"connection_id": connection.connection_id, **flight.to_json()})


@bp.post(FINISH)
def finish() -> Any:
    body = json_body()
    if "connection_id" not in body:
        raise DecodeError("finish request lacks required field 'connection_id'")
    connection_id = connection_id_field(body.pop("connection_id"), "connection_id")
    request = ClientFinish.from_json(body)
    connection = _lookup(connection_id)
    started = time.perf_counter()
    with connection.lock:
        handshake = connection.handshake
        try:
            reply = handshake.receive_client_finish(
                request.client_key_exchange, request.finished_record
            )
        except TLSError as exc:
            # Matters for a resumed session, and for a connection that had finished already
            # (a repeated Finished); a new full handshake's session was not stored yet.
            _forget_session(handshake)
            _count_handshake(handshake, exc.code)
            raise
        finally:
            log.info(
                "client Finished processed",
                extra={
                    "event": "finish",
                    "connection_id": connection_id,
                    "state": handshake.state.value,
                    "alert": handshake.error.code if handshake.error else None,
                },
            )
        assert handshake.connection is not None and handshake.session is not None
        _count_handshake(handshake, "established", time.perf_counter() - started)
        _state().connections.mark_established(connection_id)
        _state().remember_session(handshake.session)
        summary = handshake.summary(reveal_secrets=_reveal())
        # Thousands of connections may stay open: keep only what they still need.
        handshake.compact(reveal_secrets=_reveal())
    return jsonify(
        {
            "connection_id": connection_id,
            "finished_record": encode_b64(reply) if reply else None,
            "fingerprints": summary["fingerprints"],
            "trace": summary["trace"],
        }
    )


def _alert_name(value: object, name: str) -> str:
    text = as_str(value, name, max_length=64)
    if text != "close_notify" and text not in ALERTS:
        raise IllegalParameter(f"{name} must be close_notify or a fatal alert name, not {text!r}")
    return text


@bp.post(ALERT)
def alert() -> Any:
    """The client's alert (RFC 5246 §7.2): a fatal one ends the handshake or connection and
    its session at once, instead of leaving a half-open connection to expire; close_notify
    closes an established connection and keeps its session resumable."""
    with Fields(json_body(), "alert") as f:
        connection_id = f.required("connection_id", connection_id_field)
        description = f.required("alert", _alert_name)
    connection = _lookup(connection_id)
    with connection.lock:
        handshake = connection.handshake
        was_established = handshake.connection is not None
        was_failed = handshake.error is not None
        handshake.receive_alert(description)
        if description != "close_notify":
            _forget_session(handshake)
        if not was_established and not was_failed:
            _count_handshake(handshake, description)
        conn = handshake.connection
        closed = conn.closed if conn is not None else True
        state = handshake.state.value
    log.info(
        "alert received",
        extra={"event": "alert_received", "connection_id": connection_id, "alert": description},
    )
    return jsonify(
        {"connection_id": connection_id, "alert": description, "state": state, "closed": closed}
    )


@dataclass(frozen=True)
class _Echo:
    reply: bytes
    first_seq: int
    records: int
    received: int
    reply_seq: int


def _echo(connection_id: str, record: bytes, fragment_size: int) -> _Echo:
    """Open the client's records on a connection and seal the echo: the body of both
    /message (JSON) and /records (binary)."""
    if count_records(record, MAX_RECORDS_PER_REQUEST) > MAX_RECORDS_PER_REQUEST:
        raise ServiceError(
            "too_many_records",
            f"one request may carry at most {MAX_RECORDS_PER_REQUEST} records",
            413,
        )
    connection = _lookup(connection_id)
    with connection.lock:
        handshake = connection.handshake
        conn = handshake.connection
        if conn is None:
            # Application data in the middle of a handshake is a fatal unexpected_message
            # (RFC 5246 §7.2.2): the handshake fails and accepts nothing more.
            error = UnexpectedMessage("the handshake on this connection is not finished")
            _forget_session(handshake)
            handshake.abort(error)  # marks the handshake failed, then raises error
            raise error
        first_seq = conn.reader.seq
        try:
            plaintext = conn.open(record)
        except TLSError as exc:
            # A fatal alert ends the connection, and its session must not be resumed.
            _forget_session(handshake)
            metrics().message(exc.code)
            log.info(
                "record refused; connection closed",
                extra={
                    "event": "message_refused",
                    "connection_id": connection_id,
                    "alert": exc.code,
                },
            )
            raise
        last_seq = conn.reader.seq - 1
        header = f"server_svc received {len(plaintext)} bytes in records {first_seq}..{last_seq}: "
        reply_seq = conn.writer.seq
        pieces = _fragments(header.encode() + plaintext, fragment_size)
        reply = b"".join(conn.seal(piece) for piece in pieces)
        # The cipher objects hold OpenSSL state; an idle connection should not (a few KB each).
        conn.release()
        connection.messages += 1
    metrics().message("echoed", received=len(plaintext), sent=sum(map(len, pieces)))
    log.info(
        "message echoed",
        extra={
            "event": "message",
            "connection_id": connection_id,
            "bytes": len(plaintext),
            "seq": first_seq,
        },
    )
    return _Echo(reply, first_seq, last_seq - first_seq + 1, len(plaintext), reply_seq)


@bp.post(MESSAGE)
def message() -> Any:
    with Fields(json_body(), "message request") as f:
        connection_id = f.required("connection_id", connection_id_field)
        record = f.required("record", b64_field(max_length=MAX_RECORD_BYTES))
        fragment_size = f.optional("reply_fragment_size", _reply_fragment_size, MAX_PLAINTEXT)
    echo = _echo(connection_id, record, fragment_size)
    return jsonify(
        {
            "connection_id": connection_id,
            "record": encode_b64(echo.reply),
            "received": {"seq": echo.first_seq, "records": echo.records, "bytes": echo.received},
            "reply_seq": echo.reply_seq,
        }
    )


@bp.post(route(RECORDS))
def records(connection_id: str) -> Any:
    """/message without JSON and base64: the records are the body, both ways.

    A 1 MiB message is 1.4 MB of base64 inside JSON; as raw records it costs the server a
    fraction of that work (docs/performance.md). The sequence numbers travel in headers.
    """
    record = binary_body(RECORDS_MEDIA_TYPE)
    echo = _echo(connection_id_field(connection_id, "connection_id"), record, MAX_PLAINTEXT)
    return Response(
        echo.reply,
        mimetype=RECORDS_MEDIA_TYPE,
        headers={
            "TLS-Received-Seq": str(echo.first_seq),
            "TLS-Received-Records": str(echo.records),
            "TLS-Reply-Seq": str(echo.reply_seq),
        },
    )


@bp.get(route(SESSION))
def session(connection_id: str) -> Any:
    connection = _lookup(connection_id)
    with connection.lock:
        summary = connection.handshake.summary(reveal_secrets=_reveal())
        summary["messages"] = connection.messages
    summary["connection_id"] = connection_id
    summary["secrets_revealed"] = _reveal()
    return jsonify(summary)


@bp.get(OPENAPI)
def openapi_document() -> Any:
    return jsonify(document())


@bp.get(HEALTH)
def healthz() -> Any:
    state = _state()
    leaf = current_app.extensions["server_config"].certificate_chain[0]
    return jsonify(
        {
            "status": "ok",
            "service": "server_svc",
            "connections": len(state.connections),
            "sessions": len(state.sessions),
            "certificate": {
                "subject": leaf.subject.rfc4514_string(),
                "not_after": leaf.not_valid_after_utc.isoformat(),
            },
        }
    )
