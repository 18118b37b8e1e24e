"""The compose stack is up: each published service answers its health check with JSON."""

from __future__ import annotations

import json

import pytest

from lab_common.contract import HEALTH

from .stack import LabStack, open_url


@pytest.mark.parametrize("service", ["client", "server", "client_mitm"])
def test_service_answers_healthz_with_json(lab_stack: LabStack, service: str) -> None:
    base_url = getattr(lab_stack, f"{service}_url")
    with open_url(f"{base_url}{HEALTH}") as response:
        assert response.status == 200
        assert response.headers.get_content_type() == "application/json"
        body = json.loads(response.read())
    assert isinstance(body, dict)
