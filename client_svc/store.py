"""client_svc's state: its connections (by connection ID) and resumable sessions (by session ID).

Connections whose handshake failed are kept apart (``failed``, small and expiring), so that
GET /sessions can still show why and POST /message on them gets a clear refusal.
"""

from __future__ import annotations

import json
import threading
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kdf_lib.handshake import ClientHandshake, Session
from lab_common.errors import ServiceError
from lab_common.store import BoundedStore

if TYPE_CHECKING:
    from .config import ClientSettings
    from .driver import HandshakeRequest

#: At most this many failed handshakes are kept for inspection (fewer if MAX_CONNECTIONS is lower).
MAX_FAILED_HANDSHAKES = 1000


@dataclass
class ClientConnection:
    connection_id: str
    handshake: ClientHandshake
    server_view: dict[str, Any]
    #: The JSON that crossed the wire, while the handshake runs; :meth:`freeze` compacts it.
    exchanges: list[dict[str, Any]]
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    messages: int = 0
    #: What the caller asked for, so that a reconnect can ask for the same.
    request: HandshakeRequest | None = None
    #: Why the connection can no longer be used: {"code", "message"}; None while it can.
    failure: dict[str, str] | None = None
    _frozen_exchanges: bytes | None = field(default=None, repr=False)

    def freeze(self) -> None:
        """Keep the exchanges as one compressed JSON text once the handshake is over.

        A connection is kept for CONNECTION_TTL after its last use; as parsed objects its
        exchanges take about three times the memory of their JSON text, and compressed
        (zlib's fastest level: the certificate chain and the server's trace repeat a lot)
        the text takes about a third of that.
        """
        text = json.dumps(self.exchanges, separators=(",", ":")).encode()
        self._frozen_exchanges = zlib.compress(text, 1)
        self.exchanges = []

    def recorded_exchanges(self) -> list[dict[str, Any]]:
        """The exchanges with server_svc, as they crossed the wire."""
        if self._frozen_exchanges is None:
            return self.exchanges
        exchanges: list[dict[str, Any]] = json.loads(zlib.decompress(self._frozen_exchanges))
        return exchanges

    def fail(self, code: str, message: str) -> None:
        """Close the connection for good (the first failure is the one reported)."""
        if self.failure is None:
            self.failure = {"code": code, "message": message}
        conn = self.handshake.connection
        if conn is not None:
            conn.fail(code)


class ClientState:
    def __init__(self, settings: ClientSettings) -> None:
        self.connections: BoundedStore[ClientConnection] = BoundedStore(
            capacity=settings.max_connections, ttl=settings.connection_ttl
        )
        self.failed: BoundedStore[ClientConnection] = BoundedStore(
            capacity=min(settings.max_connections, MAX_FAILED_HANDSHAKES),
            ttl=settings.connection_ttl,
        )
        self.sessions: BoundedStore[Session] = BoundedStore(
            capacity=settings.max_sessions, ttl=settings.session_ttl
        )
        self.latest: str | None = None
        self._latest_lock = threading.Lock()

    def add(self, connection: ClientConnection) -> None:
        self.connections.put(connection.connection_id, connection, established=True)
        with self._latest_lock:
            self.latest = connection.connection_id

    def add_failed(self, connection: ClientConnection) -> None:
        """A connection whose handshake failed: never the latest, never counted as a connection."""
        self.failed.put(connection.connection_id, connection)

    def connection(self, connection_id: str | None) -> ClientConnection:
        key = connection_id or self.latest
        if key is None:
            raise ServiceError("no_connection", "run POST /handshake first", 409)
        found = self.connections.get(key) or self.failed.get(key)
        if found is None:
            raise ServiceError(
                "unknown_connection", "no such connection (never made or expired)", 404
            )
        return found

    def session(self, session_id: str) -> Session:
        found = self.sessions.get(session_id)
        if found is None:
            raise ServiceError(
                "unknown_session", "no such session to resume (never made or expired)", 404
            )
        return found
