"""client_svc's work behind the views: run a handshake against server_svc, send a message.

The protocol itself is kdf_lib's ClientHandshake; this module moves its messages over
HTTP, keeps the connection, and writes key log lines when the operator asked for them.
"""

from __future__ import annotations

import logging
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdf_lib import keylog
from kdf_lib.errors import IllegalParameter, TLSError
from kdf_lib.handshake import ClientConfig, ClientHandshake, ServerFlight, Session
from kdf_lib.messages import decode_b64, encode_b64
from kdf_lib.suites import SUITES, CipherSuite
from lab_common.errors import ServiceError

from .store import ClientConnection, ClientState
from .upstream import ServerClient

log = logging.getLogger("lab")

DEFAULT_SUITES = {
    "rsa": "TLS_RSA_WITH_AES_256_CBC_SHA256",
    "ecdhe": "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
}


@dataclass(frozen=True)
class HandshakeRequest:
    key_exchange: str | None = None
    cipher_suite: str | None = None
    resume: str | None = None
    extended_master_secret: bool = True
    encrypt_then_mac: bool = True


def choose_suite(request: HandshakeRequest, session: Session | None) -> CipherSuite:
    """The one suite the client offers: the session's, the one asked for, or the default."""
    if session is not None:
        return session.suite
    if request.cipher_suite is not None:
        suite = SUITES.get(request.cipher_suite)
        if suite is None:
            raise IllegalParameter(f"unknown cipher suite {request.cipher_suite!r}")
        if request.key_exchange and suite.key_exchange.value != request.key_exchange:
            raise IllegalParameter(f"{suite.name} does not use {request.key_exchange} key exchange")
        return suite
    return SUITES[DEFAULT_SUITES[request.key_exchange or "rsa"]]


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


class Driver:
    def __init__(
        self,
        server: ServerClient,
        state: ClientState,
        trust_anchors: tuple[Any, ...],
        server_name: str,
        keylog_writer: KeyLogWriter,
        reveal_secrets: bool,
    ) -> None:
        self.server = server
        self.state = state
        self.trust_anchors = trust_anchors
        self.server_name = server_name
        self.keylog = keylog_writer
        self.reveal_secrets = reveal_secrets

    def _exchange(
        self, exchanges: list[dict[str, Any]], path: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        entry: dict[str, Any] = {"request": {"method": "POST", "path": path, "body": body}}
        exchanges.append(entry)
        response = self.server.call("POST", path, body)
        entry["response"] = response
        return response

    def handshake(self, request: HandshakeRequest) -> ClientConnection:
        session = self.state.session(request.resume) if request.resume else None
        suite = choose_suite(request, session)
        config = ClientConfig(
            trust_anchors=self.trust_anchors,
            server_name=self.server_name,
            cipher_suites=(suite,),
            extended_master_secret=(
                session.extended_master_secret if session else request.extended_master_secret
            ),
            encrypt_then_mac=request.encrypt_then_mac,
        )
        machine = ClientHandshake(config, resume=session)
        exchanges: list[dict[str, Any]] = []
        hello = machine.client_hello()
        answer = self._exchange(exchanges, "/handshake/hello", hello.to_json())
        connection_id = answer.pop("connection_id", None)
        if not isinstance(connection_id, str):
            raise ServiceError(
                "upstream_bad_response", "server_svc's hello answer has no connection_id", 502
            )
        flight = ServerFlight.from_json(answer)
        answer["connection_id"] = connection_id
        finish = machine.receive_server_flight(flight)
        reply = self._exchange(
            exchanges, "/handshake/finish", {"connection_id": connection_id, **finish.to_json()}
        )
        if not flight.resumed:
            record = decode_b64(reply.get("finished_record"), "finished_record", max_length=4096)
            machine.receive_server_finished(record)
        connection = machine.connection
        assert connection is not None
        if machine.session is not None:
            self.state.sessions.put(
                machine.session.session_id.hex(), machine.session, established=True
            )
        self.keylog.write(connection.client_random, connection.master_secret_for_keylog)
        server_view = {
            "fingerprints": reply.get("fingerprints"),
            "trace": reply.get("trace") if isinstance(reply.get("trace"), list) else [],
        }
        result = ClientConnection(connection_id, machine, server_view, exchanges)
        self.state.add(result)
        log.info(
            "handshake complete",
            extra={
                "event": "handshake",
                "connection_id": connection_id,
                "cipher_suite": connection.suite.name,
                "resumed": connection.resumed,
                "fingerprints_match": server_view["fingerprints"] == connection.fingerprints(),
            },
        )
        return result

    def describe(self, entry: ClientConnection) -> dict[str, Any]:
        """The /handshake answer: this side's results, the server's fingerprints, the merged ladder."""
        machine = entry.handshake
        summary = machine.summary(reveal_secrets=self.reveal_secrets)
        conn = machine.connection
        assert conn is not None
        server_fingerprints = entry.server_view.get("fingerprints")
        client_steps = summary["trace"]
        ladder = sorted(
            [*client_steps, *entry.server_view["trace"]],
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
            "client_random": summary["client_random"],
            "server_random": summary["server_random"],
            "fingerprints": summary["fingerprints"],
            "server_fingerprints": server_fingerprints,
            "fingerprints_match": server_fingerprints == summary["fingerprints"],
            "key_block_layout": summary["key_block_layout"],
            "trace": ladder,
            "secrets_revealed": self.reveal_secrets,
        }
        if self.reveal_secrets:
            out["secrets"] = summary.get("secrets")
        return out

    def send(self, connection_id: str | None, plaintext: bytes) -> dict[str, Any]:
        entry = self.state.connection(connection_id)
        with entry.lock:  # one message at a time per connection: sequence numbers stay in step
            conn = entry.handshake.connection
            assert conn is not None
            sent_seq = conn.writer.seq
            record = conn.seal(plaintext)
            try:
                answer = self.server.call(
                    "POST",
                    "/message",
                    {"connection_id": entry.connection_id, "record": encode_b64(record)},
                )
            except ServiceError as exc:
                # The record may or may not have reached the server: its sequence
                # number is spent either way, so this connection cannot go on safely.
                conn.fail(exc.code)
                raise
            reply_seq = conn.reader.seq
            try:
                reply_record = decode_b64(answer.get("record"), "record")
                reply = conn.open(reply_record)
            except TLSError:
                # RFC 5246 §7.2.2: no resumption of a session ended by a fatal alert.
                self.state.sessions.pop(conn.session_id.hex())
                conn.fail("bad reply record")
                raise
            entry.messages += 1
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
        }


def new_connection_id() -> str:
    return secrets.token_hex(16)
