"""The CLI's HTTP layer: JSON calls to client_svc and server_svc with the stdlib only.

The transport is one function, ``(method, url, body) -> (status, body bytes)``, so tests
can pass one that calls the Flask test clients instead of opening sockets.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

__all__ = ["ApiError", "Http", "Service", "urllib_http"]

#: ``http(method, url, json_body_or_None) -> (status, response_body)``; raises OSError
#: (ConnectionError, TimeoutError, ...) when the service cannot be reached.
Http = Callable[[str, str, dict[str, Any] | None], tuple[int, bytes]]

TIMEOUT_SECONDS = 30.0


class ApiError(Exception):
    """A call failed: the service was unreachable or answered with a JSON error."""

    def __init__(
        self,
        service: str,
        method: str,
        url: str,
        code: str,
        message: str,
        status: int | None = None,
        peer: str | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.service = service
        self.method = method
        self.url = url
        self.code = code
        self.message = message
        self.status = status
        self.peer = peer

    def describe(self) -> list[str]:
        """Two lines for a person: which call failed, then the error's code and message."""
        where = f"{self.method} {self.url}"
        status = f", HTTP {self.status}" if self.status is not None else ""
        by = f" (raised by {self.peer}_svc)" if self.peer else ""
        return [f"{self.service} failed ({where}{status}){by}", f"  {self.code}: {self.message}"]


def urllib_http(method: str, url: str, body: dict[str, Any] | None) -> tuple[int, bytes]:
    """The default transport: urllib.request, no proxies (the lab lives on 127.0.0.1)."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"only http:// and https:// URLs are supported, not {url!r}")
    data = None if body is None else json.dumps(body).encode("utf-8")
    headers = {"Accept": "application/json"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=TIMEOUT_SECONDS) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return int(exc.code), exc.read()
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, OSError):
            raise reason from None
        raise ConnectionError(str(reason)) from None


class Service:
    """One of the two services, at its base URL, called through ``http``."""

    def __init__(self, name: str, base_url: str, http: Http) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.http = http

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """Call ``path`` and return the JSON object it answered.

        Raises:
            ApiError: unreachable, a JSON error answer, or an answer that is not JSON.
        """
        url = self.base_url + path
        try:
            status, data = self.http(method, url, body)
        except (OSError, ValueError) as exc:
            reason = str(exc) or type(exc).__name__
            raise ApiError(
                self.name, method, url, "unreachable", f"cannot reach {self.name}: {reason}"
            ) from None
        try:
            decoded = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            decoded = None
        if status >= 400:
            error = decoded.get("error") if isinstance(decoded, dict) else None
            if isinstance(error, dict):
                peer = error.get("peer")
                raise ApiError(
                    self.name,
                    method,
                    url,
                    str(error.get("code", "error")),
                    str(error.get("message", "")),
                    status,
                    peer if isinstance(peer, str) else None,
                )
            raise ApiError(
                self.name, method, url, f"http_{status}", "the answer is not a JSON error", status
            )
        if not isinstance(decoded, dict):
            raise ApiError(
                self.name, method, url, "bad_response", "the answer is not a JSON object", status
            )
        return decoded
