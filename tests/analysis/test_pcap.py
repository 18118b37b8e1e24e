"""lab_analysis.pcap judged by Wireshark: connections recorded from real client_svc/server_svc
runs, exported as pcapng, dissected by Debian's tshark (tests/helpers/tshark.py).

Wireshark is an independent TLS 1.2 implementation. Every handshake message of every suite,
key exchange, EMS and encrypt-then-MAC setting and resumption mode must dissect with no
malformed packet and no expert warning; with the capture's own Decryption Secrets Block alone
it must decrypt both Finished messages and every application record to the plaintext sent.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from helpers.pki import NOW
from helpers.transport import FlaskTransport
from helpers.tshark import Dissection, dissect

from kdf_lib import keylog, pki
from kdf_lib.client_auth import issue_client_certificate
from kdf_lib.record import ContentType
from kdf_lib.role import Role
from kdf_lib.suites import SUITES, KeyExchange
from kdf_lib.wire import HandshakeType
from lab_analysis import pcap
from lab_analysis.diagnose import decrypt_recorded_session
from lab_analysis.recorded import RecordedHandshake, parse_exchanges
from lab_common.contract import (
    CAPTURE_HEADER,
    HANDSHAKE,
    MAX_CAPTURED_BYTES,
    MAX_CAPTURED_MESSAGES,
    MESSAGE,
    SESSION,
    SESSION_PCAP,
    path,
)

CLIENT, SERVER = "127.0.0.1", "127.0.0.2"
MESSAGES = ("hello, Wireshark", "ünïcödé over TLS 1.2", "x" * 20_000)  # the last spans records


@dataclass
class Recorded:
    """One connection as client_svc recorded it, and its /message answers."""

    view: dict[str, Any]
    sent: Sequence[str]
    answers: list[dict[str, Any]]

    @property
    def handshake(self) -> RecordedHandshake:
        return parse_exchanges(self.view)

    @property
    def keylog_line(self) -> str:
        return keylog.format_line(
            bytes.fromhex(self.view["client_random"]),
            bytes.fromhex(self.view["secrets"]["master_secret"]),
        )

    def records(self) -> list[tuple[Role, bytes]]:
        out = []
        for answer in self.answers:
            out.append((Role.CLIENT, base64.b64decode(answer["sent"]["record"])))
            out.append((Role.SERVER, base64.b64decode(answer["reply"]["record"])))
        return out

    def capture(self, folder: Path, *, with_keylog: bool = True) -> Path:
        line = self.keylog_line if with_keylog else None
        data = pcap.export(self.handshake, self.records(), keylog_line=line, start=1.7e9)
        out = folder / f"{self.view['connection_id']}.pcapng"
        out.write_bytes(data)
        return out


class Lab:
    """client_svc (REVEAL_SECRETS on, for the key log line) wired in-process to server_svc."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client

    def connect(self, messages: Sequence[str] = MESSAGES, **request: object) -> Recorded:
        answer = self.client.post(HANDSHAKE, json=request).get_json()
        assert "connection_id" in answer, answer
        cid = answer["connection_id"]
        answers = []
        for text in messages:
            sent = self.client.post(MESSAGE, json={"plaintext": text, "connection_id": cid})
            assert sent.status_code == 200, sent.get_json()
            answers.append(sent.get_json())
        return Recorded(self.client.get(path(SESSION, cid)).get_json(), messages, answers)

    def download(self, recorded: Recorded, folder: Path) -> tuple[Path, str]:
        """client_svc's own capture of the connection, and its Lab-Capture header."""
        cid = recorded.view["connection_id"]
        answer = self.client.get(path(SESSION_PCAP, cid))
        assert answer.status_code == 200, answer.get_json()
        capture = folder / f"{cid}-client_svc.pcapng"
        capture.write_bytes(answer.get_data())
        return capture, answer.headers[CAPTURE_HEADER]


@pytest.fixture
def lab(make_server: Callable[..., Flask], make_client_app: Callable[..., Flask]) -> Lab:
    server_app = make_server()
    return Lab(
        make_client_app(TRANSPORT=FlaskTransport(server_app), REVEAL_SECRETS=True).test_client()
    )


