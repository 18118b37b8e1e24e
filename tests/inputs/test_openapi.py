"""The OpenAPI documents at ``GET /openapi.json``, and both apps fuzzed against them.

schemathesis generates requests from each document, valid and invalid ones, sends them to
the app in-process (WSGI) and checks the answers: never a 5xx, every status and body as
documented, and every request the schema calls invalid refused with a 4xx. Successful
answers, which random input rarely reaches, are checked on real handshakes below.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import schemathesis
from helpers.peer import RSA_SUITE, Peer
from helpers.pki import SERVER_NAME, identity, server_config
from helpers.transport import FlaskTransport
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from client_svc import create_app as create_client_app
from lab_common.contract import (
    DEMO_PRIVATE_KEY,
    HANDSHAKE,
    HEALTH,
    MESSAGE,
    OPENAPI,
    PRF_CALCULATOR,
    RECORDS_MEDIA_TYPE,
    SESSION,
    path,
)
from server_svc import create_app as create_server_app

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
FUZZ = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)


def _apps(**server_settings: Any) -> tuple[Any, Any]:
    server_app = create_server_app(
        {"SERVER_CONFIG": server_config(), "TESTING": True, **server_settings}
    )
    ca, _ = identity()
    client_app = create_client_app(
        {
            "TRUST_ANCHORS": (ca.certificate,),
            "TRANSPORT": FlaskTransport(server_app),
            "SERVER_NAME": SERVER_NAME,
            "TESTING": True,
        }
    )
    return server_app, client_app


# schemathesis's lazy (fixture) loader does not work with this pytest, so the apps that are
# fuzzed are made at import time; each fuzzed operation shares them, as a real server would.
FUZZED_SERVER, FUZZED_CLIENT = _apps()
# server_svc's binary /records body is raw bytes, like application/octet-stream.
schemathesis.serializer.alias(RECORDS_MEDIA_TYPE, "application/octet-stream")
SERVER_SCHEMA = schemathesis.openapi.from_wsgi(OPENAPI, FUZZED_SERVER)
CLIENT_SCHEMA = schemathesis.openapi.from_wsgi(OPENAPI, FUZZED_CLIENT)


@SERVER_SCHEMA.parametrize()
@FUZZ
def test_server_svc_answers_as_documented(case):
    case.call_and_validate(checks=CHECKS)


@CLIENT_SCHEMA.parametrize()
@FUZZ
def test_client_svc_answers_as_documented(case):
    case.call_and_validate(checks=CHECKS)


def test_the_prf_calculator_refuses_a_hash_name_that_is_not_a_string():
    """Found by the fuzzing above: a dict lookup of an unhashable value was a 500."""
    _, client_app = _apps()
    body = {"secret": "00", "label": "x", "seed": "00", "length": 1, "hash_name": {}}
    response = client_app.test_client().post(PRF_CALCULATOR, json=body)
    assert response.status_code == 400


# -- the documents themselves -------------------------------------------------------------


@pytest.mark.parametrize("schema", [SERVER_SCHEMA, CLIENT_SCHEMA], ids=["server", "client"])
def test_the_document_is_valid_openapi_3_1(schema):
    schema.validate()
    assert schema.raw_schema["openapi"].startswith("3.1")


@pytest.mark.parametrize("app", [FUZZED_SERVER, FUZZED_CLIENT], ids=["server", "client"])
def test_every_route_is_documented_with_its_errors(app):
    document = app.test_client().get(OPENAPI).get_json()
    documented = {
        (path, method.upper()) for path, item in document["paths"].items() for method in item
    }
    served = {
        (rule.rule.replace("<connection_id>", "{connection_id}"), method)
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert served == documented
    for template, item in document["paths"].items():
        for method, operation in item.items():
            statuses = set(operation["responses"])
            assert "200" in statuses and "500" in statuses, (template, method)
            for status, answer in operation["responses"].items():
                if status == "200":
                    continue
                schema = answer["content"]["application/json"]["schema"]
                assert schema["required"] == ["error"], (template, method, status)


# -- successful answers, from real handshakes ------------------------------------------------


class RecordingClient:
    """A Flask test client that keeps every (path template, method, response)."""

    def __init__(self, app: Any) -> None:
        self.client = app.test_client()
        self.seen: list[tuple[str, str, Any]] = []

    def open(self, path: str, method: str = "GET", **kwargs: Any) -> Any:
        response = self.client.open(path, method=method, **kwargs)
        template = SESSION if path.startswith(SESSION.removesuffix("{connection_id}")) else path
        self.seen.append((template, method, response))
        return response

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.open(path, "POST", **kwargs)

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.open(path, "GET", **kwargs)


def _validate_all(schema: Any, recorder: RecordingClient) -> set[tuple[str, str, int]]:
    covered = set()
    for template, method, response in recorder.seen:
        schema[template][method].validate_response(response)
        covered.add((template, method, response.status_code))
    return covered


@pytest.mark.parametrize("reveal", [False, True], ids=["secrets hidden", "secrets revealed"])
def test_server_svc_real_answers_match_the_document(reveal):
    server_app, _ = _apps(REVEAL_SECRETS=reveal, MAX_CONTENT_LENGTH=64 * 1024)
    schema = schemathesis.openapi.from_wsgi(OPENAPI, server_app)
    http = RecordingClient(server_app)
    rsa = Peer(http, RSA_SUITE).complete()
    rsa.send(b"hello")
    rsa.message(rsa.seal(b"in small pieces " * 100))  # fragment size is the default here
    ecdhe = Peer(http, "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256").complete()
    Peer(http, "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256").complete()  # ServerDHParams, dh_Yc
    http.post(
        MESSAGE,
        json={
            "connection_id": ecdhe.connection_id,
            "record": __import__("base64").b64encode(ecdhe.seal(b"x" * 2000)).decode(),
            "reply_fragment_size": 512,
        },
    )
    resumed = Peer(http, RSA_SUITE, resume=rsa.handshake.session).complete()
    assert resumed.hello_json["resumed"] is True
    http.get(path(SESSION, rsa.connection_id))
    http.get(path(SESSION, resumed.connection_id))
    http.get(HEALTH)
    http.get(OPENAPI)
    http.get(DEMO_PRIVATE_KEY)
    # Errors of every documented kind.
    rsa.message(rsa.seal(b"late")[:-1])  # 400 bad_record_mac
    rsa.message(rsa.seal(b"later"))  # 409 unexpected_message
    http.get(path(SESSION, "0" * 32))  # 404
    http.post(MESSAGE, data="{}", content_type="text/plain")  # 415
    http.post(MESSAGE, data=json.dumps({"x": "a" * 70_000}), content_type="application/json")
    covered = _validate_all(schema, http)
    assert {status for _, _, status in covered} >= {200, 400, 404, 409, 413, 415}
    assert (DEMO_PRIVATE_KEY, "GET", 200 if reveal else 403) in covered


def test_client_svc_real_answers_match_the_document():
    _, client_app = _apps()
    schema = schemathesis.openapi.from_wsgi(OPENAPI, client_app)
    http = RecordingClient(client_app)
    http.post(MESSAGE, json={"plaintext": "too early"})  # 409 no_connection
    first = http.post(HANDSHAKE, json={"key_exchange": "ecdhe"}).get_json()
    http.post(HANDSHAKE, json={"key_exchange": "dhe"})
    http.post(HANDSHAKE, json={"resume": first["session_id"]})
    http.post(HANDSHAKE, data="", content_type="application/json")
    http.post(MESSAGE, json={"plaintext": "hello"})
    http.get(path(SESSION, first["connection_id"]))
    http.get(HEALTH)
    http.get(OPENAPI)
    http.post(HANDSHAKE, json={"resume": "ab" * 32})  # 404 unknown_session
    http.post(HANDSHAKE, json={"nope": 1})  # 400
    http.post(MESSAGE, data="{}", content_type="text/plain")  # 415
    covered = _validate_all(schema, http)
    assert {status for _, _, status in covered} >= {200, 400, 404, 409, 415}
