"""A server that is not ours (the mitm profile's threat model) must not exhaust client_svc.

client_svc runs under a real gunicorn, pointed at :class:`HostilePeer`, which forwards to a
real server_svc until a test tells it to misbehave on a path. An answer over
UPSTREAM_MAX_RESPONSE_BYTES is refused (a declared Content-Length before its body is read,
chunked or close-delimited ones at the bound) without swelling the worker's memory, and an
answer dribbled a byte at a time ends at UPSTREAM_READ_TIMEOUT, which bounds the whole answer.
A message whose answer is refused either way may have been processed: ``delivery: unknown``.
HttpTransport is also tested alone against the same peer, at the exact bound.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.rawhttp import call_json
from helpers.served import (
    Service,
    client_settings,
    issue_certificates,
    launch,
    memory_kib,
    running,
    server_settings,
)

from client_svc.config import ClientSettings
from client_svc.upstream import HttpTransport, UpstreamError
from kdf_lib.record import ContentType, RecordProtection
from kdf_lib.suites import SUITES
from lab_common.contract import HANDSHAKE, HELLO, MESSAGE
from lab_common.settings import MAX_BODY_LIMIT

from .hostile_peer import Behaviour, Exchange, HostilePeer, dribbled, head, oversized

READ_TIMEOUT = 3.0
#: UPSTREAM_MAX_RESPONSE_BYTES as client_svc runs here (its default).
BOUND = ClientSettings().upstream_max_response_bytes
#: What the hostile peer offers: the issue's 200 MB answer.
HUGE = 200 * 1024 * 1024
#: How much a refused answer may add to the worker's peak memory: the bound (12 MiB) read
#: once and joined once, with room to spare. Reading the whole answer adds 400 MiB.
MEMORY_SLACK_KIB = 64 * 1024
#: How much of the answer client_svc may take before it stops: the bound plus what the two
#: kernels' socket buffers hold on the loopback.
READ_SLACK = 48 * 1024 * 1024
#: For scheduling and a loaded machine: the issue's 55 s against a 10 s timeout is the failure.
TIME_SLACK = 3.0


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, HostilePeer]]:
    """(client_svc under gunicorn, the peer it calls, which forwards to server_svc)."""
    workdir = tmp_path_factory.mktemp("hostile")
    certificates = issue_certificates(workdir)
    server = launch("server_svc", workdir, server_settings(certificates))
    with HostilePeer(upstream_port=server.port) as peer:
        client = launch(
            "client_svc",
            workdir,
            client_settings(certificates, peer.port, UPSTREAM_READ_TIMEOUT=str(READ_TIMEOUT)),
        )
        with running(server, client):
            yield client, peer


@pytest.fixture
def client(lab: tuple[Service, HostilePeer]) -> Service:
    return lab[0]


@pytest.fixture
def peer(lab: tuple[Service, HostilePeer]) -> Iterator[HostilePeer]:
    peer = lab[1]
    yield peer
    peer.behaviours.clear()
    peer.written.clear()


def _handshake(client: Service) -> dict[str, Any]:
    status, answer = call_json(client.port, "POST", HANDSHAKE, {})
    assert status == 200, answer
    return dict(answer)


def _message(connection_id: str) -> dict[str, str]:
    return {"plaintext": "hello", "connection_id": connection_id}


def _call_through_the_peer(
    client: Service, endpoint: str, connection_id: str
) -> tuple[int, dict[str, Any], float]:
    """POST /handshake, or POST /message on ``connection_id``: (status, the answer's error,
    the seconds it took)."""
    started = time.monotonic()
    if endpoint == "handshake":
        status, answer = call_json(client.port, "POST", HANDSHAKE, {})
    else:
        status, answer = call_json(client.port, "POST", MESSAGE, _message(connection_id))
    return status, answer["error"], time.monotonic() - started


def _assert_failed_with(
    endpoint: str, status: int, error: dict[str, Any], handshake_status: int, cause: str
) -> None:
    """A handshake fails with ``cause`` itself. A message fails "outcome unknown": server_svc
    processed it (the peer forwarded it first) before its answer went wrong, and nobody can
    tell."""
    if endpoint == "handshake":
        assert (status, error["code"]) == (handshake_status, cause)
    else:
        assert (status, error["code"], error["cause"]) == (504, "outcome_unknown", cause)
        assert error["delivery"] == "unknown"


def _written_when_settled(peer: HostilePeer, path: str, within: float = 5.0) -> int:
    """What the peer wrote on ``path`` once it stopped writing: its thread may still be
    counting its last write when client_svc has already answered."""
    deadline = time.monotonic() + within
    last = -1
    while time.monotonic() < deadline:
        now = peer.written.get(path, 0)
        if now == last and now > 0:
            return now
        last = now
        time.sleep(0.2)
    return peer.written.get(path, 0)


def _peak_memory_reset(pid: int) -> int:
    """The worker's current RSS, after resetting its peak to it (Linux's clear_refs "5")."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return memory_kib(pid, "VmHWM")


