"""server_svc settings: environment variables with safe defaults, overridable in create_app()."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lab_common import settings

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
    # Host names (comma-separated) answered besides lab_common.origin.DEFAULT_ALLOWED_HOSTS
    # (localhost, 127.0.0.1, [::1], the compose services); any other Host gets 421.
    "ALLOWED_HOSTS": "",
    "LOG_LEVEL": "INFO",
}


def from_environment(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Settings from the environment (names as in DEFAULTS; MAX_BODY_BYTES sets MAX_CONTENT_LENGTH)."""
    return settings.from_environment(DEFAULTS, environ)
