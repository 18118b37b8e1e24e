"""Prometheus metrics for both services, served at ``GET /metrics``.

One registry per app (tests run several apps in one process). What is counted: HTTP requests by
endpoint, method and status with their latency, handshakes by kind, key exchange, suite and
outcome with their latency, messages and their bytes, and error answers by code.

Every label value comes from a closed set, defined here from each fact's own home; whatever else
a client gets into a label (an invented suite name or HTTP method, a code made up by a hostile
upstream, a lone surrogate that cannot even be written as UTF-8) is counted as ``other``. So the
number of series and the size of the scrape are bounded, and the scrape stays valid, whatever
clients send (docs/security.md). The label sets (besides ``other``):

- ``kind``: ``full``, ``resumed``
- ``key_exchange``: kdf_lib.suites.KeyExchange (``rsa``, ``ecdhe``, ``dhe``), ``unknown``
- ``suite``: the names in kdf_lib.suites.SUITES, ``default`` (none asked for), ``none`` (no agreed
  suite)
- ``code`` (failures): kdf_lib's error codes, lab_common.errors.HTTP_CODES and SERVICE_CODES
- ``outcome``: of handshakes ``established``, of messages ``delivered`` (client) or ``echoed``
  (server), or a failure code
- ``endpoint``: the app's route templates (never an id), ``unmatched``
- ``method``: the standard methods of http.HTTPMethod
- ``status``: the statuses of http.HTTPStatus; another one by its class (``4xx``)
- ``direction``: ``received``, ``sent``; ``le``: the latency buckets
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from http import HTTPMethod, HTTPStatus
from itertools import chain
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
from prometheus_client.utils import floatToGoString

from kdf_lib.errors import ALL_ERRORS
from kdf_lib.suites import SUITES, KeyExchange

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

#: The label value of anything outside a label's closed set.
OTHER = "other"


class ClosedSet:
    """The values one label may take; anything else, a value that is no string included, is
    counted as ``other``."""

    def __init__(self, *groups: Iterable[str]) -> None:
        self.values = frozenset(chain(*groups, (OTHER,)))

    def __call__(self, value: object) -> str:
        return value if isinstance(value, str) and value in self.values else OTHER


KINDS = ClosedSet(("full", "resumed"))
KEY_EXCHANGES = ClosedSet((kx.value for kx in KeyExchange), ("unknown",))
SUITE_NAMES = ClosedSet(SUITES, ("default", "none"))
METHODS = ClosedSet(method.value for method in HTTPMethod)
DIRECTIONS = ClosedSet(("received", "sent"))
_STATUSES = frozenset(str(status.value) for status in HTTPStatus)
#: Every value of the ``status`` label.
STATUS_LABELS = _STATUSES | {f"{first}xx" for first in range(1, 6)} | {OTHER}


def status_label(status: object) -> str:
    """A status of the HTTP registry as itself, any other as its class (``4xx``)."""
    if isinstance(status, int) and not isinstance(status, bool) and 100 <= status <= 599:
        text = str(status)
        return text if text in _STATUSES else f"{status // 100}xx"
    return OTHER


class _RouteTemplates:
    """The ``endpoint`` label: the app's route templates (``/sessions/<connection_id>``, never
    an id), read when the first request is counted (create_app has registered them all by then),
    or ``unmatched``."""

    def __init__(self, read: Callable[[], Iterable[str]]) -> None:
        self._read = read
        self._closed: ClosedSet | None = None

    @property
    def values(self) -> frozenset[str]:
        if self._closed is None:
            self._closed = ClosedSet(self._read(), ("unmatched",))
        return self._closed.values

    def __call__(self, endpoint: object) -> str:
        return endpoint if isinstance(endpoint, str) and endpoint in self.values else OTHER


def failure_codes() -> ClosedSet:
    """Every code an error answer can carry: kdf_lib's alerts, HTTP_CODES, SERVICE_CODES."""
    # lab_common.errors imports this module (note_error), so its codes are read at call time.
    from .errors import HTTP_CODES, SERVICE_CODES

    return ClosedSet((error.code for error in ALL_ERRORS), HTTP_CODES.values(), SERVICE_CODES)


class _Labelled:
    """A labelled metric that takes each label value through its closed set, then looks the
    child up once per label set: labels() validates its arguments and takes a lock on every
    call, and the callers count every request or message. As the values are clamped first, this
    cache, like the metric's own children, holds at most one entry per combination of the sets."""

    def __init__(self, metric: Any, *clamps: Callable[[object], str]) -> None:
        self.metric = metric
        self._clamps = clamps
        self._children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: object) -> Any:
        labels = tuple([clamp(value) for clamp, value in zip(self._clamps, values, strict=True)])
        child = self._children.get(labels)
        if child is None:
            child = self._children.setdefault(labels, self.metric.labels(*labels))
        return child


