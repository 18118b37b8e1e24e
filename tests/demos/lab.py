"""client_svc wired in-process to server_svc and to a man in the middle with a CA of its own."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask.testing import FlaskClient
from helpers.transport import FlaskTransport

from lab_common.contract import DEMO_FORWARD_SECRECY, DEMO_MISMATCH, DEMO_MITM, DEMO_TAMPER

STEP_FIELDS = {"side", "action", "detail"}
#: Each demo's path by its name (the last segment of the path, the answer's "demo").
DEMOS = {
    demo.rsplit("/", 1)[1]: demo
    for demo in (DEMO_FORWARD_SECRECY, DEMO_TAMPER, DEMO_MISMATCH, DEMO_MITM)
}


@dataclass
class Lab:
    client: FlaskClient  # client_svc
    server: FlaskClient  # server_svc, asked directly
    to_server: FlaskTransport  # what client_svc sent to server_svc
    to_mitm: FlaskTransport  # what client_svc sent to the mitm

    def demo(self, name: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """POST the demo ``name``; the answer, after checking the shape every demo shares."""
        response = self.client.post(DEMOS[name], json=body)
        assert response.status_code == 200, response.get_json()
        answer: dict[str, Any] = response.get_json()
        assert_demo_shape(answer, name)
        return answer


def assert_demo_shape(answer: dict[str, Any], name: str) -> None:
    assert answer["demo"] == name
    assert isinstance(answer["title"], str) and answer["title"]
    assert isinstance(answer["explanation"], str) and answer["explanation"]
    assert isinstance(answer["outcome"], dict)
    assert answer["steps"], "a demo without steps shows nothing"
    for step in answer["steps"]:
        assert set(step) == STEP_FIELDS
        assert all(isinstance(step[field], str) and step[field] for field in STEP_FIELDS)


def error_of(response: Any, status: int) -> dict[str, str]:
    assert response.status_code == status, response.get_json()
    error: dict[str, str] = response.get_json()["error"]
    return error
