"""client_svc's settings: environment variables with safe defaults (README, Configuration)."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from lab_common.settings import MAX_BODY_LIMIT, MIN_BODY_LIMIT, Settings

from .upstream import MAX_RESPONSE_BYTES

#: UPSTREAM_MAX_RESPONSE_BYTES below this would refuse handshake answers (a few KB, more with
#: REVEAL_SECRETS).
MIN_RESPONSE_BYTES = 64 * 1024


@dataclass(frozen=True)
class ClientSettings(Settings):
    server_url: str = "http://127.0.0.1:8002"
    #: The man in the middle of POST /demo/mitm (compose profile mitm); "" = demo unavailable.
    mitm_server_url: str = ""
    trust_store: str = "/certs/trust/ca.pem"
    #: The name the client expects in the server's certificate (compose: the service name).
    server_name: str = "server"
    #: client_svc's own certificate chain and key (PEM) for mutual TLS, sent when server_svc
    #: asks for one (CLIENT_AUTH); both empty: it answers with an empty Certificate.
    client_cert_file: str = ""
    client_key_file: str = ""
    #: Where NSS key log lines go (for Wireshark); "" = nowhere.
    sslkeylogfile: str = ""
    upstream_connect_timeout: float = 2.0
    #: The whole of each call after connecting: sending the request and reading all of the answer.
    upstream_read_timeout: float = 10.0
    #: The largest answer client_svc reads from server_svc (see upstream.MAX_RESPONSE_BYTES).
    upstream_max_response_bytes: int = MAX_RESPONSE_BYTES
    #: server_svc's MAX_BODY_BYTES: a message whose request would be larger is refused before
    #: it is sealed or sent (413 body_too_large, not delivered, the connection unchanged).
    server_max_body_bytes: int = 4 * 1024 * 1024
    #: POST /message's auto_reconnect default: replace a connection server_svc forgot (a
    #: restart) by a new handshake and send the message there. Off: the caller decides
    #: (docs/resilience.md).
    auto_reconnect: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if not MIN_BODY_LIMIT <= self.server_max_body_bytes <= MAX_BODY_LIMIT:
            raise ValueError(
                f"SERVER_MAX_BODY_BYTES must be between {MIN_BODY_LIMIT} and {MAX_BODY_LIMIT} bytes"
            )
        if bool(self.client_cert_file) != bool(self.client_key_file):
            raise ValueError("CLIENT_CERT_FILE and CLIENT_KEY_FILE go together")
        if self.upstream_max_response_bytes < MIN_RESPONSE_BYTES:
            raise ValueError(f"UPSTREAM_MAX_RESPONSE_BYTES must be at least {MIN_RESPONSE_BYTES}")
        for name in ("upstream_connect_timeout", "upstream_read_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name.upper()} must be more than 0 seconds")


def current() -> ClientSettings:
    """The running app's settings (made by create_app)."""
    found: ClientSettings = current_app.extensions["settings"]
    return found
