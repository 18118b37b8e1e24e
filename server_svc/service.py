"""server_svc's work behind the views: each request run against the store, counted and logged.

The protocol is kdf_lib's ServerHandshake; :class:`ServerService` keeps its connections in a
:class:`~server_svc.store.ServerStore`, runs one request at a time per connection, and ends a
session on a fatal alert (RFC 5246 §7.2.2) in one place, :meth:`ServerService._locked`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from kdf_lib.errors import TLSError, UnexpectedMessage
from kdf_lib.handshake import ServerConfig, ServerHandshake
from kdf_lib.messages import ClientFinish, ClientHello, NewSessionTicket, ServerFlight
from kdf_lib.record import count_records
from kdf_lib.role import Role
from kdf_lib.trace import Trace
from lab_common.contract import ECHO_HEADER, MAX_RECORDS_PER_REQUEST, replica_name
from lab_common.errors import ServiceError
from lab_common.logs import AT_ONCE
from lab_common.metrics import LabMetrics
from lab_common.store import count_or_nan, held

from .store import ServerConnection, ServerStore
from .ticket_keys import TicketKeySource

log = logging.getLogger("lab")


@dataclass(frozen=True)
class Hello:
    """A new half-open connection and the server's flight for it."""

    connection_id: str
    flight: ServerFlight


@dataclass(frozen=True)
class Established:
    """An established handshake: the server's Finished record (None when resumed: it went out
    with the hello) and the server's summary (fingerprints and trace)."""

    reply: bytes | None
    summary: dict[str, Any]
    #: The NewSessionTicket that comes before a full handshake's Finished (RFC 5077), if any.
    new_session_ticket: NewSessionTicket | None = None


@dataclass(frozen=True)
class AlertReceived:
    """What a client's alert left: the handshake's state, and whether the connection is closed."""

    state: str
    closed: bool


@dataclass(frozen=True)
class Echo:
    """The echo of one request's records: the body of both /message (JSON) and /records."""

    reply: bytes
    first_seq: int
    records: int
    received: int
    reply_seq: int


