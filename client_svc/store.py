"""client_svc's state behind one seam: its connections by connection ID, resumable sessions by ID.

:class:`ClientStore` is all the service knows of it; :class:`MemoryClientStore` keeps both in
this process, bounded and expiring (lab_common.store).
"""

from __future__ import annotations

import json
import logging
import struct
import threading
import zlib
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from kdf_lib.handshake import ClientConfig, ClientHandshake, Session
from kdf_lib.suites import KeyExchange
from kdf_lib.trace import compact_json
from lab_common.contract import MAX_CAPTURED_BYTES, MAX_CAPTURED_MESSAGES, replica_name
from lab_common.errors import ServiceError
from lab_common.redis_state import (
    Entry,
    RedisState,
    state_unavailable,
    trace_refusals,
    written_back,
)
from lab_common.store import BoundedStore

if TYPE_CHECKING:
    from .config import ClientSettings

log = logging.getLogger("lab")

#: At most this many failed handshakes are kept for inspection (fewer if MAX_CONNECTIONS is lower).
MAX_FAILED_HANDSHAKES = 1000


@dataclass(frozen=True)
class HandshakeRequest:
    """What the caller of POST /handshake asked for; kept with its connection, so that a
    reconnect asks for the same."""

    key_exchange: KeyExchange | None = None
    cipher_suite: str | None = None
    #: Several suites, offered in this order (the server takes the first it supports).
    cipher_suites: tuple[str, ...] | None = None
    #: The session ID (hex) to resume.
    resume: str | None = None
    #: None: not asked for (on, or the resumed session's setting).
    extended_master_secret: bool | None = None
    encrypt_then_mac: bool = True
    #: How the session is to be resumed later: "session_id" (server_svc's cache) or "ticket"
    #: (RFC 5077: the client offers the SessionTicket extension and presents its ticket).
    resumption: str = "session_id"
    #: The groups and signature schemes offered, by name, in this order; None: the defaults.
    supported_groups: tuple[str, ...] | None = None
    signature_algorithms: tuple[str, ...] | None = None
    #: Mutual TLS: send client_svc's certificate when server_svc asks for one; false answers
    #: with an empty Certificate (to show the refusal).
    client_certificate: bool = True


#: The ways POST /handshake can make a session resumable.
RESUMPTION_MODES = ("session_id", "ticket")


@dataclass
class MessageCapture:
    """The records of a connection's first messages, exactly as they crossed the wire, for its
    Wireshark export (GET /sessions/<id>/pcap): at most MAX_CAPTURED_MESSAGES messages and
    MAX_CAPTURED_BYTES bytes of records, whichever comes first.

    Only a prefix is kept: once a message does not fit, no later one is, since Wireshark
    decrypts the stream in order, and a message missing in the middle would leave its
    sequence numbers (ChaCha20-Poly1305's nonce) out of step for every record after it.
    """

    #: How many messages are kept, and their records' bytes.
    messages: int = 0
    size: int = 0
    #: A delivered message was left out (and so was every later one).
    truncated: bool = False
    #: The records (sent, reply) this object holds: every kept one in memory; in Redis those
    #: kept since the connection was read, the others stay sealed beside it.
    records: list[tuple[bytes, bytes]] = field(default_factory=list, repr=False)
    #: How many of ``records`` the store has written (Redis).
    written: int = 0

    def keep(self, sent: bytes, reply: bytes) -> None:
        """Keep a delivered message's records, if they are within the bounds."""
        if self.truncated:
            return
        size = self.size + len(sent) + len(reply)
        if self.messages >= MAX_CAPTURED_MESSAGES or size > MAX_CAPTURED_BYTES:
            self.truncated = True
            return
        self.records.append((sent, reply))
        self.messages += 1
        self.size = size


