"""A prototype, in the benchmark only: server_svc plus a binary /message, to measure what it buys.

``POST /records/<connection_id>`` with ``Content-Type: application/tls-records`` carries the
complete TLS records as the raw body and answers the echo's records the same way, with the
sequence numbers in headers: the /message view without JSON and base64. Everything else is
server_svc's own app (same state, locks, logging). Not part of the services: if the numbers
make the case, the view belongs in server_svc/views.py (see docs/performance.md).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, Response, request

from kdf_lib.errors import UnexpectedMessage
from lab_common.errors import ServiceError
from server_svc import create_app as create_server_app
from server_svc.views import _lookup, _state, log

MEDIA_TYPE = "application/tls-records"

bp = Blueprint("binary_records", __name__)


@bp.post("/records/<connection_id>")
def records(connection_id: str) -> Any:
    if request.mimetype != MEDIA_TYPE:
        raise ServiceError("unsupported_media_type", f"send the body as {MEDIA_TYPE}", 415)
    record = request.get_data(cache=False)
    connection = _lookup(connection_id)
    with connection.lock:
        conn = connection.handshake.connection
        if conn is None:
            raise UnexpectedMessage("the handshake on this connection is not finished")
        first_seq = conn.reader.seq
        try:
            plaintext = conn.open(record)
        except Exception:
            _state().forget_session(conn.session_id)
            raise
        last_seq = conn.reader.seq - 1
        header = f"server_svc received {len(plaintext)} bytes in records {first_seq}..{last_seq}: "
        reply_seq = conn.writer.seq
        reply = conn.seal(header.encode() + plaintext)
        connection.messages += 1
    log.info(
        "message echoed",
        extra={
            "event": "message",
            "connection_id": connection_id,
            "bytes": len(plaintext),
            "seq": first_seq,
        },
    )
    return Response(
        reply,
        mimetype=MEDIA_TYPE,
        headers={"TLS-Received-Seq": str(first_seq), "TLS-Reply-Seq": str(reply_seq)},
    )


def create_app() -> Flask:
    app = create_server_app()
    app.register_blueprint(bp)
    return app
