"""POST /demo/mtls: a server that requires client certificates accepts the service whose
certificate its CA issued, and refuses one without a certificate (handshake_failure) and one
from a foreign CA (unknown_ca)."""

from __future__ import annotations

from lab_common.contract import DEMO_MTLS


def test_mutual_tls_accepts_the_mesh_certificate_and_refuses_the_others(client):
    answer = client.post(DEMO_MTLS, json={})
    assert answer.status_code == 200, answer.get_json()
    result = answer.get_json()
    assert result["demo"] == "mtls" and result["steps"]
    outcome = result["outcome"]
    assert outcome["accepted"] is True
    assert outcome["client_identity"]["subject"] == "CN=orders"
    assert outcome["without_certificate"] == "handshake_failure"
    assert outcome["foreign_ca"] == "unknown_ca"
    accepted = result["handshakes"]["accepted"]
    assert accepted["messages"] == [
        "client_hello",
        "server_hello",
        "certificate",
        "server_key_exchange",
        "certificate_request",
        "server_hello_done",
        "certificate",
        "client_key_exchange",
        "certificate_verify",
        "finished",
        "finished",
    ]
    kinds = {step["kind"] for step in accepted["trace"]}
    assert {"send_certificate_verify", "verify_certificate_verify"} <= kinds
    refused = result["handshakes"]["without_certificate"]
    assert refused["established"] is False and refused["client_identity"] is None
    foreign = result["handshakes"]["foreign_ca"]
    assert foreign["client_certificate"]["issuer"] == "CN=Foreign CA"
    assert foreign["established"] is False


def test_the_demo_takes_no_options(client):
    answer = client.post(DEMO_MTLS, json={"rounds": 2})
    assert answer.status_code == 400
    assert answer.get_json()["error"]["code"] == "decode_error"
