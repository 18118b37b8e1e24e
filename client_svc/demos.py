"""client_svc's demos: forward secrecy, tampered records and hellos, a derivation mismatch, a MITM.

Each demo runs real handshakes with a ClientService like the app's over a WireTap, a Transport
that records what crosses the wire and lets an attacker rewrite or inject requests. Every answer is
``{demo, title, explanation, steps: [{side, action, detail}], outcome, ...}`` (docs/demos.md);
lab_analysis.recorded rebuilds the recorded handshakes and lab_analysis.diagnose analyses them.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Blueprint, current_app, jsonify

from kdf_lib import pki
from kdf_lib.connection import Connection
from kdf_lib.errors import DecodeError, TLSError
from kdf_lib.messages import ClientHello, Fields, as_int, as_str, decode_b64, encode_b64
from kdf_lib.prf import MASTER_SECRET_LENGTH, finished_verify_data, prf
from kdf_lib.record import HEADER_LENGTH
from kdf_lib.role import Role
from kdf_lib.suites import KeyExchange
from kdf_lib.trace import StepKind, fingerprint, fingerprint_kind
from lab_analysis.diagnose import (
    DerivationInputs,
    Stage,
    decrypt_recorded_session,
    derive,
    diagnose,
)
from lab_analysis.recorded import RecordedHandshake, transcript_hash
from lab_common.contract import (
    ALERT,
    DEMO_FORWARD_SECRECY,
    DEMO_MISMATCH,
    DEMO_MITM,
    DEMO_PRIVATE_KEY,
    DEMO_TAMPER,
    FINISH,
    HELLO,
    MESSAGE,
    SESSION,
    path,
)
from lab_common.errors import ServiceError
from lab_common.http import json_body

from . import config
from .service import ClientService
from .store import ClientConnection, HandshakeRequest, MemoryClientStore
from .upstream import HttpTransport, ServerClient, Transport

bp = Blueprint("demos", __name__)

Step = dict[str, str]
Alert = dict[str, str]
DEFAULT_SESSIONS, MAX_SESSIONS = 2, 5
ATTACKS = ("flip_record", "replay_record", "edit_hello")
CERTIFICATE_ERRORS = {
    "unknown_ca",
    "bad_certificate",
    "certificate_expired",
    "unsupported_certificate",
}
UPSTREAM_ERRORS = {"upstream_unavailable", "upstream_timeout", "upstream_bad_response"}
TRANSFER = "transfer 100 EUR to Alice"


# -- the wire ---------------------------------------------------------------------------------


@dataclass
class WireEvent:
    """One HTTP exchange: what the client sent, what reached the server, and the answer."""

    method: str
    path: str
    sent: dict[str, Any] | None
    delivered: dict[str, Any] | None
    status: int
    answer: dict[str, Any] | None


class WireTap:
    """A Transport in the middle of the wire: records every exchange, and while ``rewrite`` is
    set, an attacker edits each request body before it travels on."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.events: list[WireEvent] = []
        self.rewrite: Callable[[str, dict[str, Any]], dict[str, Any]] | None = None

    def request(self, method: str, path: str, body: dict[str, Any] | None) -> tuple[int, bytes]:
        delivered = body
        if body is not None and self.rewrite is not None:
            delivered = self.rewrite(path, copy.deepcopy(body))
        status, data = self.inner.request(method, path, delivered)
        try:
            answer = json.loads(data)
        except ValueError:
            answer = None
        self.events.append(
            WireEvent(
                method, path, body, delivered, status, answer if isinstance(answer, dict) else None
            )
        )
        return status, data

    def of_connection(self, path: str, connection_id: str) -> list[WireEvent]:
        """The exchanges of one connection on ``path``, sorted out as an eavesdropper would."""

        def belongs(event: WireEvent) -> bool:
            ids = [
                (event.delivered or {}).get("connection_id"),
                (event.answer or {}).get("connection_id"),
            ]
            return event.path == path and connection_id in ids

        return [event for event in self.events if belongs(event)]

    def recorded_handshake(self, connection_id: str) -> RecordedHandshake:
        (hello,) = self.of_connection(HELLO, connection_id)
        (finish,) = self.of_connection(FINISH, connection_id)
        return RecordedHandshake.from_json(
            hello.delivered, hello.answer, finish.delivered, finish.answer
        )

    def message_records(self, connection_id: str) -> tuple[bytes, bytes]:
        """(what the client sent, what the server answered): the application-data records."""
        accepted = [e for e in self.of_connection(MESSAGE, connection_id) if e.status == 200]
        return (
            b"".join(decode_b64((e.delivered or {}).get("record"), "record") for e in accepted),
            b"".join(decode_b64((e.answer or {}).get("record"), "record") for e in accepted),
        )


