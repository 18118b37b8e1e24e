"""A body over the size limit is refused whole, on every endpoint, chunked or not (issue 10, item 6).

server_svc's binary ``POST /records/<id>`` read its body with werkzeug alone, which stops a body
of unknown length (chunked) at MAX_CONTENT_LENGTH without a word: with a record boundary exactly
at the limit, the first records were opened and echoed (200) and the rest silently dropped.
Every body now goes through lab_common.http.request_body, which a before-request hook calls
first on every endpoint: over the limit means 413 ``body_too_large`` before any view runs, so
nothing in the body is processed and the connection's sequence numbers do not move. These run
both services under a real gunicorn with MAX_BODY_BYTES=4096, and real handshakes.
"""

from __future__ import annotations

import ast
import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.peer import Peer
from helpers.rawhttp import LiveResponse, exchange, raw_request
from helpers.served import REPO_ROOT, LiveLab, Service, start_lab, stop_lab

from kdf_lib.record import ContentType, RecordProtection
from lab_common.contract import (
    ALERT,
    FINISH,
    HEALTH,
    HELLO,
    MESSAGE,
    OPENAPI,
    RECORDS,
    RECORDS_MEDIA_TYPE,
    path,
)

from .documented import operations

LIMIT = 4096
#: AES-GCM: a record is its plaintext plus 29 bytes, so record sizes are easy to pick.
GCM_SUITE = "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
RECORD_SIZE = 256  # 16 records fill the limit exactly
JSON = "application/json"


@pytest.fixture(scope="module")
def services(tmp_path_factory, pair_certificates) -> Iterator[LiveLab]:
    lab = start_lab(
        tmp_path_factory.mktemp("whole-bodies"),
        certificates=pair_certificates,
        settings={"MAX_BODY_BYTES": str(LIMIT)},
    )
    try:
        yield lab
    finally:
        stop_lab(lab)


def _established(services: LiveLab) -> Peer:
    return Peer(services.server.http(), GCM_SUITE).complete()


def _sealed(writer: RecordProtection, count: int, size: int = RECORD_SIZE) -> bytes:
    plaintext = b"r" * (size - 29)
    records = b"".join(writer.seal(ContentType.application_data, plaintext) for _ in range(count))
    assert len(records) == count * size
    return records


def _seen_by_server(peer: Peer) -> tuple[int, int]:
    view = peer.server_view()
    return view["sequence_numbers"]["read"], view["messages"]


def _assert_error(answer: LiveResponse, status: int, code: str) -> None:
    assert answer.status_code == status, answer.body[:300]
    assert answer.mimetype == "application/json"
    assert answer.get_json()["error"]["code"] == code


