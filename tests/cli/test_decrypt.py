"""`tls-lab decrypt`: a saved session, its records and client_svc's key log, opened offline."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from kdf_lib import keylog
from lab_common.contract import FINISH, HANDSHAKE, SESSION, path

from .conftest import Lab

MESSAGES = ("hello over TLS 1.2", "a second message, with ünïcödé")


def record_session(lab: Lab, tmp_path: Path, *args: str) -> tuple[Path, Path]:
    """Run a handshake and two messages; save the session and the /message answers."""
    session, records = tmp_path / "session.json", tmp_path / "records.json"
    status, _, err = lab.run(
        "handshake",
        *args,
        *(arg for text in MESSAGES for arg in ("--message", text)),
        "--save-session",
        str(session),
        "--save-records",
        str(records),
        "--json",
    )
    assert status == 0, err
    return session, records


def decrypt(lab: Lab, keylog_path: Path, session: Path, records: Path | None, *extra: str):
    args = ["decrypt", "--keylog", str(keylog_path), "--session", str(session)]
    if records is not None:
        args += ["--records", str(records)]
    return lab.run(*args, *extra)


@pytest.mark.parametrize(
    ("suite", "options", "protection"),
    [
        ("TLS_RSA_WITH_AES_128_CBC_SHA256", (), "encrypt-then-MAC"),
        ("TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", ("--no-etm",), "MAC-then-encrypt"),
        ("TLS_RSA_WITH_AES_256_GCM_SHA384", (), "AEAD"),
        ("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", (), "AEAD"),
    ],
)
def test_key_log_decrypts_every_record_of_the_session(
    lab: Lab, tmp_path: Path, suite: str, options: tuple[str, ...], protection: str
) -> None:
    session, records = record_session(lab, tmp_path, "--suite", suite, *options)
    status, out, err = decrypt(lab, lab.keylog, session, records)
    assert status == 0, err
    assert suite in out and protection in out
    opened = re.findall(r"✓ (client → server|server → client)  seq (\d+)  (\w+)", out)
    assert opened == [
        ("client → server", "0", "handshake"),
        ("server → client", "0", "handshake"),
        ("client → server", "1", "application_data"),
        ("server → client", "1", "application_data"),
        ("client → server", "2", "application_data"),
        ("server → client", "2", "application_data"),
    ]
    for text in MESSAGES:
        assert json.dumps(text, ensure_ascii=False) in out
    flat = " ".join(out.split())
    assert 'PRF(master_secret, "client finished", ' in flat
    assert 'PRF(master_secret, "server finished", ' in flat
    assert "✗" not in out


def test_json_output_lists_each_record_with_its_plaintext(lab: Lab, tmp_path: Path) -> None:
    session, records = record_session(lab, tmp_path, "--key-exchange", "ecdhe")
    status, out, _ = decrypt(lab, lab.keylog, session, records, "--json")
    assert status == 0
    report = json.loads(out)
    assert report["ok"] is True
    application = [r for r in report["records"] if r["content_type"] == 23]
    assert [r["plaintext"] for r in application[::2]] == list(MESSAGES)
    assert all(r["plaintext"].endswith(m) for r, m in zip(application[1::2], MESSAGES, strict=True))


def test_resumed_session_opens_the_server_finished_first(lab: Lab, tmp_path: Path) -> None:
    first = lab.client.post(HANDSHAKE, json={"key_exchange": "ecdhe"}).get_json()
    session, records = record_session(lab, tmp_path, "--resume", first["session_id"])
    status, out, err = decrypt(lab, lab.keylog, session, records)
    assert status == 0, err
    assert "abbreviated" in out
    opened = re.findall(r"✓ (client → server|server → client)  seq (\d+)", out)
    assert opened[:2] == [("server → client", "0"), ("client → server", "0")]
    assert "SHA-256(ClientHello + ServerHello)" in " ".join(out.split())


def test_bare_and_directed_records_are_accepted(lab: Lab, tmp_path: Path) -> None:
    session, records = record_session(lab, tmp_path)
    answers = json.loads(records.read_text())
    mixed = [
        answers[0]["sent"]["record"],  # bare: the direction is found by which keys open it
        answers[0]["reply"]["record"],
        {"direction": "client_to_server", "record": answers[1]["sent"]["record"]},
        {"direction": "server", "record": answers[1]["reply"]["record"]},
    ]
    mixed_file = tmp_path / "mixed.json"
    mixed_file.write_text(json.dumps(mixed))
    status, out, err = decrypt(lab, lab.keylog, session, mixed_file)
    assert status == 0, err
    assert all(json.dumps(text, ensure_ascii=False) in out for text in MESSAGES)


def test_no_key_log_line_for_the_client_random_is_a_clear_failure(lab: Lab, tmp_path: Path) -> None:
    session, records = record_session(lab, tmp_path)
    other = tmp_path / "other.keylog"
    other.write_text(
        "# a key log of some other client\n" + keylog.format_line(b"\x01" * 32, b"\x02" * 48) + "\n"
    )
    status, out, err = decrypt(lab, other, session, records)
    assert status == 1
    assert out == ""
    client_random = json.loads(session.read_text())["client_random"]
    assert f"no CLIENT_RANDOM line for client_random {client_random}" in err
    assert "Traceback" not in err


def test_a_wrong_master_secret_in_the_key_log_is_a_clear_failure(lab: Lab, tmp_path: Path) -> None:
    session, records = record_session(lab, tmp_path)
    client_random = bytes.fromhex(json.loads(session.read_text())["client_random"])
    wrong = tmp_path / "wrong.keylog"
    wrong.write_text(keylog.format_line(client_random, b"\x42" * 48) + "\n")
    status, out, _ = decrypt(lab, wrong, session, records)
    assert status == 1
    flat = " ".join(out.split())
    assert "differs from the session's fingerprint" in flat
    assert "the client Finished record (seq 0) does not authenticate" in flat
    assert "the key log line does not belong to this session" in flat
    assert "✓" not in out.split("tls-lab decrypt", 1)[1].split("client → server", 1)[1]


def test_a_tampered_record_does_not_authenticate(lab: Lab, tmp_path: Path) -> None:
    session, records = record_session(lab, tmp_path, "--suite", "TLS_RSA_WITH_AES_128_GCM_SHA256")
    answers = json.loads(records.read_text())
    record = bytearray(base64.b64decode(answers[0]["reply"]["record"]))
    record[-1] ^= 0x01  # one bit of the tag
    answers[0]["reply"]["record"] = base64.b64encode(bytes(record)).decode()
    records.write_text(json.dumps(answers))
    status, out, _ = decrypt(lab, lab.keylog, session, records)
    assert status == 1
    flat = " ".join(out.split())
    assert "✗ server → client seq 1 application_data (23)" in flat
    assert "records[0].reply: the record does not authenticate (bad_record_mac) at seq 1" in flat
    # The sender spent seq 1 all the same: the records after it still open.
    assert json.dumps(MESSAGES[1], ensure_ascii=False) in out
    assert "1 of 6 records did not open" in out


def test_a_tampered_finished_record_is_reported(lab: Lab, tmp_path: Path) -> None:
    session, _ = record_session(lab, tmp_path)
    data = json.loads(session.read_text())
    finish = next(e for e in data["exchanges"] if e["request"]["path"] == FINISH)
    record = bytearray(base64.b64decode(finish["response"]["finished_record"]))
    record[10] ^= 0x80
    finish["response"]["finished_record"] = base64.b64encode(bytes(record)).decode()
    session.write_text(json.dumps(data))
    status, out, _ = decrypt(lab, lab.keylog, session, None)
    assert status == 1
    assert "the server Finished record (seq 0) does not authenticate" in " ".join(out.split())
    assert re.search(r"✓ client → server  seq 0", out)


def test_a_session_file_without_exchanges_is_refused(lab: Lab, tmp_path: Path) -> None:
    server_view = tmp_path / "server_view.json"
    connection = lab.client.post(HANDSHAKE, json={}).get_json()["connection_id"]
    server_view.write_text(json.dumps(lab.server.get(path(SESSION, connection)).get_json()))
    status, _, err = decrypt(lab, lab.keylog, server_view, None)
    assert status == 1
    assert "no 'exchanges' list" in err


def test_unreadable_inputs_are_explained(lab: Lab, tmp_path: Path) -> None:
    status, _, err = decrypt(lab, tmp_path / "missing.log", tmp_path / "missing.json", None)
    assert status == 1 and "cannot read the key log" in err
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    lab.keylog.write_text("")
    status, _, err = decrypt(lab, lab.keylog, bad, None)
    assert status == 1 and "is not JSON" in err
