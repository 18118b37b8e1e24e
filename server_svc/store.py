"""server_svc's state behind a seam: live connections by connection ID, resumable sessions by
session ID. :class:`ServerStore` is what the service needs; :class:`MemoryServerStore` keeps both
in this process's memory (gunicorn runs one worker with threads), bounded and expiring.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Protocol

from kdf_lib.handshake import ServerConfig, ServerHandshake, Session
from lab_common.contract import new_connection_id, replica_name
from lab_common.errors import ServiceError
from lab_common.redis_state import (
    Entry,
    RedisState,
    state_unavailable,
    trace_refusals,
    written_back,
)
from lab_common.store import BoundedStore

from .config import ServerSettings
from .ticket_keys import TicketKeySource


@dataclass
class ServerConnection:
    """One connection's state: its handshake (then its record layers) and the messages echoed."""

    connection_id: str
    handshake: ServerHandshake
    messages: int = 0


class ServerStore(Protocol):
    """What server_svc keeps between requests; only :class:`~server_svc.service.ServerService`
    reaches it. A connection idle past CONNECTION_TTL (HALF_OPEN_TTL before it is established)
    or a session past SESSION_TTL is gone as if never made; a full store makes room by dropping
    half-open connections first (lab_common.store).

    What must be atomic, and why:

    - ``update(connection_id)`` holds the connection for the whole ``with`` block: no other
      ``update`` of that connection runs until the block has ended, whether it raised or not,
      and the next one sees everything it changed. The record layers' sequence numbers are read
      and advanced inside it, so a record is accepted at most once (docs/security.md,
      Concurrency); across replicas this needs a lock in the shared store, and the state written
      back on exit, before the lock is released, by a holder that still owns it. Updates of
      different connections never wait for each other.
    - ``create`` never hands out an ID in use: a request for one connection must never reach
      another one's keys.
    - ``remember_session``, ``forget_session`` and ``session`` are each atomic. Once
      ``forget_session`` has returned, ``session`` finds nothing under that ID, until a later
      ``remember_session`` of it. The service remembers a session when a handshake is
      established: a full handshake's under a fresh random ID, a resumed one's under the ID its
      hello found in the store; only the latter, finishing while another connection of the same
      session fails, could bring a forgotten session back. A shared store should close that
      window (the forget wins, e.g. by a marker kept for SESSION_TTL).

    :class:`MemoryServerStore` gives these within one process: a lock per connection, held for
    the block (the stored object is the state, so there is nothing to write back), IDs of 128
    bits from the OS's CSPRNG (a collision is not checked: one is expected only after about
    2^64 IDs), and each map operation under its BoundedStore's own lock.
    """

    def create(self, handshake: ServerHandshake) -> ServerConnection:
        """A new connection, half-open, under a new connection ID."""
        ...

    def update(self, connection_id: str) -> AbstractContextManager[ServerConnection]:
        """``with store.update(connection_id) as connection:`` the connection, held for the
        block. Raises the ``unknown_connection`` ServiceError if the store does not hold it."""
        ...

    def save(self, connection: ServerConnection, *, final: bool = False) -> None:
        """Inside ``update``: keep the connection's state as it is now, before going on (a
        record is sealed only once its sequence number's advance is kept). ``final``: nothing
        changes after this in the block, so a shared store may let the connection go in the
        same write. Raises a ServiceError if this holder can no longer write it
        (``state_conflict``: another replica moved it on; ``state_unavailable``)."""
        ...

    def mark_established(self, connection_id: str) -> None:
        """The connection's handshake finished: it now expires after CONNECTION_TTL."""
        ...

    def session(self, session_id: bytes) -> Session | None:
        """The resumable session with this ID (for a ClientHello that offers it), if held."""
        ...

    def remember_session(self, session: Session) -> None:
        """Keep an established handshake's session for resumption."""
        ...

    def forget_session(self, session_id: bytes) -> None:
        """The session can no longer be resumed (RFC 5246 §7.2.2)."""
        ...

    def connection_count(self) -> int:
        """Connections held, half-open and established (/healthz, the metrics gauge)."""
        ...

    def session_count(self) -> int:
        """Resumable sessions held."""
        ...


