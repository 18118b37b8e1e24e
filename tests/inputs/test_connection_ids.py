"""Connection ids that are unknown, expired or malformed: one uniform answer for each kind.

An id names state; an answer that differed by endpoint, or between "never made" and
"expired", would tell a prober more than it needs. Unknown or expired: 404
unknown_connection. Not 32 lowercase hex digits: 400 malformed_connection_id.
"""

from __future__ import annotations

import pytest

from lab_common.contract import FINISH, HANDSHAKE, MESSAGE, SESSION

from .test_bad_bodies import assert_error

UNKNOWN = "0123456789abcdef" * 2
MALFORMED = [
    "0123456789ABCDEF" * 2,
    "0" * 31,
    "0" * 33,
    "g" * 32,
    "0" * 30 + "\u0660\u0660",
    "0" * 16 + "-" + "0" * 15,
    "..%2F..%2Fetc",
]


def _session(connection_id: str) -> str:
    # Not contract.path, which percent-encodes: a malformed id goes into the path as it is.
    return SESSION.format(connection_id=connection_id)


def _server_requests(connection_id: str) -> dict[str, tuple[str, str, dict | None]]:
    return {
        "finish": (
            "POST",
            FINISH,
            {"connection_id": connection_id, "finished_record": "AAAA"},
        ),
        "message": ("POST", MESSAGE, {"connection_id": connection_id, "record": "AAAA"}),
        "sessions": ("GET", _session(connection_id), None),
    }


def _client_requests(connection_id: str) -> dict[str, tuple[str, str, dict | None]]:
    return {
        "message": ("POST", MESSAGE, {"connection_id": connection_id, "plaintext": "hi"}),
        "sessions": ("GET", _session(connection_id), None),
    }


def _answers(app_client, requests: dict[str, tuple[str, str, dict | None]]) -> dict[str, tuple]:
    out = {}
    for name, (method, target, body) in requests.items():
        response = app_client.open(target, method=method, json=body)
        out[name] = (
            response.status_code,
            response.headers.get("Content-Type"),
            response.get_data(),
        )
    return out


@pytest.mark.parametrize("side", ["server", "client"])
def test_an_unknown_id_gets_the_same_404_everywhere(server, client, side):
    app_client, requests = (
        (server, _server_requests) if side == "server" else (client, _client_requests)
    )
    if side == "client":
        assert client.post(HANDSHAKE, json={}).status_code == 200  # so "no_connection" is out
    answers = _answers(app_client, requests(UNKNOWN))
    assert len(set(answers.values())) == 1, answers
    status, content_type, body = next(iter(answers.values()))
    assert (status, content_type) == (404, "application/json")
    assert b'"code":"unknown_connection"' in body


@pytest.mark.parametrize("side", ["server", "client"])
def test_every_malformed_id_gets_the_same_400_everywhere(server, client, side):
    app_client, requests = (
        (server, _server_requests) if side == "server" else (client, _client_requests)
    )
    answers = {}
    for connection_id in MALFORMED:
        for name, answer in _answers(app_client, requests(connection_id)).items():
            if name == "sessions" and "/" in connection_id.replace("%2F", "/"):
                continue  # a path with a slash in it is another route: 404 not_found
            answers[(connection_id, name)] = answer
    assert len(set(answers.values())) == 1, set(answers.values())
    status, content_type, body = next(iter(answers.values()))
    assert (status, content_type) == (400, "application/json")
    assert b'"code":"malformed_connection_id"' in body


def test_a_path_that_is_not_an_id_is_a_json_404(server, client):
    for app_client in (server, client):
        assert_error(app_client.get("/sessions/a/b"), 404, "not_found")
        assert_error(app_client.get("/sessions/"), 404, "not_found")
