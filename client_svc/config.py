"""client_svc settings: environment variables with safe defaults, overridable in create_app()."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lab_common import settings

from .upstream import MAX_RESPONSE_BYTES

#: UPSTREAM_MAX_RESPONSE_BYTES below this would refuse handshake answers (a few KB, more with
#: REVEAL_SECRETS).
MIN_RESPONSE_BYTES = 64 * 1024

DEFAULTS: dict[str, Any] = {
    "SERVER_URL": "http://127.0.0.1:8002",
    # The man in the middle of POST /demo/mitm (compose profile mitm); "" = demo unavailable.
    "MITM_SERVER_URL": "",
    "TRUST_STORE": "/certs/trust/ca.pem",
    # The name the client expects in the server's certificate (compose: the service name).
    "SERVER_NAME": "server",
    "SSLKEYLOGFILE": "",
    "UPSTREAM_CONNECT_TIMEOUT": 2.0,
    # The whole of each call after connecting: sending the request and reading all of the answer.
    "UPSTREAM_READ_TIMEOUT": 10.0,
    # The largest answer client_svc reads from server_svc (see upstream.MAX_RESPONSE_BYTES).
    "UPSTREAM_MAX_RESPONSE_BYTES": MAX_RESPONSE_BYTES,
    # server_svc's MAX_BODY_BYTES: a message whose request would be larger is refused before
    # it is sealed or sent (413 body_too_large, not delivered, the connection unchanged).
    "SERVER_MAX_BODY_BYTES": 4 * 1024 * 1024,
    # POST /message's auto_reconnect default: replace a connection server_svc forgot (a restart)
    # by a new handshake and send the message there. Off: the caller decides (docs/resilience.md).
    "AUTO_RECONNECT": False,
    "MAX_CONTENT_LENGTH": 4 * 1024 * 1024,
    "CONNECTION_TTL": 900.0,
    "MAX_CONNECTIONS": 10_000,
    "MAX_SESSIONS": 10_000,
    "SESSION_TTL": 3600.0,
    "REVEAL_SECRETS": False,
    # Host names (comma-separated) answered besides lab_common.origin.DEFAULT_ALLOWED_HOSTS
    # (localhost, 127.0.0.1, [::1], the compose services); any other Host gets 421.
    "ALLOWED_HOSTS": "",
    "LOG_LEVEL": "INFO",
}


def from_environment(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Settings from the environment (names as in DEFAULTS; MAX_BODY_BYTES sets MAX_CONTENT_LENGTH)."""
    values = settings.from_environment(DEFAULTS, environ)
    if not 1024 <= values["SERVER_MAX_BODY_BYTES"] <= settings.MAX_BODY_LIMIT:
        raise ValueError(
            f"SERVER_MAX_BODY_BYTES must be between 1 KiB and {settings.MAX_BODY_LIMIT} bytes"
        )
    if values["UPSTREAM_MAX_RESPONSE_BYTES"] < MIN_RESPONSE_BYTES:
        raise ValueError(f"UPSTREAM_MAX_RESPONSE_BYTES must be at least {MIN_RESPONSE_BYTES}")
    return values
