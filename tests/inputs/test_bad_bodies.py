"""Bad request bodies on every JSON endpoint of both services: refused with a JSON 4xx, never 5xx.

The codec (kdf_lib.messages) is strict on purpose (docs/protocol.md §1.5): the transcript is
rebuilt from the decoded values, so anything a lax parser would "fix up" could make the two
sides hash different bytes, and anything it tolerated would be a second way to say the same
thing. Deep nesting and huge numbers are refused before they cost anything.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from helpers.peer import RSA_SUITE, Peer

from kdf_lib.errors import DecodeError
from kdf_lib.messages import as_int
from lab_common.contract import FINISH, HANDSHAKE, HEALTH, HELLO, MESSAGE, PRF_CALCULATOR

ZERO_ID = "0" * 32

#: A body each endpoint accepts as far as the codec goes (server_svc's finish and message then
#: answer 404 for the made-up connection, client_svc's message 409 before any handshake).
VALID = {
    ("server", HELLO): {"client_random": "00" * 32, "cipher_suites": [RSA_SUITE]},
    ("server", FINISH): {"connection_id": ZERO_ID, "finished_record": "AAAA"},
    ("server", MESSAGE): {"connection_id": ZERO_ID, "record": "AAAA"},
    ("client", HANDSHAKE): {"key_exchange": "rsa"},
    ("client", MESSAGE): {"plaintext": "hi"},
    ("client", PRF_CALCULATOR): {"secret": "00", "label": "test", "seed": "00", "length": 1},
}
VALID_STATUS = {
    ("server", HELLO): 200,
    ("server", FINISH): 404,
    ("server", MESSAGE): 404,
    ("client", HANDSHAKE): 200,
    ("client", MESSAGE): 409,
    ("client", PRF_CALCULATOR): 200,
}
ENDPOINTS = sorted(VALID)


def _nested(depth: int, open_: str = "[", close: str = "]") -> str:
    return open_ * depth + close * depth


def _with_duplicate(body: dict[str, Any]) -> str:
    key, value = next(iter(body.items()))
    return "{" + f"{json.dumps(key)}: {json.dumps(value)}, " + json.dumps(body)[1:]


#: (name, body text or bytes, content type, status, code); "{valid}" stands for the valid body.
BODY_CASES: list[tuple[str, str | bytes, str | None, int, str]] = [
    ("truncated JSON", "{", "application/json", 400, "decode_error"),
    ("single quotes", "{'a': 1}", "application/json", 400, "decode_error"),
    ("trailing garbage", "{valid} x", "application/json", 400, "decode_error"),
    ("two objects", "{valid}{valid}", "application/json", 400, "decode_error"),
    ("not UTF-8", b'{"a": "\xff\xfe"}', "application/json", 400, "decode_error"),
    ("UTF-16", "{}".encode("utf-16"), "application/json", 400, "decode_error"),
    ("NaN", '{"x": NaN}', "application/json", 400, "decode_error"),
    ("minus Infinity", '{"x": -Infinity}', "application/json", 400, "decode_error"),
    ("an array at the top", "[]", "application/json", 400, "decode_error"),
    ("a string at the top", '"{}"', "application/json", 400, "decode_error"),
    ("null at the top", "null", "application/json", 400, "decode_error"),
    ("a number at the top", "12", "application/json", 400, "decode_error"),
    ("a duplicate key", "{duplicate}", "application/json", 400, "decode_error"),
    ("an unknown field", "{unknown}", "application/json", 400, "decode_error"),
    (
        "10,000 nested arrays in a field",
        '{"x": ' + _nested(10_000) + "}",
        "application/json",
        400,
        "decode_error",
    ),
    ("100,000 nested arrays", _nested(100_000), "application/json", 400, "decode_error"),
    (
        "50,000 nested objects",
        '{"a":' * 50_000 + "1" + "}" * 50_000,
        "application/json",
        400,
        "decode_error",
    ),
    (
        "an integer of 100,000 digits",
        '{"x": ' + "9" * 100_000 + "}",
        "application/json",
        400,
        "decode_error",
    ),
    (
        "a negative integer of 100,000 digits",
        '{"x": -' + "9" * 100_000 + "}",
        "application/json",
        400,
        "decode_error",
    ),
    ("an exponent of a million", '{"x": 1e1000000}', "application/json", 400, "decode_error"),
    ("text/plain", "{valid}", "text/plain", 415, "unsupported_media_type"),
    ("a form", "{valid}", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    ("no content type", "{valid}", None, 415, "unsupported_media_type"),
    ("a look-alike type", "{valid}", "application/jsonx", 415, "unsupported_media_type"),
    ("multipart", "{valid}", "multipart/form-data; boundary=x", 415, "unsupported_media_type"),
]


def _render(template: str | bytes, valid: dict[str, Any]) -> str | bytes:
    if isinstance(template, bytes):
        return template
    return (
        template.replace("{valid}", json.dumps(valid))
        .replace("{duplicate}", _with_duplicate(valid)[1:-1])
        .replace("{unknown}", json.dumps({**valid, "unexpected": 1})[1:-1])
    )


def _app_client(side: str, server, client):
    return server if side == "server" else client


def assert_error(response, status: int, code: str) -> None:
    """A JSON error of exactly the documented shape, status and code."""
    assert response.status_code == status, response.get_data()[:300]
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error"}
    assert {"code", "message"} <= set(body["error"])
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    text = response.get_data(as_text=True)
    assert "Traceback" not in text and "<" not in text


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=[f"{s}{p}" for s, p in ENDPOINTS])
def test_the_valid_bodies_are_valid(server, client, endpoint):
    """The control for every case below: the unchanged body gets past the codec."""
    side, path = endpoint
    response = _app_client(side, server, client).post(path, json=VALID[endpoint])
    assert response.status_code == VALID_STATUS[endpoint], response.get_json()


@pytest.mark.parametrize(
    ("name", "template", "content_type", "status", "code"),
    BODY_CASES,
    ids=[c[0] for c in BODY_CASES],
)
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=[f"{s}{p}" for s, p in ENDPOINTS])
def test_a_bad_body_is_refused_with_a_json_4xx(
    server, client, endpoint, name, template, content_type, status, code
):
    side, path = endpoint
    body = _render(template, VALID[endpoint])
    response = _app_client(side, server, client).post(path, data=body, content_type=content_type)
    assert_error(response, status, code)


def test_deep_nesting_is_refused_before_parsing(server):
    response = server.post(HELLO, data=_nested(100_000), content_type="application/json")
    assert_error(response, 400, "decode_error")
    assert "nested" in response.get_json()["error"]["message"]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


BAD_BASE64 = {
    "junk characters": "!!!!",
    "urlsafe alphabet": "-_-_",
    "missing padding": "QUFBQQ",
    "non-canonical padding bits": "QR==",
    "an inner newline": "QUFB\nQUFB",
    "a leading space": " QUFB",
    "padding only": "====",
    "a non-ASCII letter": "QUFé",
    "a number": 4,
    "a list": ["QUFB"],
}
BAD_HEX_32 = {
    "junk characters": "zz" * 32,
    "0x prefix": "0x" + "00" * 31,
    "31 bytes": "00" * 31,
    "33 bytes": "00" * 33,
    "odd length": "0" * 63,
    "a space inside": "00" * 15 + " 0" + "00" * 16,
    "fullwidth digits": "\uff10" * 64,
    "Arabic-Indic digits": "\u0660" * 64,
    "a number": 0,
    "true": True,
    "null": None,
    "a list": ["00"],
}
MALFORMED_IDS = {
    "uppercase": "A" * 32,
    "31 digits": "0" * 31,
    "33 digits": "0" * 33,
    "not hex": "g" * 32,
    "a number": 0,
    "null": None,
    "a list": [ZERO_ID],
}

#: (endpoint, name, field changes, status, code)
FIELD_CASES: list[tuple[tuple[str, str], str, dict[str, Any], int, str]] = [
    *[
        (
            ("server", HELLO),
            f"client_random: {n}",
            {"client_random": v},
            400,
            "decode_error",
        )
        for n, v in BAD_HEX_32.items()
    ],
    *[
        (
            ("server", FINISH),
            f"finished_record: {n}",
            {"finished_record": v},
            400,
            "decode_error",
        )
        for n, v in BAD_BASE64.items()
    ],
    *[
        (("server", MESSAGE), f"record: {n}", {"record": v}, 400, "decode_error")
        for n, v in BAD_BASE64.items()
    ],
    *[
        (endpoint, f"connection_id: {n}", {"connection_id": v}, 400, "malformed_connection_id")
        for endpoint in (
            ("server", FINISH),
            ("server", MESSAGE),
            ("client", MESSAGE),
        )
        for n, v in MALFORMED_IDS.items()
        if not (endpoint[0] == "client" and v is None)  # client_svc: null means "the latest"
    ],
    (
        ("server", FINISH),
        "connection_id missing",
        {"connection_id": ...},
        400,
        "decode_error",
    ),
    (("server", MESSAGE), "connection_id missing", {"connection_id": ...}, 400, "decode_error"),
    (
        ("server", HELLO),
        "cipher_suites: a string",
        {"cipher_suites": RSA_SUITE},
        400,
        "decode_error",
    ),
    (
        ("server", HELLO),
        "cipher_suites: empty",
        {"cipher_suites": []},
        400,
        "decode_error",
    ),
    (
        ("server", HELLO),
        "cipher_suites: a number",
        {"cipher_suites": [1]},
        400,
        "decode_error",
    ),
    (
        ("server", HELLO),
        "cipher_suites: twice",
        {"cipher_suites": [RSA_SUITE] * 2},
        400,
        "decode_error",
    ),
    (
        ("server", HELLO),
        "cipher_suites: 65 entries",
        {"cipher_suites": [RSA_SUITE] * 65},
        400,
        "decode_error",
    ),
    (
        ("server", HELLO),
        "cipher_suites: unknown",
        {"cipher_suites": ["TLS_FAKE"]},
        400,
        "illegal_parameter",
    ),
    (
        ("server", HELLO),
        "session_id: 33 bytes",
        {"session_id": "00" * 33},
        400,
        "decode_error",
    ),
    (
        ("server", HELLO),
        "session_id: a number",
        {"session_id": 7},
        400,
        "decode_error",
    ),
    (("server", HELLO), "extensions: a list", {"extensions": []}, 400, "decode_error"),
    (
        ("server", HELLO),
        "extensions: EMS 1",
        {"extensions": {"extended_master_secret": 1}},
        400,
        "decode_error",
    ),
    (
        ("server", HELLO),
        "extensions: EMS 'true'",
        {"extensions": {"extended_master_secret": "true"}},
        400,
        "decode_error",
    ),
    (
        ("server", HELLO),
        "extensions: unknown",
        {"extensions": {"heartbeat": True}},
        400,
        "decode_error",
    ),
    (
        ("server", HELLO),
        "extensions: bad host",
        {"extensions": {"server_name": "bad_name!"}},
        400,
        "decode_error",
    ),
    (
        ("server", HELLO),
        "extensions: long host",
        {"extensions": {"server_name": "a" * 300}},
        400,
        "decode_error",
    ),
    (
        ("server", HELLO),
        "extensions: IP host",
        {"extensions": {"server_name": "10.0.0.1."}},
        400,
        "decode_error",
    ),
    (
        ("server", HELLO),
        "extensions: unknown group",
        {"extensions": {"supported_groups": ["x448"]}},
        400,
        "illegal_parameter",
    ),
    (
        ("server", FINISH),
        "client_key_exchange: a list",
        {"client_key_exchange": []},
        400,
        "decode_error",
    ),
    (
        ("server", FINISH),
        "client_key_exchange: empty",
        {"client_key_exchange": {}},
        400,
        "decode_error",
    ),
    (
        ("server", FINISH),
        "client_key_exchange: both",
        {"client_key_exchange": {"public_key": "00", "encrypted_pre_master_secret": "AAAA"}},
        400,
        "decode_error",
    ),
    (
        ("server", FINISH),
        "client_key_exchange: empty key",
        {"client_key_exchange": {"public_key": ""}},
        400,
        "decode_error",
    ),
    (
        ("server", FINISH),
        "client_key_exchange: 256-byte key",
        {"client_key_exchange": {"public_key": "04" * 256}},
        400,
        "decode_error",
    ),
    (
        ("server", FINISH),
        "client_key_exchange: 1025-byte secret",
        {"client_key_exchange": {"encrypted_pre_master_secret": _b64(bytes(1025))}},
        400,
        "decode_error",
    ),
    (
        ("server", FINISH),
        "finished_record: 4097 bytes",
        {"finished_record": _b64(bytes(4097))},
        400,
        "decode_error",
    ),
    *[
        (
            ("server", MESSAGE),
            f"reply_fragment_size: {n}",
            {"reply_fragment_size": v},
            400,
            "decode_error",
        )
        for n, v in {
            "true": True,
            "false": False,
            "1.0": 1.0,
            "512.0": 512.0,
            "a string": "512",
            "511": 511,
            "16385": 16385,
            "-1": -1,
            "10**30": 10**30,
            "a list": [512],
        }.items()
    ],
    (("client", HANDSHAKE), "key_exchange: psk", {"key_exchange": "psk"}, 400, "decode_error"),
    (("client", HANDSHAKE), "key_exchange: a number", {"key_exchange": 1}, 400, "decode_error"),
    (("client", HANDSHAKE), "cipher_suite: a number", {"cipher_suite": 5}, 400, "decode_error"),
    (
        ("client", HANDSHAKE),
        "cipher_suite: unknown",
        {"cipher_suite": "TLS_FAKE"},
        400,
        "illegal_parameter",
    ),
    (("client", HANDSHAKE), "resume: not hex", {"resume": "xyz"}, 400, "decode_error"),
    (("client", HANDSHAKE), "resume: uppercase", {"resume": "ABAB"}, 400, "decode_error"),
    (("client", HANDSHAKE), "resume: 33 bytes", {"resume": "ab" * 33}, 400, "decode_error"),
    (
        ("client", HANDSHAKE),
        "extended_master_secret: 1",
        {"extended_master_secret": 1},
        400,
        "decode_error",
    ),
    (
        ("client", HANDSHAKE),
        "encrypt_then_mac: 1.0",
        {"encrypt_then_mac": 1.0},
        400,
        "decode_error",
    ),
    # The page's PRF calculator has an integer whose range includes 1, the value of true.
    (("client", PRF_CALCULATOR), "length: true", {"length": True}, 400, "decode_error"),
    (("client", PRF_CALCULATOR), "length: 1.0", {"length": 1.0}, 400, "decode_error"),
    (("client", PRF_CALCULATOR), "length: 0", {"length": 0}, 400, "decode_error"),
    (("client", MESSAGE), "plaintext: a number", {"plaintext": 5}, 400, "decode_error"),
    (("client", MESSAGE), "plaintext: null", {"plaintext": None}, 400, "decode_error"),
    (("client", MESSAGE), "plaintext: a list", {"plaintext": ["hi"]}, 400, "decode_error"),
]


@pytest.mark.parametrize(
    ("endpoint", "name", "changes", "status", "code"),
    FIELD_CASES,
    ids=[f"{e[0]}{e[1]}-{n}" for e, n, _, _, _ in FIELD_CASES],
)
def test_a_bad_field_is_refused_with_a_json_4xx(
    server, client, endpoint, name, changes, status, code
):
    body = dict(VALID[endpoint])
    for key, value in changes.items():
        if value is ...:
            del body[key]
        else:
            body[key] = value
    response = _app_client(endpoint[0], server, client).post(endpoint[1], json=body)
    assert_error(response, status, code)


@pytest.mark.parametrize("value", [True, False, 1.0, 2.5, "1", None, [1]])
def test_the_codec_takes_only_true_integers(value):
    """bool is an int in Python and 1.0 == 1: both would slip through a plain isinstance."""
    with pytest.raises(DecodeError):
        as_int(value, "n", minimum=0, maximum=10)


def test_bad_hellos_leave_no_state_behind(server):
    for value in BAD_HEX_32.values():
        server.post(
            HELLO,
            json={**VALID[("server", HELLO)], "client_random": value},
        )
    assert server.get(HEALTH).get_json()["connections"] == 0


def test_a_json_content_type_with_a_charset_is_accepted(server):
    body = json.dumps(VALID[("server", HELLO)])
    response = server.post(HELLO, data=body, content_type="application/json; charset=utf-8")
    assert response.status_code == 200


def test_reply_fragment_size_cuts_the_reply_into_records(server):
    """The integer field's happy path: 512-byte fragments give as many records as they take."""
    peer = Peer(server).complete()
    record = peer.seal(b"x" * 1500)
    answer = server.post(
        MESSAGE,
        json={
            "connection_id": peer.connection_id,
            "record": _b64(record),
            "reply_fragment_size": 512,
        },
    )
    assert answer.status_code == 200
    reply = base64.b64decode(answer.get_json()["record"])
    # 1500 bytes plus the echo header, in 512-byte pieces: 4 records.
    assert peer.connection is not None
    assert len(peer.connection.reader.open_many(reply)) == 4