def _fragments(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


class ServerService:
    """server_svc's one service object: the views call one method each."""

    def __init__(
        self,
        identity: ServerConfig,
        store: ServerStore,
        metrics: LabMetrics,
        *,
        reveal_secrets: bool,
        state_backend: str = "memory",
        tickets: TicketKeySource | None = None,
    ) -> None:
        self.identity = identity
        #: The session-ticket keys (RFC 5077); without them no ticket is issued or taken.
        self.tickets = tickets
        #: Reached by this object only (and by tests that look inside).
        self.store = store
        self.metrics = metrics
        self.reveal_secrets = reveal_secrets
        self.state_backend = state_backend
        metrics.gauge(
            "tls_lab_connections",
            "Connections held (half-open and established)",
            lambda: count_or_nan(store.connection_count),
        )
        metrics.gauge(
            "tls_lab_sessions",
            "Resumable sessions held",
            lambda: count_or_nan(store.session_count),
        )

    @contextmanager
    def _locked(self, connection_id: str) -> Iterator[ServerConnection]:
        """The connection, held for one request (:meth:`ServerStore.update`).

        Afterwards, whether the block raised or not, RFC 5246 §7.2.2: a fatal alert ends the
        session, received from the client or sent as this request's error answer (a record on
        a connection closed by close_notify, say), so that it can no longer be resumed. That
        matters for a resumed session and for one whose connection had finished already; a new
        full handshake's session is stored only once it is established.
        """
        with self.store.update(connection_id) as connection:
            alert_sent = False
            try:
                yield connection
            except TLSError:
                alert_sent = True
                raise
            finally:
                handshake = connection.handshake
                ended = alert_sent or handshake.failure is not None
                if ended and handshake.server_hello is not None:
                    self.store.forget_session(handshake.server_hello.session_id)

    def _count_handshake(
        self, handshake: ServerHandshake, outcome: str, seconds: float | None = None
    ) -> None:
        hello = handshake.server_hello
        suite = hello.cipher_suite if hello is not None else None
        self.metrics.handshake(
            resumed=handshake.connection.resumed if handshake.connection else False,
            key_exchange=suite.key_exchange.value if suite else "unknown",
            suite=suite.name if suite else "none",
            outcome=outcome,
            seconds=seconds,
        )

    def hello(self, hello: ClientHello) -> Hello:
        """Answer a ClientHello with the server's flight, on a new half-open connection."""
        handshake = ServerHandshake(
            self.identity,
            lookup_session=self.store.session,
            tickets=self.tickets.ring() if self.tickets is not None else None,
            trace=Trace(Role.SERVER, replica=replica_name()),
        )
        try:
            flight = handshake.receive_client_hello(hello)
        except TLSError as exc:
            self._count_handshake(handshake, exc.code)
            raise
        connection = self.store.create(handshake)
        log.info(
            "ServerHello sent",
            extra={
                "event": "server_hello",
                "connection_id": connection.connection_id,
                "cipher_suite": flight.server_hello.cipher_suite.name,
                "resumed": flight.resumed,
            },
        )
        return Hello(connection.connection_id, flight)

    def finish(self, connection_id: str, request: ClientFinish) -> Established:
        """The client's key exchange and Finished: the handshake is established, its session
        kept for resumption."""
        started = time.perf_counter()
        with self._locked(connection_id) as connection:
            handshake = connection.handshake
            try:
                reply = handshake.receive_client_finish(
                    request.client_key_exchange,
                    request.finished_record,
                    certificate_chain=request.certificate_chain,
                    certificate_verify=request.certificate_verify,
                )
            except TLSError as exc:
                self._count_handshake(handshake, exc.code)
                raise
            finally:
                log.info(
                    "client Finished processed",
                    extra={
                        "event": "finish",
                        "connection_id": connection_id,
                        "state": handshake.state.value,
                        "alert": handshake.error.code if handshake.error else None,
                    },
                )
            assert handshake.connection is not None and handshake.session is not None
            self._count_handshake(handshake, "established", time.perf_counter() - started)
            self.store.mark_established(connection_id)
            if handshake.session_to_cache is not None:
                self.store.remember_session(handshake.session_to_cache)
            # What the answer carries of the summary (GET /sessions has the rest): not the key
            # layout's fingerprints or the transcript hash, which nobody reads here.
            summary = {
                "fingerprints": handshake.connection.fingerprints(),
                "trace": handshake.trace.to_json(self.reveal_secrets),
            }
            # Thousands of connections may stay open: keep only what they still need.
            handshake.compact(reveal_secrets=self.reveal_secrets)
        return Established(reply, summary, handshake.new_session_ticket if reply else None)

    def alert(self, connection_id: str, description: str) -> AlertReceived:
        """The client's alert (RFC 5246 §7.2): a fatal one ends the handshake or connection and
        its session at once, instead of leaving a half-open connection to expire; close_notify
        closes an established connection and keeps its session resumable."""
        with self._locked(connection_id) as connection:
            handshake = connection.handshake
            was_established = handshake.connection is not None
            was_failed = handshake.error is not None
            handshake.receive_alert(description)
            if not was_established and not was_failed:
                self._count_handshake(handshake, description)
            conn = handshake.connection
            received = AlertReceived(
                handshake.state.value, conn.closed if conn is not None else True
            )
        log.info(
            "alert received",
            extra={"event": "alert_received", "connection_id": connection_id, "alert": description},
        )
        return received

    def message(self, connection_id: str, records: bytes, fragment_size: int) -> Echo:
        """Open the client's records on a connection and seal the echo, in records of at most
        ``fragment_size`` bytes of plaintext."""
        if count_records(records, MAX_RECORDS_PER_REQUEST) > MAX_RECORDS_PER_REQUEST:
            raise ServiceError(
                "too_many_records",
                f"one request may carry at most {MAX_RECORDS_PER_REQUEST} records",
                413,
            )
        with self._locked(connection_id) as connection:
            handshake = connection.handshake
            conn = handshake.connection
            if conn is None:
                # Application data in the middle of a handshake is a fatal unexpected_message
                # (RFC 5246 §7.2.2): the handshake fails and accepts nothing more.
                error = UnexpectedMessage("the handshake on this connection is not finished")
                handshake.abort(error)  # marks the handshake failed, then raises error
                raise error
            first_seq = conn.reader.seq
            try:
                plaintext = conn.open(records)
            except TLSError as exc:
                self.metrics.message(exc.code)
                log.info(
                    "record refused; connection closed",
                    extra={
                        "event": "message_refused",
                        "connection_id": connection_id,
                        "alert": exc.code,
                    },
                )
                raise
            last_seq = conn.reader.seq - 1
            header = ECHO_HEADER.format(bytes=len(plaintext), first=first_seq, last=last_seq)
            reply_seq = conn.writer.seq
            pieces = _fragments(header.encode() + plaintext, fragment_size)
            # Both sequence numbers' advance is kept before any reply record exists: neither a
            # replayed request nor a restart can make this or another replica seal again under
            # the same numbers.
            connection.messages += 1
            # Sealing changes nothing that is kept after this save: it is the request's last.
            reply = conn.seal_durably(pieces, lambda: self.store.save(connection, final=True))
            # The cipher objects hold OpenSSL state; an idle connection should not (a few KB each).
            conn.release()
        self.metrics.message("echoed", received=len(plaintext), sent=sum(map(len, pieces)))
        log.info(
            "message echoed",
            extra={
                "event": "message",
                "connection_id": connection_id,
                "bytes": len(plaintext),
                # The records opened and sealed: a history checker's raw material
                # (docs/scaling.md).
                "seq": first_seq,
                "records": last_seq - first_seq + 1,
                "reply_seq": reply_seq,
                "reply_records": len(pieces),
                AT_ONCE: True,  # written before the answer, even if the replica dies first
            },
        )
        return Echo(reply, first_seq, last_seq - first_seq + 1, len(plaintext), reply_seq)

    def session(self, connection_id: str) -> dict[str, Any]:
        """This side's view of a connection (GET /sessions): its handshake's summary."""
        with self._locked(connection_id) as connection:
            summary = connection.handshake.summary(reveal_secrets=self.reveal_secrets)
            summary["messages"] = connection.messages
        summary["connection_id"] = connection_id
        summary["secrets_revealed"] = self.reveal_secrets
        return summary

    def health(self) -> dict[str, Any]:
        """What /healthz answers: the replica, its state store and what it holds, the
        certificate served. The process is alive even when a shared store is not: then the
        counts are null and ``state`` says so (requests that need it answer 503)."""
        leaf = self.identity.certificate_chain[0]
        ecdsa_leaf = (
            self.identity.ecdsa_certificate_chain[0]
            if self.identity.ecdsa_certificate_chain
            else None
        )
        return {
            "status": "ok",
            "service": "server_svc",
            "replica": replica_name(),
            "state_backend": self.state_backend,
            **held(self.store.connection_count, self.store.session_count),
            "certificate": {
                "subject": leaf.subject.rfc4514_string(),
                "not_after": leaf.not_valid_after_utc.isoformat(),
            },
            # The ECDSA certificate of the ECDHE_ECDSA suites, null when the server has none.
            "ecdsa_certificate": None
            if ecdsa_leaf is None
            else {
                "subject": ecdsa_leaf.subject.rfc4514_string(),
                "not_after": ecdsa_leaf.not_valid_after_utc.isoformat(),
            },
        }