@dataclass
class ClientConnection:
    """One connection with server_svc: its handshake (and, once established, its records),
    what the server published, and the JSON that crossed the wire."""

    connection_id: str
    handshake: ClientHandshake
    server_view: dict[str, Any]
    #: The JSON that crossed the wire, while the handshake runs; :meth:`freeze` compacts it.
    exchanges: list[dict[str, Any]]
    messages: int = 0
    #: What the caller asked for, so that a reconnect can ask for the same.
    request: HandshakeRequest | None = None
    #: Why client_svc no longer uses the connection: {"code", "message"}; None while it does.
    failure: dict[str, str] | None = None
    #: The records of its first messages, for the Wireshark export.
    capture: MessageCapture = field(default_factory=MessageCapture)
    _frozen_exchanges: bytes | None = field(default=None, repr=False)

    def freeze(self) -> None:
        """Keep the exchanges as one compressed JSON text once the handshake is over.

        A connection is kept for CONNECTION_TTL after its last use; as parsed objects its
        exchanges take about three times the memory of their JSON text, and compressed
        (zlib's fastest level: the certificate chain and the server's trace repeat a lot)
        the text takes about a third of that.
        """
        self._frozen_exchanges = zlib.compress(compact_json(self.exchanges), 1)
        self.exchanges = []

    def recorded_exchanges(self) -> list[dict[str, Any]]:
        """The exchanges with server_svc, as they crossed the wire."""
        if self._frozen_exchanges is None:
            return self.exchanges
        exchanges: list[dict[str, Any]] = json.loads(zlib.decompress(self._frozen_exchanges))
        return exchanges

    def fail(self, code: str, message: str) -> None:
        """Stop using the connection for good (the first failure is the one reported).

        Only client_svc's own record of it: whether the protocol failed, which ends the
        session too, is the handshake's to say (``handshake.failure``). A connection that
        server_svc forgot, or a message whose fate is unknown, leaves its session resumable.
        """
        if self.failure is None:
            self.failure = {"code": code, "message": message}

    @property
    def closed(self) -> bool:
        """Nothing more can be sent on it: client_svc stopped using it, or the protocol ended it."""
        conn = self.handshake.connection
        return self.failure is not None or (conn is not None and conn.closed)


class ClientStore(Protocol):
    """Where client_svc keeps its connections and resumable sessions; only the service uses it.

    A connection enters the store when its handshake has ended (established or failed), so
    the store never holds a half-open one. What each operation must guarantee, and why:

    - ``update(connection_id)`` runs its block alone: no other ``update`` of the same
      connection starts until the block has ended, in any process sharing the store. A
      message seals with the next write sequence number and opens the reply with the next
      read one; two messages interleaved would put the two sides' sequence numbers out of
      step and fail the connection. What the block changed is kept when it ends, whether it
      raised or not: a failure closes the connection for good. Reads that must not see half
      a message (GET /sessions) run in such a block too.
    - ``create(connection)`` makes a whole connection visible at once; an established one
      becomes ``latest()`` in the same step. IDs come from server_svc, which never reuses one.
    - ``forget_session(session_id)`` wins over a ``remember_session`` of the same ID that
      was under way (a handshake that resumed the session and ends after the failure): a
      session ended by a fatal alert is never resumable again (RFC 5246 §7.2.2).
    - ``session``, ``latest`` and the counts read one value each and need no more than that.

    :class:`MemoryClientStore` keeps these promises inside one process (gunicorn runs one
    worker with threads): a lock per connection for ``update``, BoundedStore's own lock for
    each map, and one more lock that orders remembering against forgetting.
    """

    def create(self, connection: ClientConnection, *, session: Session | None = None) -> None:
        """Keep a connection whose handshake ended: established, or failed (``failure`` set);
        and ``session``, if given, for resumption, as :meth:`remember_session` would (a shared
        store sends both at once)."""
        ...

    def update(self, connection_id: str) -> AbstractContextManager[ClientConnection]:
        """``with store.update(cid) as connection:`` the connection, held alone for the block.

        Raises ServiceError ``unknown_connection`` (404) if it was never made or has expired.
        """
        ...

    def save(self, connection: ClientConnection) -> None:
        """Inside ``update``: keep the connection's state as it is now before going on (a
        record is sealed only once its sequence number's advance is kept). Raises a
        ServiceError if the store cannot take it."""
        ...

    def latest(self) -> str | None:
        """The ID of the connection established last, if any."""
        ...

    def connection_count(self) -> int:
        """How many established connections the store holds (/healthz, the metrics)."""
        ...

    def session(self, session_id: str) -> Session | None:
        """The resumable session with this ID (hex), if it is still held."""
        ...

    def remember_session(self, session: Session) -> None:
        """Keep a session for resumption (after a full or a resumed handshake)."""
        ...

    def forget_session(self, session_id: str) -> None:
        """Make the session with this ID (hex) unresumable, now and later."""
        ...

    def session_count(self) -> int:
        """How many resumable sessions the store holds (/healthz, the metrics)."""
        ...

    def captured(self, connection: ClientConnection) -> list[tuple[bytes, bytes]]:
        """Inside ``update``: the records (sent, reply) of the connection's kept messages
        (``connection.capture``), in order. Raises a ServiceError if the store cannot read them."""
        ...


