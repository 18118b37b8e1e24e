"""client_svc settings: environment variables with safe defaults, overridable in create_app()."""

from __future__ import annotations

import os
from typing import Any

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

_FLOATS = {"UPSTREAM_CONNECT_TIMEOUT", "UPSTREAM_READ_TIMEOUT", "CONNECTION_TTL", "SESSION_TTL"}
_INTS = {"MAX_CONTENT_LENGTH", "MAX_CONNECTIONS", "MAX_SESSIONS"}
_BOOLS = {"REVEAL_SECRETS", "AUTO_RECONNECT"}
MAX_BODY_LIMIT = 8 * 1024 * 1024


def truthy(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


def from_environment(environ: dict[str, str] | None = None) -> dict[str, Any]:
    env = os.environ if environ is None else environ
    settings = dict(DEFAULTS)
    aliases = {"MAX_BODY_BYTES": "MAX_CONTENT_LENGTH"}
    for name, raw in env.items():
        key = aliases.get(name, name)
        if key not in settings:
            continue
        if key in _INTS:
            settings[key] = int(raw)
        elif key in _FLOATS:
            settings[key] = float(raw)
        elif key in _BOOLS:
            settings[key] = truthy(raw)
        else:
            settings[key] = raw
    if not 1024 <= settings["MAX_CONTENT_LENGTH"] <= MAX_BODY_LIMIT:
        raise ValueError(f"MAX_BODY_BYTES must be between 1 KiB and {MAX_BODY_LIMIT} bytes")
    return settings
