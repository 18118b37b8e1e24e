"""Drive one handshake (and messages) through client_svc and collect both sides' views.

POST /handshake and POST /message on client_svc, then GET /sessions/<id> on client_svc
and on server_svc: each side is asked on its own what it derived.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lab_common.contract import HANDSHAKE, MESSAGE, SESSION, path

from .http import Http, Service

__all__ = ["DEFAULT_CLIENT_URL", "DEFAULT_SERVER_URL", "Gathered", "HandshakeOptions", "gather"]

DEFAULT_CLIENT_URL = "http://127.0.0.1:8001"
DEFAULT_SERVER_URL = "http://127.0.0.1:8002"


@dataclass(frozen=True)
class HandshakeOptions:
    key_exchange: str | None = None
    cipher_suite: str | None = None
    resume: str | None = None
    extended_master_secret: bool = True
    encrypt_then_mac: bool = True
    messages: tuple[str, ...] = ()
    #: The groups and signature schemes to offer, in order; None: client_svc's defaults.
    supported_groups: tuple[str, ...] | None = None
    signature_algorithms: tuple[str, ...] | None = None

    def request_body(self) -> dict[str, Any]:
        """The POST /handshake body: only what differs from client_svc's defaults."""
        body: dict[str, Any] = {}
        if self.key_exchange:
            body["key_exchange"] = self.key_exchange
        if self.cipher_suite:
            body["cipher_suite"] = self.cipher_suite
        if self.resume:
            body["resume"] = self.resume
        if not self.extended_master_secret:
            body["extended_master_secret"] = False
        if not self.encrypt_then_mac:
            body["encrypt_then_mac"] = False
        if self.supported_groups:
            body["supported_groups"] = list(self.supported_groups)
        if self.signature_algorithms:
            body["signature_algorithms"] = list(self.signature_algorithms)
        return body


@dataclass
class Gathered:
    """Everything the terminal view shows, as the services answered it."""

    client_url: str
    server_url: str
    request: dict[str, Any]
    handshake: dict[str, Any]
    client_session: dict[str, Any]
    server_session: dict[str, Any]
    #: One entry per POST /message: ``{"plaintext": sent text, "answer": client_svc's answer}``.
    messages: list[dict[str, Any]] = field(default_factory=list)

    @property
    def connection_id(self) -> str:
        return str(self.handshake.get("connection_id", ""))

    @property
    def secrets_revealed(self) -> bool:
        return bool(self.handshake.get("secrets_revealed"))

    def to_json(self) -> dict[str, Any]:
        return {
            "client_url": self.client_url,
            "server_url": self.server_url,
            "request": self.request,
            "handshake": self.handshake,
            "messages": self.messages,
            "client_session": self.client_session,
            "server_session": self.server_session,
        }


def gather(options: HandshakeOptions, http: Http, client_url: str, server_url: str) -> Gathered:
    """Run the handshake and messages, then fetch both views.

    Raises:
        ApiError: a service is unreachable or answered an error.
    """
    client = Service("client_svc", client_url, http)
    server = Service("server_svc", server_url, http)
    request = options.request_body()
    handshake = client.call("POST", HANDSHAKE, request)
    connection_id = str(handshake.get("connection_id", ""))
    session_path = path(SESSION, connection_id)
    messages = []
    for text in options.messages:
        answer = client.call("POST", MESSAGE, {"plaintext": text, "connection_id": connection_id})
        messages.append({"plaintext": text, "answer": answer})
    client_session = client.call("GET", session_path)
    server_session = server.call("GET", session_path)
    return Gathered(
        client_url=client.base_url,
        server_url=server.base_url,
        request=request,
        handshake=handshake,
        client_session=client_session,
        server_session=server_session,
        messages=messages,
    )