# -- the size bound ---------------------------------------------------------------------------


def test_the_default_bound_fits_the_largest_echo_any_setting_allows() -> None:
    """The echo of MAX_BODY_LIMIT (8 MiB, the largest MAX_BODY_BYTES) bytes of plaintext, in
    the suite that adds most, as server_svc's JSON answer: that is the largest legitimate
    answer, and the default bound must hold it."""
    largest = 0
    for suite in SUITES.values():
        for encrypt_then_mac in {False, not suite.is_aead}:
            writer = RecordProtection(
                suite,
                mac_key=bytes(suite.mac_key_length),
                enc_key=bytes(suite.enc_key_length),
                fixed_iv=bytes(suite.fixed_iv_length),
                encrypt_then_mac=encrypt_then_mac,
            )
            # server_svc's echo: a header naming the sequence numbers, then the plaintext.
            header = f"server_svc received {MAX_BODY_LIMIT} bytes in records {2**32}..{2**32}: "
            echoed = header.encode() + bytes(MAX_BODY_LIMIT)
            record = writer.seal_many(ContentType.application_data, echoed)
            echo = {
                "connection_id": "0" * 32,
                "record": base64.b64encode(record).decode(),
                "received": {"seq": 2**32, "records": 512, "bytes": MAX_BODY_LIMIT},
                "reply_seq": 2**32,
            }
            largest = max(largest, len(json.dumps(echo)))
    assert 11_000_000 < largest < BOUND, (largest, BOUND)


@pytest.mark.parametrize(
    ("endpoint", "framing"),
    [
        ("handshake", "length"),
        ("handshake", "chunked"),
        ("handshake", "close"),
        ("message", "length"),
        ("message", "chunked"),
    ],
)
def test_an_answer_over_the_bound_is_refused_without_swelling_the_worker(
    client: Service, peer: HostilePeer, endpoint: str, framing: str
) -> None:
    worker = client.worker_pid()
    assert worker is not None
    connection_id = _handshake(client)["connection_id"]  # warm: the worker's usual memory
    path = HELLO if endpoint == "handshake" else MESSAGE
    peer.behaviours[path] = oversized(HUGE, framing, forward_first=endpoint == "message")
    before = _peak_memory_reset(worker)
    status, error, elapsed = _call_through_the_peer(client, endpoint, connection_id)
    peak = memory_kib(worker, "VmHWM")

    assert peak - before < MEMORY_SLACK_KIB, f"worker peak grew {peak - before} KiB"
    assert _written_when_settled(peer, path) < BOUND + READ_SLACK, "client_svc read on"
    assert "UPSTREAM_MAX_RESPONSE_BYTES" in error["message"]
    _assert_failed_with(endpoint, status, error, 502, "upstream_bad_response")
    assert elapsed < READ_TIMEOUT + TIME_SLACK
    # The refused answer left nothing behind: the next call is served.
    peer.behaviours.clear()
    _handshake(client)


