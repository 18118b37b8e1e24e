"""What both Flask apps set up the same way: JSON logs, JSON errors, metrics, readable JSON."""

from __future__ import annotations

from flask import Flask

from . import logs, metrics
from .errors import register_error_handlers


def configure_app(app: Flask, service: str) -> metrics.LabMetrics:
    """Logs, error handlers and /metrics; returns the app's metrics."""
    logs.configure(service, str(app.config.get("LOG_LEVEL", "INFO")))
    register_error_handlers(app)
    # Keep fields in the order the API documents them (Flask sorts keys by default).
    app.json.sort_keys = False  # type: ignore[attr-defined]
    return metrics.install(app, service)