class LabMetrics:
    def __init__(self, service: str, routes: Callable[[], Iterable[str]] = tuple) -> None:
        """``routes`` reads the app's route templates, the values of the ``endpoint`` label."""
        self.service = service
        self.endpoints = _RouteTemplates(routes)
        self.registry = CollectorRegistry()
        r = self.registry
        codes = failure_codes()
        self.handshake_outcomes = ClosedSet(("established",), codes.values)
        self.message_outcomes = ClosedSet(("delivered", "echoed"), codes.values)
        self.failure_codes = codes
        self.requests = _Labelled(
            Counter(
                "tls_lab_http_requests",
                "HTTP requests answered, by route template, method and status",
                ["endpoint", "method", "status"],
                registry=r,
            ),
            self.endpoints,
            METHODS,
            status_label,
        )
        self.request_seconds = _Labelled(
            Histogram(
                "tls_lab_http_request_duration_seconds",
                "Time to answer an HTTP request, by route template",
                ["endpoint"],
                buckets=_LATENCY_BUCKETS,
                registry=r,
            ),
            self.endpoints,
        )
        self.handshakes = _Labelled(
            Counter(
                "tls_lab_handshakes",
                "Handshakes by kind (full/resumed), key exchange, suite and outcome "
                "(established, or the alert or error code that ended them)",
                ["kind", "key_exchange", "suite", "outcome"],
                registry=r,
            ),
            KINDS,
            KEY_EXCHANGES,
            SUITE_NAMES,
            self.handshake_outcomes,
        )
        self.handshake_seconds = _Labelled(
            Histogram(
                "tls_lab_handshake_duration_seconds",
                "Time for a successful handshake (client: both round trips; server: the finish step)",
                ["kind", "key_exchange"],
                buckets=_LATENCY_BUCKETS,
                registry=r,
            ),
            KINDS,
            KEY_EXCHANGES,
        )
        self.messages = _Labelled(
            Counter("tls_lab_messages", "Application messages by outcome", ["outcome"], registry=r),
            self.message_outcomes,
        )
        message_bytes = _Labelled(
            Counter(
                "tls_lab_message_bytes",
                "Application data bytes, by direction as seen by this service",
                ["direction"],
                registry=r,
            ),
            DIRECTIONS,
        )
        self.failures = _Labelled(
            Counter(
                "tls_lab_failures",
                "Error answers by code: TLS alert names (bad_record_mac, ...) and service errors",
                ["code"],
                registry=r,
            ),
            codes,
        )
        self._bytes_received = message_bytes("received")
        self._bytes_sent = message_bytes("sent")

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
        self.handshakes(kind, key_exchange, suite, outcome).inc()
        if seconds is not None and outcome == "established":
            self.handshake_seconds(kind, key_exchange).observe(seconds)

    def message(self, outcome: str, received: int = 0, sent: int = 0) -> None:
        self.messages(outcome).inc()
        if received:
            self._bytes_received.inc(received)
        if sent:
            self._bytes_sent.inc(sent)

    def request(
        self, endpoint: str, method: str, status: int, seconds: float | None, error_code: str | None
    ) -> None:
        """One answered HTTP request, and the code of its error answer if it was one."""
        self.requests(endpoint, method, status).inc()
        if seconds is not None:
            self.request_seconds(endpoint).observe(seconds)
        if error_code:
            self.failures(error_code).inc()

    def label_values(self) -> dict[str, dict[str, frozenset[str]]]:
        """Every value each label of each metric family can take, by family and label name."""
        routes = self.endpoints.values
        buckets = frozenset(map(floatToGoString, (*_LATENCY_BUCKETS, float("inf"))))
        kind_kx = {"kind": KINDS.values, "key_exchange": KEY_EXCHANGES.values}
        return {
            "tls_lab_http_requests": {
                "endpoint": routes,
                "method": METHODS.values,
                "status": STATUS_LABELS,
            },
            "tls_lab_http_request_duration_seconds": {"endpoint": routes, "le": buckets},
            "tls_lab_handshakes": {
                **kind_kx,
                "suite": SUITE_NAMES.values,
                "outcome": self.handshake_outcomes.values,
            },
            "tls_lab_handshake_duration_seconds": {**kind_kx, "le": buckets},
            "tls_lab_messages": {"outcome": self.message_outcomes.values},
            "tls_lab_message_bytes": {"direction": DIRECTIONS.values},
            "tls_lab_failures": {"code": self.failure_codes.values},
        }

    def render(self) -> Response:
        return Response(generate_latest(self.registry), mimetype=CONTENT_TYPE_LATEST)


def metrics() -> LabMetrics:
    """The current app's metrics."""
    found: LabMetrics = current_app.extensions["metrics"]
    return found


def label_values(app: Flask) -> dict[str, dict[str, frozenset[str]]]:
    """The closed label sets of an app's metrics, by family name and label name."""
    lab_metrics: LabMetrics = app.extensions["metrics"]
    return lab_metrics.label_values()


def note_error(code: str) -> None:
    """Called by the error handlers: the after-request hook counts the code."""
    g.lab_error_code = code


def install(app: Flask, service: str) -> LabMetrics:
    lab_metrics = LabMetrics(service, lambda: [rule.rule for rule in app.url_map.iter_rules()])
    app.extensions["metrics"] = lab_metrics

    @app.before_request
    def _start_timer() -> None:
        g.lab_started = time.perf_counter()

    @app.after_request
    def _count(response: Response) -> Response:
        rule = request.url_rule
        started: Any = g.get("lab_started")
        lab_metrics.request(
            rule.rule if rule is not None else "unmatched",
            request.method,
            response.status_code,
            None if started is None else time.perf_counter() - started,
            g.get("lab_error_code"),
        )
        return response

    app.add_url_rule("/metrics", "metrics", lambda: lab_metrics.render(), methods=["GET"])
    return lab_metrics
