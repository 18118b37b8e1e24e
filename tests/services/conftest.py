"""Fixtures: client_svc (from the root conftest) with a key log file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask


@pytest.fixture
def client_app(make_client_app: Callable[..., Flask], tmp_path: Path) -> Flask:
    """client_svc writing its SSLKEYLOGFILE into the test's own directory."""
    return make_client_app(SSLKEYLOGFILE=str(tmp_path / "keys.log"))
