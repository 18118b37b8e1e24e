"""Mutual TLS on the compose stack, turned on as the README says: server_svc recreated with
``CLIENT_AUTH=required`` (compose passes it through). client_svc answers the CertificateRequest
with the certificate the certs step issued it (its key only in client_svc's volume); server_svc
verifies it against the client CA the same step wrote. Without a certificate the handshake is
refused with handshake_failure. The stack is put back (``CLIENT_AUTH`` unset) afterwards.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from lab_common.contract import HANDSHAKE, SESSION, path

from .conftest import _compose
from .stack import LabStack
from .test_faults import call, wait_until_healthy


def _recreate_server(stack: LabStack, client_auth: str | None) -> None:
    saved = os.environ.pop("CLIENT_AUTH", None)
    if client_auth is not None:
        os.environ["CLIENT_AUTH"] = client_auth
    try:
        _compose(stack.compose_command, "up", "-d", "--no-deps", "--no-build", "server")
    finally:
        os.environ.pop("CLIENT_AUTH", None)
        if saved is not None:
            os.environ["CLIENT_AUTH"] = saved
    wait_until_healthy(stack.server_url)


@pytest.fixture
def required(lab_stack: LabStack) -> Iterator[LabStack]:
    _recreate_server(lab_stack, "required")
    try:
        yield lab_stack
    finally:
        _recreate_server(lab_stack, None)
        status, answer = call(f"{lab_stack.client_url}{HANDSHAKE}", {})
        assert status == 200, answer


def _handshake_when_served(stack: LabStack, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    # HAProxy finds the recreated server by its name again within a few seconds.
    for _ in range(20):
        status, answer = call(f"{stack.client_url}{HANDSHAKE}", body)
        if status != 503:
            return status, answer
        wait_until_healthy(stack.server_url)
    return status, answer


def test_client_auth_required_authenticates_client_svc_and_refuses_a_client_without_one(
    required: LabStack,
) -> None:
    status, answer = _handshake_when_served(required, {"key_exchange": "ecdhe"})
    assert status == 200, answer
    identity = answer["client_identity"]
    assert identity["subject"] == "CN=client_svc" and len(identity["sha256"]) == 64
    kinds = {step["kind"] for step in answer["trace"]}
    assert {"receive_certificate_request", "send_client_certificate"} <= kinds
    status, view = call(f"{required.server_url}{path(SESSION, answer['connection_id'])}")
    assert status == 200 and view["client_identity"] == identity
    assert "verify_certificate_verify" in {step["kind"] for step in view["trace"]}

    status, refused = call(f"{required.client_url}{HANDSHAKE}", {"client_certificate": False})
    assert status == 502, refused
    assert refused["error"]["code"] == "handshake_failure"
    assert refused["error"]["peer"] == "server"
