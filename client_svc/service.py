"""client_svc's service object: handshakes against server_svc, messages, and what the views show.

The protocol is kdf_lib's ClientHandshake; :class:`ClientService` carries its messages over HTTP,
keeps connections in a :class:`~client_svc.store.ClientStore`, counts, logs, and writes key log
lines when the operator asked for them.

Every failed POST /message says what became of the message (``delivery``), and the connection
is closed after it, as a TLS connection is after any error (RFC 5246 §7.2.2): its record's
sequence number is spent whether or not the record arrived. docs/resilience.md has the rules.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from kdf_lib import keylog
from kdf_lib.errors import (
    ALERTS,
    BadCertificate,
    DecodeError,
    IllegalParameter,
    LabError,
    TLSError,
)
from kdf_lib.handshake import ClientConfig, ClientHandshake, Session
from kdf_lib.kex import NamedGroup, SignatureScheme
from kdf_lib.messages import (
    DEFAULT_GROUPS,
    DEFAULT_SIGNATURE_SCHEMES,
    MAX_FINISHED_RECORD,
    Fields,
    NewSessionTicket,
    ServerFlight,
    as_int,
    as_str,
    b64_field,
    decode_b64,
    encode_b64,
    hex_field,
)
from kdf_lib.record import (
    HEADER_LENGTH,
    MAX_CIPHERTEXT,
    MAX_PLAINTEXT,
    ContentType,
    RecordProtection,
    fragment_plaintext,
)
from kdf_lib.role import Role
from kdf_lib.suites import DEFAULT_SUITE, DEFAULT_SUITES, SUITES, CipherSuite
from kdf_lib.trace import Trace
from lab_common.contract import (
    ALERT,
    ECHO_HEADER,
    FINISH,
    HELLO,
    MAX_CAPTURED_BYTES,
    MAX_CAPTURED_MESSAGES,
    MAX_RECORD_BYTES,
    MESSAGE,
    NOT_PROCESSED_CODES,
    is_connection_id,
    replica_name,
)
from lab_common.errors import ServiceError
from lab_common.logs import AT_ONCE
from lab_common.metrics import LabMetrics
from lab_common.store import held

from .client_cert import client_certificate
from .config import ClientSettings
from .store import ClientConnection, ClientStore, HandshakeRequest
from .upstream import PeerError, ServerClient, UpstreamError, encode_body

log = logging.getLogger("lab")

#: A refused server certificate is the upstream's fault, not the caller's: client_svc is a
#: gateway here, so it answers 502 Bad Gateway (RFC 9110 §15.6.3).
CERTIFICATE_REFUSED_STATUS = 502

# What a failed POST /message did with the message (the ``delivery`` field of the error).
#: server_svc did not process it: it was never sent, or server_svc refused it before opening it.
NOT_DELIVERED = "not_delivered"
#: It was sent and server_svc may or may not have processed it; client_svc never resends it.
UNKNOWN = "unknown"
#: server_svc processed it and answered, but its reply could not be opened.
DELIVERED = "delivered"


def choose_suites(request: HandshakeRequest, session: Session | None) -> tuple[CipherSuite, ...]:
    """The suites the client offers: the session's, the ones asked for, or the default."""
    names = request.cipher_suites or ((request.cipher_suite,) if request.cipher_suite else ())
    suites = []
    for name in names:
        suite = SUITES.get(name)
        if suite is None:
            raise IllegalParameter(f"unknown cipher suite {name!r}")
        if request.key_exchange and suite.key_exchange != request.key_exchange:
            raise IllegalParameter(f"{suite.name} does not use {request.key_exchange} key exchange")
        suites.append(suite)
    if session is not None:
        _refuse_resume_conflicts(request, session, suites)
        return (session.suite,)
    if not suites:
        return (DEFAULT_SUITES[request.key_exchange] if request.key_exchange else DEFAULT_SUITE,)
    return tuple(suites)


def _refuse_resume_conflicts(
    request: HandshakeRequest, session: Session, suites: list[CipherSuite]
) -> None:
    """A resumption keeps the session's suite and extended master secret (RFC 5246 §7.4.1.2,
    RFC 7627 §5.3): a request that asks for others in the same breath is refused, not
    overridden in silence."""
    conflicts = []
    if suites and session.suite not in suites:
        conflicts.append(f"the session's suite is {session.suite.name}")
    if request.key_exchange and session.suite.key_exchange != request.key_exchange:
        conflicts.append(f"the session's key exchange is {session.suite.key_exchange.value}")
    ems = request.extended_master_secret
    if ems is not None and ems != session.extended_master_secret:
        conflicts.append(
            "the session was made "
            + ("with" if session.extended_master_secret else "without")
            + " the extended master secret"
        )
    if conflicts:
        raise ServiceError(
            "resume_conflict",
            "resume keeps the session's parameters, and this request asks for others: "
            + "; ".join(conflicts),
            400,
        )


