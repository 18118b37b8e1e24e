"""`tls-lab pcap`: a connection as a pcapng capture, downloaded from client_svc or built from a
saved session and its records, judged by Debian's tshark (tests/helpers/tshark.py)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from helpers.tshark import dissect

from kdf_lib.wire import HandshakeType

from .conftest import CLIENT_URL, Lab

MESSAGES = ("hello, Wireshark", "x" * 17_000)  # the second spans two records
CLIENT, SERVER = "127.0.0.1", "127.0.0.2"


def record(lab: Lab, tmp_path: Path, *args: str) -> tuple[Path, Path, dict[str, object]]:
    """A handshake and the messages through `tls-lab handshake`; the saved session and records."""
    session, records = tmp_path / "session.json", tmp_path / "records.json"
    status, out, err = lab.run(
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
    return session, records, json.loads(out)


def test_a_saved_session_with_its_records_and_key_log_decrypts_in_wireshark(
    lab: Lab, tmp_path: Path
) -> None:
    session, records, _ = record(lab, tmp_path, "--suite", "TLS_RSA_WITH_AES_128_CBC_SHA256")
    capture = tmp_path / "out.pcapng"
    status, out, err = lab.run(
        "pcap", "--session", str(session), "--records", str(records),
        "--keylog", str(lab.keylog), "-o", str(capture),
    )  # fmt: skip
    assert status == 0, err
    assert "the handshake and 6 application-data records" in out  # 1 + 2 each way
    assert f"wireshark {capture}" in out
    seen = dissect(capture)
    assert seen.problems == []
    assert seen.handshake_types.count(HandshakeType.finished) == 2
    assert seen.data_from(CLIENT) == "".join(MESSAGES).encode()
    replies = json.loads(records.read_text())
    assert seen.data_from(SERVER) == "".join(r["reply"]["plaintext"] for r in replies).encode()


def test_a_download_from_client_svc_gets_the_key_log_line_added(lab: Lab, tmp_path: Path) -> None:
    assert lab.run("handshake")[0] == 0  # another connection's line in the key log
    _, _, gathered = record(lab, tmp_path, "--key-exchange", "ecdhe")
    connection_id = gathered["handshake"]["connection_id"]  # type: ignore[index]
    bare, added = tmp_path / "bare.pcapng", tmp_path / "added.pcapng"
    where = ("--client", CLIENT_URL)

    status, out, err = lab.run("pcap", "--connection", connection_id, *where, "-o", str(bare))
    assert status == 0, err
    assert "holds no key log line" in out and "--keylog FILE" in out
    assert HandshakeType.finished not in dissect(bare).handshake_types

    status, out, err = lab.run(
        "pcap", "--connection", connection_id, *where, "--keylog", str(lab.keylog),
        "-o", str(added),
    )  # fmt: skip
    assert status == 0, err
    assert f"wireshark {added}" in out
    seen = dissect(added)
    assert seen.problems == []
    assert seen.handshake_types.count(HandshakeType.finished) == 2
    # Only this connection's line went in, not the other connection's.
    lines = lab.keylog.read_text().splitlines()
    assert len(lines) == 2
    assert [line.encode() in added.read_bytes() for line in lines] == [False, True]


def test_a_key_log_without_the_connection_is_refused(lab: Lab, tmp_path: Path) -> None:
    session, _, _ = record(lab, tmp_path)
    other = tmp_path / "other.keylog"
    other.write_text("CLIENT_RANDOM " + "00" * 32 + " " + "11" * 48 + "\n")
    status, _, err = lab.run(
        "pcap", "--session", str(session), "--keylog", str(other), "-o", str(tmp_path / "x")
    )
    assert status == 1
    assert "no CLIENT_RANDOM line" in err
    assert not (tmp_path / "x").exists()


def test_records_without_their_direction_are_refused(lab: Lab, tmp_path: Path) -> None:
    session, records, _ = record(lab, tmp_path)
    bare = tmp_path / "bare.json"
    first = json.loads(records.read_text())[0]["sent"]["record"]
    bare.write_text(json.dumps([first]))
    status, _, err = lab.run(
        "pcap", "--session", str(session), "--records", str(bare), "-o", str(tmp_path / "x")
    )
    assert status == 1 and "direction" in err
    garbage = tmp_path / "garbage.json"
    garbage.write_text(
        json.dumps([{"direction": "client", "record": base64.b64encode(b"no").decode()}])
    )
    status, _, err = lab.run(
        "pcap", "--session", str(session), "--records", str(garbage), "-o", str(tmp_path / "x")
    )
    assert status == 1 and "not complete TLS 1.2 records" in err
    assert not (tmp_path / "x").exists()


def test_an_unknown_connection_is_reported_with_client_svcs_error(lab: Lab, tmp_path: Path) -> None:
    where = ("--client", CLIENT_URL, "-o", str(tmp_path / "x"))
    status, _, err = lab.run("pcap", "--connection", "ab" * 16, *where)
    assert status == 1
    assert "unknown_connection" in err
    status, _, err = lab.run("pcap", "--connection", "ab" * 16, "--records", "r.json", *where)
    assert status == 1 and "--records goes with --session" in err


def test_a_session_with_revealed_secrets_decrypts_without_a_key_log(
    revealing_lab: Lab, tmp_path: Path
) -> None:
    session, records, _ = record(revealing_lab, tmp_path)
    capture = tmp_path / "revealed.pcapng"
    status, out, err = revealing_lab.run(
        "pcap", "--session", str(session), "--records", str(records), "-o", str(capture)
    )
    assert status == 0, err
    assert f"wireshark {capture}" in out
    seen = dissect(capture)
    assert seen.problems == []
    assert seen.data_from(CLIENT) == "".join(MESSAGES).encode()


def test_a_session_without_secrets_and_no_key_log_makes_a_capture_without_secrets(
    lab: Lab, tmp_path: Path
) -> None:
    session, records, _ = record(lab, tmp_path)
    capture = tmp_path / "hidden.pcapng"
    status, out, err = lab.run(
        "pcap", "--session", str(session), "--records", str(records), "-o", str(capture)
    )
    assert status == 0, err
    assert "holds no key log line" in out
    (line,) = lab.keylog.read_text().splitlines()
    assert line.split()[2].encode() not in capture.read_bytes()
    seen = dissect(capture)
    assert seen.problems == []
    assert seen.data_from(CLIENT) == seen.data_from(SERVER) == b""
    assert dissect(capture, keylog_file=lab.keylog).data_from(CLIENT) == "".join(MESSAGES).encode()
