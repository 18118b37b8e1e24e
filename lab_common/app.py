"""What both Flask apps set up the same way: JSON logs, JSON errors, readable JSON output."""

from __future__ import annotations

from flask import Flask

from . import logs
from .errors import register_error_handlers


def configure_app(app: Flask, service: str) -> None:
    logs.configure(service, str(app.config.get("LOG_LEVEL", "INFO")))
    register_error_handlers(app)
    # Keep fields in the order the API documents them (Flask sorts keys by default).
    app.json.sort_keys = False  # type: ignore[attr-defined]