class Report:
    """The common shape of every demo's answer."""

    def __init__(self, demo: str, title: str, explanation: str) -> None:
        self.demo, self.title, self.explanation = demo, title, explanation
        self.steps: list[Step] = []

    def step(self, side: str, action: str, detail: str) -> None:
        self.steps.append({"side": side, "action": action, "detail": detail})

    def answer(self, outcome: dict[str, Any], **fields: Any) -> dict[str, Any]:
        return {
            "demo": self.demo,
            "title": self.title,
            "explanation": self.explanation,
            "steps": self.steps,
            "outcome": outcome,
            **fields,
        }


def _app_service() -> ClientService:
    service: ClientService = current_app.extensions["client_service"]
    return service


def _tapped_service(transport: Transport) -> tuple[ClientService, WireTap]:
    """A ClientService like the app's (same settings, trust store, key log), on a tapped wire
    and with a store of its own, so demo connections never become the app's latest connection.
    It keeps its handshakes' step traces as objects: the mismatch demo reads the client's own
    steps."""
    app_service = _app_service()
    tap = WireTap(transport)
    service = ClientService(
        app_service.settings,
        ServerClient(tap),
        MemoryClientStore(app_service.settings),
        app_service.trust_anchors,
        app_service.keylog,
        app_service.metrics,
        keep_traces=True,
    )
    return service, tap


def _alert(exc: TLSError | ServiceError) -> Alert:
    """Which side refused, with which alert: server_svc's refusals carry ``peer: server``."""
    if isinstance(exc, TLSError):
        return {"side": "client", "code": exc.code, "message": exc.message}
    side = "server" if exc.details.get("peer") == "server" else "client"
    return {"side": side, "code": exc.code, "message": exc.message}


def _refusal(action: Callable[[], object]) -> Alert | None:
    """Run ``action``; the alert it ended with, or None if it went through."""
    try:
        action()
    except (TLSError, ServiceError) as exc:
        return _alert(exc)
    return None


def _demo_broke(what: str) -> ServiceError:
    return ServiceError("demo_failed", f"the demo did not go as TLS requires: {what}", 500)


def _connection_of(entry: ClientConnection) -> Connection:
    conn = entry.handshake.connection
    assert conn is not None
    return conn


# -- 1. forward secrecy ---------------------------------------------------------------------------

FORWARD_SECRECY = (
    "An eavesdropper records RSA, ECDHE and DHE sessions today and steals the server's private "
    "key later. With RSA key exchange the pre-master secret crossed the wire encrypted to that "
    "key, so every recorded RSA session opens. With ECDHE and DHE the key only signed the "
    "server's ephemeral public key (an EC point, or g^x mod p in an RFC 7919 group); the secret "
    "came from ephemeral private keys that no longer exist, so the recordings stay closed. That "
    "is forward secrecy, and why TLS 1.3 kept only (EC)DHE."
)