@dataclass
class _Held:
    connection: ServerConnection
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class MemoryServerStore:
    """A :class:`ServerStore` in this process's memory, bounded by MAX_CONNECTIONS and
    MAX_SESSIONS. ``connections`` and ``sessions`` are its maps, by ID in hex."""

    def __init__(
        self, settings: ServerSettings, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.connections: BoundedStore[_Held] = BoundedStore(
            capacity=settings.max_connections,
            ttl=settings.connection_ttl,
            half_open_ttl=settings.half_open_ttl,
            clock=clock,
        )
        self.sessions: BoundedStore[Session] = BoundedStore(
            capacity=settings.max_sessions, ttl=settings.session_ttl, clock=clock
        )

    def create(self, handshake: ServerHandshake) -> ServerConnection:
        connection = ServerConnection(new_connection_id(), handshake)
        self.connections.put(connection.connection_id, _Held(connection))
        return connection

    @contextmanager
    def update(self, connection_id: str) -> Iterator[ServerConnection]:
        held = self.connections.get(connection_id)
        if held is None:
            raise ServiceError(
                "unknown_connection",
                "no such connection (never made, expired, or the server restarted)",
                404,
            )
        with held.lock:
            yield held.connection

    def save(self, connection: ServerConnection, *, final: bool = False) -> None:
        """Nothing to do: the stored object is the state."""

    def mark_established(self, connection_id: str) -> None:
        self.connections.mark_established(connection_id)

    def session(self, session_id: bytes) -> Session | None:
        return self.sessions.get(session_id.hex())

    def remember_session(self, session: Session) -> None:
        self.sessions.put(session.session_id.hex(), session, established=True)

    def forget_session(self, session_id: bytes) -> None:
        self.sessions.pop(session_id.hex())

    def connection_count(self) -> int:
        return len(self.connections)

    def session_count(self) -> int:
        return len(self.sessions)


log = logging.getLogger("lab")


class RedisServerStore:
    """A :class:`ServerStore` in Redis, shared by every replica (lab_common.redis_state).

    Each connection is its handshake saved by kdf_lib (``to_state``), sealed with the
    key-encryption key, under a lock while a request holds it and written back with fencing
    when the request ends, and in between whenever the service calls :meth:`save`. Any replica
    can serve any request of any connection; the replica's own ``identity`` (the same
    certificate everywhere) restores it.
    """

    def __init__(
        self,
        settings: ServerSettings,
        state: RedisState,
        identity: ServerConfig,
        *,
        tickets: TicketKeySource | None = None,
    ) -> None:
        self.settings = settings
        self.state = state
        self.identity = identity
        self.tickets = tickets
        self._held: dict[int, Entry] = {}
        #: The entry this thread holds (inside ``update``), which a session can ride along with.
        self._current = threading.local()

    def _key(self, connection_id: str) -> str:
        return self.state.key("conn", connection_id)

    def _ttl(self, handshake: ServerHandshake) -> float:
        if handshake.connection is not None:
            return self.settings.connection_ttl
        return self.settings.half_open_ttl

    def _saved(self, handshake: ServerHandshake) -> bytes:
        return handshake.to_state(reveal_secrets=self.settings.reveal_secrets)

    def create(self, handshake: ServerHandshake) -> ServerConnection:
        connection_id = new_connection_id()
        created = self.state.create(
            self._key(connection_id), self._saved(handshake), self._ttl(handshake)
        )
        if not created:  # 128 random bits: never expected, but never two connections in one
            raise ServiceError("internal_error", "a connection ID was drawn twice", 500)
        return ServerConnection(connection_id, handshake)

    @contextmanager
    def update(self, connection_id: str) -> Iterator[ServerConnection]:
        with self.state.locked(self._key(connection_id)) as entry:
            try:
                handshake = ServerHandshake.from_state(
                    entry.state,
                    self.identity,
                    lookup_session=self.session,
                    tickets=self.tickets.ring() if self.tickets is not None else None,
                )
            except (ValueError, KeyError) as exc:
                raise state_unavailable(f"unreadable state: {type(exc).__name__}") from None
            # The steps this replica adds name it; the earlier ones keep the replica that made them.
            handshake.trace.replica = replica_name()
            trace_refusals(entry, handshake.trace)
            connection = ServerConnection(connection_id, handshake, int(entry.fields.get("m", "0")))
            self._held[id(connection)] = entry
            outer = getattr(self._current, "entry", None)
            self._current.entry = entry
            try:
                with written_back(entry, lambda: self._write(entry, connection), connection_id):
                    yield connection
            finally:
                del self._held[id(connection)]
                self._current.entry = outer

    def _write(self, entry: Entry, connection: ServerConnection) -> None:
        handshake = connection.handshake
        self.state.write(
            entry, self._saved(handshake), self._ttl(handshake), m=str(connection.messages)
        )

    def save(self, connection: ServerConnection, *, final: bool = False) -> None:
        entry = self._held[id(connection)]
        # A final save releases the lock in the same script; the write when the block ends
        # then finds nothing new to write (a write that finds something new after all is
        # still fenced by the version).
        entry.final = final
        self._write(entry, connection)
        entry.saved = True

    def mark_established(self, connection_id: str) -> None:
        """Nothing to do: each write sets the expiry the handshake's state calls for."""

    def session(self, session_id: bytes) -> Session | None:
        return self.state.session(session_id.hex())

    def remember_session(self, session: Session) -> None:
        entry: Entry | None = getattr(self._current, "entry", None)
        if entry is not None and not entry.released:
            # Inside the connection's update: the session goes with its last write, in the
            # same round trip (both are kept, or the request fails).
            entry.along.append(self.state.remembering_session(session, self.settings.session_ttl))
            return
        self.state.remember_session(session, self.settings.session_ttl)

    def forget_session(self, session_id: bytes) -> None:
        self.state.forget_session(session_id.hex(), self.settings.session_ttl)

    def connection_count(self) -> int:
        return self.state.count("conn")

    def session_count(self) -> int:
        return self.state.count("session")