# -- the deadline -----------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ["handshake", "message"])
def test_an_answer_dribbled_a_byte_a_second_ends_at_the_read_timeout(
    client: Service, peer: HostilePeer, endpoint: str
) -> None:
    """Every byte comes within the timeout; the answer as a whole does not. Today's socket
    timeout bounds each wait, so the call lasted as long as the peer liked (here 20 s)."""
    connection_id = _handshake(client)["connection_id"]
    path = HELLO if endpoint == "handshake" else MESSAGE
    peer.behaviours[path] = dribbled(1.0, 20.0, forward_first=endpoint == "message")
    status, error, elapsed = _call_through_the_peer(client, endpoint, connection_id)

    assert READ_TIMEOUT - 0.1 <= elapsed < READ_TIMEOUT + TIME_SLACK, elapsed
    assert f"within {READ_TIMEOUT:g} s" in error["message"]
    _assert_failed_with(endpoint, status, error, 504, "upstream_timeout")
    if endpoint == "message":
        # It was processed (the peer forwarded it first), which is why it is not "not_delivered";
        # and the connection is closed, as after any failed message.
        status, after = call_json(client.port, "POST", MESSAGE, _message(connection_id))
        assert (status, after["error"]["code"]) == (409, "unexpected_message")


# -- HttpTransport alone, at the exact bound --------------------------------------------------

LIMIT = 64 * 1024


def _body_of(length: int) -> bytes:
    """A JSON object of exactly ``length`` bytes."""
    return b'{"x": "' + b"a" * (length - 10) + b'"} '


def _answer_of(length: int, framing: str) -> Behaviour:
    """A behaviour answering with :func:`_body_of` ``length``, framed so."""
    body = _body_of(length)

    def behave(exchange: Exchange) -> bool:
        exchange.read_body()
        if framing == "length":
            return bool(
                exchange.write(
                    head(200, Content_Type="application/json", Content_Length=length) + body
                )
            )
        if framing == "chunked":
            half = length // 2
            chunks = b"".join(
                f"{len(part):x}\r\n".encode() + part + b"\r\n"
                for part in (body[:half], body[half:])
            )
            exchange.write(
                head(200, Content_Type="application/json", Transfer_Encoding="chunked")
                + chunks
                + b"0\r\n\r\n"
            )
            return True
        exchange.write(head(200, Content_Type="application/json", Connection="close") + body)
        return False

    return behave


@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
@pytest.mark.parametrize("extra", [0, 1], ids=["at the bound", "one byte over"])
def test_the_transport_reads_an_answer_up_to_the_bound_and_not_one_byte_more(
    framing: str, extra: int
) -> None:
    with HostilePeer() as peer:
        peer.behaviours["/echo"] = _answer_of(LIMIT + extra, framing)
        peer.behaviours["/next"] = _answer_of(100, "length")
        transport = HttpTransport(
            f"http://127.0.0.1:{peer.port}",
            connect_timeout=2,
            read_timeout=READ_TIMEOUT,
            max_response_bytes=LIMIT,
        )
        try:
            if extra:
                with pytest.raises(UpstreamError) as raised:
                    transport.request("POST", "/echo", {})
                assert (raised.value.code, raised.value.status) == (
                    "upstream_bad_response",
                    502,
                )
                assert raised.value.sent
            else:
                status, data = transport.request("POST", "/echo", {})
                assert (status, len(data)) == (200, LIMIT)
            # Whatever happened, the next request gets its own answer.
            assert transport.request("POST", "/next", {}) == (200, _body_of(100))
        finally:
            transport.close()


def test_the_transport_refuses_a_declared_length_before_reading_the_body() -> None:
    """The peer declares 200 MB and sends nothing after the headers: a client that waited for
    the body would time out instead of refusing at once."""

    def declare_only(exchange: Exchange) -> bool:
        exchange.read_body()
        exchange.write(head(200, Content_Type="application/json", Content_Length=HUGE))
        time.sleep(READ_TIMEOUT + 1)
        return False

    with HostilePeer() as peer:
        peer.behaviours["/echo"] = declare_only
        transport = HttpTransport(
            f"http://127.0.0.1:{peer.port}", connect_timeout=2, read_timeout=READ_TIMEOUT
        )
        started = time.monotonic()
        with pytest.raises(UpstreamError) as raised:
            transport.request("POST", "/echo", {})
        elapsed = time.monotonic() - started
        transport.close()
    assert raised.value.code == "upstream_bad_response"
    assert elapsed < READ_TIMEOUT / 2