def run_forward_secrecy(sessions: int) -> dict[str, Any]:
    report = Report(
        "forward-secrecy", "Forward secrecy: record now, steal the key later", FORWARD_SECRECY
    )
    service, tap = _tapped_service(_app_service().server.transport)
    recorded: list[tuple[ClientConnection, str]] = []
    for key_exchange in KeyExchange:
        for number in range(1, sessions + 1):
            entry = service.handshake(HandshakeRequest(key_exchange=key_exchange))
            plaintext = f"{key_exchange} session {number}: {TRANSFER}, PIN 4711"
            service.send(entry.connection_id, plaintext.encode())
            recorded.append((entry, plaintext))
            report.step(
                "client",
                f"{key_exchange.upper()} handshake and one message",
                f"connection {entry.connection_id}, {_connection_of(entry).suite.name}: sent {plaintext!r}",
            )
    report.step(
        "attacker",
        "records the wire",
        f"{len(tap.events)} HTTP exchanges, kept as they crossed the wire: ClientHello, ServerHello "
        "with the certificate (and ServerKeyExchange for ECDHE and DHE), ClientKeyExchange, both "
        "Finished "
        "records and the message records. The attacker keeps nothing else.",
    )
    key = _steal_server_key(tap.inner)
    report.step(
        "attacker",
        "steals the server's private key, later",
        f"GET {DEMO_PRIVATE_KEY} on server_svc (it answers only with REVEAL_SECRETS=1): the "
        "certificate's long-term RSA key, as a break-in or a subpoena would give it",
    )
    results = [
        _attack_recording(report, tap, entry, plaintext, key) for entry, plaintext in recorded
    ]
    opened = {
        kx: sum(1 for r in results if r["key_exchange"] == kx and r["decrypted"])
        for kx in ("rsa", "ecdhe", "dhe")
    }
    return report.answer(
        {
            "sessions_recorded": len(results),
            "rsa_sessions_decrypted": opened["rsa"],
            "ecdhe_sessions_decrypted": opened["ecdhe"],
            "dhe_sessions_decrypted": opened["dhe"],
            "forward_secrecy": {kx: count == 0 for kx, count in opened.items()},
        },
        sessions=results,
    )


def _steal_server_key(transport: Transport) -> rsa.RSAPrivateKey:
    """The server's private key, fetched out of band (not over the tapped wire)."""
    try:
        answer = ServerClient(transport).call("GET", DEMO_PRIVATE_KEY)
    except ServiceError as exc:
        if exc.code != "demo_disabled":
            raise
        raise ServiceError(
            "demo_disabled",
            "server_svc does not hand out its private key, so the forward-secrecy demo cannot "
            "play the stolen key; start the stack with REVEAL_SECRETS=1 docker compose up -d",
            409,
        ) from None
    pem = answer.get("private_key_pem")
    if not isinstance(pem, str):
        raise ServiceError(
            "upstream_bad_response", "server_svc's key answer has no private_key_pem", 502
        )
    return pki.load_private_key(pem)


def _attack_recording(
    report: Report, tap: WireTap, entry: ClientConnection, plaintext: str, key: rsa.RSAPrivateKey
) -> dict[str, Any]:
    connection_id = entry.connection_id
    recorded = tap.recorded_handshake(connection_id)
    client_records, server_records = tap.message_records(connection_id)
    result = decrypt_recorded_session(recorded, key, client_records, server_records)
    session: dict[str, Any] = {
        "connection_id": connection_id,
        "key_exchange": recorded.suite.key_exchange.value,
        "cipher_suite": recorded.suite.name,
        "decrypted": result.decrypted,
        "why": result.why,
        "sent_plaintext": plaintext,
    }
    findings = list(result.findings)
    if result.client_plaintext is not None and result.server_plaintext is not None:
        session["recovered_plaintext"] = result.client_plaintext.decode("utf-8", "replace")
        own = _connection_of(entry).fingerprints()["master_secret"]
        findings.append(
            "the recovered master secret is the client's own"
            if result.master_secret_sha256 == own
            else "the recovered master secret differs from the client's"
        )
        findings.append(f"recovered: {session['recovered_plaintext']!r}")
        findings.append(
            f"and the server's answer: {result.server_plaintext.decode('utf-8', 'replace')!r}"
        )
    verdict = "decrypted" if result.decrypted else "stays closed"
    report.step(
        "attacker",
        f"opens {connection_id} ({session['key_exchange'].upper()}): {verdict}",
        "; ".join(findings),
    )
    return session


# -- 2. tampering -----------------------------------------------------------------------------------

