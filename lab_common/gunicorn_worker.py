"""gunicorn's gthread worker, with JSON error answers for requests that are not valid HTTP.

A broken request line, a bad header, an over-long URI or too many header bytes never reach
Flask: gunicorn refuses them itself, and its answer is a small HTML page. The services promise
JSON errors with a stable code for every bad input (docs/security.md), so this worker writes
the same status with a body of the services' error shape instead:
``{"error": {"code": "bad_request", "message": "..."}}``.

gunicorn builds that answer in ``Worker.handle_error`` (which also picks the status, logs and
writes the access log line) and hands the bytes to ``gunicorn.util.write_error``, its only
caller. The worker replaces that one function in its own process when it starts, and keeps
everything else of gunicorn's handling.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import orjson
from gunicorn import util
from gunicorn.workers.gthread import ThreadWorker

from .contract import REPLICA_HEADER, replica_name
from .errors import HTTP_CODES


def json_error_answer(status: int, reason: str, message: str) -> bytes:
    """The whole HTTP answer: status line, headers, and the JSON error body."""
    code = HTTP_CODES.get(status, "http_error")
    body = orjson.dumps({"error": {"code": code, "message": message or reason}})
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        f"{REPLICA_HEADER}: {replica_name()}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body) + 1}\r\n"
        "\r\n"
    )
    return head.encode("latin-1") + body + b"\n"


def _write_json_error(sock: socket.socket, status_int: int, reason: str, mesg: str) -> None:
    util.write_nonblock(sock, json_error_answer(status_int, reason, mesg))


#: How often the worker touches its heartbeat file at most, in seconds (a quarter of gunicorn's
#: ``timeout`` when that is shorter). gunicorn's arbiter stops a worker whose file is older than
#: ``timeout`` (30 s); gthread's loop touches it on every turn, a system call for each event
#: (about two a request).
HEARTBEAT_INTERVAL = 1.0


class JsonErrorWorker(ThreadWorker):
    """The gthread worker the services run (gunicorn_settings.worker_class)."""

    _last_heartbeat = float("-inf")

    def init_process(self) -> Any:
        util.write_error = _write_json_error
        return super().init_process()

    def notify(self) -> None:
        now = time.monotonic()
        interval = min(HEARTBEAT_INTERVAL, self.cfg.timeout / 4) if self.cfg.timeout else 0.0
        if now - self._last_heartbeat >= interval:
            self._last_heartbeat = now
            super().notify()
