"""One JSON log line per request (lab_common.logs.RequestLog), gunicorn's access log off.

A request that did something the service logs (a handshake step, a message, a refusal) writes
that event's line with the request's ``http`` fields added; any other request writes an
``"event": "request"`` line; health probes write nothing. Warnings and errors are not held
back for the request's line. Under gunicorn, gunicorn's text access line is gone.
"""

from __future__ import annotations

import json
import logging
import socket
import urllib.request
from pathlib import Path

import pytest
from helpers.peer import RSA_SUITE, Peer
from helpers.served import start_lab, stop_lab

from lab_common import logs
from lab_common.contract import (
    HEALTH,
    HEALTHCHECK_USER_AGENT,
    HELLO,
    MESSAGE,
    METRICS,
    SESSION,
    path,
)
from lab_common.gunicorn_worker import JsonErrorWorker


def _lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_a_handshake_request_writes_its_event_with_the_http_fields(server, capsys):
    capsys.readouterr()
    peer = Peer(server, RSA_SUITE)
    peer.hello()
    lines = _lines(capsys.readouterr().out)
    assert len(lines) == 1
    (line,) = lines
    assert line["event"] == "server_hello"
    assert line["msg"] == "ServerHello sent"
    assert line["connection_id"] == peer.connection_id
    assert line["http"] == {
        "method": "POST",
        "path": HELLO,
        "status": 200,
        "bytes": line["http"]["bytes"],
        "remote": "127.0.0.1",
        "user_agent": line["http"]["user_agent"],
    }
    assert line["http"]["bytes"] > 1000  # the ServerHello flight with the certificate


def test_a_request_without_an_event_writes_a_request_line(server, capsys):
    capsys.readouterr()
    server.get(METRICS, headers={"User-Agent": "prometheus"})
    server.get(path(SESSION, "0" * 32) + "?x=1")
    first, second = _lines(capsys.readouterr().out)
    assert first["event"] == "request"
    assert first["msg"] == f"GET {METRICS} 200"
    assert first["http"]["user_agent"] == "prometheus"
    assert second["http"]["status"] == 404
    assert second["http"]["query"] == "x=1"
    assert "query" not in first["http"]


def test_a_second_event_is_written_at_once_and_the_first_carries_the_request(server, capsys):
    peer = Peer(server, RSA_SUITE).complete()
    capsys.readouterr()
    reply = peer.message(b"\x17\x03\x03\x00\x01\x00")  # too short to open: refused
    assert reply.code == "bad_record_mac"
    alert, refused = _lines(capsys.readouterr().out)
    # The service's note of the refused record is the request's line; the error handler's
    # alert event, a second one, was written as it happened.
    assert refused["event"] == "message_refused"
    assert refused["connection_id"] == peer.connection_id
    assert refused["http"]["path"] == MESSAGE and refused["http"]["status"] == 400
    assert alert["event"] == "alert" and "http" not in alert


def test_a_message_line_is_written_before_the_answer_and_stands_for_the_request(
    server, capsys, monkeypatch
):
    """The records a replica sealed are on record even if it dies before it answers: the
    ``message`` event is written when it is logged, not at the end of the request."""
    peer = Peer(server, RSA_SUITE).complete()
    seen_before_answer: list[str] = []
    real = logs.RequestLog._write

    def spy(self, request, status, headers):
        seen_before_answer.append(capsys.readouterr().out)
        real(self, request, status, headers)

    capsys.readouterr()
    monkeypatch.setattr(logs.RequestLog, "_write", spy)
    assert peer.message(peer.seal(b"hello")).status == 200
    (early,) = _lines(seen_before_answer[0])
    assert early["event"] == "message" and early["seq"] == 1 and early["records"] == 1
    assert early["http"] == {
        "method": "POST",
        "path": MESSAGE,
        "remote": "127.0.0.1",
        "user_agent": early["http"]["user_agent"],
    }
    assert "_at_once" not in early
    assert _lines(capsys.readouterr().out) == []  # no second line for the same request