TAMPER = {
    "flip_record": (
        "One flipped bit in a record",
        "An attacker on the path flips one bit of a protected record's ciphertext. The record's "
        "MAC (or AEAD tag) covers every byte, so the server refuses it with bad_record_mac, and, "
        "as TLS requires after any fatal alert, closes the connection: even the original, "
        "untouched record is refused afterwards. Integrity, not just secrecy.",
    ),
    "replay_record": (
        "A replayed record",
        "An attacker records a valid record (say, a money transfer) and posts it again. The MAC "
        "covers the implicit sequence number, which the server has moved past, so the copy fails "
        "with bad_record_mac, the connection is closed, and the transfer happens once.",
    ),
    "edit_hello": (
        "An edited ClientHello",
        "An attacker strips encrypt_then_mac from the ClientHello in transit: a downgrade to "
        "MAC-then-encrypt, the mode behind Lucky Thirteen and POODLE. The hellos travel in the "
        "clear, but both sides hash every handshake message they saw, and with the extended "
        "master secret even the keys depend on that hash. The two transcripts differ, so the "
        "server cannot open the client's Finished record and the handshake dies before any data "
        "flows. Without EMS the same edit fails one step later, at the Finished verify_data.",
    ),
}


def run_tamper(attack: str) -> dict[str, Any]:
    title, explanation = TAMPER[attack]
    report = Report("tamper", title, explanation)
    service, tap = _tapped_service(_app_service().server.transport)
    if attack == "edit_hello":
        return _edit_hello(report, service, tap)
    entry = service.handshake(HandshakeRequest())
    conn = _connection_of(entry)
    cid = entry.connection_id
    report.step(
        "client",
        "handshake",
        f"connection {cid}: {conn.suite.name}, encrypt-then-MAC {'on' if conn.encrypt_then_mac else 'off'}",
    )
    if attack == "flip_record":
        return _flip_record(report, service, tap, entry)
    return _replay_record(report, service, tap, entry)


def _flip_record(
    report: Report, service: ClientService, tap: WireTap, entry: ClientConnection
) -> dict[str, Any]:
    cid = entry.connection_id
    offset = HEADER_LENGTH + _connection_of(entry).suite.record_iv_length

    def flip_one_bit(path: str, body: dict[str, Any]) -> dict[str, Any]:
        if path == MESSAGE:
            record = bytearray(decode_b64(body["record"], "record"))
            record[offset] ^= 0x01
            body["record"] = encode_b64(bytes(record))
        return body

    tap.rewrite = flip_one_bit
    alert = _refusal(lambda: service.send(cid, TRANSFER.encode()))
    tap.rewrite = None
    if alert is None:
        raise _demo_broke("server_svc accepted a record with a flipped bit")
    original = tap.events[-1].sent
    report.step("client", "seals a message", f"{TRANSFER!r} as one record at sequence number 1")
    report.step(
        "attacker",
        "flips one bit",
        f"bit 0 of byte {offset} of the record: the first ciphertext byte after the 5-byte header "
        "and the explicit IV/nonce",
    )
    report.step("server", f"refuses: {alert['code']}", alert["message"])
    again = _refusal(lambda: service.server.call("POST", MESSAGE, original))
    if again is not None:
        report.step(
            "attacker",
            "sends the original, untouched record",
            f"refused too: {again['code']} ({again['message']}): the connection is closed",
        )
    view = _server_view(service, cid)
    return report.answer(
        {
            "tampered_record_refused": True,
            "connection_closed": bool(view.get("closed")),
            "original_record_afterwards": again,
        },
        alert=alert,
        connection_id=cid,
    )