@pytest.mark.parametrize("extra_records", [1, 40], ids=["one record more", "forty records more"])
def test_chunked_records_past_the_limit_at_a_record_boundary_are_refused_whole(
    services, extra_records
):
    peer = _established(services)
    assert peer.connection is not None
    before = _seen_by_server(peer)
    # The over-long body comes from a copy of the client's writer: the client's own sequence
    # number stays where the server's must still be.
    twin = peer.fresh_writer()
    twin.seq = peer.connection.writer.seq
    body = _sealed(twin, LIMIT // RECORD_SIZE + extra_records)
    target = path(RECORDS, peer.connection_id)
    answer = exchange(
        services.server.address, raw_request("POST", target, body, RECORDS_MEDIA_TYPE, chunk=1000)
    )
    _assert_error(answer, 413, "body_too_large")
    assert _seen_by_server(peer) == before, "records of a refused body were opened"
    # The next correct record is still the one the server expects, and it is echoed.
    record = peer.seal(b"still in sequence")
    answer = services.server.http().post(target, data=record, content_type=RECORDS_MEDIA_TYPE)
    assert answer.status_code == 200, answer.body
    assert answer.headers["TLS-Received-Seq"] == str(before[0])
    assert peer.connection.open(answer.body).endswith(b"still in sequence")


def test_chunked_records_exactly_at_the_limit_are_served(services):
    """The control: a chunked body of exactly MAX_BODY_BYTES is whole, and served."""
    peer = _established(services)
    assert peer.connection is not None
    body = _sealed(peer.connection.writer, LIMIT // RECORD_SIZE)
    target = path(RECORDS, peer.connection_id)
    answer = exchange(
        services.server.address, raw_request("POST", target, body, RECORDS_MEDIA_TYPE, chunk=1000)
    )
    assert answer.status_code == 200, answer.body
    assert answer.headers["Tls-Received-Records"] == str(LIMIT // RECORD_SIZE)


def _padded(body: dict[str, object], size: int) -> bytes:
    """``body`` as JSON, padded with trailing spaces to exactly ``size`` bytes."""
    text = json.dumps(body).encode()
    assert len(text) <= size
    return text + b" " * (size - len(text))


def test_a_chunked_message_past_the_limit_is_refused_and_opens_nothing(services):
    peer = _established(services)
    assert peer.connection is not None
    before = _seen_by_server(peer)
    twin = peer.fresh_writer()
    twin.seq = peer.connection.writer.seq
    record = base64.b64encode(_sealed(twin, 2)).decode()
    # A whole, valid request in the first LIMIT bytes, and more after them.
    body = _padded({"connection_id": peer.connection_id, "record": record}, LIMIT) + b" \n"
    answer = exchange(services.server.address, raw_request("POST", MESSAGE, body, JSON, chunk=512))
    _assert_error(answer, 413, "body_too_large")
    assert _seen_by_server(peer) == before
    _, answer = peer.send(b"next")
    assert answer.status == 200 and answer.json["received"]["seq"] == before[0]


def test_chunked_handshake_bodies_past_the_limit_create_nothing(services):
    http = services.server.http()
    connections = http.get(HEALTH).get_json()["connections"]
    peer = Peer(http, GCM_SUITE)
    for target, body in (
        (HELLO, peer.hello_body()),
        (FINISH, {"connection_id": "0" * 32, "finished_record": "AAAA"}),
        (ALERT, {"connection_id": "0" * 32, "alert": "close_notify"}),
    ):
        padded = _padded(body, LIMIT) + b"  "
        answer = exchange(
            services.server.address, raw_request("POST", target, padded, JSON, chunk=700)
        )
        _assert_error(answer, 413, "body_too_large")
    assert http.get(HEALTH).get_json()["connections"] == connections


def _every_operation(services: LiveLab) -> list[tuple[Service, str, str, str | None]]:
    found = []
    for served in (services.server, services.client):
        document = served.http().get(OPENAPI).get_json()
        for operation in operations(document):
            media_type = operation.body_types[0] if operation.body_types else None
            found.append((served, operation.method, operation.url("0" * 32), media_type))
    assert len(found) >= 20, found
    return found


@pytest.mark.parametrize("framing", ["chunked", "content-length"])
def test_every_endpoint_refuses_a_body_over_the_limit(services, framing):
    """Whatever the endpoint (a GET that reads no body included), before it does anything."""
    wrong = []
    for served, method, target, media_type in _every_operation(services):
        body = b" " * (LIMIT + 1)
        chunk = 1024 if framing == "chunked" else None
        answer = exchange(
            served.address, raw_request(method, target, body, media_type, chunk=chunk)
        )
        is_json = answer.mimetype == "application/json"
        code = answer.get_json().get("error", {}).get("code") if is_json else None
        if answer.status_code != 413 or code != "body_too_large":
            wrong.append((served.name, method, target, answer.status_code, answer.body[:100]))
    assert wrong == []


@pytest.mark.parametrize(
    "framing",
    [b"zz\r\nabc\r\n0\r\n\r\n", b"3\r\nabcXY\r\n0\r\n\r\n"],
    ids=["a chunk size that is not hex", "a chunk longer than its size"],
)
def test_a_malformed_chunked_body_gets_a_json_400(services, framing):
    head = (
        f"POST {MESSAGE} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    _assert_error(exchange(services.server.address, head + framing), 400, "bad_request")


# -- nothing reads a body around lab_common.http.request_body --------------------------------

#: What would read the body without the limit check: werkzeug's request attributes and the
#: WSGI stream.
_BODY_READERS = {"data", "get_data", "stream", "input_stream", "get_json", "json", "form", "files"}
_READER_MODULE = REPO_ROOT / "lab_common" / "http.py"


def _body_reads(path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in _BODY_READERS
            and isinstance(node.value, ast.Name)
            and node.value.id == "request"
        ):
            yield f"{path.relative_to(REPO_ROOT)}:{node.lineno}: request.{node.attr}"
        elif isinstance(node, ast.Constant) and node.value == "wsgi.input":
            yield f"{path.relative_to(REPO_ROOT)}:{node.lineno}: wsgi.input"


def test_no_service_code_reads_a_body_around_the_limit_check():
    sources = [
        path
        for package in ("client_svc", "server_svc", "lab_common")
        for path in sorted((REPO_ROOT / package).rglob("*.py"))
        if path != _READER_MODULE
    ]
    assert len(sources) > 20
    assert [read for path in sources for read in _body_reads(path)] == []
    # The one reader does read it (the scan looks for the right names).
    assert list(_body_reads(_READER_MODULE))
