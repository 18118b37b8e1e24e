"""client_svc settings: environment variables with safe defaults, overridable in create_app()."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lab_common import settings

DEFAULTS: dict[str, Any] = {
    "SERVER_URL": "http://127.0.0.1:8002",
    # The man in the middle of POST /demo/mitm (compose profile mitm); "" = demo unavailable.
    "MITM_SERVER_URL": "",
    "TRUST_STORE": "/certs/trust/ca.pem",
    # The name the client expects in the server's certificate (compose: the service name).
    "SERVER_NAME": "server",
    "SSLKEYLOGFILE": "",
    "UPSTREAM_CONNECT_TIMEOUT": 2.0,
    "UPSTREAM_READ_TIMEOUT": 10.0,
    # POST /message's auto_reconnect default: replace a connection server_svc forgot (a restart)
    # by a new handshake and send the message there. Off: the caller decides (docs/resilience.md).
    "AUTO_RECONNECT": False,
    "MAX_CONTENT_LENGTH": 4 * 1024 * 1024,
    "CONNECTION_TTL": 900.0,
    "MAX_CONNECTIONS": 10_000,
    "MAX_SESSIONS": 10_000,
    "SESSION_TTL": 3600.0,
    "REVEAL_SECRETS": False,
    "LOG_LEVEL": "INFO",
}


def from_environment(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Settings from the environment (names as in DEFAULTS; MAX_BODY_BYTES sets MAX_CONTENT_LENGTH)."""
    return settings.from_environment(DEFAULTS, environ)
