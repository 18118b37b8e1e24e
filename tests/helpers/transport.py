"""client_svc wired to server_svc in-process, through a "network" that tests can break.

:class:`FlaskTransport` is client_svc's Transport to a server_svc Flask app, called like HTTP
but without sockets. By default it only carries requests; a test can also edit requests and
answers in transit (a man in the middle), replace answers, fail a request before or after
server_svc saw it (hooks that raise), or swap the server app for a fresh one (a restart that
forgets every connection).
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

#: A request edit: gets a copy of the JSON body client_svc sent, returns what server_svc gets.
RequestEdit = Callable[[dict[str, Any]], dict[str, Any]]
#: An answer edit: gets the decoded answer of a 200, returns what client_svc gets.
AnswerEdit = Callable[[dict[str, Any]], dict[str, Any]]
#: Replaces an answer outright: gets (status, body bytes), returns what client_svc gets.
Replace = Callable[[int, bytes], tuple[int, bytes]]
#: Runs when a request is about to reach server_svc ("before") or has been answered ("after");
#: raising a transport error there loses the request or its answer.
Hook = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True)
class Received:
    """One request as server_svc received it (after any edit), and its answer's status."""

    method: str
    path: str
    body: dict[str, Any] | None
    status: int


class FlaskTransport:
    """client_svc's Transport to a server_svc app (or a test client of one).

    ``calls`` is every (method, path) client_svc sent, delivered or not; ``received`` what
    reached server_svc. Thread-safe: each request gets its own test client.
    """

    def __init__(self, server: Flask | FlaskClient) -> None:
        self.server_app = _app_of(server)
        self.calls: list[tuple[str, str]] = []
        self.received: list[Received] = []
        self.request_edits: dict[str, RequestEdit] = {}
        self.answer_edits: dict[str, AnswerEdit] = {}
        self.replacements: dict[str, Replace] = {}
        self.before: list[Hook] = []
        self.after: list[Hook] = []
        #: Whether to keep :attr:`calls` and :attr:`received` (a memory test turns it off).
        self.record = True
        self._lock = threading.Lock()

    def restart(self, server: Flask | FlaskClient) -> None:
        """A new server process: nothing of the old one's connections or sessions survives."""
        with self._lock:
            self.server_app = _app_of(server)

    def paths(self) -> list[str]:
        """The path of each request that reached server_svc, in order."""
        with self._lock:
            return [r.path for r in self.received]

    def request(self, method: str, path: str, body: dict[str, Any] | None) -> tuple[int, bytes]:
        if self.record:
            with self._lock:
                self.calls.append((method, path))
        # A copy: client_svc keeps the body it sent in its own record of the exchange.
        sent = None if body is None else copy.deepcopy(body)
        edit = self.request_edits.get(path)
        if edit is not None and sent is not None:
            sent = edit(sent)
        for hook in list(self.before):
            hook(path, sent or {})
        with self._lock:
            app = self.server_app
        response = app.test_client().open(
            path,
            method=method,
            data=None if sent is None else json.dumps(sent),
            content_type=None if sent is None else "application/json",
        )
        status, data = response.status_code, response.get_data()
        if self.record:
            with self._lock:
                self.received.append(Received(method, path, sent, status))
        for hook in list(self.after):
            hook(path, sent or {})
        answer_edit = self.answer_edits.get(path)
        if answer_edit is not None and status == 200:
            data = json.dumps(answer_edit(json.loads(data))).encode()
        replace = self.replacements.get(path)
        if replace is not None:
            status, data = replace(status, data)
        return status, data


def _app_of(server: Flask | FlaskClient) -> Flask:
    return server.application if isinstance(server, FlaskClient) else server
