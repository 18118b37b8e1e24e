"""What the end-to-end tests get from the ``lab_stack`` fixture, and HTTP to it from the host."""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass
from http.client import HTTPResponse
from typing import cast

# No proxy: the stack is on the loopback, whatever HTTP_PROXY says.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class LabStack:
    """The running compose stack. URLs are as seen from the host, without a trailing slash."""

    client_url: str
    server_url: str
    client_mitm_url: str
    compose_command: str
    project_name: str


def open_url(request: str | urllib.request.Request, timeout: float = 10) -> HTTPResponse:
    """urllib's urlopen without proxies; raises urllib.error.HTTPError on 4xx and 5xx."""
    return cast(HTTPResponse, _opener.open(request, timeout=timeout))
