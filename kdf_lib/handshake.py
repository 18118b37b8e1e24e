"""The TLS 1.2 client and server handshake state machines, sans-I/O.

RFC 5246 §7.3 (full and abbreviated handshakes), §7.4.9 (Finished), RFC 7627 (extended
master secret), RFC 7366 (encrypt-then-MAC), RFC 8422 (ECDHE). Each machine is a table of
(state, handshake type) -> (handler, next state), as python-hyper/h2's connection.py keeps
its transitions. The rules:

* a message whose (state, type) pair is not in the table is unexpected_message;
* a handler never sets the state: the machine moves to the rule's next state once the
  handler returns (or to its alternative state, when the rule's condition holds then);
* any error leaves the machine in FAILED, and a FAILED machine accepts nothing more;
* Finished messages travel as protected handshake records at sequence number 0
  (there is no ChangeCipherSpec record in the lab; keys switch where CCS would be);
* an ESTABLISHED machine hands out a :class:`Connection` for application data.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from hmac import compare_digest
from typing import Any, ClassVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from . import ffdhe, kex, pki
from .client_auth import (
    VERIFIABLE_SCHEMES,
    ClientAuth,
    ClientPrivateKey,
    PeerIdentity,
    choose_signature_scheme,
    sign_certificate_verify,
    verify_certificate_verify,
    verify_client_chain,
)
from .connection import Connection
from .errors import (
    ALERTS,
    ALL_ERRORS,
    DecodeError,
    DecryptError,
    HandshakeFailure,
    IllegalParameter,
    InsufficientSecurity,
    InternalError,
    LabError,
    LocalProtocolError,
    TLSError,
    UnexpectedMessage,
    UnsupportedCertificate,
    UnsupportedExtension,
)
from .kex import NamedGroup, SignatureScheme
from .messages import (
    DEFAULT_GROUPS,
    DEFAULT_SIGNATURE_SCHEMES,
    MAX_CERTIFICATE_REQUEST_ENTRIES,
    MAX_DISTINGUISHED_NAME,
    CertificateMessage,
    CertificateRequest,
    CertificateVerify,
    ClientCertificateType,
    ClientExtensions,
    ClientFinish,
    ClientHello,
    ClientKeyExchange,
    Finished,
    NewSessionTicket,
    ServerExtensions,
    ServerFlight,
    ServerHello,
    ServerHelloDone,
    ServerKeyExchange,
)
from .prf import (
    HASHES,
    extended_master_secret,
    finished_verify_data,
    key_block,
    master_secret,
)
from .record import ContentType, connection_record_layers
from .role import Role
from .suites import (
    DEFAULT_SUITE,
    SUITES,
    Authentication,
    CipherSuite,
    KeyExchange,
    key_block_layout,
    split_key_block,
)
from .tickets import KEY_NAME_LENGTH, TicketKeys, TicketState
from .trace import (
    MIN_HASHED_LENGTH,
    NullTrace,
    Step,
    StepKind,
    Trace,
    compact_json,
    fingerprint,
    fingerprint_fields,
    fingerprint_key,
    fingerprint_kind,
    keyed_fingerprint,
)
from .wire import HandshakeType

# ClientFinish and ServerFlight (kdf_lib.messages), Connection (kdf_lib.connection) and the
# trace names (kdf_lib.trace) live in their own modules; importers of this one still find them.
__all__ = [
    "MIN_HASHED_LENGTH",
    "ClientConfig",
    "ClientFinish",
    "ClientHandshake",
    "ClientState",
    "Connection",
    "ServerConfig",
    "ServerFlight",
    "ServerHandshake",
    "ServerState",
    "Session",
    "Step",
    "StepKind",
    "fingerprint",
    "fingerprint_fields",
    "fingerprint_key",
    "fingerprint_kind",
    "keyed_fingerprint",
]

RandomBytes = Callable[[int], bytes]
_ERRORS_BY_CODE = {error.code: error for error in ALL_ERRORS}


def _transcript_hash(transcript: bytes, hash_name: str) -> bytes:
    digest = hashes.Hash(HASHES[hash_name]())
    digest.update(transcript)
    return digest.finalize()


# -- shared values ----------------------------------------------------------------


@dataclass(frozen=True)
class Session:
    """What a session ID resumes: the master secret and the parameters it was made with."""

    session_id: bytes
    suite: CipherSuite
    extended_master_secret: bool
    master_secret: bytes = field(repr=False)
    server_name: str | None = None
    #: The client's copy of an RFC 5077 ticket for this session, and its lifetime hint.
    ticket: bytes | None = field(default=None, repr=False)
    ticket_lifetime_hint: int = 0
    #: The client certificate that authenticated the session (mutual TLS): on the server the
    #: peer's, verified; on the client its own. A resumption keeps it.
    client_identity: PeerIdentity | None = None

    def to_state(self) -> dict[str, Any]:
        """Plain data for a store; it holds the master secret (encrypt it at rest)."""
        return {
            "session_id": self.session_id.hex(),
            "suite": self.suite.name,
            "extended_master_secret": self.extended_master_secret,
            "master_secret": self.master_secret.hex(),
            "server_name": self.server_name,
            "ticket": self.ticket.hex() if self.ticket is not None else None,
            "ticket_lifetime_hint": self.ticket_lifetime_hint,
            "client_identity": (
                self.client_identity.to_json() if self.client_identity is not None else None
            ),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Session:
        ticket = state["ticket"]
        identity = state.get("client_identity")
        return cls(
            bytes.fromhex(state["session_id"]),
            SUITES[state["suite"]],
            bool(state["extended_master_secret"]),
            bytes.fromhex(state["master_secret"]),
            state["server_name"],
            bytes.fromhex(ticket) if ticket is not None else None,
            int(state["ticket_lifetime_hint"]),
            PeerIdentity.from_json(identity) if identity is not None else None,
        )


# -- server ------------------------------------------------------------------------------


class ServerState(Enum):
    WAIT_CLIENT_HELLO = "wait_client_hello"
    WAIT_CLIENT_CERTIFICATE = "wait_client_certificate"
    WAIT_CLIENT_KEY_EXCHANGE = "wait_client_key_exchange"
    WAIT_CERTIFICATE_VERIFY = "wait_certificate_verify"
    WAIT_CLIENT_FINISHED = "wait_client_finished"
    WAIT_RESUMED_FINISHED = "wait_resumed_finished"
    ESTABLISHED = "established"
    FAILED = "failed"


@dataclass(frozen=True)
class ServerIdentity:
    """One certificate chain and its key, with the encodings the handshake sends."""

    certificate_chain: tuple[x509.Certificate, ...]
    private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = field(repr=False)
    chain_der: tuple[bytes, ...] = field(init=False, repr=False)
    chain_pem: tuple[str, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.certificate_chain:
            raise ValueError("a server needs a certificate")
        if self.certificate_chain[0].public_key() != self.private_key.public_key():
            raise ValueError("the private key does not match the certificate")
        object.__setattr__(self, "chain_der", tuple(_der(c) for c in self.certificate_chain))
        object.__setattr__(
            self, "chain_pem", tuple(pki.certificate_chain_pem(self.certificate_chain))
        )

    @property
    def ec_group(self) -> NamedGroup | None:
        """The curve of an ECDSA certificate's key as a named group; None for RSA."""
        if isinstance(self.private_key, ec.EllipticCurvePrivateKey):
            return NamedGroup[self.private_key.curve.name]
        return None


@dataclass(frozen=True)
class ServerConfig:
    """The server's identity and policy; built once and shared by every handshake.

    ``certificate_chain`` and ``private_key`` are the RSA identity (RSA and ECDHE_RSA suites);
    ``ecdsa_certificate_chain`` and ``ecdsa_private_key``, when given, the ECDSA one that
    ECDHE_ECDSA suites need: a server with both picks by the suite, as dual-certificate
    servers do. Without an ECDSA identity those suites are never chosen.
    """

    certificate_chain: tuple[x509.Certificate, ...]
    private_key: rsa.RSAPrivateKey = field(repr=False)
    cipher_suites: tuple[CipherSuite, ...] = tuple(SUITES.values())
    groups: tuple[NamedGroup, ...] = DEFAULT_GROUPS
    signature_schemes: tuple[SignatureScheme, ...] = DEFAULT_SIGNATURE_SCHEMES
    #: Mutual TLS (RFC 5246 §7.4.4): ask for a client certificate, and whether to insist.
    client_auth: ClientAuth = ClientAuth.NONE
    #: The CAs a client certificate must chain to; needed unless ``client_auth`` is NONE.
    client_trust_anchors: tuple[x509.Certificate, ...] = ()
    ecdsa_certificate_chain: tuple[x509.Certificate, ...] = ()
    ecdsa_private_key: ec.EllipticCurvePrivateKey | None = field(default=None, repr=False)
    chain_der: tuple[bytes, ...] = field(init=False, repr=False)
    chain_pem: tuple[str, ...] = field(init=False, repr=False)
    identities: dict[Authentication, ServerIdentity] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.client_auth is not ClientAuth.NONE and not self.client_trust_anchors:
            raise ValueError("client authentication needs client_trust_anchors")
        # The CertificateRequest names them all, within what a client's codec reads.
        if len(self.client_trust_anchors) > MAX_CERTIFICATE_REQUEST_ENTRIES or any(
            len(anchor.subject.public_bytes()) > MAX_DISTINGUISHED_NAME
            for anchor in self.client_trust_anchors
        ):
            raise ValueError(
                f"at most {MAX_CERTIFICATE_REQUEST_ENTRIES} client CAs, each name at most "
                f"{MAX_DISTINGUISHED_NAME} bytes"
            )
        if not self.certificate_chain:
            raise ValueError("a server needs a certificate")
        object.__setattr__(self, "chain_der", tuple(_der(c) for c in self.certificate_chain))
        object.__setattr__(
            self, "chain_pem", tuple(pki.certificate_chain_pem(self.certificate_chain))
        )
        identities = {Authentication.RSA: ServerIdentity(self.certificate_chain, self.private_key)}
        if bool(self.ecdsa_certificate_chain) != (self.ecdsa_private_key is not None):
            raise ValueError("an ECDSA identity needs both its certificate chain and its key")
        if self.ecdsa_private_key is not None:
            if self.ecdsa_private_key.curve.name not in pki.ECDSA_CURVES:
                raise ValueError(f"ECDSA keys must be on one of {tuple(pki.ECDSA_CURVES)}")
            identities[Authentication.ECDSA] = ServerIdentity(
                self.ecdsa_certificate_chain, self.ecdsa_private_key
            )
        object.__setattr__(self, "identities", identities)


