"""server_svc's error model: JSON errors only, 5xx only for real faults, nothing secret anywhere.

Every failure is ``{"error": {"code", "message"}}``; a fault of the service itself is 500
internal_error with a fixed message, and its log line names only the exception type (the
message could quote input). No answer and no log line holds a secret or says why a record
failed to open.
"""

from __future__ import annotations

import base64
import json
import re

import pytest
from helpers import forge
from helpers.peer import ECDHE_SUITE, RSA_SUITE, Peer

from kdf_lib.handshake import ServerHandshake
from lab_common.contract import HELLO, MESSAGE, SESSION, path

from .test_bad_bodies import assert_error


def _log_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_a_fault_is_a_bare_500_and_its_log_line_names_only_the_type(server, monkeypatch, capsys):
    def explode(self, hello):
        raise RuntimeError("the private key is 0x1234 and the input was 'pwned'")

    monkeypatch.setattr(ServerHandshake, "receive_client_hello", explode)
    capsys.readouterr()
    response = server.post(HELLO, json={"client_random": "00" * 32, "cipher_suites": [RSA_SUITE]})
    assert_error(response, 500, "internal_error")
    assert response.get_json() == {
        "error": {"code": "internal_error", "message": "the service failed unexpectedly"}
    }
    output = capsys.readouterr()
    logged = output.out + output.err
    assert "0x1234" not in logged and "pwned" not in logged and "Traceback" not in logged
    faults = [line for line in _log_lines(output.out) if line.get("event") == "internal_error"]
    assert faults == [faults[0]] and faults[0]["exception"] == "RuntimeError"


def test_http_level_errors_are_json_too(server):
    assert_error(server.get("/nowhere"), 404, "not_found")
    assert_error(server.get(HELLO), 405, "method_not_allowed")
    assert_error(server.delete(MESSAGE), 405, "method_not_allowed")
    assert_error(
        server.post(MESSAGE, data="{}", content_type="text/html"), 415, "unsupported_media_type"
    )


def _secret_texts(peer: Peer) -> set[str]:
    """Every secret of the client's handshake, as hex and as base64."""
    values = {value for step in peer.handshake.trace.steps for value in step.secrets.values()}
    assert peer.connection is not None
    values |= set(peer.connection.reveal_secrets().values())
    texts = set()
    for value in values:
        if len(value) >= 16:
            texts.add(value)
            texts.add(base64.b64encode(bytes.fromhex(value)).decode())
    return texts


@pytest.mark.parametrize("suite", [RSA_SUITE, ECDHE_SUITE])
def test_no_secret_reaches_an_answer_or_a_log_line(server, capsys, suite):
    capsys.readouterr()
    answers: list[bytes] = []
    peer = Peer(server, suite)
    answers.append(peer.hello().body)
    peer.prepare_finish()
    answers.append(peer.finish().body)
    for text in (b"first", b"second"):
        answers.append(peer.send(text)[1].body)
    answers.append(server.get(path(SESSION, peer.connection_id)).get_data())
    answers.append(peer.message(forge.flip(peer.seal(b"bad"), -1)).body)
    answers.append(server.get(path(SESSION, peer.connection_id)).get_data())
    logged = capsys.readouterr().out
    assert '"event":"message_refused"' in logged  # the logs were captured
    secrets = _secret_texts(peer)
    assert len(secrets) >= 10
    for where in [*(a.decode() for a in answers), logged]:
        leaked = [s for s in secrets if s in where]
        assert not leaked


def test_a_padding_failure_and_a_mac_failure_log_the_same_thing(server, capsys):
    """The log says which connection failed and that it was bad_record_mac, never why."""
    lines = {}
    for damage in ("padding", "mac"):
        peer = Peer(server, "TLS_RSA_WITH_AES_128_CBC_SHA256", etm=False).complete()
        keys = forge.client_write_keys(peer)
        record = forge.cbc_record(
            keys,
            1,
            b"which one?",
            padding=forge.bad_padding if damage == "padding" else forge.good_padding,
            mac_bad=damage == "mac",
        )
        capsys.readouterr()
        assert peer.message(record).code == "bad_record_mac"
        logged = _log_lines(capsys.readouterr().out)
        for line in logged:
            line.pop("ts")
            line.pop("connection_id", None)
        lines[damage] = logged
    assert lines["padding"] == lines["mac"]
    assert not re.search(r"padding|\bmac\b(?!_)", json.dumps(lines["padding"]), re.IGNORECASE)
