"""server_svc's HTTP API: each view reads the request, calls one ServerService method, answers.

The field readers below turn a request's fields into values or a JSON 400; the work, the
store, the locking, the metrics and the logs are the service's (server_svc/service.py).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify

from kdf_lib.errors import ALERTS, DecodeError, IllegalParameter
from kdf_lib.messages import (
    ClientFinish,
    ClientHello,
    Fields,
    as_int,
    as_str,
    b64_field,
    encode_b64,
)
from kdf_lib.record import MAX_PLAINTEXT
from lab_common.contract import (
    ALERT,
    FINISH,
    HEALTH,
    HELLO,
    MAX_RECORD_BYTES,
    MESSAGE,
    MIN_REPLY_FRAGMENT,
    OPENAPI,
    RECORDS,
    RECORDS_MEDIA_TYPE,
    SESSION,
    route,
)
from lab_common.http import binary_body, connection_id_field, json_body, refuse_oversized_body

from .openapi import document
from .service import ServerService

bp = Blueprint("server", __name__)
# Every request's body is read, whole and within MAX_CONTENT_LENGTH, before any view runs.
bp.before_app_request(refuse_oversized_body)


def _service() -> ServerService:
    service: ServerService = current_app.extensions["server_service"]
    return service


def _reply_fragment_size(value: object, name: str) -> int:
    return as_int(value, name, minimum=MIN_REPLY_FRAGMENT, maximum=MAX_PLAINTEXT)


def _alert_name(value: object, name: str) -> str:
    text = as_str(value, name, max_length=64)
    if text != "close_notify" and text not in ALERTS:
        raise IllegalParameter(f"{name} must be close_notify or a fatal alert name, not {text!r}")
    return text


@bp.post(HELLO)
def hello() -> Any:
    answer = _service().hello(ClientHello.from_json(json_body()))
    return jsonify({"connection_id": answer.connection_id, **answer.flight.to_json()})


@bp.post(FINISH)
def finish() -> Any:
    body = json_body()
    if "connection_id" not in body:
        raise DecodeError("finish request lacks required field 'connection_id'")
    connection_id = connection_id_field(body.pop("connection_id"), "connection_id")
    finished = _service().finish(connection_id, ClientFinish.from_json(body))
    answer = {
        "connection_id": connection_id,
        "finished_record": encode_b64(finished.reply) if finished.reply else None,
        "fingerprints": finished.summary["fingerprints"],
        "trace": finished.summary["trace"],
    }
    if finished.new_session_ticket is not None:
        answer["new_session_ticket"] = finished.new_session_ticket.to_json()
    return jsonify(answer)


@bp.post(ALERT)
def alert() -> Any:
    """The client's alert (RFC 5246 §7.2): see ServerService.alert."""
    with Fields(json_body(), "alert") as f:
        connection_id = f.required("connection_id", connection_id_field)
        description = f.required("alert", _alert_name)
    received = _service().alert(connection_id, description)
    return jsonify(
        {
            "connection_id": connection_id,
            "alert": description,
            "state": received.state,
            "closed": received.closed,
        }
    )


@bp.post(MESSAGE)
def message() -> Any:
    with Fields(json_body(), "message request") as f:
        connection_id = f.required("connection_id", connection_id_field)
        record = f.required("record", b64_field(max_length=MAX_RECORD_BYTES))
        fragment_size = f.optional("reply_fragment_size", _reply_fragment_size, MAX_PLAINTEXT)
    echo = _service().message(connection_id, record, fragment_size)
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
    connection_id = connection_id_field(connection_id, "connection_id")
    echo = _service().message(connection_id, record, MAX_PLAINTEXT)
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
    return jsonify(_service().session(connection_id_field(connection_id, "connection_id")))


@bp.get(OPENAPI)
def openapi_document() -> Any:
    return jsonify(document())


@bp.get(HEALTH)
def healthz() -> Any:
    return jsonify(_service().health())