class _KeySchedule:
    """Master secret, key block and record layers for one handshake, once the PMS is known."""

    def __init__(
        self,
        side: Role,
        suite: CipherSuite,
        master: bytes,
        client_random: bytes,
        server_random: bytes,
        encrypt_then_mac: bool,
        random_bytes: RandomBytes,
    ) -> None:
        self.suite = suite
        self.master_secret = master
        self.key_block = key_block(
            master, client_random, server_random, suite.key_block_length, suite.prf_hash
        )
        self.keys = split_key_block(suite, self.key_block)
        self.fingerprint_key = fingerprint_key(master, client_random, server_random, suite.prf_hash)
        self.writer, self.reader = connection_record_layers(
            self.keys, side, encrypt_then_mac=encrypt_then_mac, random_bytes=random_bytes
        )

    def verify_data(self, sender: Role, transcript: bytes) -> bytes:
        return self.verify_data_of_hash(sender, _transcript_hash(transcript, self.suite.prf_hash))

    def verify_data_of_hash(self, sender: Role, transcript_hash: bytes) -> bytes:
        return finished_verify_data(
            self.master_secret, sender, transcript_hash, self.suite.prf_hash
        )


@dataclass(frozen=True)
class _Rule:
    """One transition: run ``handler`` on the message, then move to the state of the first
    of ``branches`` whose condition holds of the machine after the handler ran, else to
    ``next_state``."""

    handler: Callable[[Any, Any], Any]
    next_state: Enum
    branches: tuple[tuple[Callable[[Any], bool], Enum], ...] = ()


