"""server_svc's settings: environment variables with safe defaults (README, Configuration)."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from kdf_lib.client_auth import ClientAuth
from lab_common.settings import Settings

#: CLIENT_AUTH's values.
CLIENT_AUTH_MODES = tuple(mode.value for mode in ClientAuth)


@dataclass(frozen=True)
class ServerSettings(Settings):
    server_cert_chain: str = "/certs/server/chain.pem"
    server_key: str = "/certs/server/server.key"
    #: The ECDSA certificate chain and key (ECDHE_ECDSA suites), beside the RSA ones above.
    #: Both empty: no ECDSA certificate, and the server never chooses those suites.
    server_ecdsa_cert_chain: str = ""
    server_ecdsa_key: str = ""
    #: Mutual TLS: none (no CertificateRequest), optional or required (a client without an
    #: acceptable certificate is refused); CLIENT_CA_FILE holds the CAs client certificates
    #: must chain to (PEM), needed unless CLIENT_AUTH is none.
    client_auth: str = "none"
    client_ca_file: str = ""
    #: A handshake must finish within this many seconds.
    half_open_ttl: float = 30.0
    max_connections: int = 20_000
    #: Session tickets (RFC 5077): how long one may be used (also its lifetime hint), and how
    #: often the ticket key is replaced (the previous one still opens tickets).
    ticket_lifetime: int = 3600
    ticket_key_rotation: float = 3600.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if bool(self.server_ecdsa_cert_chain) != bool(self.server_ecdsa_key):
            raise ValueError("SERVER_ECDSA_CERT_CHAIN and SERVER_ECDSA_KEY go together")
        if self.client_auth not in CLIENT_AUTH_MODES:
            raise ValueError(f"CLIENT_AUTH must be one of {', '.join(CLIENT_AUTH_MODES)}")
        if self.client_auth != "none" and not self.client_ca_file:
            raise ValueError("CLIENT_AUTH optional or required needs CLIENT_CA_FILE")
        if not self.half_open_ttl > 0:
            raise ValueError("HALF_OPEN_TTL must be more than 0 seconds")
        if self.ticket_lifetime < 1:
            raise ValueError("TICKET_LIFETIME must be at least 1 second")
        if not self.ticket_key_rotation > 0:
            raise ValueError("TICKET_KEY_ROTATION must be more than 0 seconds")


def current() -> ServerSettings:
    """The running app's settings (made by create_app)."""
    found: ServerSettings = current_app.extensions["settings"]
    return found
