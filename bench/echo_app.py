"""The /message anchor: a bare Flask app that echoes the same JSON body, with no cryptography.

``POST /message`` takes ``{connection_id, record}`` (record: base64) and answers
``{connection_id, record, received, reply_seq}`` with the record it got, decoded and encoded
again: the HTTP, JSON and base64 work of server_svc's /message without opening or sealing
anything, so the ceiling of that path. The benchmark serves it with gunicorn and
server_svc/gunicorn.conf.py (the same worker, threads and gunicorn settings), and it writes
the same one JSON log line per request as the services (lab_common.logs.RequestLog).
"""

from __future__ import annotations

import base64
import json
from typing import Any

from flask import Flask, jsonify, request

from lab_common import logs
from lab_common.contract import HEALTH, MESSAGE

#: server_svc's default request size limit (MAX_BODY_BYTES).
MAX_CONTENT_LENGTH = 4 * 1024 * 1024


def create_app() -> Flask:
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_CONTENT_LENGTH
    app.json.sort_keys = False  # type: ignore[attr-defined]  # as lab_common.app does

    @app.post(MESSAGE)
    def message() -> Any:
        if request.mimetype != "application/json":
            return jsonify({"error": {"code": "unsupported_media_type"}}), 415
        body = json.loads(request.get_data(cache=False))
        record = base64.b64decode(body["record"], validate=True)
        return jsonify(
            {
                "connection_id": body["connection_id"],
                "record": base64.b64encode(record).decode("ascii"),
                "received": {"seq": 0, "records": 1, "bytes": len(record)},
                "reply_seq": 0,
            }
        )

    @app.get(HEALTH)
    def healthz() -> Any:
        return jsonify({"status": "ok", "service": "bench echo"})

    logs.configure("bench-echo")
    app.wsgi_app = logs.RequestLog(app.wsgi_app)  # type: ignore[method-assign]
    return app
