"""POST /demo/forward-secrecy, and server_svc's GET /demo/private-key behind it."""

from __future__ import annotations

import pytest

from kdf_lib import pki
from lab_common.contract import DEMO_FORWARD_SECRECY, DEMO_PRIVATE_KEY, MESSAGE, SESSION, path

from .lab import Lab, error_of


def test_recorded_rsa_sessions_open_with_the_stolen_key_and_ecdhe_and_dhe_ones_do_not(lab: Lab):
    answer = lab.demo("forward-secrecy", {"sessions": 2})
    sessions = answer["sessions"]
    assert [s["key_exchange"] for s in sessions] == ["rsa", "rsa", "ecdhe", "ecdhe", "dhe", "dhe"]
    for session in sessions:
        assert set(session) >= {
            "connection_id", "key_exchange", "cipher_suite", "decrypted", "why"
        }  # fmt: skip
        if session["key_exchange"] == "rsa":
            assert session["decrypted"] is True
            assert session["recovered_plaintext"] == session["sent_plaintext"]
        else:
            assert session["decrypted"] is False
            assert "recovered_plaintext" not in session
            assert "ephemeral" in session["why"]
    assert answer["outcome"]["rsa_sessions_decrypted"] == 2
    assert answer["outcome"]["ecdhe_sessions_decrypted"] == 0
    assert answer["outcome"]["dhe_sessions_decrypted"] == 0
    assert answer["outcome"]["forward_secrecy"] == {"rsa": False, "ecdhe": True, "dhe": True}


def test_every_recorded_session_really_carried_its_message_to_server_svc(lab: Lab):
    answer = lab.demo("forward-secrecy", {"sessions": 1})
    for session in answer["sessions"]:
        view = lab.server.get(path(SESSION, session["connection_id"])).get_json()
        assert view["state"] == "established"
        assert view["messages"] == 1
        assert view["cipher_suite"] == session["cipher_suite"]


def test_default_is_two_sessions_of_each_key_exchange(lab: Lab):
    answer = lab.demo("forward-secrecy")
    assert len(answer["sessions"]) == 6
    assert answer["outcome"]["sessions_recorded"] == 6


@pytest.mark.parametrize("sessions", [0, 6, "2", True, 1.0])
def test_a_session_count_outside_1_to_5_is_refused(lab: Lab, sessions: object):
    response = lab.client.post(DEMO_FORWARD_SECRECY, json={"sessions": sessions})
    assert error_of(response, 400)["code"] == "decode_error"
    assert lab.to_server.calls == []


def test_an_unknown_field_is_refused(lab: Lab):
    response = lab.client.post(DEMO_FORWARD_SECRECY, json={"sessions": 1, "key": "x"})
    assert error_of(response, 400)["code"] == "decode_error"


def test_without_reveal_secrets_on_the_server_the_demo_says_how_to_enable_it(make_lab):
    lab = make_lab(server_reveal=False)
    error = error_of(lab.client.post(DEMO_FORWARD_SECRECY, json={"sessions": 1}), 409)
    assert error["code"] == "demo_disabled"
    assert "REVEAL_SECRETS=1 docker compose up -d" in error["message"]


def test_server_svc_refuses_its_private_key_without_reveal_secrets(make_lab):
    lab = make_lab(server_reveal=False)
    error = error_of(lab.server.get(DEMO_PRIVATE_KEY), 403)
    assert error["code"] == "demo_disabled"
    assert "REVEAL_SECRETS=1" in error["message"]
    assert "PRIVATE KEY" not in lab.server.get(DEMO_PRIVATE_KEY).get_data(as_text=True)


def test_server_svc_hands_out_the_certificates_key_with_reveal_secrets(
    lab: Lab, server_identity: pki.Issued
):
    response = lab.server.get(DEMO_PRIVATE_KEY)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    key = pki.load_private_key(response.get_json()["private_key_pem"])
    assert (
        key.public_key().public_numbers()
        == server_identity.private_key.public_key().public_numbers()
    )
    assert response.get_json()["certificate_sha256"] == pki.fingerprint_sha256(
        server_identity.certificate
    )


def test_the_private_key_is_never_logged_nor_returned_by_the_demo(lab: Lab, capsys):
    capsys.readouterr()
    answer = lab.client.post(DEMO_FORWARD_SECRECY, json={"sessions": 1})
    direct = lab.server.get(DEMO_PRIVATE_KEY)
    logged = capsys.readouterr()
    pem_lines = direct.get_json()["private_key_pem"].splitlines()[1:-1]
    for text in (logged.out, logged.err, answer.get_data(as_text=True)):
        assert "PRIVATE KEY" not in text
        assert not any(line in text for line in pem_lines)
    assert "demo_private_key" in logged.out  # that the key went out is logged, the key is not


def test_demo_connections_do_not_become_the_clients_latest_connection(lab: Lab):
    lab.demo("forward-secrecy", {"sessions": 1})
    response = lab.client.post(MESSAGE, json={"plaintext": "hello"})
    assert error_of(response, 409)["code"] == "no_connection"