def full_types(key_exchange: str, ticket: bool) -> list[int]:
    """The handshake types of a full handshake in the order RFC 5246 §7.3 sends them."""
    return [
        HandshakeType.client_hello,
        HandshakeType.server_hello,
        HandshakeType.certificate,
        # Every key exchange but plain RSA sends its parameters in a ServerKeyExchange.
        *([HandshakeType.server_key_exchange] if key_exchange != KeyExchange.RSA else []),
        HandshakeType.server_hello_done,
        HandshakeType.client_key_exchange,
        HandshakeType.finished,  # decrypted: Wireshark opened the client's Finished record
        *([HandshakeType.new_session_ticket] if ticket else []),
        HandshakeType.finished,
    ]


def resumed_types(ticket: bool) -> list[int]:
    return [
        HandshakeType.client_hello,
        HandshakeType.server_hello,
        *([HandshakeType.new_session_ticket] if ticket else []),
        HandshakeType.finished,
        HandshakeType.finished,
    ]


def assert_decrypted(seen: Dissection, recorded: Recorded) -> None:
    """Wireshark decrypted every application record to exactly the plaintext that was sent."""
    assert seen.problems == []
    assert seen.data_from(CLIENT) == "".join(recorded.sent).encode()
    replies = "".join(a["reply"]["plaintext"] for a in recorded.answers)
    assert seen.data_from(SERVER) == replies.encode()


CASES = (
    [pytest.param(name, True, True, id=f"{name}-ems-etm") for name in SUITES]
    + [
        pytest.param(name, ems, False, id=f"{name}-{'ems' if ems else 'no_ems'}-mac_then_encrypt")
        for ems, name in [
            (True, "TLS_RSA_WITH_AES_128_CBC_SHA"),
            (False, "TLS_RSA_WITH_AES_256_CBC_SHA256"),
            (True, "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA"),
            (False, "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256"),
            (True, "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384"),
        ]
    ]
    + [
        pytest.param(name, False, True, id=f"{name}-no_ems")
        for name in (
            "TLS_RSA_WITH_AES_128_GCM_SHA256",
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        )
    ]
)


@pytest.mark.parametrize(("suite", "ems", "etm"), CASES)
def test_wireshark_dissects_and_decrypts_every_handshake_and_resumption(
    lab: Lab, tmp_path: Path, suite: str, ems: bool, etm: bool
) -> None:
    options = {"cipher_suite": suite, "extended_master_secret": ems, "encrypt_then_mac": etm}
    key_exchange = SUITES[suite].key_exchange.value

    by_id = lab.connect(**options)
    assert by_id.view["encrypt_then_mac"] is (etm and not SUITES[suite].is_aead)
    seen = dissect(by_id.capture(tmp_path))
    assert seen.handshake_types == full_types(key_exchange, ticket=False)
    assert_decrypted(seen, by_id)

    # Resumption keeps the session's parameters; the request states the same ones.
    same = {"extended_master_secret": ems, "encrypt_then_mac": etm}
    resumed = lab.connect(MESSAGES[:1], resume=by_id.view["session_id"], **same)
    assert resumed.view["resumed"] is True
    seen = dissect(resumed.capture(tmp_path))
    assert seen.handshake_types == resumed_types(ticket=False)
    assert_decrypted(seen, resumed)

    ticketed = lab.connect(MESSAGES[:1], resumption="ticket", **options)
    seen = dissect(ticketed.capture(tmp_path))
    assert seen.handshake_types == full_types(key_exchange, ticket=True)
    assert_decrypted(seen, ticketed)

    by_ticket = lab.connect(
        MESSAGES[:2], resume=ticketed.view["session_id"], resumption="ticket", **same
    )
    assert by_ticket.view["resumed"] is True
    assert by_ticket.handshake.client_hello.extensions.session_ticket  # the ticket was presented
    seen = dissect(by_ticket.capture(tmp_path))
    ticket_renewed = by_ticket.handshake.new_session_ticket is not None
    assert seen.handshake_types == resumed_types(ticket=ticket_renewed)
    assert_decrypted(seen, by_ticket)


