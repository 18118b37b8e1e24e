"""server_svc settings: environment variables with safe defaults, overridable in create_app()."""

from __future__ import annotations

import os
from typing import Any

DEFAULTS: dict[str, Any] = {
    "SERVER_CERT_CHAIN": "/certs/server/chain.pem",
    "SERVER_KEY": "/certs/server/server.key",
    # Admits a 1 MiB message as base64 JSON (about 1.4 MB) with room to spare; at most 8 MiB.
    "MAX_CONTENT_LENGTH": 4 * 1024 * 1024,
    "CONNECTION_TTL": 900.0,  # idle seconds before an established connection is forgotten
    "HALF_OPEN_TTL": 30.0,  # a handshake must finish within this many seconds
    "MAX_CONNECTIONS": 20_000,
    "SESSION_TTL": 3600.0,  # how long a session ID can be resumed
    "MAX_SESSIONS": 10_000,
    "REVEAL_SECRETS": False,
    "LOG_LEVEL": "INFO",
}

_FLOATS = {"CONNECTION_TTL", "HALF_OPEN_TTL", "SESSION_TTL"}
_INTS = {"MAX_CONTENT_LENGTH", "MAX_CONNECTIONS", "MAX_SESSIONS"}
_BOOLS = {"REVEAL_SECRETS"}
MAX_BODY_LIMIT = 8 * 1024 * 1024


def truthy(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


def from_environment(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Settings from the environment (names as in DEFAULTS; MAX_BODY_BYTES sets MAX_CONTENT_LENGTH)."""
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
