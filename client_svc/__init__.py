"""client_svc: the TLS 1.2 client side of the lab, as a Flask app (served by gunicorn)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask

from kdf_lib import pki
from kdf_lib.handshake import ClientConfig
from lab_common.app import configure_app, load_settings
from lab_common.contract import OPENAPI
from lab_common.redis_state import shared_state
from lab_common.store import count_or_nan

from .client_cert import check_client_certificate
from .config import ClientSettings
from .openapi import openapi_view
from .service import ClientService, KeyLogWriter
from .store import ClientStore, MemoryClientStore, RedisClientStore
from .upstream import HttpTransport, ServerClient, Transport


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """The app factory. ``config`` overrides environment settings (by variable name, see
    :class:`~client_svc.config.ClientSettings`); other keys go to Flask's config, and tests may
    pass ``TRUST_ANCHORS`` (certificates) and ``TRANSPORT`` (e.g. server_svc's test client)."""
    app = Flask(__name__)
    settings = load_settings(app, ClientSettings, config)
    check_client_certificate(settings)
    lab_metrics = configure_app(app, "client_svc", settings)
    trust = app.config.get("TRUST_ANCHORS") or tuple(
        pki.load_certificate_chain(Path(settings.trust_store).read_bytes())
    )
    transport: Transport = app.config.get("TRANSPORT") or HttpTransport.from_settings(
        settings.server_url, settings
    )
    store: ClientStore
    if settings.state_backend == "redis":
        state = shared_state(settings, "lab:client", lab_metrics)
        store = RedisClientStore(settings, state, ClientConfig(tuple(trust), settings.server_name))
    else:
        store = MemoryClientStore(settings)
    lab_metrics.gauge(
        "tls_lab_connections", "Connections held", lambda: count_or_nan(store.connection_count)
    )
    lab_metrics.gauge(
        "tls_lab_sessions", "Resumable sessions held", lambda: count_or_nan(store.session_count)
    )
    app.extensions["client_service"] = ClientService(
        settings,
        ServerClient(transport, max_request_bytes=settings.server_max_body_bytes),
        store,
        tuple(trust),
        KeyLogWriter(settings.sslkeylogfile),
        lab_metrics,
    )
    from .views import bp

    app.register_blueprint(bp)
    from .web import bp as web_bp

    app.register_blueprint(web_bp)
    from .demos import bp as demos_bp

    app.register_blueprint(demos_bp)
    from .resumption_demo import bp as resumption_bp

    app.register_blueprint(resumption_bp)
    from .mtls_demo import bp as mtls_bp

    app.register_blueprint(mtls_bp)
    app.add_url_rule(OPENAPI, view_func=openapi_view)
    return app