@dataclass(slots=True)
class _Held:
    connection: ClientConnection
    lock: threading.Lock = field(default_factory=threading.Lock)


class MemoryClientStore:
    """The :class:`ClientStore` of one process: bounded maps that expire idle entries.

    Connections whose handshake failed are kept apart (small and expiring), so that GET
    /sessions can still show why, and POST /message on them gets a clear refusal; they are
    never the latest connection and never counted as connections.
    """

    def __init__(self, settings: ClientSettings) -> None:
        self._connections: BoundedStore[_Held] = BoundedStore(
            capacity=settings.max_connections, ttl=settings.connection_ttl
        )
        self._failed: BoundedStore[_Held] = BoundedStore(
            capacity=min(settings.max_connections, MAX_FAILED_HANDSHAKES),
            ttl=settings.connection_ttl,
        )
        self._sessions: BoundedStore[Session] = BoundedStore(
            capacity=settings.max_sessions, ttl=settings.session_ttl
        )
        # Sessions forgotten while they could still be remembered again: a handshake that
        # resumes one remembers it when it ends, which may be after a failure forgot it.
        self._forgotten: BoundedStore[bool] = BoundedStore(
            capacity=settings.max_sessions, ttl=settings.session_ttl
        )
        self._latest: str | None = None
        self._latest_lock = threading.Lock()
        self._sessions_lock = threading.Lock()

    def create(self, connection: ClientConnection, *, session: Session | None = None) -> None:
        if session is not None:
            self.remember_session(session)
        held = _Held(connection)
        if connection.failure is not None:
            self._failed.put(connection.connection_id, held)
            return
        with self._latest_lock:
            self._connections.put(connection.connection_id, held, established=True)
            self._latest = connection.connection_id

    @contextmanager
    def update(self, connection_id: str) -> Iterator[ClientConnection]:
        held = self._connections.get(connection_id) or self._failed.get(connection_id)
        if held is None:
            raise ServiceError(
                "unknown_connection", "no such connection (never made or expired)", 404
            )
        with held.lock:
            yield held.connection

    def save(self, connection: ClientConnection) -> None:
        """Nothing to do: the stored object is the state."""

    def latest(self) -> str | None:
        return self._latest

    def connection_count(self) -> int:
        return len(self._connections)

    def session(self, session_id: str) -> Session | None:
        return self._sessions.get(session_id)

    def remember_session(self, session: Session) -> None:
        session_id = session.session_id.hex()
        with self._sessions_lock:
            if self._forgotten.get(session_id) is None:
                self._sessions.put(session_id, session, established=True)

    def forget_session(self, session_id: str) -> None:
        with self._sessions_lock:
            self._sessions.pop(session_id)
            self._forgotten.put(session_id, True)

    def session_count(self) -> int:
        return len(self._sessions)

    def captured(self, connection: ClientConnection) -> list[tuple[bytes, bytes]]:
        return list(connection.capture.records)