def _replay_record(
    report: Report, service: ClientService, tap: WireTap, entry: ClientConnection
) -> dict[str, Any]:
    cid = entry.connection_id
    first = service.send(cid, TRANSFER.encode())
    captured = tap.events[-1].delivered
    report.step(
        "server",
        "accepts the message",
        f"record at sequence number {first['sent']['seq']}: {first['reply']['plaintext']!r}",
    )
    alert = _refusal(lambda: service.server.call("POST", MESSAGE, captured))
    if alert is None:
        raise _demo_broke("server_svc accepted a replayed record")
    report.step(
        "attacker",
        "posts the captured record again",
        "byte for byte the record the server just accepted",
    )
    report.step(
        "server",
        f"refuses: {alert['code']}",
        f"{alert['message']}: the MAC covers sequence number {first['sent']['seq']}, the server "
        f"now expects {first['sent']['seq'] + 1}",
    )
    after = _refusal(lambda: service.send(cid, b"the next message"))
    if after is not None:
        report.step(
            "client", "sends its next message", f"refused: {after['code']} ({after['message']})"
        )
    return report.answer(
        {
            "first_delivery_accepted": True,
            "replay_refused": True,
            "connection_closed": after is not None,
            "next_message_afterwards": after,
        },
        alert=alert,
        connection_id=cid,
    )


def _edit_hello(report: Report, service: ClientService, tap: WireTap) -> dict[str, Any]:
    def strip_encrypt_then_mac(path: str, body: dict[str, Any]) -> dict[str, Any]:
        if path == HELLO:
            body["extensions"]["encrypt_then_mac"] = False
        return body

    tap.rewrite = strip_encrypt_then_mac
    alert = _refusal(lambda: service.handshake(HandshakeRequest()))
    tap.rewrite = None
    if alert is None:
        raise _demo_broke("the handshake completed although its ClientHello was edited")
    hello = tap.events[0]
    sent, delivered = (
        ClientHello.from_json(body).encode() for body in (hello.sent, hello.delivered)
    )
    answer = hello.answer or {}
    cid = str(answer.get("connection_id"))
    report.step(
        "client",
        "sends ClientHello",
        f"encrypt_then_mac: true, extended_master_secret: true (encoded ClientHello sha256 {fingerprint(sent)[:16]}…)",
    )
    report.step(
        "attacker",
        "edits it in transit",
        f"encrypt_then_mac: false (the server now hashes a ClientHello with sha256 {fingerprint(delivered)[:16]}…)",
    )
    report.step(
        "server",
        "answers without encrypt_then_mac",
        f"connection {cid}, {answer.get('cipher_suite')}: a server may decline an extension, so "
        "the client has no reason to object yet",
    )
    finished_sent = bool(tap.of_connection(FINISH, cid))
    report.step(
        "client",
        "verifies the certificate, sends ClientKeyExchange and its Finished",
        'master secret = PRF(pms, "extended master secret", hash of the transcript the client saw)',
    )
    report.step(alert["side"], f"refuses the client Finished: {alert['code']}", alert["message"])
    view = _server_view(service, cid)
    return report.answer(
        {
            "handshake_completed": False,
            "edited_field": "extensions.encrypt_then_mac (true → false)",
            "failed_at": f"client Finished (POST {FINISH})" if finished_sent else "hello",
            "server_state": view.get("state"),
        },
        alert=alert,
        connection_id=cid,
    )


def _server_view(service: ClientService, connection_id: str) -> dict[str, Any]:
    """server_svc's GET /sessions view of a connection, or {} if it has none."""
    try:
        return service.server.call("GET", path(SESSION, connection_id))
    except ServiceError:
        return {}


# -- 3. mismatch diagnosis ------------------------------------------------------------------------

