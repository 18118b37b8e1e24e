"""lab_cli.transcript: the handshake rebuilt from the exchanged JSON matches both services."""

from __future__ import annotations

import copy
import hashlib

import pytest

from kdf_lib.handshake import fingerprint
from kdf_lib.messages import Finished
from lab_cli.transcript import ExchangeError, parse_exchanges

from .conftest import Lab


def run(lab: Lab, **body: object) -> tuple[dict, dict]:
    """A handshake; returns client_svc's /handshake answer and its GET /sessions view."""
    answer = lab.client.post("/handshake", json=body).get_json()
    assert "connection_id" in answer, answer
    view = lab.client.get(f"/sessions/{answer['connection_id']}").get_json()
    return answer, view


def step(answer: dict, actor: str, action: str) -> dict:
    return next(s for s in answer["trace"] if s["actor"] == actor and s["action"] == action)


@pytest.mark.parametrize(
    "body",
    [
        {"key_exchange": "rsa"},
        {"key_exchange": "ecdhe"},
        {"cipher_suite": "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"},
        {"key_exchange": "rsa", "extended_master_secret": False},
    ],
)
def test_rebuilt_transcript_hashes_are_the_ones_both_sides_used(lab: Lab, body: dict) -> None:
    answer, view = run(lab, **body)
    hs = parse_exchanges(view)
    assert hs.connection_id == answer["connection_id"]
    assert hs.suite.name == answer["cipher_suite"]
    assert hs.client_random.hex() == answer["client_random"]
    assert hs.server_random.hex() == answer["server_random"]
    assert hs.extended_master_secret is answer["extended_master_secret"]
    assert hs.encrypt_then_mac is answer["encrypt_then_mac"]
    names = [name for name, _ in hs.handshake_messages()]
    assert names[0] == "ClientHello" and names[-1] == "ClientKeyExchange"
    assert ("ServerKeyExchange" in names) is (answer["key_exchange"] == "ecdhe")
    # The client Finished covers ClientHello..ClientKeyExchange, as the client hashed it.
    sent = step(answer, "client", "send client Finished")["data"]
    assert hs.transcript_hash(hs.finished_transcript("client")).hex() == sent["transcript_hash"]
    if answer["extended_master_secret"]:
        session_hash = step(answer, "server", "master secret (extended)")["data"]["session_hash"]
        assert hs.session_hash().hex() == session_hash
    # The server Finished also covers the client Finished message.
    client_finished = Finished(bytes.fromhex(sent["verify_data"]))
    server_sent = step(answer, "server", "send server Finished")["data"]
    transcript = hs.finished_transcript("server", client_finished)
    assert hs.transcript_hash(transcript).hex() == server_sent["transcript_hash"]


def test_resumed_transcript_is_the_two_hellos(lab: Lab) -> None:
    first, _ = run(lab)
    answer, view = run(lab, resume=first["session_id"])
    hs = parse_exchanges(view)
    assert hs.resumed and hs.first_finished_sender == "server"
    assert [name for name, _ in hs.handshake_messages()] == ["ClientHello", "ServerHello"]
    sent = step(answer, "server", "send server Finished")["data"]
    assert hs.transcript_hash(hs.finished_transcript("server")).hex() == sent["transcript_hash"]
    with pytest.raises(ValueError, match="no session hash"):
        hs.session_hash()


@pytest.mark.parametrize("body", [{"key_exchange": "rsa"}, {"extended_master_secret": False}])
def test_master_secret_and_keys_from_a_pre_master_secret(revealing_lab: Lab, body: dict) -> None:
    """What a forward-secrecy demo needs: given the PMS, the wire data gives everything else."""
    answer, view = run(revealing_lab, **body)
    hs = parse_exchanges(view)
    pms = step(answer, "client", "send encrypted pre-master secret")["secrets"]
    master = hs.derive_master_secret(bytes.fromhex(pms["pre_master_secret"]))
    assert master.hex() == answer["secrets"]["master_secret"]
    block, keys = hs.key_material(master)
    assert fingerprint(block) == answer["fingerprints"]["key_block"]
    assert keys.client_write_key.hex() == answer["secrets"]["client_write_key"]
    readers = hs.record_readers(master)
    content_type, plaintext = readers["client"].open(hs.client_finished_record)
    assert content_type == 22 and len(plaintext) == 16


def test_incomplete_or_malformed_exchanges_are_refused(lab: Lab) -> None:
    _, view = run(lab)
    with pytest.raises(ExchangeError, match="no 'exchanges' list"):
        parse_exchanges({"state": "established"})
    unfinished = copy.deepcopy(view)
    del unfinished["exchanges"][1]["response"]
    with pytest.raises(ExchangeError, match="the handshake did not finish"):
        parse_exchanges(unfinished)
    bad = copy.deepcopy(view)
    bad["exchanges"][0]["request"]["body"]["client_random"] = "00"
    with pytest.raises(ExchangeError, match=r"ClientHello.*does not decode"):
        parse_exchanges(bad)
    # The list alone works too.
    assert parse_exchanges(view["exchanges"]).client_random.hex() == view["client_random"]


def test_transcript_hash_uses_the_suites_prf_hash(lab: Lab) -> None:
    _, view = run(lab, cipher_suite="TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384")
    hs = parse_exchanges(view)
    assert hs.transcript_hash(b"x") == hashlib.sha384(b"x").digest()
