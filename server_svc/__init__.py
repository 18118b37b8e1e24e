"""server_svc: the TLS 1.2 server side of the lab, as a Flask app (served by gunicorn)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask

from kdf_lib import pki
from kdf_lib.handshake import ServerConfig
from lab_common.app import configure_app, load_settings
from lab_common.redis_state import shared_state

from .client_auth import with_client_auth
from .config import ServerSettings
from .service import ServerService
from .store import MemoryServerStore, RedisServerStore, ServerStore
from .ticket_keys import LocalTicketKeys, RedisTicketKeys, TicketKeySource


def load_server_config(
    chain_path: str, key_path: str, ecdsa_chain_path: str = "", ecdsa_key_path: str = ""
) -> ServerConfig:
    """Read and parse the certificate chains and keys once, at start-up: the RSA identity,
    and the ECDSA one when its paths are given (the server then picks by suite)."""
    chain = pki.load_certificate_chain(Path(chain_path).read_bytes())
    key = pki.load_private_key(Path(key_path).read_bytes())
    if not ecdsa_chain_path:
        return ServerConfig(tuple(chain), key)
    ecdsa_chain = pki.load_certificate_chain(Path(ecdsa_chain_path).read_bytes())
    ecdsa_key = pki.load_ec_private_key(Path(ecdsa_key_path).read_bytes())
    return ServerConfig(
        tuple(chain), key, ecdsa_certificate_chain=tuple(ecdsa_chain), ecdsa_private_key=ecdsa_key
    )


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """The app factory. ``config`` overrides environment settings (by variable name, see
    :class:`~server_svc.config.ServerSettings`); other keys go to Flask's config, and tests may
    pass ``SERVER_CONFIG`` (a ready kdf_lib ServerConfig) instead of file paths, and
    ``STORE_CLOCK`` (a monotonic clock) to drive the store's expiry. The views reach the
    connections and sessions through ``app.extensions["server_service"]`` only."""
    app = Flask(__name__)
    settings = load_settings(app, ServerSettings, config)
    lab_metrics = configure_app(app, "server_svc", settings)
    server_config = app.config.get("SERVER_CONFIG") or load_server_config(
        settings.server_cert_chain,
        settings.server_key,
        settings.server_ecdsa_cert_chain,
        settings.server_ecdsa_key,
    )
    server_config = with_client_auth(server_config, settings)
    store: ServerStore
    tickets: TicketKeySource
    if settings.state_backend == "redis":
        state = shared_state(settings, "lab:server", lab_metrics)
        tickets = RedisTicketKeys(
            state, lifetime=settings.ticket_lifetime, rotation=settings.ticket_key_rotation
        )
        store = RedisServerStore(settings, state, server_config, tickets=tickets)
    else:
        tickets = LocalTicketKeys(
            lifetime=settings.ticket_lifetime, rotation=settings.ticket_key_rotation
        )
        store = MemoryServerStore(settings, clock=app.config.get("STORE_CLOCK") or time.monotonic)
    app.extensions["server_service"] = ServerService(
        server_config,
        store,
        lab_metrics,
        reveal_secrets=settings.reveal_secrets,
        state_backend=settings.state_backend,
        tickets=tickets,
    )
    from .views import bp

    app.register_blueprint(bp)
    from .demo import bp as demo_bp

    app.register_blueprint(demo_bp)
    return app
