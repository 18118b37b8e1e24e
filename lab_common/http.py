"""Request bodies: read once, whole, within the size limit; JSON through kdf_lib's strict codec.

Every body a service uses comes from :func:`request_body`, and a before-request hook
(:func:`refuse_oversized_body`) calls it before any view runs: a body over MAX_CONTENT_LENGTH is
refused whole with 413 ``body_too_large`` on every endpoint, chunked or not, so no view ever sees
a part of it. Views never read ``request.data``, ``get_data()`` or the stream themselves
(tests/inputs/test_whole_bodies.py checks the services' source for it).
"""

from __future__ import annotations

import time
from typing import Any

from flask import request
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge

from kdf_lib.messages import parse_json

from .contract import CONNECTION_ID_LENGTH, is_connection_id
from .errors import ServiceError

#: The CPU time (seconds) a worker may spend reading one chunked body. gunicorn parses the
#: chunked framing in Python, about 2 µs a chunk: 4 MiB in 1-byte chunks would cost it 8 s.
#: A body in chunks of 1 KiB, as clients send them, costs a few milliseconds.
MAX_BODY_READ_CPU = 0.05
#: A chunked body is read this much at a time, so the CPU check above comes often enough.
_STREAM_PIECE = 4096
#: Where the body read for this request is kept (the WSGI environ is per request).
_BODY_KEY = "lab_common.request_body"


def request_body() -> bytes:
    """The whole request body, read once; later calls in the same request return it again.

    A declared Content-Length over MAX_CONTENT_LENGTH is refused (413 ``body_too_large``) from
    the headers, before anything is read. A body without one (chunked) is read up to one byte
    past the limit and refused if that byte comes: never cut at the limit and handed on as if
    it were whole. One in chunks too small to read at a bounded cost is refused with 413
    ``body_too_fragmented``.
    """
    environ = request.environ
    body: bytes | None = environ.get(_BODY_KEY)
    if body is not None:
        return body
    limit = request.max_content_length
    declared = request.content_length
    if limit is not None and declared is not None and declared > limit:
        raise RequestEntityTooLarge()
    if declared is None and limit is not None and environ.get("wsgi.input_terminated"):
        body = _read_streamed(environ["wsgi.input"], limit)
    else:
        body = request.get_data(cache=False)  # werkzeug reads exactly Content-Length bytes
    environ[_BODY_KEY] = body
    return body


def _read_streamed(source: Any, limit: int) -> bytes:
    # werkzeug would stop reading a body of unknown length at the limit without a word, and
    # hand on a cut body (or a valid prefix of it); this reads one byte more to tell.
    started = time.thread_time()
    pieces: list[bytes] = []
    size = 0
    while size <= limit:
        try:
            piece = source.read(min(_STREAM_PIECE, limit + 1 - size))
        except Exception:  # the server's chunk parser: a broken size line, a cut body, ...
            raise BadRequest("the chunked body is malformed or was cut short") from None
        if not piece:
            return b"".join(pieces)
        pieces.append(piece)
        size += len(piece)
        if time.thread_time() - started > MAX_BODY_READ_CPU:
            # Reading the rest, or gunicorn draining it for a next request on the connection,
            # would cost as much again. gunicorn closes the connection of a body marked
            # failed instead (gunicorn.http.parser.Parser.finish_body).
            if hasattr(source, "failed"):
                source.failed = True
            raise ServiceError(
                "body_too_fragmented",
                "the chunked body comes in pieces too small to read; send larger chunks",
                413,
            )
    raise RequestEntityTooLarge()


def refuse_oversized_body() -> None:
    """A before-request hook for every endpoint: the body, if any, is read (bounded) first.

    A chunked body's size is known only once it is read, so it is read here, before the view,
    whatever the endpoint: one over the limit never reaches a view.
    """
    request_body()


def json_body(*, optional: bool = False) -> dict[str, Any]:
    """The request's JSON object (kdf_lib's strict codec). An empty body gives ``{}`` when
    ``optional``."""
    data = request_body()
    if not data and optional:
        return {}
    if request.mimetype != "application/json":
        raise ServiceError(
            "unsupported_media_type",
            "send the body as application/json",
            415,
        )
    return parse_json(data)


def binary_body(media_type: str) -> bytes:
    """The request's body as bytes, which must be sent as ``media_type``."""
    if request.mimetype != media_type:
        raise ServiceError("unsupported_media_type", f"send the body as {media_type}", 415)
    return request_body()


def connection_id_field(value: object, name: str) -> str:
    """A field reader (kdf_lib.messages.Fields) for a connection id; anything else is a 400
    ``malformed_connection_id``, in a body and in a path alike."""
    if not is_connection_id(value):
        raise ServiceError(
            "malformed_connection_id",
            f"{name} must be {CONNECTION_ID_LENGTH} lowercase hex digits",
            400,
        )
    return value
