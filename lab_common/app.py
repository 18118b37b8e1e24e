"""What both Flask apps set up the same way: JSON logs, JSON errors, metrics, fast JSON answers."""

from __future__ import annotations

from typing import Any

import orjson
from flask import Flask, Response
from flask.json.provider import DefaultJSONProvider

from . import logs, metrics, origin
from .errors import register_error_handlers


class OrjsonProvider(DefaultJSONProvider):
    """Answers serialised with orjson: fields in the order the API documents them, compact,
    UTF-8. A 1 MiB record is 1.4 MB of base64, and the stdlib encoder spends several
    milliseconds on it (docs/performance.md). Requests keep kdf_lib's strict stdlib parser."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        try:
            return orjson.dumps(obj).decode("utf-8")
        except TypeError:
            # What orjson does not take (integers beyond 64 bits, say) the stdlib still writes.
            return super().dumps(obj, **kwargs)

    def response(self, *args: Any, **kwargs: Any) -> Response:
        obj = self._prepare_response_obj(args, kwargs)
        try:
            body = orjson.dumps(obj)
        except TypeError:
            return super().response(*args, **kwargs)
        # A closing newline, as Flask writes it: curl output then ends its line.
        return self._app.response_class(body + b"\n", mimetype="application/json")


def configure_app(app: Flask, service: str) -> metrics.LabMetrics:
    """Logs, error handlers, JSON answers and /metrics, behind the Host and cross-site checks
    of lab_common.origin; returns the app's metrics. Raises ValueError for a bad ALLOWED_HOSTS."""
    logs.configure(service, str(app.config.get("LOG_LEVEL", "INFO")))
    hosts = origin.allowed_hosts(app.config.get("ALLOWED_HOSTS") or "")
    register_error_handlers(app)
    app.json = OrjsonProvider(app)
    lab_metrics = metrics.install(app, service)

    def count_refusal(method: str, status: int, code: str) -> None:
        lab_metrics.request("unmatched", method, status, None, code)

    # Around the whole WSGI app, not a before_request hook: the checks run before Flask reads
    # the body, routes the request or runs any hook (the metrics' included).
    app.wsgi_app = origin.RequestGuard(  # type: ignore[method-assign]
        app.wsgi_app, hosts, on_refusal=count_refusal
    )
    return lab_metrics
