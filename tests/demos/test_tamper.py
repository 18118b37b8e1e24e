"""POST /demo/tamper: a flipped bit, a replayed record and an edited ClientHello are all refused."""

from __future__ import annotations

import pytest

from lab_common.contract import DEMO_TAMPER, FINISH, MESSAGE, SESSION, path

from .lab import Lab, error_of


def test_a_record_with_one_flipped_bit_is_refused_and_the_connection_closes(lab: Lab):
    answer = lab.demo("tamper", {"attack": "flip_record"})
    assert answer["alert"]["side"] == "server"
    assert answer["alert"]["code"] == "bad_record_mac"
    assert answer["outcome"]["connection_closed"] is True
    # Even the untouched record is refused afterwards: the connection is closed for good.
    assert answer["outcome"]["original_record_afterwards"]["code"] == "unexpected_message"
    view = lab.server.get(path(SESSION, answer["connection_id"])).get_json()
    assert view["closed"] is True
    assert view["messages"] == 0


def test_a_replayed_record_is_refused_and_the_message_counts_once(lab: Lab):
    answer = lab.demo("tamper", {"attack": "replay_record"})
    assert answer["alert"] == {
        "side": "server",
        "code": "bad_record_mac",
        "message": answer["alert"]["message"],
    }
    assert answer["outcome"]["first_delivery_accepted"] is True
    assert answer["outcome"]["next_message_afterwards"]["code"] == "unexpected_message"
    view = lab.server.get(path(SESSION, answer["connection_id"])).get_json()
    assert view["messages"] == 1
    assert view["closed"] is True


def test_a_clienthello_edited_in_transit_fails_the_handshake_at_the_client_finished(lab: Lab):
    answer = lab.demo("tamper", {"attack": "edit_hello"})
    assert answer["alert"]["side"] == "server"
    assert answer["alert"]["code"] == "bad_record_mac"
    assert answer["outcome"]["handshake_completed"] is False
    assert answer["outcome"]["failed_at"].startswith("client Finished")
    view = lab.server.get(path(SESSION, answer["connection_id"])).get_json()
    assert view["state"] == "failed"
    assert view["error"] == "bad_record_mac"
    assert view["encrypt_then_mac"] is False  # the server saw the edited hello
    assert ("POST", FINISH) in lab.to_server.calls
    assert ("POST", MESSAGE) not in lab.to_server.calls


@pytest.mark.parametrize(
    "body", [{}, {"attack": "drop_packet"}, {"attack": 1}, {"attack": "flip_record", "x": 1}]
)
def test_an_unknown_or_missing_attack_is_refused(lab: Lab, body: dict):
    assert error_of(lab.client.post(DEMO_TAMPER, json=body), 400)["code"] == "decode_error"
    assert lab.to_server.calls == []
