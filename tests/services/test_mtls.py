"""Mutual TLS between the services: server_svc's CLIENT_AUTH and CLIENT_CA_FILE, client_svc's
CLIENT_CERT_FILE and CLIENT_KEY_FILE, and POST /handshake's ``client_certificate``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from helpers.pki import NOW, identity
from helpers.redis_server import RedisServer, running_redis
from helpers.transport import FlaskTransport

from kdf_lib import pki
from kdf_lib.client_auth import (
    issue_client_certificate,
    issue_ecdsa_client_certificate,
    verify_client_chain,
)
from lab_common.contract import HANDSHAKE, SESSION, path
from lab_common.sealing import write_key_file
from server_svc.certs import ensure_certificates


@cache
def _client_identity() -> pki.Issued:
    return issue_client_certificate(identity()[0], "client_svc", now=NOW)


@cache
def _foreign_identity() -> pki.Issued:
    return issue_client_certificate(pki.create_ca("Foreign CA", now=NOW), "client_svc", now=NOW)


def _files(directory: Path, issued: pki.Issued) -> dict[str, str]:
    cert, key = directory / "client.pem", directory / "client.key"
    cert.write_bytes(issued.certificate_pem())
    key.write_bytes(issued.private_key_pem())
    return {"CLIENT_CERT_FILE": str(cert), "CLIENT_KEY_FILE": str(key)}


@pytest.fixture
def client_ca_file(tmp_path: Path, ca: pki.Issued) -> Path:
    found = tmp_path / "client-ca.pem"
    found.write_bytes(ca.certificate_pem())
    return found


@pytest.fixture(params=["required"])
def client_auth(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def server_app(make_server: Callable[..., Flask], client_ca_file: Path, client_auth: str) -> Flask:
    return make_server(CLIENT_AUTH=client_auth, CLIENT_CA_FILE=str(client_ca_file))


@pytest.fixture
def client_identity(ca: pki.Issued) -> pki.Issued:
    assert ca is identity()[0]
    return _client_identity()


@pytest.fixture
def client_app(
    make_client_app: Callable[..., Flask], tmp_path: Path, client_identity: pki.Issued
) -> Flask:
    return make_client_app(**_files(tmp_path, client_identity))


def _handshake(client: FlaskClient, status: int = 200, **body: Any) -> dict[str, Any]:
    response = client.post(HANDSHAKE, json=body)
    assert response.status_code == status, response.get_json()
    answer: dict[str, Any] = response.get_json()
    return answer


def _kinds(trace: list[dict[str, Any]]) -> list[str]:
    return [step["kind"] for step in trace]


def test_required_client_certificate_is_verified_and_shown_by_both_services(
    client: FlaskClient, server: FlaskClient, client_identity: pki.Issued
) -> None:
    answer = _handshake(client, key_exchange="ecdhe")
    kinds = _kinds(answer["trace"])
    for kind in (
        "receive_certificate_request",
        "send_client_certificate",
        "send_certificate_verify",
    ):
        assert kind in kinds
    view = server.get(path(SESSION, answer["connection_id"])).get_json()
    expected = {
        "subject": "CN=client_svc",
        "sha256": pki.fingerprint_sha256(client_identity.certificate),
    }
    assert view["state"] == "established"
    assert view["client_identity"] == expected
    server_kinds = _kinds(view["trace"])
    assert "send_certificate_request" in server_kinds
    assert "verify_client_certificate" in server_kinds
    assert "verify_certificate_verify" in server_kinds
    assert answer["client_identity"] == expected


def test_a_client_that_sends_no_certificate_is_refused_with_handshake_failure(
    client: FlaskClient,
) -> None:
    # server_svc refuses (its 400 and alert), and client_svc reports the peer's refusal.
    answer = _handshake(client, 502, client_certificate=False)
    assert answer["error"]["code"] == "handshake_failure"
    assert answer["error"]["peer"] == "server" and answer["error"]["peer_status"] == 400


def test_a_certificate_from_a_foreign_ca_is_refused_with_unknown_ca(
    make_client_app: Callable[..., Flask], tmp_path: Path
) -> None:
    foreign = make_client_app(**_files(tmp_path, _foreign_identity())).test_client()
    answer = _handshake(foreign, 502)
    assert answer["error"]["code"] == "unknown_ca"
    assert answer["error"]["peer_status"] == 400


def test_a_resumed_session_keeps_the_client_identity(
    client: FlaskClient, server: FlaskClient
) -> None:
    first = _handshake(client)
    again = _handshake(client, resume=first["session_id"])
    assert again["resumed"] is True
    view = server.get(path(SESSION, again["connection_id"])).get_json()
    assert view["client_identity"]["subject"] == "CN=client_svc"
    tickets = _handshake(client, resumption="ticket")
    by_ticket = _handshake(client, resume=tickets["session_id"], resumption="ticket")
    assert by_ticket["resumed"] is True
    view = server.get(path(SESSION, by_ticket["connection_id"])).get_json()
    assert view["client_identity"]["subject"] == "CN=client_svc"


@pytest.mark.parametrize("client_auth", ["optional"], indirect=True)
def test_optional_client_auth_takes_a_client_without_certificate(
    make_client_app: Callable[..., Flask], server: FlaskClient
) -> None:
    anonymous = make_client_app().test_client()
    answer = _handshake(anonymous)
    view = server.get(path(SESSION, answer["connection_id"])).get_json()
    assert view["client_identity"] is None
    assert "send_certificate_request" in _kinds(view["trace"])


@pytest.mark.parametrize("client_auth", ["none"], indirect=True)
def test_without_client_auth_no_certificate_is_asked_for(
    client: FlaskClient, server: FlaskClient
) -> None:
    answer = _handshake(client)
    assert "receive_certificate_request" not in _kinds(answer["trace"])
    view = server.get(path(SESSION, answer["connection_id"])).get_json()
    assert view["client_identity"] is None


def test_settings_are_checked(make_server: Callable[..., Flask], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="CLIENT_AUTH"):
        make_server(CLIENT_AUTH="sometimes")
    with pytest.raises(ValueError, match="CLIENT_CA_FILE"):
        make_server(CLIENT_AUTH="required")


def test_client_certificate_settings_go_together(make_client_app: Callable[..., Flask]) -> None:
    with pytest.raises(ValueError, match="CLIENT_KEY_FILE"):
        make_client_app(CLIENT_CERT_FILE="/nonexistent.pem")


def test_a_client_certificate_file_that_cannot_be_read_stops_client_svc_at_start(
    make_client_app: Callable[..., Flask], tmp_path: Path
) -> None:
    # Not at its first handshake (a 500 then): the setting is named as the service starts.
    with pytest.raises(ValueError, match="CLIENT_CERT_FILE"):
        make_client_app(
            CLIENT_CERT_FILE=str(tmp_path / "absent.pem"),
            CLIENT_KEY_FILE=str(tmp_path / "absent.key"),
        )


def test_the_certs_step_issues_client_svc_a_certificate_server_svc_trusts(
    tmp_path: Path,
) -> None:
    server_dir, trust_dir, client_dir = tmp_path / "server", tmp_path / "trust", tmp_path / "client"
    first = ensure_certificates(
        server_dir, trust_dir, "server", now=datetime.now(UTC), client_dir=client_dir
    )
    assert first["action"] == "created"
    assert (client_dir / "client.key").stat().st_mode & 0o777 == 0o600
    assert not any(p.name.endswith(".key") for p in trust_dir.iterdir())
    assert not (server_dir / "client.key").exists()
    ca = pki.load_certificate_chain((trust_dir / "ca.pem").read_bytes())
    assert pki.load_certificate_chain((server_dir / "client-ca.pem").read_bytes()) == ca
    chain = pki.load_certificate_chain((client_dir / "client.pem").read_bytes())
    leaf = verify_client_chain(chain, ca, now=datetime.now(UTC))
    assert leaf.subject.rfc4514_string() == "CN=client_svc"
    assert first["client_leaf_fingerprint_sha256"] == pki.fingerprint_sha256(leaf)
    again = ensure_certificates(
        server_dir, trust_dir, "server", now=datetime.now(UTC), client_dir=client_dir
    )
    assert again["action"] == "reusing"
    assert again["client_leaf_fingerprint_sha256"] == first["client_leaf_fingerprint_sha256"]
    # The CA key is gone after a run: a missing client certificate means a new CA for all.
    (client_dir / "client.pem").unlink()
    renewed = ensure_certificates(
        server_dir, trust_dir, "server", now=datetime.now(UTC), client_dir=client_dir
    )
    assert renewed["action"] == "created"

    # The services as compose runs them, from these files.
    from client_svc import create_app as create_client_app
    from server_svc import create_app as create_server_app

    server_app = create_server_app(
        {
            "SERVER_CERT_CHAIN": str(server_dir / "chain.pem"),
            "SERVER_KEY": str(server_dir / "server.key"),
            "CLIENT_AUTH": "required",
            "CLIENT_CA_FILE": str(server_dir / "client-ca.pem"),
            "TESTING": True,
        }
    )
    client_app = create_client_app(
        {
            "TRUST_STORE": str(trust_dir / "ca.pem"),
            "TRANSPORT": FlaskTransport(server_app),
            "SERVER_NAME": "server",
            "CLIENT_CERT_FILE": str(client_dir / "client.pem"),
            "CLIENT_KEY_FILE": str(client_dir / "client.key"),
            "TESTING": True,
        }
    )
    answer = _handshake(client_app.test_client())
    view = server_app.test_client().get(path(SESSION, answer["connection_id"])).get_json()
    assert view["client_identity"]["subject"] == "CN=client_svc"


class _Alternating:
    """client_svc's transport to several server_svc replicas, one request each in turn."""

    def __init__(self, *transports: FlaskTransport) -> None:
        self.transports = transports
        self._turn = 0

    def request(self, method: str, target: str, body: dict[str, Any] | None) -> tuple[int, bytes]:
        transport = self.transports[self._turn % len(self.transports)]
        self._turn += 1
        return transport.request(method, target, body)


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


