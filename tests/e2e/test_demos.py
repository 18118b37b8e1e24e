"""The demos of client_svc against the real compose stack (profile mitm, REVEAL_SECRETS off)."""

from __future__ import annotations

import json
import shlex
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from lab_common.contract import (
    ALERT,
    DEMO_FORWARD_SECRECY,
    DEMO_MISMATCH,
    DEMO_MITM,
    DEMO_TAMPER,
    HELLO,
)

from .stack import LabStack, open_url

COMPOSE_FILE = Path(__file__).resolve().parents[2] / "docker-compose.yml"


def demo(stack: LabStack, demo_path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"{stack.client_url}{demo_path}",
        data=json.dumps(body or {}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with open_url(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_forward_secrecy_says_how_to_enable_it_when_reveal_secrets_is_off(lab_stack: LabStack):
    status, answer = demo(lab_stack, DEMO_FORWARD_SECRECY, {"sessions": 1})
    assert status == 409, answer
    assert answer["error"]["code"] == "demo_disabled"
    assert "REVEAL_SECRETS=1 docker compose up -d" in answer["error"]["message"]


def test_the_client_refuses_the_mitm_container_with_unknown_ca(lab_stack: LabStack):
    status, answer = demo(lab_stack, DEMO_MITM)
    assert status == 200, answer
    assert answer["error"]["code"] == "unknown_ca"
    assert answer["outcome"]["secret_sent"] is False
    assert answer["outcome"]["requests_to_mitm"] == [f"POST {HELLO}", f"POST {ALERT}"]
    # Both CAs come from server_svc.certs with the same name; only the keys differ.
    assert answer["certificate"]["issuer"] == answer["trusted_ca"]["subject"]
    assert answer["certificate"]["authority_key_id"] != answer["trusted_ca"]["subject_key_id"]
    command = [
        *shlex.split(lab_stack.compose_command),
        *("-f", str(COMPOSE_FILE), "-p", lab_stack.project_name, "--profile", "mitm"),
        *("logs", "--no-color", "mitm"),
    ]
    logs = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True).stdout
    assert '"event":"server_hello"' in logs
    assert '"event":"finish"' not in logs  # /handshake/finish never reached the mitm


@pytest.mark.parametrize("attack", ["flip_record", "replay_record", "edit_hello"])
def test_tampering_is_refused_by_the_server(lab_stack: LabStack, attack: str):
    status, answer = demo(lab_stack, DEMO_TAMPER, {"attack": attack})
    assert status == 200, answer
    assert answer["alert"]["side"] == "server"
    assert answer["alert"]["code"] == "bad_record_mac"


@pytest.mark.parametrize(
    ("mistake", "differing_input"),
    [
        ("swapped_randoms", "random_order"),
        ("wrong_label", "label"),
        ("missing_transcript_message", "transcript"),
        ("key_block_seed_order", "random_order"),
        ("none", "none"),
    ],
)
def test_the_mismatch_diagnosis_names_the_input(
    lab_stack: LabStack, mistake: str, differing_input: str
):
    status, answer = demo(lab_stack, DEMO_MISMATCH, {"mistake": mistake})
    assert status == 200, answer
    assert answer["diagnosis"]["differing_input"] == differing_input
    assert "secrets" not in answer