#: mistake -> (the stage it breaks, whether the handshake uses the extended master secret,
#: what the broken computation does). EMS is off where the mistake is in the RFC 5246 formula.
MISTAKES: dict[str, tuple[Stage, bool, str]] = {
    "swapped_randoms": (
        Stage.MASTER_SECRET,
        False,
        'PRF(pms, "master secret", server_random + client_random): the randoms swapped',
    ),
    "wrong_label": (
        Stage.MASTER_SECRET,
        False,
        'PRF(pms, "master secrets", client_random + server_random): one letter too many',
    ),
    "missing_transcript_message": (
        Stage.FINISHED,
        True,
        'PRF(master_secret, "client finished", Hash(transcript without ServerHelloDone))',
    ),
    "key_block_seed_order": (
        Stage.KEY_BLOCK,
        True,
        'PRF(master_secret, "key expansion", client_random + server_random): the seed as the '
        "simplified texts write it",
    ),
    "none": (
        Stage.MASTER_SECRET,
        True,
        'PRF(pms, "extended master secret", session_hash), written out independently: no mistake',
    ),
}
_CORRECT = {
    (Stage.MASTER_SECRET, False): 'PRF(pms, "master secret", client_random + server_random)',
    (
        Stage.MASTER_SECRET,
        True,
    ): 'PRF(pms, "extended master secret", Hash(ClientHello..ClientKeyExchange))',
    (Stage.KEY_BLOCK, True): 'PRF(master_secret, "key expansion", server_random + client_random)',
    (
        Stage.FINISHED,
        True,
    ): 'PRF(master_secret, "client finished", Hash(ClientHello..ClientKeyExchange))',
}
MISMATCH = (
    "Two implementations that disagree on one derivation input derive unrelated values, and "
    "all anyone sees is that Finished fails. The client recomputes one step of a real handshake "
    "correctly and once with a classic mistake, then lets lab_analysis.diagnose find which input "
    "differs: it replays every mistake of its catalogue on the handshake's inputs and compares "
    "fingerprints until one reproduces the broken value. Secrets stay local; only fingerprints "
    "are shown: SHA-256 of the 48-byte master secret or the key block, and for the 12-byte "
    "verify_data an HMAC keyed from the handshake's master secret, as short values are too easy "
    "to find again from a plain hash."
)


def run_mismatch(mistake: str) -> dict[str, Any]:
    stage, ems, broken_formula = MISTAKES[mistake]
    report = Report("mismatch", f"Mismatch diagnosis: {mistake}", MISMATCH)
    service, tap = _tapped_service(_app_service().server.transport)
    entry = service.handshake(HandshakeRequest(extended_master_secret=ems))
    conn = _connection_of(entry)
    report.step(
        "client",
        "completes a real handshake",
        f"connection {entry.connection_id}, {conn.suite.name}, extended master secret {'on' if ems else 'off'}",
    )
    recorded = tap.recorded_handshake(entry.connection_id)
    inputs = DerivationInputs.from_recorded(recorded, _client_pre_master_secret(entry))
    correct, broken = derive(inputs, stage), _broken(mistake, inputs)
    correct_fp, broken_fp = inputs.fingerprint(correct), inputs.fingerprint(broken)
    kind = fingerprint_kind(len(correct))
    matches = _handshake_fingerprints(entry, stage) == {correct_fp}
    report.step(
        "client",
        f"derives the {stage.description} correctly",
        f"{_CORRECT[(stage, ems)]} → {kind} {correct_fp}"
        + (" (what both sides derived in the handshake)" if matches else ""),
    )
    again = (
        "derives it again, independently" if mistake == "none" else "derives it with the mistake"
    )
    report.step("client", again, f"{broken_formula} → {kind} {broken_fp}")
    diagnosis = diagnose(inputs, correct_fp, broken_fp)
    report.step(
        "client",
        "diagnoses",
        f"lab_analysis.diagnose replays its catalogue of mistakes: {diagnosis.explanation}",
    )
    fields: dict[str, Any] = {
        "diagnosis": diagnosis.to_json(),
        "fingerprint": kind,
        "correct": correct_fp,
        "broken": broken_fp,
    }
    if _app_service().settings.reveal_secrets:
        fields["secrets"] = {"correct": correct.hex(), "broken": broken.hex()}
    return report.answer(
        {
            "stage": stage.value,
            "differing_input": diagnosis.differing_input,
            "correct_matches_handshake": matches,
            "fingerprints_differ": correct_fp != broken_fp,
        },
        **fields,
    )


def _client_pre_master_secret(entry: ClientConnection) -> bytes:
    """The client's own pre-master secret: its trace keeps it for the REVEAL_SECRETS switch, and
    this teaching computation uses it locally, never showing it."""
    for step in entry.handshake.trace.steps:
        if "pre_master_secret" in step.secrets:
            return bytes.fromhex(step.secrets["pre_master_secret"])
    raise _demo_broke("the client's trace holds no pre-master secret")


