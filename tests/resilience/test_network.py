"""Network trouble between client_svc and server_svc, over real sockets on 127.0.0.1.

client_svc's real HTTP transport (keep-alive http.client) talks to server_svc on a real HTTP server, through
a proxy that can drop, delay or refuse. client_svc must answer within its configured timeouts
with a clear 502 ``upstream_unavailable`` or 504 ``upstream_timeout``/``outcome_unknown``,
never hang, and say what became of a message (docs/resilience.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from client_svc import create_app as create_client_app
from kdf_lib import pki
from lab_common.contract import HANDSHAKE, HEALTH, MESSAGE, SESSION, path

from .netfaults import (
    FaultyProxy,
    closed_port,
    full_listener,
    serve_app,
    serve_keep_alive,
    silent_listener,
)

CONNECT_TIMEOUT = 0.5
READ_TIMEOUT = 0.5
#: Time for everything but the wait itself: two handshake steps, thread scheduling, slow CI.
SLACK = 2.0


@pytest.fixture
def http_client(ca: pki.Issued) -> Iterator[Callable[[int], FlaskClient]]:
    """client_svc with its real HTTP transport to 127.0.0.1:<port>, short timeouts."""
    apps: list[Flask] = []

    def make(port: int) -> FlaskClient:
        app = create_client_app(
            {
                "TRUST_ANCHORS": (ca.certificate,),
                "SERVER_URL": f"http://127.0.0.1:{port}",
                "SERVER_NAME": "server",
                "UPSTREAM_CONNECT_TIMEOUT": CONNECT_TIMEOUT,
                "UPSTREAM_READ_TIMEOUT": READ_TIMEOUT,
                "TESTING": True,
            }
        )
        apps.append(app)
        return app.test_client()

    yield make
    for app in apps:  # close the pooled sockets now, not whenever the pool is collected
        app.extensions["client_service"].server.transport.close()


@pytest.fixture
def proxied(server_app: Flask, http_client: Callable[[int], FlaskClient]) -> Iterator[Any]:
    """(client, proxy): client_svc -> FaultyProxy -> server_svc on a real HTTP server."""
    with serve_app(server_app) as server_port, FaultyProxy(server_port) as proxy:
        yield http_client(proxy.port), proxy


def timed_post(client: FlaskClient, path: str, body: dict[str, Any]) -> tuple[float, int, Any]:
    started = time.monotonic()
    response = client.post(path, json=body)
    return time.monotonic() - started, response.status_code, response.get_json()


def processed(server_app: Flask, connection_id: str) -> int:
    return int(server_app.test_client().get(path(SESSION, connection_id)).get_json()["messages"])


def test_a_closed_port_is_upstream_unavailable_at_once(
    http_client: Callable[[int], FlaskClient],
) -> None:
    client = http_client(closed_port())
    elapsed, status, answer = timed_post(client, HANDSHAKE, {})
    assert (status, answer["error"]["code"]) == (502, "upstream_unavailable")
    assert "unreachable" in answer["error"]["message"]
    assert elapsed < CONNECT_TIMEOUT + SLACK


def test_a_server_that_accepts_no_connection_is_upstream_timeout_within_the_connect_timeout(
    http_client: Callable[[int], FlaskClient],
) -> None:
    with full_listener() as port:
        client = http_client(port)
        elapsed, status, answer = timed_post(client, HANDSHAKE, {})
    assert (status, answer["error"]["code"]) == (504, "upstream_timeout")
    assert f"accept a connection within {CONNECT_TIMEOUT:g} s" in answer["error"]["message"]
    assert CONNECT_TIMEOUT <= elapsed < CONNECT_TIMEOUT + SLACK


def test_a_server_that_never_answers_is_upstream_timeout_within_the_read_timeout(
    http_client: Callable[[int], FlaskClient],
) -> None:
    with silent_listener() as port:
        client = http_client(port)
        elapsed, status, answer = timed_post(client, HANDSHAKE, {})
    assert (status, answer["error"]["code"]) == (504, "upstream_timeout")
    assert f"within {READ_TIMEOUT:g} s" in answer["error"]["message"]
    assert READ_TIMEOUT <= elapsed < READ_TIMEOUT + SLACK


def test_a_slow_server_within_the_timeout_is_fine(proxied: Any) -> None:
    client, proxy = proxied
    proxy.reply_delay = READ_TIMEOUT / 3
    assert client.post(HANDSHAKE, json={"key_exchange": "ecdhe"}).status_code == 200
    assert client.post(MESSAGE, json={"plaintext": "slowly"}).status_code == 200


@pytest.fixture
def kept_alive(server_app: Flask, http_client: Callable[[int], FlaskClient]) -> Iterator[Any]:
    """Like ``proxied``, with a server that keeps connections open between requests."""
    with serve_keep_alive(server_app) as server_port, FaultyProxy(server_port) as proxy:
        yield http_client(proxy.port), proxy


def test_requests_share_one_kept_alive_connection(kept_alive: Any) -> None:
    client, proxy = kept_alive
    assert client.post(HANDSHAKE, json={"key_exchange": "rsa"}).status_code == 200
    for text in ("one", "two", "three"):
        assert client.post(MESSAGE, json={"plaintext": text}).status_code == 200
    assert proxy.accepted == 1  # two handshake steps and three messages on one connection


def test_a_kept_alive_connection_the_server_closed_is_replaced_not_an_unknown_outcome(
    kept_alive: Any, server_app: Flask
) -> None:
    # gunicorn closes idle keep-alive connections after a few seconds. The next message must
    # go out on a new connection and arrive, not fail as "the connection broke".
    client, proxy = kept_alive
    connection_id = client.post(HANDSHAKE, json={}).get_json()["connection_id"]
    assert proxy.accepted == 1
    proxy.cut()
    time.sleep(0.2)  # the proxy's FIN reaches client_svc's idle socket
    answer = client.post(MESSAGE, json={"plaintext": "after the close"})
    assert answer.status_code == 200, answer.get_json()
    assert proxy.accepted == 2
    assert processed(server_app, connection_id) == 1


def test_a_server_that_stops_answering_mid_conversation_makes_the_outcome_unknown(
    proxied: Any, server_app: Flask
) -> None:
    # The request reaches server_svc and is processed; the answer is lost on the way back.
    client, proxy = proxied
    connection_id = client.post(HANDSHAKE, json={}).get_json()["connection_id"]
    proxy.mode = "drop_replies"
    elapsed, status, answer = timed_post(client, MESSAGE, {"plaintext": "lost answer"})
    error = answer["error"]
    assert (status, error["code"], error["delivery"]) == (504, "outcome_unknown", "unknown")
    assert error["cause"] == "upstream_timeout"
    assert READ_TIMEOUT <= elapsed < READ_TIMEOUT + SLACK
    assert processed(server_app, connection_id) == 1


def test_a_request_swallowed_on_the_way_is_also_an_unknown_outcome(
    proxied: Any, server_app: Flask
) -> None:
    # Same symptom for client_svc, opposite truth on the server: nothing was processed. The
    # client cannot tell the two apart, so it must say "unknown" in both.
    client, proxy = proxied
    connection_id = client.post(HANDSHAKE, json={}).get_json()["connection_id"]
    proxy.mode = "blackhole"
    elapsed, status, answer = timed_post(
        client, MESSAGE, {"plaintext": "lost request", "auto_reconnect": True}
    )
    assert (status, answer["error"]["code"]) == (504, "outcome_unknown")
    assert READ_TIMEOUT <= elapsed < READ_TIMEOUT + SLACK
    assert processed(server_app, connection_id) == 0


def test_a_refused_connection_mid_conversation_is_not_delivered(
    proxied: Any, server_app: Flask
) -> None:
    client, proxy = proxied
    connection_id = client.post(HANDSHAKE, json={}).get_json()["connection_id"]
    proxy.refuse()
    elapsed, status, answer = timed_post(client, MESSAGE, {"plaintext": "refused"})
    error = answer["error"]
    assert (status, error["code"]) == (502, "upstream_unavailable"), error
    assert error["delivery"] == "not_delivered"
    assert elapsed < CONNECT_TIMEOUT + SLACK
    assert processed(server_app, connection_id) == 0


def test_a_handshake_through_a_paused_server_times_out_and_keeps_nothing(proxied: Any) -> None:
    client, proxy = proxied
    proxy.mode = "blackhole"
    elapsed, status, answer = timed_post(client, HANDSHAKE, {"key_exchange": "rsa"})
    assert (status, answer["error"]["code"]) == (504, "upstream_timeout")
    assert READ_TIMEOUT <= elapsed < READ_TIMEOUT + SLACK
    assert client.get(HEALTH).get_json()["connections"] == 0
    # The trouble passes: the next handshake and message work.
    proxy.mode = "forward"
    assert client.post(HANDSHAKE, json={}).status_code == 200
    assert client.post(MESSAGE, json={"plaintext": "back"}).status_code == 200
