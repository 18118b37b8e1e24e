"""client_svc's state: its connections (by connection ID) and resumable sessions (by session ID)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from kdf_lib.handshake import ClientHandshake, Session
from lab_common.errors import ServiceError
from lab_common.store import BoundedStore


@dataclass
class ClientConnection:
    connection_id: str
    handshake: ClientHandshake
    server_view: dict[str, Any]
    exchanges: list[dict[str, Any]]
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    messages: int = 0


class ClientState:
    def __init__(self, settings: dict[str, Any]) -> None:
        self.connections: BoundedStore[ClientConnection] = BoundedStore(
            capacity=int(settings["MAX_CONNECTIONS"]), ttl=float(settings["CONNECTION_TTL"])
        )
        self.sessions: BoundedStore[Session] = BoundedStore(
            capacity=int(settings["MAX_SESSIONS"]), ttl=float(settings["SESSION_TTL"])
        )
        self.latest: str | None = None
        self._latest_lock = threading.Lock()

    def add(self, connection: ClientConnection) -> None:
        self.connections.put(connection.connection_id, connection, established=True)
        with self._latest_lock:
            self.latest = connection.connection_id

    def connection(self, connection_id: str | None) -> ClientConnection:
        key = connection_id or self.latest
        if key is None:
            raise ServiceError("no_connection", "run POST /handshake first", 409)
        found = self.connections.get(key)
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