def _handshake_fingerprints(entry: ClientConnection, stage: Stage) -> set[str | None]:
    """What the handshake itself derived at ``stage``, per side, as fingerprints (verify_data's
    is keyed, under the same key as :meth:`DerivationInputs.fingerprint`)."""
    if stage is Stage.FINISHED:
        return {
            step.data.get("verify_data_hmac")
            for step in entry.handshake.trace.steps
            if step.kind is StepKind.SEND_FINISHED
        }
    sides = [_connection_of(entry).fingerprints(), entry.server_view.get("fingerprints") or {}]
    return {side.get(stage.value) for side in sides}


def _broken(mistake: str, inputs: DerivationInputs) -> bytes:
    """The value a mistaken implementation derives, written out as that implementation would
    (on purpose not through the diagnosis catalogue, which must find it on its own)."""
    h, pms = inputs.suite.prf_hash, inputs.pre_master_secret
    client_random, server_random = inputs.client_random, inputs.server_random
    if mistake == "swapped_randoms":
        return prf(pms, b"master secret", server_random + client_random, MASTER_SECRET_LENGTH, h)
    if mistake == "wrong_label":
        return prf(pms, b"master secrets", client_random + server_random, MASTER_SECRET_LENGTH, h)
    if mistake == "none":
        session_hash = transcript_hash(inputs.handshake_messages, h)
        return prf(pms, b"extended master secret", session_hash, MASTER_SECRET_LENGTH, h)
    master = derive(inputs, Stage.MASTER_SECRET)
    if mistake == "key_block_seed_order":
        return prf(
            master,
            b"key expansion",
            client_random + server_random,
            inputs.suite.key_block_length,
            h,
        )
    without_done = [m for m in inputs.handshake_messages if m.name != "ServerHelloDone"]
    return finished_verify_data(master, Role.CLIENT, transcript_hash(without_done, h), h)


# -- 4. man in the middle -----------------------------------------------------------------------

MITM = (
    "A man in the middle answers in the server's place with a certificate for the same name, "
    "issued by a CA of its own (here even a CA with the same name as the real one). The client "
    "checks that the certificate's signature chains to a CA in its trust store before it sends "
    "anything secret; the mitm's does not, so the client aborts right after ServerHello and "
    "tells the mitm why with a fatal unknown_ca alert. No pre-master secret, no Finished and no "
    "data ever reach the mitm."
)


def run_mitm() -> dict[str, Any]:
    url = config.current().mitm_server_url
    if not url:
        raise _mitm_unavailable("MITM_SERVER_URL is not set")
    report = Report("mitm", "A man in the middle with its own CA", MITM)
    service, tap = _tapped_service(_mitm_transport(url))
    try:
        service.handshake(HandshakeRequest())
    except (TLSError, ServiceError) as exc:
        error = _alert(exc)
    else:
        raise _mitm_unavailable(f"the server at {url} presented a certificate the client trusts")
    if error["code"] in UPSTREAM_ERRORS:
        raise _mitm_unavailable(f"{url} does not answer ({error['code']})")
    if error["code"] not in CERTIFICATE_ERRORS:
        raise ServiceError(error["code"], error["message"], 502, peer=error["side"])
    answer = tap.events[0].answer or {}
    leaf = pki.load_certificate_chain(answer["certificate_chain"][0])[0]
    anchor = service.trust_anchors[0]
    presented, trusted = _certificate_facts(leaf), _certificate_facts(anchor)
    paths = [f"{e.method} {e.path}" for e in tap.events]
    report.step(
        "client",
        "sends ClientHello to MITM_SERVER_URL",
        f"{url}, expecting the server name {service.settings.server_name!r}",
    )
    report.step(
        "mitm",
        "answers with its own certificate",
        f"subject {presented['subject']}, issuer {presented['issuer']}, sha256 {presented['fingerprint_sha256']}",
    )
    report.step(
        "client",
        "checks the chain against its trust store",
        f"trusted CA: subject {trusted['subject']}, sha256 {trusted['fingerprint_sha256']}; the "
        f"certificate was signed by key {presented['authority_key_id']}, the trusted CA's key is "
        f"{trusted['subject_key_id']}",
    )
    report.step(error["side"], f"aborts: {error['code']}", error["message"])
    report.step(
        "client",
        f"sends the alert {error['code']} and nothing more",
        "requests that reached the mitm: " + ", ".join(paths) + " (the alert names the alert only)",
    )
    return report.answer(
        {
            "refused": True,
            "secret_sent": any(e.path not in (HELLO, ALERT) for e in tap.events),
            "requests_to_mitm": paths,
            "issuer_name_matches_trusted_ca": presented["issuer"] == trusted["subject"],
            "signed_by_trusted_key": presented["authority_key_id"] == trusted["subject_key_id"],
        },
        error={"code": error["code"], "message": error["message"]},
        certificate=presented,
        trusted_ca=trusted,
    )


