"""What both Flask apps set up the same way: JSON logs, JSON errors, metrics, fast JSON answers."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
from flask import Flask, Response
from flask.json.provider import DefaultJSONProvider
from werkzeug.sansio.response import Response as BaseResponse

from . import logs, metrics, origin
from .contract import REPLICA_HEADER, replica_name
from .errors import register_error_handlers
from .settings import Settings

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

S = TypeVar("S", bound=Settings)


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

    def response(self, *args: Any, **kwargs: Any) -> BaseResponse:
        obj = self._prepare_response_obj(args, kwargs)
        try:
            body = orjson.dumps(obj)
        except TypeError:
            return super().response(*args, **kwargs)
        # A closing newline, as Flask writes it: curl output then ends its line. Both apps
        # answer with Flask's own response class.
        return Response(body + b"\n", mimetype="application/json")


def load_settings(app: Flask, kind: type[S], config: Mapping[str, Any] | None) -> S:
    """The service's settings (``kind``) from the environment and the factory's ``config``
    (by variable name), kept as ``app.extensions["settings"]``. Keys of ``config`` that are not
    settings go to Flask's config (TESTING, or objects a test injects). Raises ValueError for
    a bad value."""
    given = dict(config or {})
    names = kind.variables()
    settings = kind.load(overrides={k: v for k, v in given.items() if k in names})
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.config.update({k: v for k, v in given.items() if k not in names})
    app.extensions["settings"] = settings
    return settings


def configure_app(app: Flask, service: str, settings: Settings) -> metrics.LabMetrics:
    """Logs, error handlers, JSON answers and /metrics, behind the Host and cross-site checks
    of lab_common.origin; returns the app's metrics. Raises ValueError for a bad ALLOWED_HOSTS."""
    logs.configure(service, settings.log_level)
    hosts = origin.allowed_hosts(settings.allowed_hosts)
    register_error_handlers(app)
    app.json = OrjsonProvider(app)
    lab_metrics = metrics.install(app, service)

    def count_refusal(method: str, status: int, code: str) -> None:
        lab_metrics.request("unmatched", method, status, None, code)

    # Around the whole WSGI app, not a before_request hook: the checks run before Flask reads
    # the body, routes the request or runs any hook (the metrics' included).
    guarded = origin.RequestGuard(app.wsgi_app, hosts, on_refusal=count_refusal)
    app.wsgi_app = logs.RequestLog(ReplicaHeader(guarded))  # type: ignore[method-assign]
    return lab_metrics


class ReplicaHeader:
    """WSGI middleware: every answer says which replica served it, refusals included."""

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app
        self.header = (REPLICA_HEADER, replica_name())

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        def with_replica(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], object]:
            return start_response(status, [*headers, self.header], exc_info)

        return self.app(environ, with_replica)