def _groups(request: HandshakeRequest) -> tuple[NamedGroup, ...]:
    names = request.supported_groups
    return tuple(NamedGroup[n] for n in names) if names else DEFAULT_GROUPS


def _signature_schemes(request: HandshakeRequest) -> tuple[SignatureScheme, ...]:
    names = request.signature_algorithms
    return tuple(SignatureScheme[n] for n in names) if names else DEFAULT_SIGNATURE_SCHEMES


#: The text fields every step of server_svc's trace has (docs/protocol.md §1.7).
_STEP_TEXT = ("actor", "kind", "action", "purpose")
#: The longest text a step's field holds.
_MAX_STEP_TEXT = 4096


def _object(value: object, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DecodeError(f"{name} must be a JSON object")
    return value


def _trace_steps(value: object, name: str) -> list[Any]:
    if not isinstance(value, list):
        raise DecodeError(f"{name} must be a list of steps")
    for step in value:
        with Fields(step, "a trace step") as f:
            for key in _STEP_TEXT:
                f.required(key, lambda v, n: as_str(v, n, max_length=_MAX_STEP_TEXT))
            f.optional("replica", as_str, "")
            f.required("flight", as_int)
            f.required("data", _object)
            f.required("elapsed_ms", _number)
            f.optional("secrets", _object, None)  # only under server_svc's REVEAL_SECRETS
    return value


def _number(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DecodeError(f"{name} must be a number")
    return float(value)


def _fingerprints(value: object, name: str) -> dict[str, str]:
    with Fields(value, name) as f:
        return {key: f.required(key, hex_field(32)).hex() for key in ("master_secret", "key_block")}


def _same_connection(answered: object, connection_id: str, what: str) -> None:
    as_str(answered, "connection_id")
    if answered != connection_id:
        raise IllegalParameter(f"{what} names another connection")


def read_finish_answer(
    answer: dict[str, Any], connection_id: str, *, resumed: bool
) -> tuple[bytes | None, NewSessionTicket | None, dict[str, str]]:
    """server_svc's /handshake/finish answer, checked as strictly as a ServerHello
    (docs/protocol.md §1.3, §1.5): its Finished record (None when resumed), its
    NewSessionTicket, its fingerprints."""
    with Fields(answer, "finish answer") as f:
        _same_connection(f.required("connection_id", lambda v, n: v), connection_id, "the answer")
        record = f.required(
            "finished_record",
            lambda v, n: None if v is None else decode_b64(v, n, max_length=MAX_FINISHED_RECORD),
        )
        fingerprints = f.required("fingerprints", _fingerprints)
        f.required("trace", _trace_steps)
        ticket = f.optional("new_session_ticket", lambda v, n: NewSessionTicket.from_json(v), None)
    if resumed != (record is None):
        raise DecodeError(
            "a finish answer carries the server's Finished record in a full handshake only"
        )
    if resumed and ticket is not None:
        raise DecodeError("a resumed handshake's NewSessionTicket comes with the hello answer")
    return record, ticket, fingerprints


def read_message_answer(
    answer: dict[str, Any],
    connection_id: str,
    *,
    sent_seq: int,
    records: int,
    sent_bytes: int,
    reply_seq: int,
) -> bytes:
    """server_svc's /message answer, checked (docs/protocol.md §1.4, §1.5): its shape, and
    that ``received`` and ``reply_seq`` are what this side sent and expects. Returns the
    reply's records."""
    with Fields(answer, "message answer") as f:
        _same_connection(f.required("connection_id", lambda v, n: v), connection_id, "the answer")
        reply = f.required("record", b64_field(max_length=MAX_RECORD_BYTES))
        with Fields(f.required("received", lambda v, n: v), "received") as r:
            received = (
                r.required("seq", as_int),
                r.required("records", as_int),
                r.required("bytes", as_int),
            )
        answered_seq = f.required("reply_seq", as_int)
    if received != (sent_seq, records, sent_bytes):
        raise IllegalParameter(
            f"server_svc says it received {received[2]} bytes in {received[1]} records from "
            f"seq {received[0]}; {sent_bytes} bytes in {records} records from seq {sent_seq} "
            "were sent"
        )
    if answered_seq != reply_seq:
        raise IllegalParameter(f"the reply starts at seq {answered_seq}, not {reply_seq}")
    return reply


class KeyLogWriter:
    """Appends NSS key log lines (SSLKEYLOGFILE) — off unless the operator set a path."""

    def __init__(self, path: str) -> None:
        self.path = Path(path) if path else None
        self._lock = threading.Lock()

    def write(self, client_random: bytes, master_secret: bytes) -> None:
        if self.path is None:
            return
        line = keylog.format_line(client_random, master_secret) + "\n"
        with self._lock, self.path.open("a", encoding="ascii") as handle:
            handle.write(line)


class ConnectionLost(ServiceError):
    """server_svc no longer knows the connection: restarted, or expired it. Nothing was processed."""

    def __init__(self, connection_id: str, *, earlier: bool = False) -> None:
        when = "was lost earlier" if earlier else "is lost"
        super().__init__(
            "connection_lost",
            f"connection {connection_id} {when}: server_svc no longer knows it (it restarted, "
            "or the connection expired there), so the message was not delivered. Run POST "
            '/handshake for a new connection, or send again with "auto_reconnect": true',
            409,
            connection_id=connection_id,
            delivery=NOT_DELIVERED,
        )


E = TypeVar("E", bound=LabError)


def _failed_message(entry: ClientConnection, exc: E, delivery: str) -> E:
    """Close ``entry`` for a record it could not seal or open; the error says what became of
    the message."""
    entry.fail(exc.code, exc.message)
    exc.details.update(connection_id=entry.connection_id, delivery=delivery)
    return exc


def sealed_length(writer: RecordProtection, plaintext_length: int) -> int:
    """How many bytes of records ``writer`` makes of that much plaintext, without sealing it.

    Record sizes depend only on the suite, encrypt-then-MAC and the fragment's length (the
    padding is minimal), so a twin with zero keys seals one record of each length there is.
    """
    suite = writer.suite
    twin = RecordProtection(
        suite,
        mac_key=bytes(suite.mac_key_length),
        enc_key=bytes(suite.enc_key_length),
        fixed_iv=bytes(suite.fixed_iv_length),
        encrypt_then_mac=writer.encrypt_then_mac,
    )
    full, rest = divmod(plaintext_length, MAX_PLAINTEXT)
    length = (
        full * len(twin.seal(ContentType.application_data, bytes(MAX_PLAINTEXT))) if full else 0
    )
    if rest or not full:  # no data is still one (empty) record
        length += len(twin.seal(ContentType.application_data, bytes(rest)))
    return length


def message_request_length(connection_id: str, record_length: int) -> int:
    """The size of server_svc's POST /message body that carries records of this length."""
    envelope = len(encode_body({"connection_id": connection_id, "record": ""}))
    return envelope + 4 * -(-record_length // 3)  # base64


class ClientService:
    """What client_svc does: each view calls one method (``connect``, ``message``,
    ``session``, ``health``); the demos drive ``handshake`` and ``send`` directly.

    It owns the store and the per-connection locking, the metrics and the log lines.
    """

    def __init__(
        self,
        settings: ClientSettings,
        server: ServerClient,
        store: ClientStore,
        trust_anchors: tuple[Any, ...],
        keylog_writer: KeyLogWriter,
        lab_metrics: LabMetrics,
        *,
        keep_traces: bool = False,
    ) -> None:
        self.settings = settings
        self.server = server
        self.store = store
        self.trust_anchors = trust_anchors
        self.keylog = keylog_writer
        self.metrics = lab_metrics
        #: Keep each established handshake's step trace as objects, secret copies included,
        #: for a caller that reads them (the demos). Otherwise the trace is kept compressed,
        #: with secrets only under REVEAL_SECRETS, as server_svc keeps its own.
        self.keep_traces = keep_traces

    # -- what the views call ------------------------------------------------------------------

    def connect(self, request: HandshakeRequest) -> dict[str, Any]:
        """POST /handshake: run a handshake, count it, and describe it."""
        started = time.perf_counter()
        try:
            _, answer = self._handshake(request, describe=True)
        except (TLSError, ServiceError) as exc:
            self.metrics.handshake(
                resumed=request.resume is not None,
                key_exchange=request.key_exchange or "unknown",
                suite=request.cipher_suite or "default",
                outcome=exc.code,
            )
            raise
        assert answer is not None
        self.metrics.handshake(
            resumed=answer["resumed"],
            key_exchange=answer["key_exchange"],
            suite=answer["cipher_suite"],
            outcome="established",
            seconds=time.perf_counter() - started,
        )
        return answer

    def message(
        self, connection_id: str | None, plaintext: str, auto_reconnect: bool | None
    ) -> dict[str, Any]:
        """POST /message: send one message (on the latest connection if none is named), count
        it. ``auto_reconnect`` None means the AUTO_RECONNECT setting."""
        data = plaintext.encode("utf-8")
        if auto_reconnect is None:
            auto_reconnect = self.settings.auto_reconnect
        try:
            answer = self.send(connection_id, data, auto_reconnect=auto_reconnect)
        except (TLSError, ServiceError) as exc:
            if exc.code in NOT_PROCESSED_CODES:
                # client_svc's own state store failed it before anything was sealed or sent.
                exc.details.setdefault("delivery", NOT_DELIVERED)
            self.metrics.message(exc.code)
            raise
        self.metrics.message(
            "delivered", sent=len(data), received=len(answer["reply"]["plaintext"])
        )
        return answer

    def session(self, connection_id: str) -> dict[str, Any]:
        """GET /sessions/<connection_id>: what this side derived, recorded and exchanged."""
        with self._locked(connection_id) as entry:
            summary = entry.handshake.summary(reveal_secrets=self.settings.reveal_secrets)
            if summary["closed"] is not None:
                summary["closed"] = entry.closed  # client_svc may have stopped using it
            summary["messages"] = entry.messages
            summary["failure"] = entry.failure
            summary["connection_id"] = entry.connection_id
            summary["server_fingerprints"] = entry.server_view.get("fingerprints")
            summary["exchanges"] = entry.recorded_exchanges()
        summary["secrets_revealed"] = self.settings.reveal_secrets
        return summary

    def health(self) -> dict[str, Any]:
        """GET /healthz: the settings that matter to a caller, and what the store holds."""
        settings = self.settings
        return {
            "status": "ok",
            "service": "client_svc",
            "replica": replica_name(),
            "state_backend": settings.state_backend,
            **held(self.store.connection_count, self.store.session_count),
            "server_url": settings.server_url,
            "server_name": settings.server_name,
            "keylog": bool(settings.sslkeylogfile),
            "upstream_timeouts": {
                "connect": settings.upstream_connect_timeout,
                "read": settings.upstream_read_timeout,
            },
            "upstream_limits": {
                "max_response_bytes": settings.upstream_max_response_bytes,
                "server_max_body_bytes": settings.server_max_body_bytes,
            },
            "auto_reconnect": settings.auto_reconnect,
        }

    # -- the store ----------------------------------------------------------------------------

    @contextmanager
    def _locked(self, connection_id: str) -> Iterator[ClientConnection]:
        """The connection, held alone for the block (:meth:`ClientStore.update`).

        After the block, whether it raised or not: a fatal alert ends the session (RFC 5246
        §7.2.2), so no later handshake may resume it. This is the one place that says so.
        """
        with self.store.update(connection_id) as entry:
            try:
                yield entry
            finally:
                self._end_session_if_fatal(entry)

    def _end_session_if_fatal(self, entry: ClientConnection) -> None:
        """RFC 5246 §7.2.2: a session whose connection or handshake a fatal alert ended (sent
        or received) is never resumed, a session that a failed resumption offered included."""
        session_id = entry.handshake.ended_session_id
        if session_id:
            self.store.forget_session(session_id.hex())

    def _connection_id(self, connection_id: str | None) -> str:
        """The connection named, or else the latest one."""
        found = connection_id or self.store.latest()
        if found is None:
            raise ServiceError("no_connection", "run POST /handshake first", 409)
        return found

    def _exchange(
        self, exchanges: list[dict[str, Any]], path: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        entry: dict[str, Any] = {"request": {"method": "POST", "path": path, "body": body}}
        exchanges.append(entry)
        response = self.server.call("POST", path, body)
        entry["response"] = response
        return response

    # -- handshakes ---------------------------------------------------------------------------

    def handshake(self, request: HandshakeRequest) -> ClientConnection:
        """Run a handshake against server_svc and keep its connection, established or failed."""
        return self._handshake(request, describe=False)[0]

    def _handshake(
        self, request: HandshakeRequest, *, describe: bool
    ) -> tuple[ClientConnection, dict[str, Any] | None]:
        """:meth:`handshake`, and with ``describe`` its /handshake answer (:meth:`_describe`),
        built while the trace and the exchanges are still objects, before they are compacted:
        rendered once, not compressed and then read back."""
        session = None
        if request.resume:
            session = self.store.session(request.resume)
            if session is None:
                raise ServiceError(
                    "unknown_session", "no such session to resume (never made or expired)", 404
                )
        tickets = request.resumption == "ticket"
        if session is not None and not tickets and session.ticket is not None:
            session = dataclasses.replace(session, ticket=None)  # resume by its ID instead
        config = ClientConfig(
            trust_anchors=self.trust_anchors,
            server_name=self.settings.server_name,
            cipher_suites=choose_suites(request, session),
            extended_master_secret=(
                session.extended_master_secret
                if session
                else request.extended_master_secret is not False
            ),
            encrypt_then_mac=request.encrypt_then_mac,
            groups=_groups(request),
            signature_schemes=_signature_schemes(request),
            session_tickets=tickets,
            **client_certificate(self.settings, request.client_certificate),
        )
        machine = ClientHandshake(
            config, resume=session, trace=Trace(Role.CLIENT, replica=replica_name())
        )
        exchanges: list[dict[str, Any]] = []
        hello = machine.client_hello()
        answer = self._exchange(exchanges, HELLO, hello.to_json())
        connection_id = answer.pop("connection_id", None)
        if not is_connection_id(connection_id):
            raise ServiceError(
                "upstream_bad_response", "server_svc's hello answer has no connection_id", 502
            )
        result = ClientConnection(
            connection_id, machine, {"fingerprints": None}, exchanges, request=request
        )
        try:
            flight = ServerFlight.from_json(answer)
            answer["connection_id"] = connection_id
            self._complete(result, flight)
        except (TLSError, ServiceError) as exc:
            raise self._handshake_failed(result, exc) from None
        described = self._describe(result) if describe else None
        result.freeze()
        machine.compact(
            reveal_secrets=self.settings.reveal_secrets, freeze_trace=not self.keep_traces
        )
        connection = machine.connection
        assert connection is not None
        self.keylog.write(connection.client_random, connection.master_secret_for_keylog)
        self.store.create(result, session=machine.session)
        log.info(
            "handshake complete",
            extra={
                "event": "handshake",
                "connection_id": connection_id,
                "cipher_suite": connection.suite.name,
                "resumed": connection.resumed,
                "fingerprints_match": result.server_view["fingerprints"]
                == connection.fingerprints(),
            },
        )
        return result, described

    def _complete(self, entry: ClientConnection, flight: ServerFlight) -> None:
        """The rest of the handshake after the hello: certificate, key exchange, Finished.

        Any failure before ``/handshake/finish`` is sent (certificate, ServerKeyExchange
        signature, unexpected suite or extension) means no secret ever leaves the client.
        """
        machine = entry.handshake
        finish = machine.receive_server_flight(flight)
        reply = self._exchange(
            entry.exchanges,
            FINISH,
            {"connection_id": entry.connection_id, **finish.to_json()},
        )
        record, ticket, fingerprints = read_finish_answer(
            reply, entry.connection_id, resumed=flight.resumed
        )
        if record is not None:
            machine.receive_server_finished(record, ticket)
        entry.server_view["fingerprints"] = fingerprints

    def _handshake_failed(
        self, entry: ClientConnection, exc: TLSError | ServiceError
    ) -> TLSError | ServiceError:
        """Keep the failed handshake for GET /sessions; the error names its connection_id.

        Whoever ended it, the machine ends in ``failed`` with the error that ended it: this
        side's fatal alert, which server_svc is told of; server_svc's, which needs no answer
        (RFC 5246 §7.2.2); or a transport failure, which is no alert. The first two end the
        session a resumption offered as well."""
        if isinstance(exc, BadCertificate):
            exc.message = f"server certificate refused before any secret was sent: {exc.message}"
            exc.status = CERTIFICATE_REFUSED_STATUS
        if isinstance(exc, PeerError) and exc.code == "unknown_connection":
            exc = ServiceError(
                "connection_lost",
                f"server_svc no longer knows connection {entry.connection_id} (it restarted, "
                "or the handshake took longer than its half-open limit); run POST /handshake again",
                409,
            )
        machine = entry.handshake
        if isinstance(exc, PeerError) and exc.code in ALERTS:
            if machine.error is None:
                machine.receive_alert(exc.code)
        else:
            machine.end(exc)
            if isinstance(exc, TLSError) and exc.code in ALERTS:
                self._send_alert(entry, exc.code)
        self._end_session_if_fatal(entry)
        entry.fail(exc.code, exc.message)
        entry.freeze()
        self.store.create(entry)
        log.info(
            "handshake failed",
            extra={
                "event": "handshake_failed",
                "connection_id": entry.connection_id,
                "code": exc.code,
            },
        )
        exc.details["connection_id"] = entry.connection_id
        return exc

    def _send_alert(self, entry: ClientConnection, alert: str) -> None:
        """Tell server_svc that this side ended the handshake (RFC 5246 §7.2), so that it drops
        the half-open connection now instead of at HALF_OPEN_TTL. Best effort: the caller's
        error stands whatever becomes of it. It carries the alert name only, nothing secret."""
        body = {"connection_id": entry.connection_id, "alert": alert}
        try:
            if entry.handshake.connection is None:
                self._exchange(entry.exchanges, ALERT, body)
            else:  # the handshake's exchanges are kept as they were when it ended
                self.server.call("POST", ALERT, body)
        except (TLSError, ServiceError) as exc:
            log.info(
                "alert not delivered",
                extra={
                    "event": "alert_failed",
                    "connection_id": entry.connection_id,
                    "alert": alert,
                    "code": exc.code,
                },
            )

    def _describe(self, entry: ClientConnection) -> dict[str, Any]:
        """The /handshake answer: this side's results, the server's fingerprints, the merged ladder."""
        machine = entry.handshake
        summary = machine.summary(reveal_secrets=self.settings.reveal_secrets)
        conn = machine.connection
        assert conn is not None
        server_fingerprints = entry.server_view.get("fingerprints")
        client_steps = summary["trace"]
        # The server's steps came in its /handshake/finish answer.
        finish_answer = entry.recorded_exchanges()[-1].get("response") or {}
        server_steps = finish_answer.get("trace")
        ladder = sorted(
            [*client_steps, *(server_steps if isinstance(server_steps, list) else [])],
            key=lambda step: step.get("flight", 0) if isinstance(step, dict) else 0,
        )
        out = {
            "connection_id": entry.connection_id,
            "session_id": summary["session_id"],
            "cipher_suite": summary["cipher_suite"],
            "key_exchange": conn.suite.key_exchange.value,
            "resumed": conn.resumed,
            "extended_master_secret": conn.extended_master_secret,
            "encrypt_then_mac": conn.encrypt_then_mac,
            "resumption": entry.request.resumption if entry.request else "session_id",
            # Mutual TLS: the certificate this side authenticated the session with, or null.
            "client_identity": summary["client_identity"],
            # RFC 5077: the ticket this side now holds for the session (its length and hint
            # only: a ticket is a bearer token for the session), or null.
            "session_ticket": (
                {
                    "lifetime_hint": machine.session.ticket_lifetime_hint,
                    "length": len(machine.session.ticket),
                }
                if machine.session is not None and machine.session.ticket is not None
                else None
            ),
            "client_random": summary["client_random"],
            "server_random": summary["server_random"],
            "fingerprints": summary["fingerprints"],
            "server_fingerprints": server_fingerprints,
            "fingerprints_match": server_fingerprints == summary["fingerprints"],
            "key_block_layout": summary["key_block_layout"],
            "trace": ladder,
            "secrets_revealed": self.settings.reveal_secrets,
        }
        if self.settings.reveal_secrets:
            out["secrets"] = summary.get("secrets")
        return out

    # -- messages -----------------------------------------------------------------------------

    def send(
        self, connection_id: str | None, plaintext: bytes, *, auto_reconnect: bool = False
    ) -> dict[str, Any]:
        """Send one message and open the reply.

        With ``auto_reconnect``, a connection that server_svc no longer knows is replaced by a
        new handshake (resuming its session if the server still has it) and the message is
        sent once more, on the new connection; that is safe because server_svc provably did
        not process it. An unknown outcome is never retried.
        """
        with self._locked(self._connection_id(connection_id)) as entry:
            try:
                return self._send_on(entry, plaintext)
            except ConnectionLost:
                if not auto_reconnect:
                    raise
        fresh = self._reconnect(entry)
        try:
            with self._locked(fresh.connection_id) as current:
                result = self._send_on(current, plaintext)
        except (TLSError, ServiceError) as exc:
            exc.details["previous_connection_id"] = entry.connection_id
            raise
        conn = fresh.handshake.connection
        assert conn is not None
        result["reconnected"] = {
            "previous_connection_id": entry.connection_id,
            "reason": "connection_lost",
            "resumed": conn.resumed,
            "session_id": conn.session_id.hex(),
            "cipher_suite": conn.suite.name,
        }
        return result

    def _reconnect(self, lost: ClientConnection) -> ClientConnection:
        """A new handshake with what the lost connection used: its suite and its flags."""
        conn = lost.handshake.connection
        assert conn is not None
        before = lost.request or HandshakeRequest()
        session_id = conn.session_id.hex() if conn.session_id else None
        resume = session_id if session_id and self.store.session(session_id) else None
        request = HandshakeRequest(
            cipher_suite=conn.suite.name,
            resume=resume,
            # A resumption keeps the session's own (asking again could only contradict it).
            extended_master_secret=None if resume else before.extended_master_secret,
            encrypt_then_mac=before.encrypt_then_mac,
            resumption=before.resumption,
            supported_groups=before.supported_groups,
            signature_algorithms=before.signature_algorithms,
            client_certificate=before.client_certificate,
        )
        try:
            fresh = self.handshake(request)
        except (TLSError, ServiceError) as exc:
            exc.details.update(previous_connection_id=lost.connection_id, delivery=NOT_DELIVERED)
            exc.message = f"{exc.message} (while replacing lost connection {lost.connection_id})"
            raise
        resumed = fresh.handshake.connection is not None and fresh.handshake.connection.resumed
        if resume and not resumed:
            # server_svc has forgotten the session too (a restart): offering it again is useless.
            self.store.forget_session(resume)
        log.info(
            "connection replaced",
            extra={
                "event": "reconnect",
                "connection_id": fresh.connection_id,
                "previous_connection_id": lost.connection_id,
                "resumed": resumed,
            },
        )
        return fresh

    def _send_on(self, entry: ClientConnection, plaintext: bytes) -> dict[str, Any]:
        """One message on ``entry``, which the caller holds (one message at a time per
        connection: sequence numbers stay in step)."""
        conn = entry.handshake.connection
        if conn is None or entry.closed:
            raise self._closed(entry)
        self._refuse_unsendable(entry, conn.writer, len(plaintext))
        sent_seq = conn.writer.seq
        try:
            # Kept before sealed: no restart can make a replica seal again under these numbers.
            record = conn.seal_durably(
                fragment_plaintext(plaintext), lambda: self.store.save(entry)
            )
        except (TLSError, ServiceError) as exc:
            # The sequence number space is exhausted, or the store could not keep the advance:
            # nothing was sealed, but the numbers are spent on this side, so the connection
            # cannot go on.
            raise _failed_message(entry, exc, NOT_DELIVERED) from None
        try:
            answer = self.server.call(
                "POST",
                MESSAGE,
                {"connection_id": entry.connection_id, "record": encode_b64(record)},
            )
        except ServiceError as exc:
            # The record's sequence number is spent whether or not it arrived: the
            # connection cannot go on safely (and a TLS connection would not either).
            error = self._not_answered(entry, exc)
            log.info(
                "message not answered; connection closed",
                extra={
                    "event": "message_failed",
                    "connection_id": entry.connection_id,
                    "code": error.code,
                    "delivery": error.details["delivery"],
                    "seq": sent_seq,
                    "records": conn.writer.seq - sent_seq,
                    AT_ONCE: True,  # the history checker's: written even if the replica dies
                },
            )
            raise error from None
        reply_seq = conn.reader.seq
        try:
            reply_record = read_message_answer(
                answer,
                entry.connection_id,
                sent_seq=sent_seq,
                records=conn.writer.seq - sent_seq,
                sent_bytes=len(plaintext),
                reply_seq=reply_seq,
            )
            reply = conn.open(reply_record)
            echo = ECHO_HEADER.format(
                bytes=len(plaintext), first=sent_seq, last=conn.writer.seq - 1
            ).encode()
            if reply != echo + plaintext:
                raise IllegalParameter("the reply is not the echo of the message sent")
        except TLSError as exc:
            # A fatal alert of this side's (an answer that does not decode too): the connection
            # fails, and with it the session (see _locked), on server_svc's side as well.
            conn.fail(exc.code)
            self._send_alert(entry, exc.code)
            raise _failed_message(entry, exc, DELIVERED) from None
        conn.release()  # no cipher objects kept while the connection is idle
        entry.capture.keep(record, reply_record)  # for the Wireshark export, within its bounds
        entry.messages += 1
        log.info(
            "message delivered",
            extra={
                "event": "message",
                "connection_id": entry.connection_id,
                "seq": sent_seq,
                "records": conn.writer.seq - sent_seq,
                "reply_seq": reply_seq,
                "reply_records": conn.reader.seq - reply_seq,
                AT_ONCE: True,  # the history checker's: written even if the replica dies
            },
        )
        return {
            "connection_id": entry.connection_id,
            "sent": {
                "seq": sent_seq,
                "record": encode_b64(record),
                "records": conn.writer.seq - sent_seq,
            },
            "reply": {
                "seq": reply_seq,
                "record": encode_b64(reply_record),
                "records": conn.reader.seq - reply_seq,
                "plaintext": reply.decode("utf-8", errors="replace"),
            },
            "reconnected": None,
        }

    def _refuse_unsendable(
        self, entry: ClientConnection, writer: RecordProtection, plaintext_length: int
    ) -> None:
        """Refuse, before it is sealed, a message whose request server_svc would refuse for its
        size: nothing is sent, no sequence number is spent, the connection stays usable."""
        limit = self.server.max_request_bytes
        if limit is None:
            return
        records = max(1, -(-plaintext_length // MAX_PLAINTEXT))
        most = plaintext_length + records * (MAX_CIPHERTEXT - MAX_PLAINTEXT + HEADER_LENGTH)
        if message_request_length(entry.connection_id, most) <= limit:
            return  # fits whatever the suite adds (TLS caps it at 2048 bytes a record)
        needed = message_request_length(
            entry.connection_id, sealed_length(writer, plaintext_length)
        )
        if needed <= limit:
            return
        fits, over = 0, plaintext_length  # the longest plaintext that fits: fits <= it < over
        while over - fits > 1:
            middle = (fits + over) // 2
            length = message_request_length(entry.connection_id, sealed_length(writer, middle))
            fits, over = (middle, over) if length <= limit else (fits, middle)
        raise ServiceError(
            "body_too_large",
            f"this message would reach server_svc as a {needed}-byte request, over its limit of "
            f"{limit} bytes (SERVER_MAX_BODY_BYTES): it was not sent, and connection "
            f"{entry.connection_id} is unchanged. At most {fits} bytes of UTF-8 plaintext fit "
            "in one message on it",
            413,
            connection_id=entry.connection_id,
            delivery=NOT_DELIVERED,
        )

    def _closed(self, entry: ClientConnection) -> ServiceError:
        """The error for a message on a connection that can no longer carry one."""
        failure = entry.failure or {"code": "unexpected_message", "message": "closed"}
        if failure["code"] == "connection_lost" and entry.handshake.connection is not None:
            return ConnectionLost(entry.connection_id, earlier=True)
        what = (
            "was closed by" if entry.handshake.connection is not None else "failed its handshake:"
        )
        return ServiceError(
            "unexpected_message",
            f"connection {entry.connection_id} {what} {failure['code']} ({failure['message']}); "
            "nothing more can be sent on it: run POST /handshake for a new connection",
            409,
            connection_id=entry.connection_id,
            delivery=NOT_DELIVERED,
        )

    def _not_answered(self, entry: ClientConnection, exc: ServiceError) -> ServiceError:
        """Close the connection; say whether server_svc processed the message (see NOT_DELIVERED)."""
        if isinstance(exc, PeerError) and exc.code == "unknown_connection":
            lost = ConnectionLost(entry.connection_id)
            entry.fail(lost.code, lost.message)
            return lost
        handshake = entry.handshake
        if isinstance(exc, PeerError) and exc.code in ALERTS and handshake.failure is None:
            conn = handshake.connection
            if conn is not None and not conn.closed:
                # server_svc's fatal alert ends the connection, and its session, here too.
                handshake.receive_alert(exc.code)
        sent = exc.sent if isinstance(exc, UpstreamError) else True
        peer_status = exc.details.get("peer_status")
        # server_svc checks a request and opens its record before it changes anything, and
        # answers 4xx when it refuses: a 4xx means not processed, and so do the 5xx codes of
        # a state store it could not use. Another 5xx, or an answer that is not server_svc's
        # JSON, can come after the record was opened.
        refused = isinstance(peer_status, int) and (
            400 <= peer_status < 500
            or (isinstance(exc, PeerError) and exc.code in NOT_PROCESSED_CODES)
        )
        if isinstance(exc, PeerError) and exc.code == "body_too_large":
            exc.message = (
                f"{exc.message}: the message was not delivered, but its record's sequence number "
                f"is spent, so connection {entry.connection_id} is closed. With client_svc's "
                "SERVER_MAX_BODY_BYTES set to server_svc's MAX_BODY_BYTES, such a message is "
                "refused before it is sent, and the connection kept"
            )
        if not sent or refused:
            entry.fail(exc.code, exc.message)
            exc.details.update(connection_id=entry.connection_id, delivery=NOT_DELIVERED)
            return exc
        message = (
            f"{exc.message}, after the message was sent: server_svc may or may not have "
            f"processed it. client_svc does not resend it; connection {entry.connection_id} "
            "is closed (check GET /sessions/<connection_id> on server_svc, or handshake again)"
        )
        entry.fail("outcome_unknown", message)
        return ServiceError(
            "outcome_unknown",
            message,
            504,
            connection_id=entry.connection_id,
            delivery=UNKNOWN,
            cause=exc.code,
        )

    def pcap(self, connection_id: str) -> tuple[bytes, bool, bool]:
        """GET /sessions/<connection_id>/pcap: the connection as a pcapng capture
        (lab_analysis.pcap), whether it holds the key log line, and whether it is truncated.

        The capture holds the handshake and the records of the messages client_svc kept
        (MessageCapture: the first MAX_CAPTURED_MESSAGES, within MAX_CAPTURED_BYTES); when later
        messages are left out, a comment on its last packet says how many.

        The line holds the master secret, so it goes in only under REVEAL_SECRETS, the switch
        that shows that secret in GET /sessions already; SSLKEYLOGFILE writes it to a file on
        this host, which is no consent to hand it to whoever can reach this port.
        """
        from lab_analysis import pcap
        from lab_analysis.recorded import parse_exchanges

        with self._locked(connection_id) as entry:
            conn = entry.handshake.connection
            if conn is None:
                failure = entry.failure or {"code": "unknown"}
                raise ServiceError(
                    "handshake_incomplete",
                    f"connection {connection_id} failed its handshake ({failure['code']}): no "
                    f"TLS connection was established to export; GET /sessions/{connection_id} "
                    "shows what was exchanged",
                    409,
                    connection_id=connection_id,
                )
            exchanges = entry.recorded_exchanges()
            captured = self.store.captured(entry)
            truncated, total = entry.capture.truncated, entry.messages
            line = None
            if self.settings.reveal_secrets:
                line = keylog.format_line(conn.client_random, conn.master_secret_for_keylog)
        recorded = parse_exchanges({"exchanges": exchanges, "connection_id": connection_id})
        messages = [
            (role, data)
            for sent, reply in captured
            for role, data in ((Role.CLIENT, sent), (Role.SERVER, reply))
        ]
        truncation = None
        if truncated:
            truncation = (
                f"Truncated: client_svc keeps the records of a connection's first "
                f"{MAX_CAPTURED_MESSAGES} messages, within {MAX_CAPTURED_BYTES} bytes; this "
                f"capture holds {len(captured)} of its {total} messages, the later ones are not in it"
            )
        data = pcap.export(
            recorded, messages, keylog_line=line, start=time.time(), truncation=truncation
        )
        return data, line is not None, truncated
