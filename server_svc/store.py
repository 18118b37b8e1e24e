"""server_svc's state: live connections by connection ID, resumable sessions by session ID.

Both live in this process's memory (gunicorn runs one worker with threads), bounded
and expiring (see lab_common.store). Each connection has its own lock, so two requests
for one connection run one after the other while different connections run in parallel.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from kdf_lib.handshake import ServerHandshake, Session
from lab_common.contract import new_connection_id
from lab_common.errors import ServiceError
from lab_common.store import BoundedStore

from .config import ServerSettings


@dataclass
class ServerConnection:
    connection_id: str
    handshake: ServerHandshake
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    messages: int = 0


class ServerState:
    def __init__(
        self, settings: ServerSettings, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.connections: BoundedStore[ServerConnection] = BoundedStore(
            capacity=settings.max_connections,
            ttl=settings.connection_ttl,
            half_open_ttl=settings.half_open_ttl,
            clock=clock,
        )
        self.sessions: BoundedStore[Session] = BoundedStore(
            capacity=settings.max_sessions, ttl=settings.session_ttl, clock=clock
        )

    def new_connection(self, handshake: ServerHandshake) -> ServerConnection:
        connection = ServerConnection(new_connection_id(), handshake)
        self.connections.put(connection.connection_id, connection)
        return connection

    def connection(self, connection_id: str) -> ServerConnection:
        found = self.connections.get(connection_id)
        if found is None:
            raise ServiceError(
                "unknown_connection",
                "no such connection (never made, expired, or the server restarted)",
                404,
            )
        return found

    def lookup_session(self, session_id: bytes) -> Session | None:
        return self.sessions.get(session_id.hex())

    def remember_session(self, session: Session) -> None:
        self.sessions.put(session.session_id.hex(), session, established=True)

    def forget_session(self, session_id: bytes) -> None:
        self.sessions.pop(session_id.hex())
