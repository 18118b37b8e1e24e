"""client_svc: the TLS 1.2 client side of the lab, as a Flask app (served by gunicorn)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask

from kdf_lib import pki
from lab_common.app import configure_app
from lab_common.contract import OPENAPI

from . import config as settings_module
from .driver import Driver, KeyLogWriter
from .openapi import openapi_view
from .store import ClientState
from .upstream import HttpTransport, ServerClient, Transport


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """The app factory. ``config`` overrides environment settings; tests may pass
    ``TRUST_ANCHORS`` (certificates) and ``TRANSPORT`` (e.g. server_svc's test client)."""
    app = Flask(__name__)
    app.config.update(settings_module.from_environment())
    app.config.update(config or {})
    lab_metrics = configure_app(app, "client_svc")
    trust = app.config.get("TRUST_ANCHORS") or tuple(
        pki.load_certificate_chain(Path(app.config["TRUST_STORE"]).read_bytes())
    )
    transport: Transport = app.config.get("TRANSPORT") or HttpTransport.from_config(
        app.config["SERVER_URL"], app.config
    )
    state = ClientState(app.config)
    lab_metrics.gauge("tls_lab_connections", "Connections held", lambda: len(state.connections))
    lab_metrics.gauge("tls_lab_sessions", "Resumable sessions held", lambda: len(state.sessions))
    app.extensions["driver"] = Driver(
        ServerClient(transport, max_request_bytes=app.config["SERVER_MAX_BODY_BYTES"]),
        state,
        tuple(trust),
        app.config["SERVER_NAME"],
        KeyLogWriter(app.config["SSLKEYLOGFILE"]),
        bool(app.config["REVEAL_SECRETS"]),
    )
    from .views import bp

    app.register_blueprint(bp)
    from .web import bp as web_bp

    app.register_blueprint(web_bp)
    from .demos import bp as demos_bp

    app.register_blueprint(demos_bp)
    app.add_url_rule(OPENAPI, view_func=openapi_view)
    return app