def test_a_fleet_in_redis_authenticates_the_client_across_replicas(
    make_server: Callable[..., Flask],
    make_client_app: Callable[..., Flask],
    redis_server: RedisServer,
    client_ca_file: Path,
    client_identity: pki.Issued,
    tmp_path: Path,
) -> None:
    """The hello reaches one replica and the finish, with the client's Certificate and
    CertificateVerify, the other: the half-open state that asked for a certificate crosses
    over sealed, and the identity stays with the session in Redis, for either replica."""
    redis_server.client().flushall()
    key_file = tmp_path / "state.key"
    write_key_file(key_file)
    shared = {
        "STATE_BACKEND": "redis",
        "REDIS_URL": redis_server.url,
        "STATE_KEY_FILE": str(key_file),
    }
    replicas = [
        make_server(CLIENT_AUTH="required", CLIENT_CA_FILE=str(client_ca_file), **shared)
        for _ in range(2)
    ]
    transport = _Alternating(*(FlaskTransport(app) for app in replicas))
    client = make_client_app(
        TRANSPORT=transport, **_files(tmp_path, client_identity), **shared
    ).test_client()
    expected = {
        "subject": "CN=client_svc",
        "sha256": pki.fingerprint_sha256(client_identity.certificate),
    }
    first = _handshake(client, key_exchange="ecdhe")
    assert [len(t.received) for t in transport.transports] == [1, 1]
    assert first["client_identity"] == expected
    resumed = _handshake(client, resume=first["session_id"])
    assert resumed["resumed"] is True and resumed["client_identity"] == expected
    for replica in replicas:
        for answer in (first, resumed):
            view = replica.test_client().get(path(SESSION, answer["connection_id"])).get_json()
            assert view["client_identity"] == expected


def test_client_svc_authenticates_with_an_ecdsa_certificate(
    make_client_app: Callable[..., Flask], server: FlaskClient, tmp_path: Path
) -> None:
    ecdsa = issue_ecdsa_client_certificate(identity()[0], "client_svc", now=NOW)
    (tmp_path / "client.pem").write_bytes(ecdsa.certificate_pem())
    (tmp_path / "client.key").write_bytes(ecdsa.private_key_pem())
    client = make_client_app(
        CLIENT_CERT_FILE=str(tmp_path / "client.pem"), CLIENT_KEY_FILE=str(tmp_path / "client.key")
    ).test_client()
    answer = _handshake(client)
    verify = [s for s in answer["trace"] if s["kind"] == "send_certificate_verify"]
    assert verify[0]["data"]["signature_algorithm"].startswith("ecdsa_")
    view = server.get(path(SESSION, answer["connection_id"])).get_json()
    assert view["client_identity"]["sha256"] == pki.fingerprint_sha256(ecdsa.certificate)
