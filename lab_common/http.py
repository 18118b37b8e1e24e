"""Strict request bodies: JSON only, bounded in size, parsed by kdf_lib's strict codec."""

from __future__ import annotations

from typing import Any

from flask import request
from werkzeug.exceptions import RequestEntityTooLarge

from kdf_lib.messages import parse_json

from .errors import ServiceError


def json_body(*, optional: bool = False) -> dict[str, Any]:
    """The request's JSON object. An empty body gives ``{}`` when ``optional``.

    A declared Content-Length over MAX_CONTENT_LENGTH is refused (413) from the headers,
    before anything is read. A body without one (chunked) is read up to the limit, and
    refused if anything follows.
    """
    data = request.get_data(cache=False)
    if _streamed_past_the_limit(len(data)):
        raise RequestEntityTooLarge()
    if not data and optional:
        return {}
    mimetype = request.mimetype
    if mimetype != "application/json":
        raise ServiceError(
            "unsupported_media_type",
            "send the body as application/json",
            415,
        )
    return parse_json(data)


def _streamed_past_the_limit(read: int) -> bool:
    # werkzeug stops reading a body of unknown length at the limit without a word, which
    # would hand the codec a cut body (or a valid prefix); one more byte tells.
    limit = request.max_content_length
    if request.content_length is not None or limit is None or read < limit:
        return False
    return bool(request.environ["wsgi.input"].read(1))