ENDPOINT_CASES = [
    pytest.param("TLS_RSA_WITH_AES_128_CBC_SHA", False, id="rsa-cbc-mac_then_encrypt"),
    pytest.param("TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384", True, id="ecdhe-cbc-etm"),
    pytest.param("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", True, id="ecdhe-gcm"),
    pytest.param("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", True, id="ecdhe-chacha20"),
]


@pytest.mark.parametrize(("suite", "etm"), ENDPOINT_CASES)
def test_client_svc_exports_the_records_of_its_messages_and_wireshark_decrypts_them(
    lab: Lab, tmp_path: Path, suite: str, etm: bool
) -> None:
    options = {"cipher_suite": suite, "encrypt_then_mac": etm}
    full = lab.connect(**options)
    resumed = lab.connect(MESSAGES[:2], resume=full.view["session_id"], encrypt_then_mac=etm)
    assert resumed.view["resumed"] is True
    for recorded, types in [
        (full, full_types(SUITES[suite].key_exchange.value, ticket=False)),
        (resumed, resumed_types(ticket=False)),
    ]:
        capture, kept = lab.download(recorded, tmp_path)
        assert kept == "complete"
        # The records exactly as /message sent and answered them, in the order they crossed.
        expected = pcap.export(recorded.handshake, recorded.records())
        assert pcap.packets(capture.read_bytes()) == pcap.packets(expected)
        seen = dissect(capture)  # REVEAL_SECRETS: its own key log line opens it
        assert seen.handshake_types == types
        assert_decrypted(seen, recorded)
        assert "Truncated" not in seen.frames[-1].comment


def test_client_svc_keeps_the_first_messages_up_to_its_message_bound(
    lab: Lab, tmp_path: Path
) -> None:
    texts = [f"message {n}" for n in range(MAX_CAPTURED_MESSAGES + 2)]
    recorded = lab.connect(texts, key_exchange="ecdhe")
    capture, kept = lab.download(recorded, tmp_path)
    assert kept == "truncated"
    first = Recorded(recorded.view, texts[:MAX_CAPTURED_MESSAGES], recorded.answers[:-2])
    expected = pcap.export(first.handshake, first.records())
    assert pcap.packets(capture.read_bytes()) == pcap.packets(expected)
    seen = dissect(capture)
    assert_decrypted(seen, first)
    assert seen.frames[-1].comment.endswith(
        f"capture holds {MAX_CAPTURED_MESSAGES} of its {len(texts)} messages, "
        "the later ones are not in it"
    )
    assert sum("Truncated" in f.comment for f in seen.frames) == 1


