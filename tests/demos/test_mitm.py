"""POST /demo/mitm: the genuine client refuses a server certified by another CA, sending nothing secret."""

from __future__ import annotations

import socket

from kdf_lib import pki
from lab_common.contract import ALERT, DEMO_MITM, HELLO

from .lab import Lab, error_of


def test_the_client_refuses_the_mitm_with_unknown_ca_before_any_secret(
    lab: Lab, ca: pki.Issued, mitm_identity: pki.Issued
):
    answer = lab.demo("mitm")
    assert answer["error"]["code"] == "unknown_ca"
    # Never /handshake/finish: only the hello, then the client's fatal alert.
    assert lab.to_mitm.calls == [("POST", HELLO), ("POST", ALERT)]
    assert lab.to_server.calls == []
    assert answer["outcome"]["secret_sent"] is False
    assert answer["outcome"]["requests_to_mitm"] == [f"POST {HELLO}", f"POST {ALERT}"]
    certificate, trusted = answer["certificate"], answer["trusted_ca"]
    assert certificate["fingerprint_sha256"] == pki.fingerprint_sha256(mitm_identity.certificate)
    assert trusted["fingerprint_sha256"] == pki.fingerprint_sha256(ca.certificate)
    # Same issuer name as the trusted CA, yet signed by another key: names are not trust.
    assert certificate["issuer"] == trusted["subject"]
    assert certificate["authority_key_id"] != trusted["subject_key_id"]
    assert answer["outcome"]["signed_by_trusted_key"] is False


def test_without_mitm_server_url_the_demo_is_unavailable(make_lab):
    lab = make_lab(MITM_SERVER_URL="")
    error = error_of(lab.client.post(DEMO_MITM), 409)
    assert error["code"] == "demo_unavailable"
    assert "docker compose --profile mitm up -d" in error["message"]
    assert lab.to_mitm.calls == []


def test_an_unreachable_mitm_makes_the_demo_unavailable(make_lab):
    with socket.socket() as probe:  # a loopback port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    lab = make_lab(MITM_SERVER_URL=f"http://127.0.0.1:{port}", MITM_TRANSPORT=None)
    error = error_of(lab.client.post(DEMO_MITM), 409)
    assert error["code"] == "demo_unavailable"
    assert "docker compose --profile mitm up -d" in error["message"]


def test_a_mitm_url_that_reaches_the_genuine_server_is_no_man_in_the_middle(make_lab):
    lab = make_lab()
    lab_genuine = make_lab(MITM_TRANSPORT=lab.to_server)
    error = error_of(lab_genuine.client.post(DEMO_MITM), 409)
    assert error["code"] == "demo_unavailable"


def test_a_body_with_fields_is_refused(lab: Lab):
    response = lab.client.post(DEMO_MITM, json={"url": "http://elsewhere"})
    assert error_of(response, 400)["code"] == "decode_error"
    assert lab.to_mitm.calls == []