def _request_state(request: HandshakeRequest | None) -> dict[str, Any] | None:
    if request is None:
        return None
    return {
        "key_exchange": request.key_exchange.value if request.key_exchange else None,
        "cipher_suite": request.cipher_suite,
        "cipher_suites": list(request.cipher_suites) if request.cipher_suites else None,
        "resume": request.resume,
        "extended_master_secret": request.extended_master_secret,
        "encrypt_then_mac": request.encrypt_then_mac,
        "resumption": request.resumption,
        "supported_groups": _names(request.supported_groups),
        "signature_algorithms": _names(request.signature_algorithms),
        "client_certificate": request.client_certificate,
    }


def _names(names: tuple[str, ...] | None) -> list[str] | None:
    return list(names) if names is not None else None


def _names_from(state: dict[str, Any], key: str) -> tuple[str, ...] | None:
    names = state.get(key)  # absent from what an older version kept
    return tuple(names) if names is not None else None


def _request_from_state(state: dict[str, Any] | None) -> HandshakeRequest | None:
    if state is None:
        return None
    suites = state["cipher_suites"]
    return HandshakeRequest(
        key_exchange=KeyExchange(state["key_exchange"]) if state["key_exchange"] else None,
        cipher_suite=state["cipher_suite"],
        cipher_suites=tuple(suites) if suites else None,
        resume=state["resume"],
        extended_master_secret=state["extended_master_secret"],
        encrypt_then_mac=state["encrypt_then_mac"],
        resumption=state["resumption"],
        supported_groups=_names_from(state, "supported_groups"),
        signature_algorithms=_names_from(state, "signature_algorithms"),
        client_certificate=bool(state.get("client_certificate", True)),
    )


