"""Structured JSON log lines on stdout, with connection ids and never secrets.

One line per HTTP request (``RequestLog``, around each service's WSGI app): what the request
did (its event, when the service logged one: ``"event": "handshake"``, ``"connection_id"``,
...) and how it went (``"http"``: method, path, status, answer bytes). gunicorn's own
access log is off (lab_common/gunicorn_settings.py): these lines replace it. Work outside a
request (sweeps, start-up) and warnings and errors are written as they happen.
"""

from __future__ import annotations

import json
import logging
import socket
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import orjson

from .contract import HEALTH, HEALTHCHECK_USER_AGENT

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service
        self.replica = socket.gethostname()

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self.service,
            "replica": self.replica,
            "msg": record.getMessage(),
        }
        if record.name != "lab":  # gunicorn's own lines, a library's warning
            line["logger"] = record.name
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        # orjson: a few microseconds a line instead of tens; a line comes with most requests.
        try:
            return orjson.dumps(line, default=str).decode()
        except TypeError:  # what orjson refuses (an integer beyond 64 bits) the stdlib writes
            return json.dumps(line, default=str, separators=(",", ":"))


class _StdoutHandler(logging.StreamHandler[Any]):
    """Writes to whatever sys.stdout is at the time of each record (gunicorn, tests)."""

    @property
    def stream(self) -> Any:
        return sys.stdout

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


#: ``extra`` key of an event that must be written the moment it is logged, not at the end of its
#: request: the records a replica sealed and opened (``event: message``), which the fleet's
#: history checker reads (tests/helpers/history.py) and which must be on record even when the
#: replica dies before it answers. Such a line carries the ``http`` fields known by then (not
#: ``status`` or ``bytes``), and stands for its request unless the request then fails (status
#: 400 or more), which writes a request line too. Keys beginning with "_" are not written.
AT_ONCE = "_at_once"


class _Request:
    """The request being served on this thread: its first event, held back to be written in
    the request's one line, or written at once (``AT_ONCE``)."""

    __slots__ = ("environ", "event", "written")

    def __init__(self, environ: WSGIEnvironment) -> None:
        self.environ = environ
        self.event: logging.LogRecord | None = None
        self.written = False


_CURRENT: ContextVar[_Request | None] = ContextVar("lab_request", default=None)


class _HoldEventForRequestLine(logging.Filter):
    """On the 'lab' logger: the first INFO record with an ``event`` during a request waits for
    the request's line; anything else (a second event, a warning, an error, work outside a
    request) is written at once."""

    def filter(self, record: logging.LogRecord) -> bool:
        request = _CURRENT.get()
        if (
            request is None
            or request.event is not None
            or request.written
            or record.levelno != logging.INFO
            or "event" not in record.__dict__
        ):
            return True
        if record.__dict__.get(AT_ONCE):
            record.http = _http_fields(request.environ)
            request.written = True
            return True
        request.event = record
        return False


def _http_fields(
    environ: WSGIEnvironment, status: int | None = None, headers: Sequence[tuple[str, str]] = ()
) -> dict[str, Any]:
    """The line's ``http`` object; ``status`` and ``bytes`` once the app has answered."""
    http: dict[str, Any] = {
        "method": environ.get("REQUEST_METHOD", ""),
        "path": environ.get("PATH_INFO", ""),
    }
    if environ.get("QUERY_STRING"):
        http["query"] = environ["QUERY_STRING"]
    if status is not None:
        http["status"] = status
        for name, value in headers:
            if name.lower() == "content-length":
                http["bytes"] = int(value) if value.isdigit() else value
                break
    http["remote"] = environ.get("REMOTE_ADDR", "")
    http["user_agent"] = environ.get("HTTP_USER_AGENT", "")
    return http


def is_health_probe(environ: WSGIEnvironment) -> bool:
    """The health probes that come every few seconds and are left out of the log: the
    container's own (from 127.0.0.1) and HAProxy's (its User-Agent). Only ``GET /healthz`` is
    ever left out, so a client that borrows the User-Agent hides nothing else."""
    return environ.get("PATH_INFO") == HEALTH and (
        environ.get("REMOTE_ADDR") == "127.0.0.1"
        or environ.get("HTTP_USER_AGENT") == HEALTHCHECK_USER_AGENT
    )


class RequestLog:
    """WSGI middleware: one JSON line for each request, written when the app has answered.

    The line is the request's event when the service logged one (its message and fields), or
    ``"event": "request"``, with ``"http"``: ``method``, ``path``, ``query`` (when there is
    one), ``status``, ``bytes`` (the answer's Content-Length, when it has one), ``remote`` and
    ``user_agent``. No duration: a record refused for its padding and one refused for its MAC
    must log the same line (docs/security.md), and the time a refusal took is what tells them
    apart; ``tls_lab_http_request_duration_seconds`` has the durations, by endpoint. Health
    probes are left out (``is_health_probe``)."""

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app
        self.logger = logging.getLogger("lab")

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = _Request(environ)
        token = _CURRENT.set(request)
        answer: list[Any] = ["500 INTERNAL SERVER ERROR", []]

        def capture(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], object]:
            answer[0], answer[1] = status, headers
            return start_response(status, headers, exc_info)

        try:
            return self.app(environ, capture)
        finally:
            _CURRENT.reset(token)
            if not is_health_probe(environ):
                self._write(request, answer[0], answer[1])

    def _write(self, request: _Request, status: str, headers: list[tuple[str, str]]) -> None:
        code = int(status[:3]) if status[:3].isdigit() else 0
        if request.written and code < 400:
            return  # the event written at once stands for the request
        http = _http_fields(request.environ, code, headers)
        event = request.event
        if event is None:
            if self.logger.isEnabledFor(logging.INFO):
                message = f"{http['method']} {http['path']} {http['status']}"
                self.logger.info(message, extra={"event": "request", "http": http})
        else:
            event.http = http
            self.logger.handle(event)


def configure(service: str, level: str = "INFO") -> None:
    """Send the 'lab' logger's records to stdout as JSON lines (idempotent)."""
    logger = logging.getLogger("lab")
    logger.setLevel(level.upper())
    logger.propagate = False
    for handler in list(logger.handlers):
        if getattr(handler, "_lab", False):
            logger.removeHandler(handler)
    for old in list(logger.filters):
        if isinstance(old, _HoldEventForRequestLine):
            logger.removeFilter(old)
    logger.addFilter(_HoldEventForRequestLine())
    handler = _StdoutHandler()
    handler.setFormatter(JsonFormatter(service))
    handler._lab = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