def test_client_svc_keeps_the_first_messages_up_to_its_byte_bound(lab: Lab, tmp_path: Path) -> None:
    """A message that does not fit ends the capture: a later one that would fit is left out
    too, or Wireshark would lose step (the stream must have no hole)."""
    texts = ["a" * (MAX_CAPTURED_BYTES // 5)] * 3 + ["small"]
    recorded = lab.connect(texts, cipher_suite="TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256")
    sizes = [sum(len(data) for _, data in recorded.records()[2 * n : 2 * n + 2]) for n in range(4)]
    assert sizes[0] + sizes[1] <= MAX_CAPTURED_BYTES < sum(sizes[:3])
    assert sizes[0] + sizes[1] + sizes[3] <= MAX_CAPTURED_BYTES  # "small" alone would fit
    capture, kept = lab.download(recorded, tmp_path)
    assert kept == "truncated"
    first = Recorded(recorded.view, texts[:2], recorded.answers[:2])
    assert pcap.packets(capture.read_bytes()) == pcap.packets(
        pcap.export(first.handshake, first.records())
    )
    seen = dissect(capture)
    assert_decrypted(seen, first)
    assert "capture holds 2 of its 4 messages" in seen.frames[-1].comment


def test_without_the_secrets_block_nothing_is_decrypted_until_the_key_log_is_given(
    lab: Lab, tmp_path: Path
) -> None:
    recorded = lab.connect(MESSAGES[:1], key_exchange="ecdhe")
    capture = recorded.capture(tmp_path, with_keylog=False)
    assert recorded.keylog_line.split()[2].encode() not in capture.read_bytes()
    assert bytes.fromhex(recorded.view["secrets"]["master_secret"]) not in capture.read_bytes()

    seen = dissect(capture)
    assert seen.problems == []
    assert HandshakeType.finished not in seen.handshake_types
    assert seen.data_from(CLIENT) == seen.data_from(SERVER) == b""

    keylog_file = tmp_path / "sslkeylog.txt"
    keylog_file.write_text(recorded.keylog_line + "\n")
    assert_decrypted(dissect(capture, keylog_file=keylog_file), recorded)

    added = tmp_path / "added.pcapng"
    added.write_bytes(pcap.with_keylog(capture.read_bytes(), recorded.keylog_line))
    assert_decrypted(dissect(added), recorded)


def test_a_damaged_capture_is_reported_by_wireshark(lab: Lab, tmp_path: Path) -> None:
    """The judge is awake: a handshake message with a wrong length is malformed."""
    recorded = lab.connect(MESSAGES[:1])
    data = pcap.export(recorded.handshake, keylog_line=recorded.keylog_line)
    hello = recorded.handshake.client_hello.encode()
    assert data.count(hello) == 1
    damaged = bytearray(hello)
    damaged[3] += 1  # the ClientHello's length (its low byte): one byte more than there is
    capture = tmp_path / "damaged.pcapng"
    capture.write_bytes(data.replace(hello, bytes(damaged)))
    assert dissect(capture).problems != []


# -- the module on its own ------------------------------------------------------------------


def test_records_cross_the_connection_in_protocol_order(lab: Lab) -> None:
    handshake = lab.connect((), resumption="ticket").handshake
    records = pcap.handshake_records(handshake)
    assert [(r.sender.value, r.note) for r in records] == [
        ("client", "ClientHello"),
        ("server", "ServerHello"),
        ("server", "Certificate"),
        ("server", "ServerHelloDone"),
        ("client", "ClientKeyExchange"),
        ("client", "ChangeCipherSpec"),
        ("client", "Finished (encrypted)"),
        ("server", "NewSessionTicket"),
        ("server", "ChangeCipherSpec"),
        ("server", "Finished (encrypted)"),
    ]
    assert records[5].data == bytes([ContentType.change_cipher_spec, 3, 3, 0, 1, 1])
    assert records[6].data == handshake.client_finished_record
    assert records[-1].data == handshake.server_finished_record


def test_a_handshake_message_longer_than_a_record_spans_records() -> None:
    message = (
        bytes([HandshakeType.certificate]) + (40_000 - 4).to_bytes(3, "big") + bytes(40_000 - 4)
    )
    records = pcap._handshake_records(Role.SERVER, "Certificate", message)
    assert [len(r.data) - 5 for r in records] == [16384, 16384, 40_000 - 32768]
    assert b"".join(r.data[5:] for r in records) == message


def test_the_key_log_line_is_read_back_and_added_before_the_first_packet(lab: Lab) -> None:
    recorded = lab.connect(MESSAGES[:1])
    bare = pcap.export(recorded.handshake, recorded.records())
    assert pcap.client_random(bare) == recorded.handshake.client_random
    added = pcap.with_keylog(bare, recorded.keylog_line)
    assert added == pcap.export(
        recorded.handshake, recorded.records(), keylog_line=recorded.keylog_line
    )
    assert pcap.packets(added) == pcap.packets(bare)


@pytest.mark.parametrize(
    "records",
    [b"", b"\x17\x03\x03\x00\x05abc", b"\x17\x03\x01\x00\x01a", b"\x63\x03\x03\x00\x01a"],
    ids=["empty", "truncated", "wrong_version", "unknown_type"],
)
def test_application_values_that_are_not_records_are_refused(records: bytes) -> None:
    with pytest.raises(pcap.CaptureError):
        pcap.application_records([(Role.CLIENT, records)])


@pytest.mark.parametrize(
    "data",
    [b"", b"\x0a\x0d\x0d\x0a\x1c\x00\x00\x00", bytes(28), b"\x06\x00\x00\x00\x0c\x00\x00\x00" * 2],
    ids=["empty", "truncated", "no_section_header", "packets_only"],
)
def test_a_capture_that_is_not_ours_is_refused(data: bytes) -> None:
    with pytest.raises(pcap.CaptureError):
        pcap.client_random(data)


def test_a_truncation_note_is_a_second_comment_on_the_last_packet(lab: Lab, tmp_path: Path) -> None:
    recorded = lab.connect(MESSAGES[:1])
    capture = tmp_path / "truncated.pcapng"
    capture.write_bytes(
        pcap.export(recorded.handshake, recorded.records(), truncation="later messages omitted")
    )
    seen = dissect(capture)
    assert seen.problems == []
    assert seen.frames[-1].comment == "TCP close;later messages omitted"
    assert all("omitted" not in f.comment for f in seen.frames[:-1])


def test_the_key_log_line_must_be_a_client_random_line() -> None:
    with pytest.raises(ValueError, match="CLIENT_RANDOM"):
        pcap.capture([], keylog_line="CLIENT_RANDOM 00 11")


@pytest.mark.parametrize(
    "suite", ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_RSA_WITH_AES_256_CBC_SHA256"]
)
def test_wireshark_dissects_a_mutual_tls_handshake(
    make_server: Callable[..., Flask],
    make_client_app: Callable[..., Flask],
    ca: pki.Issued,
    server_identity: pki.Issued,
    tmp_path: Path,
    suite: str,
) -> None:
    """CertificateRequest, the client's Certificate and CertificateVerify (docs/protocol.md
    §3.10) land in the right flights, and Wireshark opens both Finished messages: the
    rebuilt transcript is the one both ends hashed."""
    client_identity = issue_client_certificate(ca, "client_svc", now=NOW)
    for name, data in (
        ("ca.pem", ca.certificate_pem()),
        ("client.pem", client_identity.certificate_pem()),
        ("client.key", client_identity.private_key_pem()),
    ):
        (tmp_path / name).write_bytes(data)
    server_app = make_server(CLIENT_AUTH="required", CLIENT_CA_FILE=str(tmp_path / "ca.pem"))
    mtls = Lab(
        make_client_app(
            TRANSPORT=FlaskTransport(server_app),
            REVEAL_SECRETS=True,
            CLIENT_CERT_FILE=str(tmp_path / "client.pem"),
            CLIENT_KEY_FILE=str(tmp_path / "client.key"),
        ).test_client()
    )
    recorded = mtls.connect(MESSAGES[:2], cipher_suite=suite)
    key_exchange = SUITES[suite].key_exchange
    expected = [
        HandshakeType.client_hello,
        HandshakeType.server_hello,
        HandshakeType.certificate,
        *([HandshakeType.server_key_exchange] if key_exchange != KeyExchange.RSA else []),
        HandshakeType.certificate_request,
        HandshakeType.server_hello_done,
        HandshakeType.certificate,
        HandshakeType.client_key_exchange,
        HandshakeType.certificate_verify,
        HandshakeType.finished,
        HandshakeType.finished,
    ]
    seen = dissect(recorded.capture(tmp_path))
    assert seen.handshake_types == expected
    assert_decrypted(seen, recorded)
    # The rebuilt session hash is the one both ends took: through ClientKeyExchange.
    steps = [s for s in recorded.view["trace"] if s["kind"] == "extended_master_secret"]
    assert steps and steps[0]["data"]["session_hash"] == recorded.handshake.session_hash().hex()
    capture, kept = mtls.download(recorded, tmp_path)
    assert kept == "complete"
    assert dissect(capture).handshake_types == expected
    if key_exchange is KeyExchange.RSA:
        # The eavesdropper with the server key replays the same key schedule (lab_analysis).
        records = recorded.records()
        opened = decrypt_recorded_session(
            recorded.handshake,
            server_identity.private_key,
            b"".join(r for side, r in records if side is Role.CLIENT),
            b"".join(r for side, r in records if side is Role.SERVER),
        )
        assert opened.decrypted, opened.why
        assert opened.client_plaintext == "".join(MESSAGES[:2]).encode()
