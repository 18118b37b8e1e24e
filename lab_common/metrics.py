"""Prometheus metrics for both services, served at ``GET /metrics``.

One registry per app (tests run several apps in one process). What is counted:
HTTP requests by endpoint and status with their latency, handshakes by kind, key
exchange, suite and outcome with their latency, messages and their bytes, and
error answers by code (the TLS alert name or the service error). Label values are
bounded sets (route templates, suite names, error codes), never connection ids.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, current_app, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class LabMetrics:
    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "tls_lab_http_requests",
            "HTTP requests answered, by route template, method and status",
            ["endpoint", "method", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "tls_lab_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.handshakes = Counter(
            "tls_lab_handshakes",
            "Handshakes by kind (full/resumed), key exchange, suite and outcome "
            "(established, or the alert or error code that ended them)",
            ["kind", "key_exchange", "suite", "outcome"],
            registry=r,
        )
        self.handshake_seconds = Histogram(
            "tls_lab_handshake_duration_seconds",
            "Time for a successful handshake (client: both round trips; server: the finish step)",
            ["kind", "key_exchange"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.messages = Counter(
            "tls_lab_messages", "Application messages by outcome", ["outcome"], registry=r
        )
        self.message_bytes = Counter(
            "tls_lab_message_bytes",
            "Application data bytes, by direction as seen by this service",
            ["direction"],
            registry=r,
        )
        self.failures = Counter(
            "tls_lab_failures",
            "Error answers by code: TLS alert names (bad_record_mac, ...) and service errors",
            ["code"],
            registry=r,
        )
        # Children of the per-message metrics, looked up once (see _child).
        self._message_outcomes: dict[tuple[str, ...], Any] = {}
        self._bytes_received = self.message_bytes.labels("received")
        self._bytes_sent = self.message_bytes.labels("sent")

    def gauge(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """A gauge read at scrape time (e.g. the size of a store)."""
        Gauge(name, documentation, registry=self.registry).set_function(read)

    def handshake(
        self,
        *,
        resumed: bool,
        key_exchange: str,
        suite: str,
        outcome: str,
        seconds: float | None = None,
    ) -> None:
        kind = "resumed" if resumed else "full"
        self.handshakes.labels(kind, key_exchange, suite, outcome).inc()
        if seconds is not None and outcome == "established":
            self.handshake_seconds.labels(kind, key_exchange).observe(seconds)

    def message(self, outcome: str, received: int = 0, sent: int = 0) -> None:
        _child(self._message_outcomes, self.messages, outcome).inc()
        if received:
            self._bytes_received.inc(received)
        if sent:
            self._bytes_sent.inc(sent)

    def render(self) -> Response:
        return Response(generate_latest(self.registry), mimetype=CONTENT_TYPE_LATEST)


def _child(cache: dict[tuple[str, ...], Any], metric: Any, *labels: str) -> Any:
    """``metric.labels(*labels)``, looked up once per label set: labels() validates its
    arguments and takes a lock on every call, and the callers count every request or message."""
    child = cache.get(labels)
    if child is None:
        child = cache.setdefault(labels, metric.labels(*labels))
    return child


def metrics() -> LabMetrics:
    """The current app's metrics."""
    found: LabMetrics = current_app.extensions["metrics"]
    return found


def note_error(code: str) -> None:
    """Called by the error handlers: the after-request hook counts the code."""
    g.lab_error_code = code


def install(app: Flask, service: str) -> LabMetrics:
    lab_metrics = LabMetrics(service)
    app.extensions["metrics"] = lab_metrics

    @app.before_request
    def _start_timer() -> None:
        g.lab_started = time.perf_counter()

    counters: dict[tuple[str, ...], Any] = {}
    timers: dict[tuple[str, ...], Any] = {}

    @app.after_request
    def _count(response: Response) -> Response:
        rule = request.url_rule
        endpoint = rule.rule if rule is not None else "unmatched"
        status = str(response.status_code)
        _child(counters, lab_metrics.requests, endpoint, request.method, status).inc()
        started: Any = g.get("lab_started")
        if started is not None:
            timer = _child(timers, lab_metrics.request_seconds, endpoint)
            timer.observe(time.perf_counter() - started)
        code = g.get("lab_error_code")
        if code:
            lab_metrics.failures.labels(code).inc()
        return response

    app.add_url_rule("/metrics", "metrics", lambda: lab_metrics.render(), methods=["GET"])
    return lab_metrics
