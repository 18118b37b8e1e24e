"""An in-process "network" between client_svc and server_svc that tests can break.

:class:`Wire` is client_svc's Transport to a server_svc Flask app, called like HTTP but without
sockets. It records every request that reached server_svc (after any tampering), lets a test
edit requests and answers in transit (a man in the middle), replace answers, raise transport
failures before or after server_svc saw a request (hooks), or swap the server app for a fresh one (a restart that forgets every connection).
It is thread-safe: each request gets its own test client.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Flask

#: A request edit: gets a copy of the JSON body client_svc sent, returns what server_svc gets.
RequestEdit = Callable[[dict[str, Any]], dict[str, Any]]
#: An answer edit: gets the decoded answer of a 200, returns what client_svc gets.
AnswerEdit = Callable[[dict[str, Any]], dict[str, Any]]
#: Replaces an answer outright: gets (status, body bytes), returns what client_svc gets.
Replace = Callable[[int, bytes], tuple[int, bytes]]
#: Runs when a request is about to reach server_svc ("before") or has been answered ("after").
Hook = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True)
class Received:
    """One request as server_svc received it, and its answer's status."""

    path: str
    body: dict[str, Any]
    status: int


class Wire:
    def __init__(self, server_app: Flask) -> None:
        self.server_app = server_app
        self.received: list[Received] = []
        self.request_edits: dict[str, RequestEdit] = {}
        self.answer_edits: dict[str, AnswerEdit] = {}
        self.replacements: dict[str, Replace] = {}
        self.before: list[Hook] = []
        self.after: list[Hook] = []
        #: Whether to keep :attr:`received` (a memory test turns it off).
        self.record = True
        self._lock = threading.Lock()

    def restart(self, server_app: Flask) -> None:
        """A new server process: nothing of the old one's connections or sessions survives."""
        with self._lock:
            self.server_app = server_app

    def paths(self) -> list[str]:
        with self._lock:
            return [r.path for r in self.received]

    def request(self, method: str, path: str, body: dict[str, Any] | None) -> tuple[int, bytes]:
        # A copy: client_svc keeps the body it sent in its own record of the exchange.
        sent = copy.deepcopy(body) if body is not None else {}
        edit = self.request_edits.get(path)
        if edit is not None:
            sent = edit(sent)
        for hook in list(self.before):
            hook(path, sent)
        with self._lock:
            app = self.server_app
        response = app.test_client().open(
            path, method=method, data=json.dumps(sent), content_type="application/json"
        )
        status, data = response.status_code, response.get_data()
        if self.record:
            with self._lock:
                self.received.append(Received(path, sent, status))
        for hook in list(self.after):
            hook(path, sent)
        answer_edit = self.answer_edits.get(path)
        if answer_edit is not None and status == 200:
            data = json.dumps(answer_edit(json.loads(data))).encode()
        replace = self.replacements.get(path)
        if replace is not None:
            status, data = replace(status, data)
        return status, data
