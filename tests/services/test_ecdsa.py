"""ECDSA certificates through the services: server_svc holds an RSA and an ECDSA certificate
(from the certs step's files or SERVER_CONFIG) and picks by suite; client_svc checks and uses
either, in-process and under gunicorn."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.served import REPO_ROOT, issue_certificates, start_lab, stop_lab
from helpers.transport import FlaskTransport

from kdf_lib import pki
from kdf_lib.suites import SUITES, Authentication
from lab_common.contract import HANDSHAKE, HEALTH, SESSION, path
from server_svc import create_app as create_server_app
from server_svc.certs import ECDSA_CHAIN_FILE, ECDSA_KEY_FILE

ECDSA_SUITES = sorted(s.name for s in SUITES.values() if s.authentication is Authentication.ECDSA)
GCM = "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"


def _leaf_key_type(server, connection_id: str) -> str:
    trace = server.get(path(SESSION, connection_id)).get_json()["trace"]
    sent = [step for step in trace if step["kind"] == "send_certificate"]
    return str(sent[0]["data"]["public_key_type"])


@pytest.mark.parametrize("suite", ECDSA_SUITES)
def test_client_svc_completes_every_ecdsa_suite_with_the_ecdsa_certificate(client, server, suite):
    response = client.post(HANDSHAKE, json={"cipher_suite": suite, "key_exchange": "ecdhe"})
    assert response.status_code == 200, response.get_json()
    result = response.get_json()
    assert result["cipher_suite"] == suite and result["fingerprints_match"] is True
    signed = [s for s in result["trace"] if s["kind"] == "verify_server_key_exchange"]
    assert signed[0]["data"]["signature_algorithm"] == "ecdsa_secp256r1_sha256"
    assert _leaf_key_type(server, result["connection_id"]) == "ecdsa"


def test_the_same_server_answers_an_rsa_suite_with_its_rsa_certificate(client, server):
    result = client.post(HANDSHAKE, json={"cipher_suite": "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"})
    assert result.status_code == 200
    assert _leaf_key_type(server, result.get_json()["connection_id"]) == "rsa"


def test_signature_algorithms_choose_the_ecdsa_hash(client):
    body = {"cipher_suite": GCM, "signature_algorithms": ["ecdsa_secp384r1_sha384"]}
    result = client.post(HANDSHAKE, json=body).get_json()
    signed = [s for s in result["trace"] if s["kind"] == "verify_server_key_exchange"]
    assert signed[0]["data"]["signature_algorithm"] == "ecdsa_secp384r1_sha384"


def test_without_an_ecdsa_scheme_or_certificate_an_ecdsa_suite_is_handshake_failure(
    client, make_server, make_client_app
):
    body = {"cipher_suite": GCM, "signature_algorithms": ["rsa_pss_rsae_sha256"]}
    refused = client.post(HANDSHAKE, json=body)
    assert refused.status_code == 502
    assert refused.get_json()["error"]["code"] == "handshake_failure"
    rsa_only = FlaskTransport(make_server(rsa_only=True))
    response = (
        make_client_app(TRANSPORT=rsa_only)
        .test_client()
        .post(HANDSHAKE, json={"cipher_suite": GCM})
    )
    assert response.status_code == 502
    assert response.get_json()["error"]["code"] == "handshake_failure"


def test_server_svc_loads_both_certificates_from_the_certs_step(tmp_path, make_client_app):
    certificates = issue_certificates(tmp_path / "certs")
    assert certificates.ecdsa_chain is not None and certificates.ecdsa_key is not None
    settings = {
        "SERVER_CERT_CHAIN": str(certificates.chain),
        "SERVER_KEY": str(certificates.key),
        "TESTING": True,
    }
    ca = pki.load_certificate_chain(certificates.trust.read_bytes())[0]
    rsa_only = FlaskTransport(create_server_app(settings))
    client = make_client_app(TRUST_ANCHORS=(ca,), TRANSPORT=rsa_only).test_client()
    # Without SERVER_ECDSA_*: an RSA certificate only, and no ECDSA suite.
    assert client.post(HANDSHAKE, json={"cipher_suite": GCM}).status_code == 502
    both = FlaskTransport(
        create_server_app(
            {
                **settings,
                "SERVER_ECDSA_CERT_CHAIN": str(certificates.ecdsa_chain),
                "SERVER_ECDSA_KEY": str(certificates.ecdsa_key),
            }
        )
    )
    client = make_client_app(TRUST_ANCHORS=(ca,), TRANSPORT=both).test_client()
    for suite in (GCM, "TLS_RSA_WITH_AES_128_GCM_SHA256"):
        response = client.post(HANDSHAKE, json={"cipher_suite": suite})
        assert response.status_code == 200, response.get_json()


def test_half_an_ecdsa_identity_stops_server_svc_at_start(tmp_path):
    certificates = issue_certificates(tmp_path / "certs")
    with pytest.raises(ValueError, match="SERVER_ECDSA_CERT_CHAIN and SERVER_ECDSA_KEY"):
        create_server_app(
            {
                "SERVER_CERT_CHAIN": str(certificates.chain),
                "SERVER_KEY": str(certificates.key),
                "SERVER_ECDSA_CERT_CHAIN": str(certificates.ecdsa_chain),
            }
        )
    with pytest.raises(ValueError, match="EC key"):
        create_server_app(
            {
                "SERVER_CERT_CHAIN": str(certificates.chain),
                "SERVER_KEY": str(certificates.key),
                "SERVER_ECDSA_CERT_CHAIN": str(certificates.ecdsa_chain),
                "SERVER_ECDSA_KEY": str(certificates.key),
            }
        )


def _certs(directory: Path, *argv: str) -> dict[str, object]:
    completed = subprocess.run(
        [
            sys.executable,
            *("-m", "server_svc.certs", "--server-name", "server"),
            *("--server-dir", str(directory / "server"), "--trust-dir", str(directory / "trust")),
            *argv,
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert "PRIVATE" not in completed.stdout + completed.stderr
    record: dict[str, object] = json.loads(completed.stdout)
    return record


def test_the_certs_step_issues_a_p256_certificate_from_the_same_ca_and_reuses_it(tmp_path):
    created = _certs(tmp_path)
    assert created["action"] == "created"
    server_dir = tmp_path / "server"
    chain = pki.load_certificate_chain((server_dir / ECDSA_CHAIN_FILE).read_bytes())
    key = pki.load_ec_private_key((server_dir / ECDSA_KEY_FILE).read_bytes())
    assert (server_dir / ECDSA_KEY_FILE).stat().st_mode & 0o777 == 0o600
    assert len(chain) == 1 and chain[0].public_key() == key.public_key()
    assert key.curve.name == "secp256r1"
    assert created["ecdsa_leaf_fingerprint_sha256"] == pki.fingerprint_sha256(chain[0])
    anchors = pki.load_certificate_chain((tmp_path / "trust" / "ca.pem").read_bytes())
    now = (
        chain[0].not_valid_before_utc
        + (chain[0].not_valid_after_utc - chain[0].not_valid_before_utc) / 2
    )
    pki.verify_server_chain(
        chain, anchors, "server", now=now, key_exchange="ecdhe", authentication="ecdsa"
    )
    assert _certs(tmp_path)["action"] == "reusing"
    # A volume from before ECDSA certificates: everything is issued again, from one new CA.
    (server_dir / ECDSA_CHAIN_FILE).unlink()
    again = _certs(tmp_path)
    assert again["action"] == "created" and ECDSA_CHAIN_FILE in str(again["reason"])
    assert again["ca_fingerprint_sha256"] != created["ca_fingerprint_sha256"]
    assert (server_dir / ECDSA_CHAIN_FILE).is_file()


def test_an_ecdsa_handshake_through_gunicorn(tmp_path):
    lab = start_lab(tmp_path)
    try:
        answer = lab.client.http().post(HANDSHAKE, json={"cipher_suite": GCM})
        assert answer.status_code == 200, lab.logs()
        result = answer.get_json()
        assert result["cipher_suite"] == GCM and result["fingerprints_match"] is True
        assert _leaf_key_type(lab.server.http(), result["connection_id"]) == "ecdsa"
    finally:
        stop_lab(lab)


def test_healthz_names_both_certificates(server, make_server):
    health = server.get(HEALTH).get_json()
    assert health["certificate"]["subject"] == health["ecdsa_certificate"]["subject"] == "CN=server"
    rsa_only = make_server(rsa_only=True).test_client().get(HEALTH).get_json()
    assert rsa_only["ecdsa_certificate"] is None