@pytest.mark.parametrize(
    ("remote", "agent", "logged"),
    [
        ("127.0.0.1", "curl", False),  # the container's own probe
        ("10.0.0.5", HEALTHCHECK_USER_AGENT, False),  # HAProxy's
        ("10.0.0.5", "curl", True),  # anybody else's
    ],
)
def test_health_probes_are_left_out(server, capsys, remote, agent, logged):
    capsys.readouterr()
    server.get(HEALTH, headers={"User-Agent": agent}, environ_base={"REMOTE_ADDR": remote})
    lines = _lines(capsys.readouterr().out)
    assert bool(lines) is logged
    if logged:
        assert lines[0]["http"]["path"] == HEALTH


def test_a_warning_during_a_request_is_not_held_back(capsys):
    logs.configure("test")
    logger = logging.getLogger("lab")

    def app(environ, start_response):
        logger.warning("careful", extra={"event": "warned"})
        logger.info("did it", extra={"event": "done"})
        start_response("201 CREATED", [("Content-Length", "0")])
        return [b""]

    capsys.readouterr()
    logs.RequestLog(app)({"REQUEST_METHOD": "PUT", "PATH_INFO": "/x"}, lambda *a: None)
    warned, done = _lines(capsys.readouterr().out)
    assert warned["event"] == "warned" and "http" not in warned
    assert done["event"] == "done"
    assert done["http"]["status"] == 201 and done["http"]["bytes"] == 0


def test_the_heartbeat_file_is_touched_at_most_once_a_second():
    class Tmp:
        touches = 0

        def notify(self) -> None:
            Tmp.touches += 1

    class Cfg:
        timeout = 30

    worker = JsonErrorWorker.__new__(JsonErrorWorker)
    worker.tmp = Tmp()
    worker.cfg = Cfg()
    for _ in range(1000):
        worker.notify()
    assert Tmp.touches == 1
    worker._last_heartbeat -= 1.0
    worker.notify()
    assert Tmp.touches == 2


def test_under_gunicorn_each_request_is_one_json_line(tmp_path: Path):
    lab = start_lab(tmp_path, settings={"LOG_LEVEL": "info"})
    try:
        request = urllib.request.Request(
            lab.server_url + METRICS, headers={"User-Agent": "probe-test"}
        )
        for _ in range(3):
            with urllib.request.urlopen(request, timeout=10) as answer:
                answer.read()
        stop_lab(lab)
        output = lab.server.log.read_text()
    finally:
        stop_lab(lab)
    ours = [line for line in _lines(output) if line.get("http", {}).get("path") == METRICS]
    assert len(ours) == 3
    assert all(line["http"]["user_agent"] == "probe-test" for line in ours)
    # gunicorn's text access line ("GET /metrics HTTP/1.1" 200 ...) is gone.
    assert 'HTTP/1.1" 200' not in output


def test_under_gunicorn_every_line_is_json_gunicorns_own_too(tmp_path: Path):
    """gunicorn's own log (start-up, a request that is not HTTP, shutting down) is written in the
    services' JSON lines (lab_common.gunicorn_settings.json_log_config): a log pipeline reads
    every line of a service as JSON."""
    lab = start_lab(tmp_path, settings={"LOG_LEVEL": "info"})
    try:
        host, port = lab.server_url.removeprefix("http://").rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=10) as raw:
            raw.sendall(b"NOT HTTP\r\n\r\n")
            assert raw.recv(100).startswith(b"HTTP/1.1 400")
        stop_lab(lab)
        output = lab.server.log.read_text() + lab.client.log.read_text()
    finally:
        stop_lab(lab)
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    ours = [line for line in lines if line.get("logger") == "gunicorn.error"]
    messages = " / ".join(line["msg"] for line in ours)
    assert "Starting gunicorn" in messages and "Shutting down" in messages
    assert any(line["level"] == "warning" and "Invalid request" in line["msg"] for line in ours)
    assert {line["service"] for line in ours} == {"server_svc", "client_svc"}