class _Machine:
    """Common parts of both sides: the table dispatch, the transcript and failure handling.

    The step trace is a side channel passed in (``trace=Trace(side)``); without one the
    machine records into a :class:`~kdf_lib.trace.NullTrace`, which keeps nothing.
    """

    side: ClassVar[Role]
    _table: ClassVar[dict[tuple[Enum, HandshakeType], _Rule]] = {}
    _failed_state: ClassVar[Any] = None

    def __init__(self, random_bytes: RandomBytes, trace: Trace | None) -> None:
        if trace is not None and trace.actor != self.side:
            raise ValueError(
                f"a {self.side} handshake needs a {self.side} trace, not {trace.actor!r}"
            )
        self.random_bytes = random_bytes
        self.transcript = b""
        #: The step trace (teaching data), injected; without one nothing is recorded.
        self.trace: Trace = trace if trace is not None else NullTrace(self.side)
        self.error: LabError | None = None
        self.state: Any = None
        self._schedule: _KeySchedule | None = None
        self.connection: Connection | None = None
        self.hello: ClientHello | None = None
        self.server_hello: ServerHello | None = None
        self._closed_by_peer = False
        #: The session this handshake made or resumed, once established.
        self.session: Session | None = None
        self._transcript_sha256: str | None = None

    def _dispatch(self, msg_type: HandshakeType, message: Any) -> Any:
        rule = self._table.get((self.state, msg_type))
        if rule is None:
            state = self.state.value
            self._fail(UnexpectedMessage(f"{msg_type.name} is not expected in state {state}"))
        assert rule is not None
        try:
            result = rule.handler(self, message)
        except TLSError as exc:
            self._fail(exc)
        self.state = next(
            (state for condition, state in rule.branches if condition(self)), rule.next_state
        )
        return result

    def compact(self, *, reveal_secrets: bool = False, freeze_trace: bool = True) -> None:
        """Release what an established handshake no longer needs: the transcript (its
        hash stays for :meth:`summary`), the key schedule (the Connection holds the record
        layers), the trace's objects (kept as compressed JSON, unless ``freeze_trace`` is
        false: a holder that still reads :attr:`trace.steps`) and the record layers' cipher
        objects (made again by the next record). A server holding thousands of connections
        calls this once each is established."""
        if self.connection is None:
            raise LocalProtocolError("only an established handshake can be compacted")
        self._transcript_sha256 = fingerprint(self.transcript)
        self.transcript = b""
        self._schedule = None
        if freeze_trace:
            self.trace.freeze(reveal_secrets)
        self.connection.release()

    # persistence ------------------------------------------------------------------

    def to_state(self, *, reveal_secrets: bool = False) -> bytes:
        """The machine between two calls, as bytes a store can keep and :meth:`from_state`
        reads back (in another process, too). They hold the master secret and, mid-handshake,
        an ephemeral private key: a store must encrypt them at rest. The trace is kept as
        ``to_json(reveal_secrets)`` renders it, so no hex secret is kept unless revealed."""
        schedule = self._schedule
        state: dict[str, Any] = {
            "format": _STATE_FORMAT,
            "side": self.side.value,
            "state": self.state.value,
            "error": _error_state(self.error),
            "closed_by_peer": self._closed_by_peer,
            "transcript": self.transcript.hex(),
            "transcript_sha256": self._transcript_sha256,
            "hello": self.hello.to_json() if self.hello else None,
            "server_hello": _server_hello_state(self.server_hello),
            "schedule": (
                {
                    "suite": schedule.suite.name,
                    "master_secret": schedule.master_secret.hex(),
                    "encrypt_then_mac": schedule.writer.encrypt_then_mac,
                    "write_seq": schedule.writer.seq,
                    "read_seq": schedule.reader.seq,
                }
                if schedule is not None and self.connection is None
                else None
            ),
            "connection": self.connection.to_state() if self.connection else None,
            "session": self.session.to_state() if self.session else None,
            "trace": (
                None if isinstance(self.trace, NullTrace) else self.trace.to_state(reveal_secrets)
            ),
            **self._side_state(),
        }
        # orjson (kdf_lib.trace.compact_json): the stdlib's encoder took most of the time of
        # saving a machine, which a shared store does several times a handshake. Read back with
        # the stdlib, which reads every integer exactly (a spent sequence number is 2^64).
        return compact_json(state)

    def _side_state(self) -> dict[str, Any]:
        return {}

    def _restore(self, state: dict[str, Any], trace_clock: Callable[[], float]) -> None:
        if state.get("format") != _STATE_FORMAT or state.get("side") != self.side.value:
            raise ValueError(f"not a saved {self.side} handshake")
        self.state = type(self.state)(state["state"])
        self.error = _error_from_state(state["error"])
        self._closed_by_peer = bool(state["closed_by_peer"])
        self.transcript = bytes.fromhex(state["transcript"])
        self._transcript_sha256 = state["transcript_sha256"]
        self.hello = ClientHello.from_json(state["hello"]) if state["hello"] else None
        self.server_hello = _server_hello_from_state(state["server_hello"])
        if state["trace"] is not None:
            self.trace = Trace.from_state(state["trace"], trace_clock)
        if state["session"] is not None:
            self.session = Session.from_state(state["session"])
        saved = state["schedule"]
        if saved is not None:
            assert self.hello is not None and self.server_hello is not None
            schedule = _KeySchedule(
                self.side,
                SUITES[saved["suite"]],
                bytes.fromhex(saved["master_secret"]),
                self.hello.random,
                self.server_hello.random,
                bool(saved["encrypt_then_mac"]),
                self.random_bytes,
            )
            schedule.writer.seq, schedule.reader.seq = saved["write_seq"], saved["read_seq"]
            self._schedule = schedule
        if state["connection"] is not None:
            self.connection = Connection.from_state(
                self.side, state["connection"], trace=self.trace, random_bytes=self.random_bytes
            )
            self.connection.on_fail = self._connection_failed

    def abort(self, exc: TLSError) -> None:
        """End the handshake with ``exc`` because the caller saw something the
        machine cannot (e.g. application data before Finished); raises ``exc``."""
        self._fail(exc)

    def receive_alert(self, description: str) -> None:
        """The peer sent an alert (RFC 5246 §7.2): ``close_notify`` closes an established
        connection (nothing more is accepted on it, the session stays resumable); any error
        alert is fatal, here as for the peer: the handshake or connection ends, and the caller
        must forget the session (§7.2.2). Raises ValueError for an alert this lab does not
        define (see :data:`kdf_lib.errors.ALERTS`)."""
        error = ALERTS.get(description)
        if error is None and description != "close_notify":
            raise ValueError(f"unknown alert {description!r}")
        if self.state is self._failed_state or (
            self.connection is not None and self.connection.closed
        ):
            # Nothing follows the end of a connection (RFC 5246 §7.2): like any other message,
            # an alert there is unexpected, and the failure that ended it stays the one shown.
            raise UnexpectedMessage("the connection has ended; it accepts nothing more")
        if error is None:
            self.trace.add(
                StepKind.RECEIVE_ALERT,
                "receive alert close_notify",
                "the peer closed the connection",
                alert=description,
            )
            if self.connection is not None:
                self.connection.fail("close_notify")
            else:
                # A close_notify before the handshake finished ends it like any other alert,
                # but it is no error: a session it was resuming stays resumable (§7.2.1).
                self._end(UnexpectedMessage("the peer closed the connection during the handshake"))
                self._closed_by_peer = True
            return
        self.trace.add(
            StepKind.RECEIVE_ALERT,
            f"receive alert {description}",
            "the peer refused the handshake or a record; both sides drop it",
            alert=description,
        )
        self._end(error(f"the peer sent a fatal {description} alert"))

    def _end(self, exc: LabError) -> None:
        """Mark the handshake failed with ``exc`` and close its connection, if any; a machine
        that has failed already keeps its first failure."""
        if self.state is not self._failed_state:
            self.state = self._failed_state
            self.error = exc
            if self.connection is not None:
                self.connection.fail(exc.code)

    def end(self, exc: LabError) -> None:
        """Fail the handshake with ``exc`` without raising it: for a caller that saw the
        handshake end outside the machine (an answer that does not decode, a transport that
        gave up). A machine that has failed already keeps its first failure."""
        if self.state is not self._failed_state:
            self._end(exc)
            self.trace.add(
                StepKind.ABORT, "abort", "the handshake failed; no keys are used", alert=exc.code
            )

    def _fail(self, exc: LabError) -> None:
        self.end(exc)
        raise exc

    def _connection_failed(self, code: str) -> None:
        """The established connection ended with the fatal alert ``code`` (a record that did
        not open, say): the machine fails with it too, so that its state, its error and the
        connection agree (RFC 5246 §7.2.2)."""
        if self.state is self._failed_state:
            return
        self.state = self._failed_state
        self.error = _ERRORS_BY_CODE.get(code, InternalError)(
            f"the connection ended with a fatal {code} alert"
        )
        self.trace.add(
            StepKind.ABORT,
            "abort",
            "a fatal alert ended the connection; its keys are no longer used",
            alert=code,
        )

    def _add(self, message: Any) -> None:
        self.transcript += message.encode()

    def _open_finished(self, record: bytes, sender: Role) -> None:
        """Open the peer's Finished record (seq 0 under the new keys) and check verify_data."""
        assert self._schedule is not None
        content_type, plaintext = self._schedule.reader.open(record)
        if content_type is not ContentType.handshake:
            raise UnexpectedMessage("expected a Finished handshake record")
        received = Finished.decode(plaintext)
        expected = self._schedule.verify_data(sender, self.transcript)
        if not compare_digest(received.verify_data, expected):
            raise DecryptError(f"{sender} Finished does not verify")
        # verify_data travels only inside the protected record: like the keys, it shows as a
        # keyed fingerprint that the sender's step matches, and in hex only when revealed.
        self.trace.add(
            StepKind.VERIFY_FINISHED,
            f"verify {sender} Finished",
            "proves the peer derived the same master secret and saw the same handshake",
            secrets={"verify_data": received.verify_data},
            fingerprint_key=self._schedule.fingerprint_key,
            transcript_sha256=fingerprint(self.transcript),
            record_bytes=len(record),
        )
        self._add(received)

    def _seal_finished(self, sender: Role) -> bytes:
        assert self._schedule is not None
        transcript_hash = _transcript_hash(self.transcript, self._schedule.suite.prf_hash)
        verify_data = self._schedule.verify_data_of_hash(sender, transcript_hash)
        message = Finished(verify_data)
        record = self._schedule.writer.seal(ContentType.handshake, message.encode())
        self.trace.add(
            StepKind.SEND_FINISHED,
            f"send {sender} Finished",
            "verify_data = PRF(master_secret, label, Hash(transcript)), sent protected at seq 0",
            secrets={"verify_data": verify_data},
            fingerprint_key=self._schedule.fingerprint_key,
            transcript_hash=transcript_hash.hex(),
            record_bytes=len(record),
        )
        self._add(message)
        return record

    def _derive(
        self,
        pre_master_secret: bytes | None,
        suite: CipherSuite,
        client_random: bytes,
        server_random: bytes,
        *,
        ems: bool,
        etm: bool,
        resumed_master: bytes | None = None,
        trace_pre_master: bool = True,
    ) -> None:
        # A server must not show anything computed from an RSA-decrypted pre-master secret
        # alone: the same ciphertext sent twice would give the same fingerprint when its
        # padding is good and a fresh random one when not, a Bleichenbacher oracle.
        pms_trace: dict[str, bytes] = {}
        if trace_pre_master and pre_master_secret is not None:
            pms_trace["pre_master_secret"] = pre_master_secret
        if resumed_master is not None:
            master = resumed_master
            self.trace.add(
                StepKind.REUSE_MASTER_SECRET,
                "reuse master secret",
                "an abbreviated handshake keeps the session's master secret; new randoms give new keys",
                secrets={"master_secret": master},
            )
        elif ems:
            assert pre_master_secret is not None
            session_hash = _transcript_hash(self.transcript, suite.prf_hash)
            master = extended_master_secret(pre_master_secret, session_hash, suite.prf_hash)
            self.trace.add(
                StepKind.EXTENDED_MASTER_SECRET,
                "master secret (extended)",
                'PRF(pms, "extended master secret", session_hash): binds the secret to this handshake (RFC 7627)',
                secrets={**pms_trace, "master_secret": master},
                prf_hash=suite.prf_hash,
                session_hash=session_hash.hex(),
            )
        else:
            assert pre_master_secret is not None
            master = master_secret(pre_master_secret, client_random, server_random, suite.prf_hash)
            self.trace.add(
                StepKind.MASTER_SECRET,
                "master secret",
                'PRF(pms, "master secret", client_random + server_random)',
                secrets={**pms_trace, "master_secret": master},
                prf_hash=suite.prf_hash,
                seed="client_random + server_random",
            )
        schedule = _KeySchedule(
            self.side, suite, master, client_random, server_random, etm, self.random_bytes
        )
        self._schedule = schedule
        self.trace.add(
            StepKind.KEY_EXPANSION,
            "key expansion",
            'key_block = PRF(master_secret, "key expansion", server_random + client_random)',
            secrets={"key_block": schedule.key_block},
            seed="server_random + client_random",
            key_block_length=suite.key_block_length,
        )
        layout = key_block_layout(suite)
        self.trace.add(
            StepKind.KEY_SPLIT,
            "key split",
            "the key block is cut in RFC 5246 §6.3 order; each side writes with its own keys",
            layout=[{"name": p.name, "start": p.start, "length": p.length} for p in layout],
            secrets={p.name: getattr(schedule.keys, p.name) for p in layout if p.length},
            fingerprint_key=schedule.fingerprint_key,
        )

    def _establish(
        self,
        client_random: bytes,
        server_random: bytes,
        session_id: bytes,
        *,
        resumed: bool,
        ems: bool,
        etm: bool,
    ) -> Connection:
        schedule = self._schedule
        assert schedule is not None
        self.connection = Connection(
            self.side,
            schedule.suite,
            schedule.keys,
            schedule.master_secret,
            schedule.key_block,
            schedule.writer,
            schedule.reader,
            client_random=client_random,
            server_random=server_random,
            session_id=session_id,
            resumed=resumed,
            extended_master_secret=ems,
            encrypt_then_mac=etm and not schedule.suite.is_aead,
            trace=self.trace,
        )
        self.connection.on_fail = self._connection_failed
        return self.connection

    @property
    def failure(self) -> str | None:
        """The code of the error that ended this handshake or its connection, on either side;
        None while it works or after a close_notify. Once set, the session must not be resumed
        (RFC 5246 §7.2.2): the services forget it in the one place that checks this."""
        if self._closed_by_peer:
            return None
        if self.error is not None:
            return self.error.code
        conn = self.connection
        if conn is not None and conn.closed and conn.close_reason != "close_notify":
            return conn.close_reason
        return None

    @property
    def ended_by_alert(self) -> bool:
        """Whether a fatal alert (a protocol error of either side) ended this handshake or its
        connection, rather than close_notify or a transport that gave up: RFC 5246 §7.2.2 then
        forbids resuming its session."""
        return self.failure in _ERRORS_BY_CODE

    def summary(self, *, reveal_secrets: bool = False) -> dict[str, Any]:
        """This side's view of the handshake as public JSON data.

        Secrets appear (hex, under ``"secrets"``) only with ``reveal_secrets``; otherwise
        the master secret and key block are represented by their SHA-256 fingerprints, the
        six keys by theirs or, below 16 bytes, by keyed ones (:meth:`Connection.key_layout`).
        ``"trace"`` holds the injected trace's steps: ``[]`` when the machine was given none.
        """
        conn = self.connection
        hello, server_hello = self.hello, self.server_hello
        suite = server_hello.cipher_suite if server_hello else None
        out: dict[str, Any] = {
            "side": self.side.value,
            "state": self.state.value,
            "error": self.error.code if self.error else None,
            "cipher_suite": suite.name if suite else None,
            "key_exchange": suite.key_exchange.value if suite else None,
            "client_random": hello.random.hex() if hello else None,
            "server_random": server_hello.random.hex() if server_hello else None,
            "session_id": server_hello.session_id.hex() if server_hello else None,
            "extended_master_secret": (
                server_hello.extensions.extended_master_secret if server_hello else None
            ),
            "encrypt_then_mac": server_hello.extensions.encrypt_then_mac if server_hello else None,
            "resumed": conn.resumed if conn else None,
            "closed": conn.closed if conn else None,
            "sequence_numbers": (
                {"write": conn.writer.seq, "read": conn.reader.seq} if conn else None
            ),
            # Mutual TLS: the client certificate that authenticated the session (subject and
            # SHA-256), verified by the server; null without one.
            "client_identity": (
                self.session.client_identity.to_json()
                if self.session is not None and self.session.client_identity is not None
                else None
            ),
            "fingerprints": conn.fingerprints() if conn else None,
            "key_block_layout": conn.key_layout() if conn else None,
            # The handshake messages as sent: 40 bytes or more once a hello was sent or
            # received, and a machine that saw none has nothing to show.
            "transcript_sha256": self._transcript_sha256
            or (fingerprint(self.transcript) if self.transcript else None),
            "trace": self.trace.to_json(reveal_secrets),
        }
        if reveal_secrets and conn is not None:
            out["secrets"] = conn.reveal_secrets()
        return out


