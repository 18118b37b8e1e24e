"""How client_svc talks to server_svc: a pooled keep-alive HTTP client with firm timeouts.

Transport failures become clear 502/504 :class:`UpstreamError`\\ s that also say whether the
request may have reached server_svc (``sent``), which decides what the caller is told about a
message's delivery (docs/resilience.md). The server's own JSON errors become
:class:`PeerError` with the server's code, so the caller sees which side refused.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

import urllib3

from lab_common.errors import ServiceError


class PeerError(ServiceError):
    """server_svc refused a request; carries the server's error code."""

    def __init__(self, code: str, message: str, peer_status: int) -> None:
        status = 409 if code == "unknown_connection" else 502
        super().__init__(
            code,
            f"server_svc refused: {message}",
            status,
            peer="server",
            peer_status=peer_status,
        )
        self.peer_status = peer_status


class UpstreamError(ServiceError):
    """No answer from server_svc.

    ``sent`` is False only when the request certainly never left client_svc (no connection
    could be made); True means it may have reached server_svc, and may have been processed.
    """

    def __init__(self, code: str, message: str, status: int, *, sent: bool) -> None:
        super().__init__(code, message, status)
        self.sent = sent


class Transport(Protocol):
    def request(self, method: str, path: str, body: dict[str, Any] | None) -> tuple[int, bytes]: ...


class HttpTransport:
    """urllib3 connection pool to server_svc; one pool shared by every request thread."""

    def __init__(
        self, base_url: str, *, connect_timeout: float, read_timeout: float, maxsize: int = 16
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._pool = urllib3.PoolManager(
            maxsize=maxsize,
            block=False,
            retries=False,  # a retried POST could deliver a record twice
            timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
        )

    def request(self, method: str, path: str, body: dict[str, Any] | None) -> tuple[int, bytes]:
        payload = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        try:
            response = self._pool.request(
                method, self.base_url + path, body=payload, headers=headers
            )
        # The order matters: NewConnectionError is a ConnectTimeoutError, which is a TimeoutError.
        except urllib3.exceptions.NewConnectionError as exc:
            # Refused, unreachable, or the name does not resolve: nothing was sent.
            raise UpstreamError(
                "upstream_unavailable",
                f"server_svc is unreachable: no connection to {self.base_url} "
                f"({type(exc).__name__})",
                502,
                sent=False,
            ) from None
        except urllib3.exceptions.ConnectTimeoutError:
            raise UpstreamError(
                "upstream_timeout",
                f"server_svc did not accept a connection within {self.connect_timeout:g} s",
                504,
                sent=False,
            ) from None
        except urllib3.exceptions.ReadTimeoutError:
            raise UpstreamError(
                "upstream_timeout",
                f"server_svc did not answer within {self.read_timeout:g} s",
                504,
                sent=True,
            ) from None
        except urllib3.exceptions.HTTPError as exc:
            # The connection broke during the request: it may have been read, even processed.
            raise UpstreamError(
                "upstream_unavailable",
                f"the connection to server_svc broke during the request ({type(exc).__name__})",
                502,
                sent=True,
            ) from None
        return response.status, response.data


class ServerClient:
    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        status, data = self.transport.request(method, path, body)
        try:
            decoded = json.loads(data)
        except ValueError:
            decoded = None
        if not isinstance(decoded, dict):
            raise ServiceError(
                "upstream_bad_response",
                f"server_svc answered {status} without JSON",
                502,
                peer_status=status,
            )
        if status >= 400:
            error = decoded.get("error") if isinstance(decoded.get("error"), dict) else {}
            raise PeerError(
                str(error.get("code", "peer_error")), str(error.get("message", "")), status
            )
        return decoded
