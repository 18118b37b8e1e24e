"""The lab as users run it: the compose stack driven over HTTP from the host, as the README's curl walkthrough does."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from lab_common.contract import FINISH, HANDSHAKE, HEALTH, HELLO, MESSAGE, SESSION, path

from .stack import LabStack, open_url


def call(
    url: str, body: dict[str, Any] | None = None, method: str | None = None
) -> tuple[int, dict[str, Any]]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url,
        data=data,
        method=method or ("POST" if body is not None else "GET"),
        headers={"Content-Type": "application/json"} if data is not None else {},
    )
    try:
        with open_url(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def handshake(stack: LabStack, **body: Any) -> dict[str, Any]:
    status, answer = call(f"{stack.client_url}{HANDSHAKE}", body)
    assert status == 200, answer
    return answer


@pytest.mark.parametrize("key_exchange", ["rsa", "ecdhe"])
def test_handshake_gives_equal_fingerprints_on_both_sides(
    lab_stack: LabStack, key_exchange: str
) -> None:
    result = handshake(lab_stack, key_exchange=key_exchange)
    assert result["key_exchange"] == key_exchange
    _, client_view = call(f"{lab_stack.client_url}{path(SESSION, result['connection_id'])}")
    _, server_view = call(f"{lab_stack.server_url}{path(SESSION, result['connection_id'])}")
    assert client_view["fingerprints"] == server_view["fingerprints"] == result["fingerprints"]
    assert server_view["state"] == "established"
    assert server_view["client_random"] == result["client_random"]


def _blobs(value: Any) -> list[bytes]:
    """Every string in a JSON value, decoded as hex and as base64 where it decodes."""
    if isinstance(value, dict):
        return [b for v in value.values() for b in _blobs(v)]
    if isinstance(value, list):
        return [b for v in value for b in _blobs(v)]
    if not isinstance(value, str):
        return []
    found = [value.encode()]
    with contextlib.suppress(ValueError):
        found.append(bytes.fromhex(value))
    with contextlib.suppress(ValueError):
        found.append(base64.b64decode(value, validate=True))
    return found


def test_no_key_crosses_the_wire(lab_stack: LabStack) -> None:
    # client_svc records the JSON of both exchanges with server_svc. Slide a window of each
    # secret's length over every value that travelled and compare with the secret's fingerprint.
    result = handshake(lab_stack, key_exchange="rsa")
    _, view = call(f"{lab_stack.client_url}{path(SESSION, result['connection_id'])}")
    paths = [e["request"]["path"] for e in view["exchanges"]]
    assert paths == [HELLO, FINISH]
    block_length = sum(part["length"] for part in view["key_block_layout"])
    secrets = {
        48: {result["fingerprints"]["master_secret"]},
        block_length: {result["fingerprints"]["key_block"]},
    }
    for part in view["key_block_layout"]:
        if part["sha256"]:
            secrets.setdefault(part["length"], set()).add(part["sha256"])
    blobs = _blobs(view["exchanges"])
    assert any(
        bytes.fromhex(result["server_random"]) == b for b in blobs
    )  # the check can see values
    for length, fingerprints in secrets.items():
        for blob in blobs:
            for i in range(len(blob) - length + 1):
                assert hashlib.sha256(blob[i : i + length]).hexdigest() not in fingerprints


@pytest.mark.parametrize(
    "suite",
    [
        "TLS_RSA_WITH_AES_128_CBC_SHA",
        "TLS_RSA_WITH_AES_256_GCM_SHA384",
        "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        # The certs step's ECDSA certificate, passed by compose as SERVER_ECDSA_*.
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    ],
)
def test_messages_travel_both_ways(lab_stack: LabStack, suite: str) -> None:
    result = handshake(lab_stack, cipher_suite=suite)
    for text in ["first message", "ünïcode ✓", "x" * 20_000]:
        status, answer = call(
            f"{lab_stack.client_url}{MESSAGE}",
            {"plaintext": text, "connection_id": result["connection_id"]},
        )
        assert status == 200, answer
        assert answer["sent"]["seq"] == answer["reply"]["seq"]
        assert answer["reply"]["plaintext"].endswith(text)
        assert base64.b64decode(answer["sent"]["record"])[:3] == b"\x17\x03\x03"
    _, server_view = call(f"{lab_stack.server_url}{path(SESSION, result['connection_id'])}")
    # 1 + 1 + 2 records (the 20,000-byte message spans two), after Finished at 0.
    assert server_view["sequence_numbers"]["read"] == 5


def test_resumption_through_the_stack(lab_stack: LabStack) -> None:
    first = handshake(lab_stack, key_exchange="ecdhe")
    second = handshake(lab_stack, resume=first["session_id"])
    assert second["resumed"] is True
    assert second["fingerprints"]["master_secret"] == first["fingerprints"]["master_secret"]
    assert second["fingerprints"]["key_block"] != first["fingerprints"]["key_block"]
    status, answer = call(f"{lab_stack.client_url}{MESSAGE}", {"plaintext": "after resumption"})
    assert status == 200 and answer["connection_id"] == second["connection_id"]


def test_the_man_in_the_middle_is_refused_before_any_secret_is_sent(lab_stack: LabStack) -> None:
    status, answer = call(f"{lab_stack.client_mitm_url}{HANDSHAKE}", {})
    assert status == 502
    assert answer["error"]["code"] == "unknown_ca"
    health = call(f"{lab_stack.client_mitm_url}{HEALTH}")[1]
    assert health["connections"] == 0


def test_errors_are_json_over_the_real_server(lab_stack: LabStack) -> None:
    status, answer = call(f"{lab_stack.server_url}{path(SESSION, '0' * 32)}")
    assert status == 404 and answer["error"]["code"] == "unknown_connection"
    status, answer = call(
        f"{lab_stack.server_url}{HELLO}", {"client_random": "zz", "cipher_suites": []}
    )
    assert status == 400 and answer["error"]["code"] == "decode_error"


def test_logs_tell_the_story_without_secrets(lab_stack: LabStack) -> None:
    result = handshake(lab_stack)
    command = lab_stack.compose_command.split()
    logs = subprocess.run(
        [*command, "-p", lab_stack.project_name, "logs", "--no-color", "server", "client"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    ).stdout
    story = [line for line in logs.splitlines() if result["connection_id"] in line]
    events = [json.loads(line.split("|", 1)[1])["event"] for line in story]
    assert {"server_hello", "finish", "handshake"} <= set(events)
    # Every line either container wrote is JSON, gunicorn's own ("logger": "gunicorn.error") too.
    written = [json.loads(line.split("|", 1)[1]) for line in logs.splitlines() if "|" in line]
    assert any(entry.get("logger") == "gunicorn.error" for entry in written)