class ServerHandshake(_Machine):
    """One server-side handshake.

    Drive it with :meth:`receive_client_hello`, then :meth:`receive_client_finish`.
    """

    side = Role.SERVER
    _failed_state = ServerState.FAILED

    def __init__(
        self,
        config: ServerConfig,
        *,
        lookup_session: Callable[[bytes], Session | None] = lambda _sid: None,
        tickets: TicketKeys | None = None,
        random_bytes: RandomBytes = secrets.token_bytes,
        trace: Trace | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__(random_bytes, trace)
        self.config = config
        self.now = now
        #: The CertificateRequest this handshake sent, if it asks for a client certificate.
        self._certificate_request: CertificateRequest | None = None
        #: The client's verified certificate, between its Certificate and CertificateVerify.
        self._client_leaf: x509.Certificate | None = None
        self.lookup_session = lookup_session
        #: The ticket keys (RFC 5077); without them no ticket is issued or taken.
        self.tickets = tickets
        self.state = ServerState.WAIT_CLIENT_HELLO
        self._ephemeral: kex.EphemeralKey | None = None
        self._resumed_session: Session | None = None
        self._resumed_from_ticket = False
        #: The NewSessionTicket this handshake sent: in the resumed flight, or (full handshake)
        #: before the Finished that :meth:`receive_client_finish` returns, for its caller to send.
        self.new_session_ticket: NewSessionTicket | None = None

    # public API ---------------------------------------------------------------

    def receive_client_hello(self, hello: ClientHello) -> ServerFlight:
        self.trace.flight = 2
        result: ServerFlight = self._dispatch(HandshakeType.client_hello, hello)
        if self._certificate_request is not None:
            result = dataclasses.replace(result, certificate_request=self._certificate_request)
        return result

    @classmethod
    def from_state(
        cls,
        data: bytes,
        config: ServerConfig,
        *,
        lookup_session: Callable[[bytes], Session | None] = lambda _sid: None,
        tickets: TicketKeys | None = None,
        random_bytes: RandomBytes = secrets.token_bytes,
        trace_clock: Callable[[], float] = time.perf_counter,
    ) -> ServerHandshake:
        """The handshake :meth:`to_state` saved, going on with this process's ``config`` (the
        same certificate and policy on every replica) and ticket keys. Raises ValueError for
        data that is not a saved server handshake."""
        machine = cls(
            config, lookup_session=lookup_session, tickets=tickets, random_bytes=random_bytes
        )
        state = json.loads(data)
        machine._restore(state, trace_clock)
        ephemeral = state["ephemeral"]
        if ephemeral is not None:
            machine._ephemeral = kex.import_ephemeral_key(
                NamedGroup[ephemeral["group"]], bytes.fromhex(ephemeral["key"])
            )
        resumed = state["resumed_session"]
        machine._resumed_session = Session.from_state(resumed) if resumed else None
        machine._resumed_from_ticket = bool(state["resumed_from_ticket"])
        return machine

    def _side_state(self) -> dict[str, Any]:
        ephemeral = self._ephemeral
        return {
            "ephemeral": (
                {"group": ephemeral.group.name, "key": kex.export_ephemeral_key(ephemeral).hex()}
                if ephemeral is not None
                else None
            ),
            "resumed_session": self._resumed_session.to_state() if self._resumed_session else None,
            "resumed_from_ticket": self._resumed_from_ticket,
        }

    @property
    def session_to_cache(self) -> Session | None:
        """The session a session-ID cache may keep once established: not one resumed from a
        ticket, whose session ID the client chose (it could name another client's session)."""
        return None if self._resumed_from_ticket else self.session

    def receive_client_finish(
        self,
        client_key_exchange: ClientKeyExchange | None,
        finished_record: bytes,
        *,
        certificate_chain: Sequence[str] | None = None,
        certificate_verify: CertificateVerify | None = None,
    ) -> bytes:
        """Take the client's second flight; returns the server Finished record (full handshake,
        preceded by :attr:`new_session_ticket` when one is sent) or ``b""`` (abbreviated
        handshake, where the server spoke first). ``certificate_chain`` (PEM, possibly empty)
        and ``certificate_verify`` answer a CertificateRequest (RFC 5246 §7.4.6, §7.4.8)."""
        self.trace.flight = 4
        if certificate_chain is not None:
            self._dispatch(HandshakeType.certificate, certificate_chain)
        elif self.state is ServerState.WAIT_CLIENT_CERTIFICATE:
            # RFC 5246 §7.4.6: a client asked for a certificate answers, if only with an empty one.
            self._fail(UnexpectedMessage("the client's Certificate is missing"))
        if client_key_exchange is not None:
            self._dispatch(HandshakeType.client_key_exchange, client_key_exchange)
        elif self.state is ServerState.WAIT_CLIENT_KEY_EXCHANGE:
            self._fail(UnexpectedMessage("ClientKeyExchange is missing"))
        if certificate_verify is not None:
            self._dispatch(HandshakeType.certificate_verify, certificate_verify)
        elif self.state is ServerState.WAIT_CERTIFICATE_VERIFY:
            self._fail(UnexpectedMessage("CertificateVerify is missing"))
        result: bytes = self._dispatch(HandshakeType.finished, finished_record)
        return result

    # handlers -------------------------------------------------------------------

    def _choose(
        self, hello: ClientHello
    ) -> tuple[CipherSuite, NamedGroup | None, SignatureScheme | None]:
        offered = hello.extensions.supported_groups
        groups = [g for g in offered if g in self.config.groups and not kex.is_ffdhe(g)]
        dh_groups = [g for g in offered if g in self.config.groups and kex.is_ffdhe(g)]
        if not any(kex.is_ffdhe(g) for g in offered):
            # RFC 7919 §4: a client that names no finite-field group predates RFC 7919; the
            # server may still use DHE, with a group of its own choosing.
            dh_groups = [g for g in self.config.groups if kex.is_ffdhe(g)]
        schemes = [
            s for s in hello.extensions.signature_algorithms if s in self.config.signature_schemes
        ]
        for suite in hello.cipher_suites:
            if suite not in self.config.cipher_suites:
                continue
            identity = self.config.identities.get(suite.authentication)
            if identity is None:
                continue  # no certificate for this suite (an ECDSA one, RFC 8422 §5.3)
            if suite.key_exchange is KeyExchange.ECDHE_RSA:
                # The scheme signs with this suite's certificate key (RFC 5246 §7.4.1.4.1).
                usable = [
                    s
                    for s in schemes
                    if kex.scheme_uses_ecdsa(s) == (identity.ec_group is not None)
                ]
                # RFC 8422 §5.1: an ECC suite only when the client can take the certificate's
                # curve too, so the handshake cannot fail on the server's key later.
                curve_ok = (
                    identity.ec_group is None
                    or identity.ec_group in hello.extensions.supported_groups
                )
                if groups and usable and curve_ok:
                    return suite, groups[0], usable[0]
                continue
            if suite.key_exchange is KeyExchange.DHE:
                # DHE_RSA: the RSA certificate key signs the parameters.
                rsa_schemes = [s for s in schemes if s.name.startswith("rsa_")]
                # RFC 7919 §4: none of the client's finite-field groups is acceptable, so no
                # DHE suite: another one, or handshake_failure below.
                if dh_groups and rsa_schemes:
                    return suite, dh_groups[0], rsa_schemes[0]
                continue
            return suite, None, None
        raise HandshakeFailure("no cipher suite in common")

    def _offers_tickets(self, hello: ClientHello) -> bool:
        return self.tickets is not None and hello.extensions.session_ticket is not None

    def _from_ticket(self, hello: ClientHello) -> Session | None:
        """The session in the hello's ticket, if the server can and will resume it."""
        ticket = hello.extensions.session_ticket
        if self.tickets is None or not ticket:
            return None
        state = self.tickets.open(ticket)
        self.trace.add(
            StepKind.OPEN_TICKET,
            "open the session ticket",
            "the session's state came back with the client, sealed under a key only the servers "
            "hold (RFC 5077); a ticket they cannot open just means a full handshake",
            opened=state is not None,
            key_name=ticket[:KEY_NAME_LENGTH].hex(),
            ticket_length=len(ticket),
        )
        if state is None:
            return None
        session = Session(
            hello.session_id,
            state.suite,
            state.extended_master_secret,
            state.master_secret,
            state.server_name,
            client_identity=state.client_identity,
        )
        accepted = self._acceptable(hello, session)
        self._resumed_from_ticket = accepted is not None
        return accepted

    def _resumable(self, hello: ClientHello) -> Session | None:
        if not hello.session_id:
            return None
        session = self.lookup_session(hello.session_id)
        return None if session is None else self._acceptable(hello, session)

    def _acceptable(self, hello: ClientHello, session: Session) -> Session | None:
        """``session`` if this hello may resume it; None for a full handshake instead."""
        if session.suite not in hello.cipher_suites:
            return None
        if (session.server_name or "").lower() != (hello.extensions.server_name or "").lower():
            return None  # RFC 6066 §3: never resume a session made for another name
        if session.extended_master_secret and not hello.extensions.extended_master_secret:
            # RFC 7627 §5.3: abort rather than resume an EMS session without EMS.
            raise HandshakeFailure(
                "session used the extended master secret; the resuming hello does not"
            )
        if not session.extended_master_secret and hello.extensions.extended_master_secret:
            return None  # RFC 7627 §5.3: fall back to a full handshake
        if self.config.client_auth is ClientAuth.REQUIRED and session.client_identity is None:
            return None  # a session made without a client certificate: authenticate now
        return session

    def _on_client_hello(self, hello: ClientHello) -> ServerFlight:
        self.hello = hello
        self._add(hello)
        self.trace.add(
            StepKind.RECEIVE_CLIENT_HELLO,
            "receive ClientHello",
            "the client's random makes this handshake's keys fresh; it offers suites and extensions",
            client_random=hello.random.hex(),
            cipher_suites=[s.name for s in hello.cipher_suites],
            extensions=hello.extensions.to_json(),
            session_id=hello.session_id.hex(),
        )
        session = self._from_ticket(hello) or self._resumable(hello)
        server_random = self.random_bytes(32)
        if session is not None:
            return self._resume(hello, session, server_random)
        suite, group, scheme = self._choose(hello)
        etm = hello.extensions.encrypt_then_mac and not suite.is_aead
        ems = hello.extensions.extended_master_secret
        extensions = ServerExtensions(
            extended_master_secret=ems,
            encrypt_then_mac=etm,
            ec_point_formats=suite.key_exchange is KeyExchange.ECDHE_RSA,
            session_ticket=self._offers_tickets(hello),
        )
        server_hello = ServerHello(server_random, self.random_bytes(32), suite, extensions)
        self.server_hello = server_hello
        self._add(server_hello)
        self.trace.add(
            StepKind.SEND_SERVER_HELLO,
            "send ServerHello",
            "the server's random and its choice of suite and extensions",
            server_random=server_random.hex(),
            cipher_suite=suite.name,
            session_id=server_hello.session_id.hex(),
            extensions=extensions.to_json(),
        )
        identity = self.config.identities[suite.authentication]
        certificate = CertificateMessage(identity.chain_der)
        self._add(certificate)
        leaf = identity.certificate_chain[0]
        self.trace.add(
            StepKind.SEND_CERTIFICATE,
            "send Certificate",
            "the server's public key, vouched for by a CA the client trusts",
            subject=leaf.subject.rfc4514_string(),
            sha256=pki.fingerprint_sha256(leaf),
            chain_length=len(identity.chain_der),
            public_key_type=suite.authentication.value,
        )
        ske = None
        if group is not None:
            assert scheme is not None
            ephemeral = kex.generate_ephemeral_key(group)
            self._ephemeral = ephemeral
            if kex.is_ffdhe(group):
                params = kex.server_dh_params(group, ephemeral.public_bytes)
            else:
                params = kex.server_ecdh_params(group, ephemeral.public_bytes)
            signature = kex.sign_server_params(
                identity.private_key, scheme, hello.random, server_random, params
            )
            ske = ServerKeyExchange(group, ephemeral.public_bytes, scheme, signature)
            self._add(ske)
            self.trace.add(
                StepKind.SEND_SERVER_KEY_EXCHANGE,
                "send ServerKeyExchange",
                "an ephemeral "
                + ("DH value in an RFC 7919 group" if kex.is_ffdhe(group) else "ECDH key")
                + " signed with the certificate key: forward secrecy",
                **_group_field(group),
                public_key=ephemeral.public_bytes.hex(),
                signature_algorithm=scheme.name,
                signature_length=len(signature),
            )
        if self.config.client_auth is not ClientAuth.NONE:
            self._send_certificate_request()
        self._add(ServerHelloDone())
        return ServerFlight(server_hello, identity.chain_pem, ske, None)

    def _resume(self, hello: ClientHello, session: Session, server_random: bytes) -> ServerFlight:
        suite = session.suite
        etm = hello.extensions.encrypt_then_mac and not suite.is_aead
        extensions = ServerExtensions(
            extended_master_secret=session.extended_master_secret,
            encrypt_then_mac=etm,
            # RFC 5246 §7.4.1.4: only in answer to the client's own; a client resuming an
            # ECDHE session may have sent no groups (and so no ec_point_formats).
            ec_point_formats=suite.key_exchange is KeyExchange.ECDHE_RSA
            and bool(hello.extensions.supported_groups),
            # A resumption renews the ticket (RFC 5077 §3.1), sealed under the current key.
            session_ticket=self._offers_tickets(hello),
        )
        server_hello = ServerHello(server_random, session.session_id, suite, extensions)
        self.server_hello = server_hello
        self._resumed_session = session
        self._add(server_hello)
        self.trace.add(
            StepKind.SEND_SERVER_HELLO_RESUME,
            "send ServerHello (resume)",
            "the server found the session: no certificate, no key exchange",
            server_random=server_random.hex(),
            cipher_suite=suite.name,
            session_id=session.session_id.hex(),
            extensions=extensions.to_json(),
        )
        self._derive(
            None,
            suite,
            hello.random,
            server_random,
            ems=session.extended_master_secret,
            etm=etm,
            resumed_master=session.master_secret,
        )
        ticket = self._issue_ticket() if extensions.session_ticket else None
        record = self._seal_finished(Role.SERVER)
        return ServerFlight(server_hello, (), None, record, ticket)

    def _send_certificate_request(self) -> None:
        """Ask for a client certificate (RFC 5246 §7.4.4): RSA or ECDSA keys, the schemes this
        server verifies, and the names of the CAs it trusts for clients."""
        request = CertificateRequest(
            (ClientCertificateType.rsa_sign, ClientCertificateType.ecdsa_sign),
            self._requested_schemes(),
            tuple(anchor.subject.public_bytes() for anchor in self.config.client_trust_anchors),
        )
        self._certificate_request = request
        self._add(request)
        self.trace.add(
            StepKind.SEND_CERTIFICATE_REQUEST,
            "send CertificateRequest",
            "mutual TLS: the server asks the client to prove who it is with a certificate "
            f"from a CA it trusts ({self.config.client_auth.value})",
            client_auth=self.config.client_auth.value,
            certificate_types=[t.name for t in request.certificate_types],
            signature_algorithms=[s.name for s in request.signature_algorithms],
            certificate_authorities=[
                anchor.subject.rfc4514_string() for anchor in self.config.client_trust_anchors
            ],
        )

    def _requested_schemes(self) -> tuple[SignatureScheme, ...]:
        schemes = tuple(s for s in self.config.signature_schemes if s in VERIFIABLE_SCHEMES)
        return schemes or VERIFIABLE_SCHEMES

    def _on_client_certificate(self, chain_pem: Sequence[str]) -> None:
        if not chain_pem:
            self._add(CertificateMessage(()))
            self.trace.add(
                StepKind.VERIFY_CLIENT_CERTIFICATE,
                "receive empty client Certificate",
                "the client has no certificate to offer",
                client_auth=self.config.client_auth.value,
                accepted=self.config.client_auth is not ClientAuth.REQUIRED,
            )
            if self.config.client_auth is ClientAuth.REQUIRED:
                # RFC 5246 §7.4.6: the server "may respond with a fatal handshake_failure alert".
                raise HandshakeFailure("this server requires a client certificate; none was sent")
            return
        chain = [c for pem in chain_pem for c in pki.load_certificate_chain(pem)]
        leaf = verify_client_chain(chain, self.config.client_trust_anchors, now=self.now())
        self._client_leaf = leaf
        self._add(CertificateMessage(tuple(_der(c) for c in chain)))
        self.trace.add(
            StepKind.VERIFY_CLIENT_CERTIFICATE,
            "verify client Certificate",
            "the client's chain leads to a CA this server trusts for clients; its key must now "
            "sign the handshake",
            subject=leaf.subject.rfc4514_string(),
            issuer=leaf.issuer.rfc4514_string(),
            sha256=pki.fingerprint_sha256(leaf),
            chain_length=len(chain),
        )

    def _on_certificate_verify(self, message: CertificateVerify) -> None:
        leaf = self._client_leaf
        assert leaf is not None
        if message.signature_algorithm not in self._requested_schemes():
            raise IllegalParameter("the client signed with a scheme the server did not offer")
        public_key = leaf.public_key()
        assert isinstance(public_key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey)
        # RFC 5246 §7.4.8: over every handshake message before this one, ClientKeyExchange
        # included; RFC 7627's session hash stopped at the same place.
        verify_certificate_verify(
            public_key, message.signature_algorithm, message.signature, self.transcript
        )
        self.trace.add(
            StepKind.VERIFY_CERTIFICATE_VERIFY,
            "verify CertificateVerify",
            "the client's signature over the handshake so far proves it holds the certificate's "
            "private key",
            signature_algorithm=message.signature_algorithm.name,
            signature_length=len(message.signature),
            transcript_sha256=fingerprint(self.transcript),
            subject=leaf.subject.rfc4514_string(),
        )
        self._add(message)

    def _client_identity(self) -> PeerIdentity | None:
        leaf = self._client_leaf
        return PeerIdentity.of(leaf) if leaf is not None else None

    def _issue_ticket(self) -> NewSessionTicket:
        """Seal this handshake's session into a NewSessionTicket; it joins the transcript
        before the server's Finished (RFC 5077 §3.3)."""
        hello, server_hello, schedule, tickets = (
            self.hello,
            self.server_hello,
            self._schedule,
            self.tickets,
        )
        assert hello is not None and server_hello is not None
        assert schedule is not None and tickets is not None
        state = TicketState(
            schedule.suite,
            schedule.master_secret,
            server_hello.extensions.extended_master_secret,
            (self._resumed_session.server_name if self._resumed_session else None)
            or hello.extensions.server_name,
            tickets.now(),
            (
                self._resumed_session.client_identity
                if self._resumed_session
                else self._client_identity()
            ),
        )
        message = NewSessionTicket(tickets.lifetime, tickets.seal(state, self.random_bytes))
        self._add(message)
        self.new_session_ticket = message
        self.trace.add(
            StepKind.SEND_NEW_SESSION_TICKET,
            "send NewSessionTicket",
            "the session's state sealed under the servers' ticket key: the client keeps it, and "
            "any server holding the key can resume the session without a cache (RFC 5077)",
            lifetime_hint=message.lifetime_hint,
            key_name=message.ticket[:KEY_NAME_LENGTH].hex(),
            ticket_length=len(message.ticket),
        )
        return message

    def _on_client_key_exchange(self, cke: ClientKeyExchange) -> None:
        hello, server_hello = self.hello, self.server_hello
        assert hello is not None and server_hello is not None
        suite = server_hello.cipher_suite
        if suite.key_exchange is KeyExchange.RSA:
            if cke.encrypted_pre_master_secret is None:
                raise DecodeError("RSA key exchange needs encrypted_pre_master_secret")
            pms = kex.rsa_decrypt_pre_master_secret(
                self.config.private_key,
                cke.encrypted_pre_master_secret,
                random_bytes=self.random_bytes,
            )
            self.trace.add(
                StepKind.DECRYPT_PRE_MASTER_SECRET,
                "decrypt pre-master secret",
                "RSA private key opens the client's secret; a bad one silently becomes random (RFC 5246 §7.4.7.1)",
                encrypted_length=len(cke.encrypted_pre_master_secret),
            )
        elif suite.key_exchange is KeyExchange.DHE:
            if cke.dh_public is None:
                raise DecodeError("DHE key exchange needs the client's dh_Yc")
            assert self._ephemeral is not None
            pms = kex.dh_shared_secret(self._ephemeral, cke.dh_public)
            self.trace.add(
                StepKind.DH_SHARED_SECRET,
                "DH shared secret",
                "client value ^ server exponent mod p = the number the client computes; its "
                "leading zero bytes are stripped (RFC 5246 §8.1.2)",
                client_public_key=cke.dh_public.hex(),
                named_group=self._ephemeral.group.name,
            )
        else:
            if cke.public_key is None:
                raise DecodeError("ECDHE key exchange needs the client's public_key")
            assert self._ephemeral is not None
            pms = kex.ecdh_shared_secret(self._ephemeral, cke.public_key)
            self.trace.add(
                StepKind.ECDH_SHARED_SECRET,
                "ECDH shared secret",
                "server private key x client public key = the same point the client computes",
                client_public_key=cke.public_key.hex(),
                named_curve=self._ephemeral.group.name,
            )
        self._add(cke)
        self._derive(
            pms,
            suite,
            hello.random,
            server_hello.random,
            ems=server_hello.extensions.extended_master_secret,
            etm=server_hello.extensions.encrypt_then_mac,
            trace_pre_master=suite.key_exchange is not KeyExchange.RSA,
        )
        self._ephemeral = None  # forward secrecy: the ephemeral key is not kept

    def _on_client_finished(self, record: bytes) -> bytes:
        self._open_finished(record, Role.CLIENT)
        assert self.server_hello is not None
        if self.server_hello.extensions.session_ticket:
            self._issue_ticket()
        reply = self._seal_finished(Role.SERVER)
        self._finish(resumed=False)
        return reply

    def _on_resumed_finished(self, record: bytes) -> bytes:
        self._open_finished(record, Role.CLIENT)
        self._finish(resumed=True)
        return b""

    def _finish(self, *, resumed: bool) -> None:
        hello, server_hello, schedule = self.hello, self.server_hello, self._schedule
        assert hello is not None and server_hello is not None and schedule is not None
        ems = server_hello.extensions.extended_master_secret
        self._establish(
            hello.random,
            server_hello.random,
            server_hello.session_id,
            resumed=resumed,
            ems=ems,
            etm=server_hello.extensions.encrypt_then_mac,
        )
        self.session = self._resumed_session or Session(
            server_hello.session_id,
            schedule.suite,
            ems,
            schedule.master_secret,
            hello.extensions.server_name,
            client_identity=self._client_identity(),
        )


ServerHandshake._table = {
    (ServerState.WAIT_CLIENT_HELLO, HandshakeType.client_hello): _Rule(
        ServerHandshake._on_client_hello,
        ServerState.WAIT_CLIENT_KEY_EXCHANGE,
        branches=(
            (lambda server: server._resumed_session is not None, ServerState.WAIT_RESUMED_FINISHED),
            (
                lambda server: server._certificate_request is not None,
                ServerState.WAIT_CLIENT_CERTIFICATE,
            ),
        ),
    ),
    (ServerState.WAIT_CLIENT_CERTIFICATE, HandshakeType.certificate): _Rule(
        ServerHandshake._on_client_certificate, ServerState.WAIT_CLIENT_KEY_EXCHANGE
    ),
    (ServerState.WAIT_CLIENT_KEY_EXCHANGE, HandshakeType.client_key_exchange): _Rule(
        ServerHandshake._on_client_key_exchange,
        ServerState.WAIT_CLIENT_FINISHED,
        branches=(
            (lambda server: server._client_leaf is not None, ServerState.WAIT_CERTIFICATE_VERIFY),
        ),
    ),
    (ServerState.WAIT_CERTIFICATE_VERIFY, HandshakeType.certificate_verify): _Rule(
        ServerHandshake._on_certificate_verify, ServerState.WAIT_CLIENT_FINISHED
    ),
    (ServerState.WAIT_CLIENT_FINISHED, HandshakeType.finished): _Rule(
        ServerHandshake._on_client_finished, ServerState.ESTABLISHED
    ),
    (ServerState.WAIT_RESUMED_FINISHED, HandshakeType.finished): _Rule(
        ServerHandshake._on_resumed_finished, ServerState.ESTABLISHED
    ),
}


# -- client ------------------------------------------------------------------------------


class ClientState(Enum):
    START = "start"
    WAIT_SERVER_HELLO = "wait_server_hello"
    WAIT_CERTIFICATE = "wait_certificate"
    WAIT_SERVER_KEY_EXCHANGE = "wait_server_key_exchange"
    WAIT_SERVER_HELLO_DONE = "wait_server_hello_done"
    #: After a CertificateRequest: only ServerHelloDone may follow (RFC 5246 §7.3).
    WAIT_SERVER_HELLO_DONE_REQUESTED = "wait_server_hello_done_requested"
    WAIT_NEW_SESSION_TICKET = "wait_new_session_ticket"
    WAIT_SERVER_FINISHED = "wait_server_finished"
    WAIT_RESUMED_TICKET = "wait_resumed_ticket"
    WAIT_RESUMED_FINISHED = "wait_resumed_finished"
    ESTABLISHED = "established"
    FAILED = "failed"


@dataclass(frozen=True)
class ClientConfig:
    trust_anchors: tuple[x509.Certificate, ...]
    server_name: str
    cipher_suites: tuple[CipherSuite, ...] = (DEFAULT_SUITE,)
    extended_master_secret: bool = True
    encrypt_then_mac: bool = True
    groups: tuple[NamedGroup, ...] = DEFAULT_GROUPS
    signature_schemes: tuple[SignatureScheme, ...] = DEFAULT_SIGNATURE_SCHEMES
    #: Offer the SessionTicket extension (RFC 5077) when not resuming from a ticket already.
    session_tickets: bool = False
    #: The client's own certificate (leaf first) and key for mutual TLS; without them a
    #: CertificateRequest is answered with an empty Certificate (RFC 5246 §7.4.6).
    client_certificate_chain: tuple[x509.Certificate, ...] = ()
    client_private_key: ClientPrivateKey | None = field(default=None, repr=False)


class ClientHandshake(_Machine):
    """One client-side handshake: :meth:`client_hello`, :meth:`receive_server_flight`,
    then (full handshake) :meth:`receive_server_finished`."""

    side = Role.CLIENT
    _failed_state = ClientState.FAILED

    def __init__(
        self,
        config: ClientConfig,
        *,
        resume: Session | None = None,
        random_bytes: RandomBytes = secrets.token_bytes,
        trace: Trace | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__(random_bytes, trace)
        self.config = config
        self.resume = resume
        self.now = now
        self.state = ClientState.START
        self._leaf: x509.Certificate | None = None
        self._ske: ServerKeyExchange | None = None
        self._resuming = False
        self._ticket: NewSessionTicket | None = None
        self._certificate_request: CertificateRequest | None = None
        #: The scheme the CertificateVerify signs with, once the client sent its certificate.
        self._client_scheme: SignatureScheme | None = None
        #: The certificate this client authenticated with (kept when the machine is saved).
        self._client_identity: PeerIdentity | None = None

    @classmethod
    def from_state(
        cls,
        data: bytes,
        config: ClientConfig,
        *,
        random_bytes: RandomBytes = secrets.token_bytes,
        trace_clock: Callable[[], float] = time.perf_counter,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> ClientHandshake:
        """The handshake :meth:`to_state` saved once its server flight was handled (or it
        ended). Raises ValueError for data that is not a saved client handshake, or one saved
        while the server's certificate was still being checked."""
        state = json.loads(data)
        if state.get("state") in {s.value for s in _CLIENT_STATES_MID_FLIGHT}:
            raise ValueError("a client handshake is saved only between the server's flights")
        resume = state.get("resume")
        machine = cls(
            config,
            resume=Session.from_state(resume) if resume else None,
            random_bytes=random_bytes,
            now=now,
        )
        machine._restore(state, trace_clock)
        machine._resuming = bool(state["resuming"])
        ticket = state["new_session_ticket"]
        machine._ticket = NewSessionTicket.from_json(ticket) if ticket else None
        identity = state.get("client_identity")  # absent from what an older version saved
        machine._client_identity = PeerIdentity.from_json(identity) if identity else None
        return machine

    def _side_state(self) -> dict[str, Any]:
        if self.state in _CLIENT_STATES_MID_FLIGHT:
            raise LocalProtocolError("save a client handshake between the server's flights")
        return {
            "resume": self.resume.to_state() if self.resume else None,
            "resuming": self._resuming,
            "new_session_ticket": self._ticket.to_json() if self._ticket else None,
            "client_identity": (
                self._client_identity.to_json() if self._client_identity is not None else None
            ),
        }

    @property
    def ended_session_id(self) -> bytes | None:
        """The ID of the session a fatal alert ended (RFC 5246 §7.2.2): the connection's, or,
        when a resumption failed before it had one, the session it offered. None when no
        alert ended this handshake."""
        if not self.ended_by_alert:
            return None
        if self.connection is not None:
            return self.connection.session_id
        return self.resume.session_id if self.resume is not None else None

    def compact(self, *, reveal_secrets: bool = False, freeze_trace: bool = True) -> None:
        super().compact(reveal_secrets=reveal_secrets, freeze_trace=freeze_trace)
        # The server's certificate and key exchange served the key exchange only.
        self._leaf = None
        self._ske = None

    # public API ---------------------------------------------------------------

    def client_hello(self) -> ClientHello:
        if self.state is not ClientState.START:
            # Our caller's mistake, not the peer's; the machine fails all the same, as h11's
            # does, since the caller no longer knows what was sent.
            self._fail(LocalProtocolError("ClientHello was already sent"))
        self.trace.flight = 1
        hello: ClientHello = self._dispatch(HandshakeType.client_hello, None)
        return hello

    def receive_server_flight(self, flight: ServerFlight) -> ClientFinish:
        """Process ServerHello..ServerHelloDone (or ServerHello + Finished when resuming)."""
        self.trace.flight = 3
        self._dispatch(HandshakeType.server_hello, flight.server_hello)
        if flight.finished_record is not None:
            if flight.certificate_pem or flight.server_key_exchange is not None:
                self._fail(
                    UnexpectedMessage("a resumed handshake carries no certificate or key exchange")
                )
            if flight.new_session_ticket is not None:
                self._dispatch(HandshakeType.new_session_ticket, flight.new_session_ticket)
            record: bytes = self._dispatch(HandshakeType.finished, flight.finished_record)
            return ClientFinish(None, record)
        if flight.new_session_ticket is not None:
            self._fail(UnexpectedMessage("a full handshake's NewSessionTicket comes with Finished"))
        self._dispatch(HandshakeType.certificate, flight.certificate_pem)
        if flight.server_key_exchange is not None:
            self._dispatch(HandshakeType.server_key_exchange, flight.server_key_exchange)
        if flight.certificate_request is not None:
            self._dispatch(HandshakeType.certificate_request, flight.certificate_request)
        finish: ClientFinish = self._dispatch(HandshakeType.server_hello_done, None)
        return finish

    def receive_server_finished(
        self, record: bytes, new_session_ticket: NewSessionTicket | None = None
    ) -> Connection:
        """The server's last flight of a full handshake: its Finished record, preceded by a
        NewSessionTicket when its ServerHello carried the SessionTicket extension."""
        self.trace.flight = 5
        if new_session_ticket is not None:
            self._dispatch(HandshakeType.new_session_ticket, new_session_ticket)
        connection: Connection = self._dispatch(HandshakeType.finished, record)
        return connection

    # handlers -------------------------------------------------------------------

    def _send_client_hello(self, _: None) -> ClientHello:
        suites = self.config.cipher_suites
        session_id = b""
        ticket = b"" if self.config.session_tickets else None
        if self.resume is not None:
            session_id = self.resume.session_id
            if self.resume.ticket is not None:
                ticket = self.resume.ticket
                # RFC 5077 §3.4: a fresh session ID, which the server echoes if it takes the
                # ticket; that echo is how the client knows it resumed.
                session_id = self.random_bytes(32)
            if self.resume.suite not in suites:
                suites = (self.resume.suite, *suites)
        uses_ecdhe = any(s.key_exchange is KeyExchange.ECDHE_RSA for s in suites)
        uses_dhe = any(s.key_exchange is KeyExchange.DHE for s in suites)
        # Curves only with ECDHE suites, finite-field groups only with DHE ones (RFC 7919 §3).
        groups = tuple(
            g for g in self.config.groups if (uses_dhe if kex.is_ffdhe(g) else uses_ecdhe)
        )
        extensions = ClientExtensions(
            extended_master_secret=self.config.extended_master_secret,
            encrypt_then_mac=self.config.encrypt_then_mac,
            server_name=_sni_name(self.config.server_name),
            supported_groups=groups,
            signature_algorithms=self.config.signature_schemes,
            session_ticket=ticket,
        )
        hello = ClientHello(self.random_bytes(32), tuple(suites), extensions, session_id)
        self.hello = hello
        self._add(hello)
        self.trace.add(
            StepKind.SEND_CLIENT_HELLO,
            "send ClientHello",
            "a fresh 32-byte client random, the suites and extensions the client accepts",
            client_random=hello.random.hex(),
            cipher_suites=[s.name for s in suites],
            extensions=extensions.to_json(),
            session_id=session_id.hex(),
        )
        return hello

    def _on_server_hello(self, server_hello: ServerHello) -> None:
        hello = self.hello
        assert hello is not None
        suite = server_hello.cipher_suite
        if suite not in hello.cipher_suites:
            raise IllegalParameter(f"server chose {suite.name}, which was not offered")
        ext = server_hello.extensions
        if ext.extended_master_secret and not hello.extensions.extended_master_secret:
            raise _unsolicited("extended_master_secret")
        if ext.encrypt_then_mac and not (hello.extensions.encrypt_then_mac and not suite.is_aead):
            raise _unsolicited("encrypt_then_mac")
        if ext.ec_point_formats and not hello.extensions.supported_groups:
            raise _unsolicited("ec_point_formats")
        if ext.session_ticket and hello.extensions.session_ticket is None:
            raise _unsolicited("session_ticket")
        self.server_hello = server_hello
        self._add(server_hello)
        resumed = bool(hello.session_id) and server_hello.session_id == hello.session_id
        self.trace.add(
            StepKind.RECEIVE_SERVER_HELLO,
            "receive ServerHello",
            "the server's random; both randoms now feed every key",
            server_random=server_hello.random.hex(),
            cipher_suite=suite.name,
            session_id=server_hello.session_id.hex(),
            resumed=resumed,
            extensions=ext.to_json(),
        )
        if resumed:
            session = self.resume
            assert session is not None
            if suite != session.suite:
                raise IllegalParameter("resumed session with a different cipher suite")
            if ext.extended_master_secret != session.extended_master_secret:
                # RFC 7627 §5.3: the EMS state of a session cannot change on resumption.
                raise HandshakeFailure("resumption changed the extended master secret setting")
            self._derive(
                None,
                suite,
                hello.random,
                server_hello.random,
                ems=session.extended_master_secret,
                etm=ext.encrypt_then_mac,
                resumed_master=session.master_secret,
            )
        self._resuming = resumed

    def _on_certificate(self, chain_pem: Sequence[str]) -> None:
        server_hello = self.server_hello
        assert server_hello is not None
        if not chain_pem:
            raise DecodeError("the server sent no certificate")
        chain = [c for pem in chain_pem for c in pki.load_certificate_chain(pem)]
        leaf, cached = pki.verify_server_chain_cached(
            chain,
            self.config.trust_anchors,
            self.config.server_name,
            now=self.now(),
            key_exchange=server_hello.cipher_suite.key_exchange.value,
            authentication=server_hello.cipher_suite.authentication.value,
        )
        public_key = leaf.public_key()
        if server_hello.cipher_suite.authentication is Authentication.ECDSA:
            assert isinstance(public_key, ec.EllipticCurvePublicKey)
            # RFC 8422 §5.3: the certificate's curve must be one the client offered.
            assert self.hello is not None
            if NamedGroup[public_key.curve.name] not in self.hello.extensions.supported_groups:
                raise UnsupportedCertificate(
                    f"the server's ECDSA key is on {public_key.curve.name}, which was not offered"
                )
        elif not isinstance(public_key, rsa.RSAPublicKey):
            raise UnsupportedCertificate("this suite needs an RSA certificate")
        self._leaf = leaf
        self._add(CertificateMessage(tuple(_der(c) for c in chain)))
        self.trace.add(
            StepKind.VERIFY_CERTIFICATE,
            "verify Certificate",
            "chain to a trusted CA, host name, validity window and key usage checked before any secret is sent",
            subject=leaf.subject.rfc4514_string(),
            issuer=leaf.issuer.rfc4514_string(),
            sha256=pki.fingerprint_sha256(leaf),
            server_name=self.config.server_name,
            cached=cached,
        )

    def _on_server_key_exchange(self, ske: ServerKeyExchange) -> None:
        hello, server_hello, leaf = self.hello, self.server_hello, self._leaf
        assert hello is not None and server_hello is not None and leaf is not None
        dhe = server_hello.cipher_suite.key_exchange is KeyExchange.DHE
        if dhe != kex.is_ffdhe(ske.group):
            raise IllegalParameter("the ServerKeyExchange does not fit the chosen suite")
        if ske.group not in hello.extensions.supported_groups:
            if dhe:
                # RFC 7919 §3: the client offered its groups; it refuses other parameters.
                raise InsufficientSecurity(f"server used {ske.group.name}, which was not offered")
            raise IllegalParameter(f"server used {ske.group.name}, which was not offered")
        if ske.signature_algorithm not in hello.extensions.signature_algorithms:
            raise IllegalParameter("server signed with a scheme that was not offered")
        # Validate before anything else.
        if dhe:
            ffdhe.check_public_value(ffdhe.FFDHE_GROUPS[ske.group], ske.public_key)
        else:
            kex.decode_public_key(ske.group, ske.public_key)
        public_key = leaf.public_key()
        assert isinstance(public_key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey)
        kex.verify_server_params(
            public_key,
            ske.signature_algorithm,
            ske.signature,
            hello.random,
            server_hello.random,
            ske.params,
        )
        self._ske = ske
        self._add(ske)
        self.trace.add(
            StepKind.VERIFY_SERVER_KEY_EXCHANGE,
            "verify ServerKeyExchange",
            "the signature over both randoms and the "
            + ("DH parameters" if dhe else "ECDH key")
            + " proves the certificate holder sent it",
            **_group_field(ske.group),
            server_public_key=ske.public_key.hex(),
            signature_algorithm=ske.signature_algorithm.name,
        )

    def _on_server_hello_done(self, _: None) -> ClientFinish:
        hello, server_hello, leaf = self.hello, self.server_hello, self._leaf
        assert hello is not None and server_hello is not None and leaf is not None
        self._add(ServerHelloDone())
        client_chain = self._send_client_certificate()
        suite = server_hello.cipher_suite
        if suite.key_exchange is KeyExchange.RSA:
            public_key = leaf.public_key()
            assert isinstance(public_key, rsa.RSAPublicKey)
            pms = kex.new_rsa_pre_master_secret(random_bytes=self.random_bytes)
            encrypted = kex.rsa_encrypt_pre_master_secret(public_key, pms)
            cke = ClientKeyExchange(encrypted_pre_master_secret=encrypted)
            self.trace.add(
                StepKind.SEND_ENCRYPTED_PRE_MASTER_SECRET,
                "send encrypted pre-master secret",
                "48 bytes (version + 46 random) encrypted to the certificate's RSA key",
                secrets={"pre_master_secret": pms},
                encrypted_length=len(encrypted),
                client_version="0303",
            )
        elif suite.key_exchange is KeyExchange.DHE:
            ske = self._ske
            if ske is None:
                raise UnexpectedMessage("ServerKeyExchange is missing")
            ephemeral = kex.generate_ephemeral_key(ske.group)
            pms = kex.dh_shared_secret(ephemeral, ske.public_key)
            cke = ClientKeyExchange(dh_public=ephemeral.public_bytes)
            self.trace.add(
                StepKind.SEND_DH_PUBLIC_KEY,
                "send DH public value",
                "g ^ client exponent mod p; server value ^ client exponent = the pre-master "
                "secret, leading zero bytes stripped; neither exponent travels",
                secrets={"pre_master_secret": pms},
                client_public_key=ephemeral.public_bytes.hex(),
                named_group=ske.group.name,
            )
        else:
            ske = self._ske
            if ske is None:
                raise UnexpectedMessage("ServerKeyExchange is missing")
            ephemeral = kex.generate_ephemeral_key(ske.group)
            pms = kex.ecdh_shared_secret(ephemeral, ske.public_key)
            cke = ClientKeyExchange(public_key=ephemeral.public_bytes)
            self.trace.add(
                StepKind.SEND_ECDH_PUBLIC_KEY,
                "send ECDH public key",
                "client private key x server public key = the pre-master secret; neither private key travels",
                secrets={"pre_master_secret": pms},
                client_public_key=ephemeral.public_bytes.hex(),
                named_curve=ske.group.name,
            )
        self._add(cke)
        ext = server_hello.extensions
        self._derive(
            pms,
            suite,
            hello.random,
            server_hello.random,
            ems=ext.extended_master_secret,
            etm=ext.encrypt_then_mac,
        )
        verify = self._send_certificate_verify()
        record = self._seal_finished(Role.CLIENT)
        return ClientFinish(cke, record, client_chain, verify)

    def _on_certificate_request(self, request: CertificateRequest) -> None:
        self._certificate_request = request
        self._add(request)
        self.trace.add(
            StepKind.RECEIVE_CERTIFICATE_REQUEST,
            "receive CertificateRequest",
            "mutual TLS: the server asks for a client certificate from one of the CAs it names",
            certificate_types=[t.name for t in request.certificate_types],
            signature_algorithms=[s.name for s in request.signature_algorithms],
            certificate_authorities=len(request.certificate_authorities),
            names_own_issuer=bool(self.config.client_certificate_chain)
            and self.config.client_certificate_chain[0].issuer.public_bytes()
            in request.certificate_authorities,
        )

    def _send_client_certificate(self) -> tuple[str, ...] | None:
        """The client's Certificate when the server asked for one (RFC 5246 §7.4.6): its own
        chain when it has one the request allows, else an empty one. None when not asked."""
        request, config = self._certificate_request, self.config
        if request is None:
            return None
        scheme, key = None, config.client_private_key
        wanted = (
            ClientCertificateType.ecdsa_sign
            if isinstance(key, ec.EllipticCurvePrivateKey)
            else ClientCertificateType.rsa_sign
        )
        if (
            config.client_certificate_chain
            and key is not None
            and wanted in request.certificate_types
        ):
            scheme = choose_signature_scheme(
                request.signature_algorithms, config.signature_schemes, key
            )
        # The lab's client has one certificate: it sends it whatever CAs the request names,
        # and the server judges it (a foreign CA is the server's unknown_ca to give).
        chain = config.client_certificate_chain if scheme is not None else ()
        self._client_scheme = scheme
        self._client_identity = PeerIdentity.of(chain[0]) if chain else None
        self._add(CertificateMessage(tuple(_der(c) for c in chain)))
        self.trace.add(
            StepKind.SEND_CLIENT_CERTIFICATE,
            "send client Certificate",
            (
                "the client's certificate chain, for the server to check against its client CAs"
                if chain
                else "an empty Certificate: the client has no certificate the server can take"
            ),
            subject=chain[0].subject.rfc4514_string() if chain else None,
            sha256=pki.fingerprint_sha256(chain[0]) if chain else None,
            chain_length=len(chain),
        )
        return tuple(pki.certificate_chain_pem(chain))

    def _send_certificate_verify(self) -> CertificateVerify | None:
        """RFC 5246 §7.4.8: sign the handshake so far (ClientKeyExchange included) with the
        certificate's key; only after a non-empty client Certificate."""
        scheme, key = self._client_scheme, self.config.client_private_key
        if scheme is None:
            return None
        assert key is not None
        signature = sign_certificate_verify(key, scheme, self.transcript)
        message = CertificateVerify(scheme, signature)
        self.trace.add(
            StepKind.SEND_CERTIFICATE_VERIFY,
            "send CertificateVerify",
            "the client signs every handshake message so far: proof it holds the certificate's "
            "private key (RFC 5246 §7.4.8)",
            signature_algorithm=scheme.name,
            signature_length=len(signature),
            transcript_sha256=fingerprint(self.transcript),
        )
        self._add(message)
        return message

    def _on_new_session_ticket(self, message: NewSessionTicket) -> None:
        self._ticket = message
        self._add(message)
        self.trace.add(
            StepKind.RECEIVE_NEW_SESSION_TICKET,
            "receive NewSessionTicket",
            "the session's state, sealed by the server: presented in a later ClientHello it "
            "resumes the session on any server that holds the ticket key",
            lifetime_hint=message.lifetime_hint,
            ticket_length=len(message.ticket),
        )

    def _on_server_finished(self, record: bytes) -> Connection:
        self._open_finished(record, Role.SERVER)
        return self._finish(resumed=False)

    def _on_resumed_finished(self, record: bytes) -> bytes:
        self._open_finished(record, Role.SERVER)
        reply = self._seal_finished(Role.CLIENT)
        self._finish(resumed=True)
        return reply

    def _finish(self, *, resumed: bool) -> Connection:
        hello, server_hello, schedule = self.hello, self.server_hello, self._schedule
        assert hello is not None and server_hello is not None and schedule is not None
        ext = server_hello.extensions
        connection = self._establish(
            hello.random,
            server_hello.random,
            server_hello.session_id,
            resumed=resumed,
            ems=ext.extended_master_secret,
            etm=ext.encrypt_then_mac,
        )
        ticket = self._ticket
        session: Session | None = None
        if resumed:
            assert self.resume is not None
            # Named by this handshake's session ID (for a ticket, the one the client made up).
            session = dataclasses.replace(self.resume, session_id=server_hello.session_id)
        elif server_hello.session_id or ticket is not None:
            session = Session(
                server_hello.session_id,
                schedule.suite,
                ext.extended_master_secret,
                schedule.master_secret,
                self.config.server_name,
                client_identity=self._client_identity,
            )
        if session is not None and ticket is not None:
            session = dataclasses.replace(
                session, ticket=ticket.ticket, ticket_lifetime_hint=ticket.lifetime_hint
            )
        self.session = session
        return connection


#: States inside receive_server_flight, where the certificate and ServerKeyExchange are held.
_CLIENT_STATES_MID_FLIGHT = frozenset(
    {
        ClientState.WAIT_CERTIFICATE,
        ClientState.WAIT_SERVER_KEY_EXCHANGE,
        ClientState.WAIT_SERVER_HELLO_DONE,
        ClientState.WAIT_SERVER_HELLO_DONE_REQUESTED,
    }
)


def _uses_ecdhe(client: ClientHandshake) -> bool:
    """Whether a ServerKeyExchange follows the Certificate (ECDHE and DHE suites)."""
    assert client.server_hello is not None
    kx = client.server_hello.cipher_suite.key_exchange
    return kx is KeyExchange.ECDHE_RSA or kx is KeyExchange.DHE


def _ticket_follows(client: ClientHandshake) -> bool:
    # RFC 5077 §3.3: a server that answered with the SessionTicket extension sends a
    # NewSessionTicket before its Finished; one that did not must not.
    assert client.server_hello is not None
    return client.server_hello.extensions.session_ticket


ClientHandshake._table = {
    (ClientState.START, HandshakeType.client_hello): _Rule(
        ClientHandshake._send_client_hello, ClientState.WAIT_SERVER_HELLO
    ),
    (ClientState.WAIT_SERVER_HELLO, HandshakeType.server_hello): _Rule(
        ClientHandshake._on_server_hello,
        ClientState.WAIT_CERTIFICATE,
        branches=(
            (
                lambda client: client._resuming and _ticket_follows(client),
                ClientState.WAIT_RESUMED_TICKET,
            ),
            (lambda client: client._resuming, ClientState.WAIT_RESUMED_FINISHED),
        ),
    ),
    (ClientState.WAIT_RESUMED_TICKET, HandshakeType.new_session_ticket): _Rule(
        ClientHandshake._on_new_session_ticket, ClientState.WAIT_RESUMED_FINISHED
    ),
    (ClientState.WAIT_CERTIFICATE, HandshakeType.certificate): _Rule(
        ClientHandshake._on_certificate,
        ClientState.WAIT_SERVER_HELLO_DONE,
        branches=((_uses_ecdhe, ClientState.WAIT_SERVER_KEY_EXCHANGE),),
    ),
    (ClientState.WAIT_SERVER_KEY_EXCHANGE, HandshakeType.server_key_exchange): _Rule(
        ClientHandshake._on_server_key_exchange, ClientState.WAIT_SERVER_HELLO_DONE
    ),
    (ClientState.WAIT_SERVER_HELLO_DONE, HandshakeType.server_hello_done): _Rule(
        ClientHandshake._on_server_hello_done,
        ClientState.WAIT_SERVER_FINISHED,
        branches=((_ticket_follows, ClientState.WAIT_NEW_SESSION_TICKET),),
    ),
    (ClientState.WAIT_SERVER_HELLO_DONE, HandshakeType.certificate_request): _Rule(
        ClientHandshake._on_certificate_request, ClientState.WAIT_SERVER_HELLO_DONE_REQUESTED
    ),
    (ClientState.WAIT_SERVER_HELLO_DONE_REQUESTED, HandshakeType.server_hello_done): _Rule(
        ClientHandshake._on_server_hello_done,
        ClientState.WAIT_SERVER_FINISHED,
        branches=((_ticket_follows, ClientState.WAIT_NEW_SESSION_TICKET),),
    ),
    (ClientState.WAIT_NEW_SESSION_TICKET, HandshakeType.new_session_ticket): _Rule(
        ClientHandshake._on_new_session_ticket, ClientState.WAIT_SERVER_FINISHED
    ),
    (ClientState.WAIT_SERVER_FINISHED, HandshakeType.finished): _Rule(
        ClientHandshake._on_server_finished, ClientState.ESTABLISHED
    ),
    (ClientState.WAIT_RESUMED_FINISHED, HandshakeType.finished): _Rule(
        ClientHandshake._on_resumed_finished, ClientState.ESTABLISHED
    ),
}


def _group_field(group: NamedGroup) -> dict[str, Any]:
    """A trace step's name for the key exchange's group: a curve or an RFC 7919 group."""
    return {("named_group" if kex.is_ffdhe(group) else "named_curve"): group.name}


def _unsolicited(name: str) -> TLSError:
    # RFC 5246 §7.4.1.4: a server must not answer with an extension the client did not offer.
    return UnsupportedExtension(f"server answered with {name}, which the client did not offer")


def _sni_name(server_name: str) -> str | None:
    """The server_name extension's value: RFC 6066 §3 forbids IP literals there."""
    try:
        ipaddress.ip_address(server_name)
    except ValueError:
        return server_name
    return None


def _der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(Encoding.DER)


# -- persistence helpers --------------------------------------------------------------------

#: Bumped whenever the saved form changes; a store refuses a form it does not know.
_STATE_FORMAT = 1


def _error_state(error: LabError | None) -> dict[str, Any] | None:
    if error is None:
        return None
    return {
        "code": error.code,
        "message": error.message,
        "local": isinstance(error, LocalProtocolError),
    }


def _error_from_state(state: dict[str, Any] | None) -> LabError | None:
    if state is None:
        return None
    if state["local"]:
        return LocalProtocolError(state["message"])
    kind = _ERRORS_BY_CODE.get(state["code"])
    if kind is not None:
        return kind(state["message"])
    # A failure of the caller's that is no alert (a transport that gave up): its code stays.
    error = LabError(state["message"])
    error.code = state["code"]
    return error


def _server_hello_state(hello: ServerHello | None) -> dict[str, Any] | None:
    if hello is None:
        return None
    return {
        "server_random": hello.random.hex(),
        "session_id": hello.session_id.hex(),
        "cipher_suite": hello.cipher_suite.name,
        "extensions": hello.extensions.to_json(),
    }


def _server_hello_from_state(state: dict[str, Any] | None) -> ServerHello | None:
    if state is None:
        return None
    return ServerHello(
        bytes.fromhex(state["server_random"]),
        bytes.fromhex(state["session_id"]),
        SUITES[state["cipher_suite"]],
        ServerExtensions.from_json(state["extensions"]),
    )
