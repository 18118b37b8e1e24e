"""server_svc's mutual TLS policy: CLIENT_AUTH and the client CAs of CLIENT_CA_FILE, read once
at start-up into the kdf_lib ServerConfig (RFC 5246 §7.4.4)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from kdf_lib import pki
from kdf_lib.client_auth import ClientAuth
from kdf_lib.handshake import ServerConfig

from .config import ServerSettings


def with_client_auth(config: ServerConfig, settings: ServerSettings) -> ServerConfig:
    """``config`` asking for client certificates as CLIENT_AUTH says, trusting CLIENT_CA_FILE's
    CAs for them; unchanged when CLIENT_AUTH is none (or when ``config`` already asks)."""
    mode = ClientAuth(settings.client_auth)
    if mode is ClientAuth.NONE or config.client_auth is not ClientAuth.NONE:
        return config
    anchors = pki.load_certificate_chain(Path(settings.client_ca_file).read_bytes())
    return dataclasses.replace(config, client_auth=mode, client_trust_anchors=tuple(anchors))