class RedisClientStore:
    """A :class:`ClientStore` in Redis, shared by every client_svc replica
    (lab_common.redis_state): each connection's handshake saved by kdf_lib, with what client_svc
    keeps beside it, sealed with the key-encryption key; the exchanges with server_svc, which no
    longer change once the handshake is over, are written once, beside it, and so are the
    records of each message the capture keeps (MessageCapture)."""

    def __init__(self, settings: ClientSettings, state: RedisState, config: ClientConfig) -> None:
        self.settings = settings
        self.state = state
        #: Restores handshakes; an established one no longer reads its suites or trust.
        self.config = config
        self._held: dict[int, Entry] = {}

    def _saved(self, connection: ClientConnection) -> bytes:
        capture = connection.capture
        return compact_json(
            {
                "handshake": connection.handshake.to_state(
                    reveal_secrets=self.settings.reveal_secrets
                ).decode(),
                "server_view": connection.server_view,
                "messages": connection.messages,
                "request": _request_state(connection.request),
                "failure": connection.failure,
                "capture": [capture.messages, capture.size, capture.truncated],
            }
        )

    def create(self, connection: ClientConnection, *, session: Session | None = None) -> None:
        """The connection, its session and which connection is the latest: one round trip."""
        kind = "conn" if connection.failure is None else "failed"
        key = self.state.key(kind, connection.connection_id)
        exchanges = connection._frozen_exchanges
        if exchanges is None:
            connection.freeze()
            exchanges = connection._frozen_exchanges
        assert exchanges is not None
        calls = [
            self.state.creating(
                key,
                self._saved(connection),
                self.settings.connection_ttl,
                x=self.state.seal_field(key, "x", exchanges),
            )
        ]
        if session is not None:
            calls.append(self.state.remembering_session(session, self.settings.session_ttl))
        if connection.failure is None:
            calls.append(
                self.state.putting_plain(
                    self.state.key("latest", "connection"),
                    connection.connection_id,
                    self.settings.connection_ttl,
                )
            )
        if not self.state.together(*calls)[0]:
            raise ServiceError("internal_error", "server_svc gave a connection ID twice", 500)

    @contextmanager
    def update(self, connection_id: str) -> Iterator[ClientConnection]:
        established = self.state.key("conn", connection_id)
        failed = self.state.key("failed", connection_id)
        try:
            with self.state.locked(established, failed) as entry:
                connection = self._restore(connection_id, entry)
                self._held[id(connection)] = entry
                try:
                    with written_back(entry, lambda: self._write(entry, connection), connection_id):
                        yield connection
                finally:
                    del self._held[id(connection)]
        except ServiceError as exc:
            if exc.code == "unknown_connection":
                raise ServiceError(
                    "unknown_connection", "no such connection (never made or expired)", 404
                ) from None
            raise

    def _restore(self, connection_id: str, entry: Entry) -> ClientConnection:
        try:
            saved = json.loads(entry.state)
            handshake = ClientHandshake.from_state(saved["handshake"].encode(), self.config)
        except (ValueError, KeyError) as exc:
            raise state_unavailable(f"unreadable state: {type(exc).__name__}") from None
        handshake.trace.replica = replica_name()
        trace_refusals(entry, handshake.trace)
        connection = ClientConnection(
            connection_id,
            handshake,
            saved["server_view"],
            [],
            messages=int(saved["messages"]),
            request=_request_from_state(saved["request"]),
            failure=saved["failure"],
            capture=_capture_from_state(saved),
        )
        connection._frozen_exchanges = self.state.open_field(entry, "x")
        return connection

    def _write(self, entry: Entry, connection: ClientConnection) -> None:
        # The records kept since the last write go in the same script as the state (no round
        # trip of their own), each message in its own sealed field ``m<n>`` of the connection's
        # attachments, written once: past the bounds nothing is added, and reading the
        # connection for a message does not fetch them. They are ciphertext, sealed as
        # everything here is.
        capture = connection.capture
        first = capture.messages - len(capture.records)
        attached: dict[str, bytes] = {}
        for n in range(capture.written, len(capture.records)):
            name = f"m{first + n}"
            attached[name] = self.state.seal_field(entry.key, name, _pack(*capture.records[n]))
        self.state.write(
            entry, self._saved(connection), self.settings.connection_ttl, attached=attached
        )
        capture.written = len(capture.records)

    def save(self, connection: ClientConnection) -> None:
        entry = self._held[id(connection)]
        self._write(entry, connection)
        entry.saved = True

    def latest(self) -> str | None:
        return self.state.get_plain(self.state.key("latest", "connection"))

    def connection_count(self) -> int:
        return self.state.count("conn")

    def session(self, session_id: str) -> Session | None:
        return self.state.session(session_id)

    def remember_session(self, session: Session) -> None:
        self.state.remember_session(session, self.settings.session_ttl)

    def forget_session(self, session_id: str) -> None:
        self.state.forget_session(session_id, self.settings.session_ttl)

    def session_count(self) -> int:
        return self.state.count("session")

    def captured(self, connection: ClientConnection) -> list[tuple[bytes, bytes]]:
        entry = self._held[id(connection)]
        capture = connection.capture
        names = [f"m{n}" for n in range(capture.messages - len(capture.records))]
        stored = []
        for name, value in zip(names, self.state.read_attached(entry, *names), strict=True):
            if value is None:
                raise state_unavailable(f"the records of message {name[1:]} are missing")
            stored.append(_unpack(value))
        return stored + capture.records


def _capture_from_state(saved: dict[str, Any]) -> MessageCapture:
    kept = saved.get("capture")
    if kept is None:  # kept by a version that captured nothing: its messages are not there
        return MessageCapture(truncated=int(saved["messages"]) > 0)
    messages, size, truncated = kept
    return MessageCapture(int(messages), int(size), bool(truncated))


def _pack(sent: bytes, reply: bytes) -> bytes:
    return struct.pack(">I", len(sent)) + sent + reply


def _unpack(value: bytes) -> tuple[bytes, bytes]:
    (length,) = struct.unpack_from(">I", value)
    return value[4 : 4 + length], value[4 + length :]
