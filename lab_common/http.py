"""Strict request bodies: JSON only, bounded in size, parsed by kdf_lib's strict codec."""

from __future__ import annotations

from typing import Any

from flask import request

from kdf_lib.messages import parse_json

from .errors import ServiceError


def json_body(*, optional: bool = False) -> dict[str, Any]:
    """The request's JSON object. An empty body gives ``{}`` when ``optional``.

    Flask's MAX_CONTENT_LENGTH has already refused oversized bodies (413) before
    this reads anything.
    """
    data = request.get_data(cache=False)
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