def _mitm_unavailable(why: str) -> ServiceError:
    return ServiceError(
        "demo_unavailable",
        f"the man-in-the-middle demo needs the mitm server: {why}. Start it with "
        "docker compose --profile mitm up -d (client_svc reaches it at MITM_SERVER_URL)",
        409,
    )


def _mitm_transport(url: str) -> Transport:
    """MITM_TRANSPORT in tests; else one pooled HTTP transport per URL, made on first use."""
    override: Transport | None = current_app.config.get("MITM_TRANSPORT")
    if override is not None:
        return override
    pools: dict[str, Transport] = current_app.extensions.setdefault("demo_mitm_transports", {})
    if url not in pools:
        pools[url] = HttpTransport.from_settings(url, config.current())
    return pools[url]


def _certificate_facts(certificate: x509.Certificate) -> dict[str, str | None]:
    def key_id(
        kind: type[x509.SubjectKeyIdentifier] | type[x509.AuthorityKeyIdentifier],
    ) -> str | None:
        try:
            value = certificate.extensions.get_extension_for_class(kind).value
        except x509.ExtensionNotFound:
            return None
        digest = (
            value.digest if isinstance(value, x509.SubjectKeyIdentifier) else value.key_identifier
        )
        return None if digest is None else digest.hex()

    return {
        "subject": certificate.subject.rfc4514_string(),
        "issuer": certificate.issuer.rfc4514_string(),
        "fingerprint_sha256": pki.fingerprint_sha256(certificate),
        "subject_key_id": key_id(x509.SubjectKeyIdentifier),
        "authority_key_id": key_id(x509.AuthorityKeyIdentifier),
        "not_after": certificate.not_valid_after_utc.isoformat(),
    }


# -- the views ------------------------------------------------------------------------------------


def _one_of(choices: Any) -> Callable[[object, str], str]:
    def convert(value: object, name: str) -> str:
        if value not in choices:
            raise DecodeError(f"{name} must be one of {', '.join(choices)}")
        return as_str(value, name)

    return convert


@bp.post(DEMO_FORWARD_SECRECY)
def forward_secrecy() -> Any:
    with Fields(json_body(optional=True), "forward-secrecy request") as f:
        sessions = f.optional(
            "sessions", lambda v, n: as_int(v, n, minimum=1, maximum=MAX_SESSIONS), DEFAULT_SESSIONS
        )
    return jsonify(run_forward_secrecy(sessions))


@bp.post(DEMO_TAMPER)
def tamper() -> Any:
    with Fields(json_body(), "tamper request") as f:
        attack = f.required("attack", _one_of(ATTACKS))
    return jsonify(run_tamper(attack))


@bp.post(DEMO_MISMATCH)
def mismatch() -> Any:
    with Fields(json_body(), "mismatch request") as f:
        mistake = f.required("mistake", _one_of(tuple(MISTAKES)))
    return jsonify(run_mismatch(mistake))


@bp.post(DEMO_MITM)
def mitm() -> Any:
    with Fields(json_body(optional=True), "mitm request"):
        pass
    return jsonify(run_mitm())
